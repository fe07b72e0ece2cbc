"""The pipeline for one refresh: fetch everything, build the report, write it once.

All fetching finishes before any writing starts, so an Instantly failure or a malformed
payload raises before Google is called and the sheet keeps its previous contents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import history as history_tab
from .date_ranges import resolve
from .instantly import Campaign, InstantlyClient
from .links import spreadsheet_link
from .notes import plan_notes, read_notes, row_key
from .render import Extras, RemovedNoteRow, add_sheet_request, chart_id_for, render
from .report import ALL_CAMPAIGNS, CampaignSection, Report, build_report
from .sheets import SheetsClient, TabWanted, new_sheet_id
from .winners import DEFAULT_MIN_SAMPLE

# The connection page shows the last synced table from this many rows.
LAST_TABLE_ROWS = 200


@dataclass(frozen=True)
class Features:
    """What the tab offers beyond the numbers; each switchable per connection.

    The defaults here are off, so the plain tab (and its one-call refresh) is what a bare
    ``SyncSpec`` gets; stored connections turn them on unless switched off
    (``sync.spec_for``).
    """

    subjects: bool = False
    winner_calls: bool = False
    notes: bool = False
    history: bool = False
    chart: bool = False
    min_sample: int = DEFAULT_MIN_SAMPLE
    history_days: int = history_tab.DEFAULT_HORIZON_DAYS

    @classmethod
    def all_on(cls, **overrides: Any) -> Features:
        return cls(**{"subjects": True, "winner_calls": True, "notes": True, "history": True,
                      "chart": True, **overrides})

    @property
    def needs_read(self) -> bool:
        # Notes and history must see what the sheet holds; the chart must know whether a
        # person deleted it. Subjects and winner calls come from Instantly data alone.
        return self.notes or self.history or self.chart


def history_title(worksheet_title: str) -> str:
    return f"{worksheet_title} history"[:100]


@dataclass(frozen=True)
class SyncSpec:
    spreadsheet_id: str
    worksheet_title: str
    sheet_id: int | None = None
    campaign_ids: Sequence[str] = ()
    date_range: Mapping[str, Any] | None = None
    include_opportunities: bool = False
    # Campaign names and sequences known from an earlier refresh: saves one Instantly
    # call per campaign on the steady-state path.
    known_campaigns: Mapping[str, Campaign] = field(default_factory=dict)
    features: Features = field(default_factory=Features)
    # The history tab's id (kept beside ``sheet_id``) and the tabs' last seen titles, so
    # the steady-state read can name its ranges.
    history_sheet_id: int | None = None
    tab_titles: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncOutcome:
    rows_written: int
    sheet_id: int
    sheet_title: str
    sheet_url: str
    tab_created: bool
    instantly_calls: int
    sheets_calls: int
    campaigns: Mapping[str, Campaign]
    report: Report
    history_sheet_id: int | None = None
    # What the connection should remember for the next refresh (``Connection.options``).
    saved_options: Mapping[str, Any] = field(default_factory=dict)


def fetch_sections(
    spec: SyncSpec, instantly: InstantlyClient, now: datetime
) -> tuple[list[CampaignSection], dict[str, Campaign], str]:
    """Instantly data for every selected campaign (or all combined, in one call)."""
    dates = resolve(dict(spec.date_range or {}), now.astimezone(UTC).date())
    common: dict[str, Any] = {
        "start": dates.start_instant,
        "end": dates.end_instant,
        "include_opportunities": spec.include_opportunities,
    }
    if not spec.campaign_ids:
        stats = instantly.step_analytics(None, **common)
        return [CampaignSection(None, ALL_CAMPAIGNS, stats)], {}, dates.label
    sections: list[CampaignSection] = []
    campaigns: dict[str, Campaign] = {}
    for campaign_id in dict.fromkeys(spec.campaign_ids):
        campaign = spec.known_campaigns.get(campaign_id) or instantly.campaign(campaign_id)
        campaigns[campaign_id] = campaign
        stats = instantly.step_analytics(campaign_id, **common)
        sections.append(CampaignSection(campaign_id, campaign.name, stats, campaign))
    return sections, campaigns, dates.label


def run_sync(
    spec: SyncSpec,
    *,
    instantly: InstantlyClient,
    sheets: SheetsClient,
    now: datetime | None = None,
    before_write: Callable[[], None] | None = None,
) -> SyncOutcome:
    """Fetch, build and write one refresh.

    ``before_write`` runs after everything is fetched and planned, right before each
    write is sent; raising a ``SyncError`` there aborts the refresh with the sheet
    untouched (the sync uses it to refuse writing for a connection deleted meanwhile).
    """
    now = now or datetime.now(UTC)
    check = before_write or (lambda: None)
    instantly_before, sheets_before = instantly.calls, sheets.calls
    sections, campaigns, date_label = fetch_sections(spec, instantly, now)
    features = spec.features
    report = build_report(
        sections,
        include_opportunities=spec.include_opportunities,
        date_label=date_label,
        subjects=features.subjects,
        winner_calls=features.winner_calls,
        min_sample=features.min_sample,
    )
    if features.needs_read:
        return _sync_with_read(
            spec, report, campaigns, sheets=sheets, now=now,
            before=(instantly_before, sheets_before), instantly=instantly, check=check,
        )
    check()
    written = sheets.write_tab(
        spec.spreadsheet_id,
        title=spec.worksheet_title,
        sheet_id=spec.sheet_id,
        tab_requests=lambda sid: render(report, sheet_id=sid, synced_at=now),
        add_sheet=lambda sid, title: add_sheet_request(report, sheet_id=sid, title=title),
    )
    return SyncOutcome(
        rows_written=len(report.all_rows),
        sheet_id=written.sheet_id,
        sheet_title=written.title,
        sheet_url=written.url,
        tab_created=written.created,
        instantly_calls=instantly.calls - instantly_before,
        sheets_calls=sheets.calls - sheets_before,
        campaigns=campaigns,
        report=report,
        saved_options={"last_table": last_table(report, now)},
    )


def _fresh_id(taken: set[int]) -> int:
    new_id = new_sheet_id()
    while new_id in taken:
        new_id = new_sheet_id()
    taken.add(new_id)
    return new_id


def plan_requests(
    spec: SyncSpec,
    report: Report,
    read: Any,
    *,
    now: datetime,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The one batch for every feature, from the one read (pure: no I/O)."""
    features = spec.features
    taken = set(read.taken_ids)
    main = read.tabs.get("main")
    requests: list[dict[str, Any]] = []
    if main is None:
        main_id, main_title = _fresh_id(taken), spec.worksheet_title
    else:
        main_id, main_title = main.sheet_id, main.title
    keys = [row_key(r) for r in report.all_rows]
    extras_kw: dict[str, Any] = {}
    if features.notes:
        notes = plan_notes(read_notes(main.rows if main else []), keys)
        extras_kw.update(
            notes=notes.by_key,
            row_keys=keys,
            removed_notes=[RemovedNoteRow(n.key, n.label, n.value) for n in notes.removed],
        )
    if features.chart:
        chart_id = chart_id_for(main_id)
        exists = main is not None and chart_id in main.charts
        extras_kw.update(chart="update" if exists else "add", chart_id=chart_id)
    extras = Extras(**extras_kw)
    if main is None:
        requests.append(
            add_sheet_request(report, sheet_id=main_id, title=main_title, extras=extras)
        )
    requests += render(report, sheet_id=main_id, synced_at=now, extras=extras)
    info: dict[str, Any] = {"sheet_id": main_id, "title": main_title, "created": main is None}
    if features.history:
        tab = read.tabs.get("history")
        if tab is None:
            history_id, title = _fresh_id(taken), history_title(spec.worksheet_title)
            requests.append(history_tab.add_sheet_request(history_id, title))
            existing: list[Any] = []
        else:
            history_id, title = tab.sheet_id, tab.title
            existing = history_tab.existing_rows(tab.rows)
        today = now.astimezone(UTC).date()
        edit = history_tab.plan(
            existing,
            today,
            history_tab.snapshot(report, today),
            horizon_days=features.history_days,
        )
        requests += history_tab.requests(edit, history_id)
        info.update(history_sheet_id=history_id, history_title=title)
    return requests, info


def _sync_with_read(
    spec: SyncSpec,
    report: Report,
    campaigns: dict[str, Campaign],
    *,
    sheets: SheetsClient,
    instantly: InstantlyClient,
    now: datetime,
    before: tuple[int, int],
    check: Callable[[], None],
) -> SyncOutcome:
    """One read (cells, charts) plus one atomic write for every feature and tab."""
    known = spec.sheet_id is not None
    wanted = [
        TabWanted(
            "main",
            (spec.tab_titles.get("main") if known else None) or spec.worksheet_title,
            spec.sheet_id,
        )
    ]
    if spec.features.history:
        wanted.append(
            TabWanted(
                "history",
                (spec.tab_titles.get("history") if known else None)
                or history_title(spec.worksheet_title),
                spec.history_sheet_id if known else None,
                "A:B",
            )
        )
    read = sheets.read_tabs(spec.spreadsheet_id, wanted)
    requests, info = plan_requests(spec, report, read, now=now)
    check()
    sheets.batch_update(spec.spreadsheet_id, requests)
    titles = {"main": info["title"]}
    if "history_title" in info:
        titles["history"] = info["history_title"]
    saved: dict[str, Any] = {"tab_titles": titles, "last_table": last_table(report, now)}
    if "history_sheet_id" in info:
        saved["history_sheet_id"] = info["history_sheet_id"]
    return SyncOutcome(
        rows_written=len(report.all_rows),
        sheet_id=info["sheet_id"],
        sheet_title=info["title"],
        sheet_url=spreadsheet_link(spec.spreadsheet_id, info["sheet_id"]),
        tab_created=info["created"],
        instantly_calls=instantly.calls - before[0],
        sheets_calls=sheets.calls - before[1],
        campaigns=campaigns,
        report=report,
        history_sheet_id=info.get("history_sheet_id"),
        saved_options=saved,
    )


def last_table(report: Report, synced_at: datetime) -> dict[str, Any]:
    """A compact copy of the table for the connection page (first rows only)."""
    rows = report.all_rows
    shown = [*rows[:LAST_TABLE_ROWS], report.total] if len(rows) > LAST_TABLE_ROWS else rows
    return {
        "synced_at": synced_at.astimezone(UTC).isoformat(),
        "title": report.title,
        "date_label": report.date_label,
        "columns": [[c.header, c.kind] for c in report.columns],
        "rows": [[list(r.values), r.highlight, r.kind] for r in shown],
        "omitted_rows": max(0, len(rows) - LAST_TABLE_ROWS),
    }

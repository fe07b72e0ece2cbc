"""The pipeline for one refresh: fetch everything, build the report, write it once.

All fetching (``fetch.py``) finishes before any writing starts, so an Instantly failure or
a malformed payload raises before Google is called and the sheet keeps its previous
contents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from sheets_sync.date_ranges import DateRange
from sheets_sync.errors import InstantlyEmptyAnswer, SheetsWriteUnconfirmed, SyncError
from sheets_sync.links import spreadsheet_link
from sheets_sync.pipeline import history as history_tab
from sheets_sync.pipeline import revision, totals_check
from sheets_sync.pipeline.fetch import Fetched, campaign_section, fetch
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.instantly_models import Campaign
from sheets_sync.pipeline.notes import plan_notes, read_notes, row_key
from sheets_sync.pipeline.render import (
    Extras,
    RemovedNoteRow,
    add_sheet_request,
    chart_id_for,
    render,
)
from sheets_sync.pipeline.report import (
    CampaignSection,
    Report,
    build_report,
)
from sheets_sync.pipeline.sheets_writer import SheetsClient, TabWanted, new_sheet_id
from sheets_sync.pipeline.winners import DEFAULT_MIN_SAMPLE

# The connection page shows the last synced table from this many rows.
LAST_TABLE_ROWS = 200
# Sends of one refresh's write at most: the first, and up to two re-planned after an
# unconfirmed outcome (each after a fresh read).
WRITE_ATTEMPTS = 3


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
    subsequences: bool = False
    min_sample: int = DEFAULT_MIN_SAMPLE
    history_days: int = history_tab.DEFAULT_HORIZON_DAYS

    @classmethod
    def all_on(cls, **overrides: Any) -> Features:
        return cls(**{"subjects": True, "winner_calls": True, "notes": True, "history": True,
                      "chart": True, "subsequences": True, **overrides})

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
    # What the last successful refresh saw (``sent_memory``), to refuse a sudden empty
    # answer that would blank a full table.
    last_sent: Mapping[str, Any] = field(default_factory=dict)
    # The newest day the history tab was written for (``saved_options["history_day"]``):
    # the days since then are fetched again, day by day.
    history_last_day: date | None = None
    # Ask Instantly one call first, alone, before the rest (``fetch``): for a key or a
    # workspace not known to work right now. A connection whose last refresh worked
    # sends its first calls together.
    first_call_alone: bool = True


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
    # The table as the connection's page shows it (``last_table``), stored apart from the
    # options (``Connection.last_table``).
    last_table: Mapping[str, Any] | None = None
    # The step rows against Instantly's campaign overview, as the tab's info line says it.
    totals: totals_check.TotalsCheck | None = None


HistoryRows = dict[date, list[tuple[str, list[history_tab.HistoryValue]]]]


def history_rows(
    spec: SyncSpec, fetched: Fetched, report: Report, now: datetime
) -> HistoryRows:
    """Each fetched history day's own rows (one step-analytics answer per campaign, or
    one for all combined, the day from its first to its last millisecond). The main
    report's rows without events that day get zeros."""
    today = now.astimezone(UTC).date()
    # Subsequence rows stay off the history tab: their per-day numbers would cost one more
    # call per subsequence and day, and a zero "quiet" row for them would be untrue.
    known = [
        (key, cells) for key, cells in history_tab.snapshot(report, today) if "/sub:" not in key
    ]
    out: HistoryRows = {}
    for day, answers in fetched.history_days.items():
        sections = [campaign_section(cid, stats, fetched.campaigns) for cid, stats in answers]
        day_report = build_report(
            sections,
            include_opportunities=spec.include_opportunities,
            date_label=day.isoformat(),
            subjects=False,
            winner_calls=False,
        )
        out[day] = history_tab.with_quiet_rows(
            day, history_tab.snapshot(day_report, day), known
        )
    return out


def check_totals(spec: SyncSpec, fetched: Fetched) -> totals_check.TotalsCheck:
    """The overview against the step rows. Its failure is reported, never raised: the
    numbers themselves are fine."""
    overview = fetched.overview
    if isinstance(overview, SyncError):
        return totals_check.not_made(overview)
    if spec.campaign_ids:
        # Only what was asked about, should Instantly add other campaigns' rows.
        wanted = set(spec.campaign_ids)
        overview = [row for row in overview if row.campaign_id in wanted]
    return totals_check.compare(
        # Instantly does not document subsequence sends as part of a campaign's overview.
        [stat for section in fetched.sections if section.subsequence is None
         for stat in section.stats],
        overview,
        include_opportunities=spec.include_opportunities,
    )


_ALL_KEY = "*"  # the memory's key for "all campaigns combined"


def _fingerprint(spec: SyncSpec) -> str:
    # Sent totals are comparable only for the same question asked of Instantly.
    return json.dumps(
        [sorted(spec.campaign_ids), spec.date_range or {}, bool(spec.include_opportunities)],
        sort_keys=True,
    )


def sent_memory(
    spec: SyncSpec, sections: Sequence[CampaignSection], dates: DateRange
) -> dict[str, Any]:
    """What this refresh saw, for the next one's empty-answer check."""
    return {
        "fingerprint": _fingerprint(spec),
        "start": dates.start.isoformat() if dates.start else None,
        "end": dates.end.isoformat() if dates.end else None,
        "sent": {
            section.campaign_id or _ALL_KEY: sum(r.sent for r in section.stats)
            for section in sections
        },
    }


def _covers(now: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
    """Does this refresh's date range contain the last one's? (None = open end.)"""
    def contains(outer: str | None, inner: str | None, *, start: bool) -> bool:
        if outer is None:
            return True
        if inner is None:
            return False
        return outer <= inner if start else outer >= inner

    return contains(now["start"], before.get("start"), start=True) and contains(
        now["end"], before.get("end"), start=False
    )


def refuse_sudden_empty(
    spec: SyncSpec, sections: Sequence[CampaignSection], memory: Mapping[str, Any]
) -> None:
    """Refuse to replace numbers with an empty table when Instantly suddenly says nothing.

    A campaign that had sends at the last refresh cannot have none over a date range
    that contains the last one, so an empty answer then is Instantly's hiccup, not news.
    Ranges that moved on (last 7 days), changed settings, or campaigns that never sent
    are written as they come.
    """
    before = spec.last_sent or {}
    if before.get("fingerprint") != memory["fingerprint"] or not _covers(memory, before):
        return
    for section in sections:
        key = section.campaign_id or _ALL_KEY
        had = before.get("sent", {}).get(key)
        if section.stats or not isinstance(had, int) or had <= 0:
            continue
        what = "all campaigns combined" if section.campaign_id is None else (
            f"campaign '{section.name}'"
        )
        if section.subsequence is not None:
            what = f"subsequence '{section.subsequence}' of {what}"
        raise InstantlyEmptyAnswer(
            f"Instantly returned no step analytics for {what}, which showed {had:,} sent at "
            "the last refresh, for a date range that includes that one. The sheet was left "
            "as it was. This is usually a passing problem at Instantly; the next refresh "
            "tries again. If the campaign was deleted or reset in Instantly, remove it from "
            "this connection's campaigns."
        )


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
    features = spec.features
    fetched = fetch(
        instantly,
        campaign_ids=spec.campaign_ids,
        known_campaigns=spec.known_campaigns,
        date_range=spec.date_range,
        include_opportunities=spec.include_opportunities,
        subsequences=features.subsequences,
        history_days=(
            history_tab.days_to_fetch(spec.history_last_day, now.astimezone(UTC).date())
            if features.history else []
        ),
        now=now,
        first_call_alone=spec.first_call_alone,
    )
    sections, campaigns, dates = fetched.sections, fetched.campaigns, fetched.dates
    memory = sent_memory(spec, sections, dates)
    refuse_sudden_empty(spec, sections, memory)
    # Before the write, so its finding is on the tab's info line in the same write.
    totals = check_totals(spec, fetched)
    report = build_report(
        sections,
        include_opportunities=spec.include_opportunities,
        date_label=dates.label,
        subjects=features.subjects,
        winner_calls=features.winner_calls,
        min_sample=features.min_sample,
    )
    report = replace(report, totals_check=totals.text)
    rows_by_day: HistoryRows | None = None
    if features.history:
        rows_by_day = history_rows(spec, fetched, report, now)
    if features.needs_read:
        info = _write_planned(spec, report, sheets, now, check, history_rows=rows_by_day)
    else:
        info = _write_plain(spec, report, sheets, now, check)
    saved: dict[str, Any] = {"last_sent": memory}
    if rows_by_day:
        saved["history_day"] = max(rows_by_day).isoformat()
    if "titles" in info:
        saved["tab_titles"] = info["titles"]
    if info.get("history_sheet_id") is not None:
        saved["history_sheet_id"] = info["history_sheet_id"]
    return SyncOutcome(
        rows_written=len(report.all_rows),
        sheet_id=info["sheet_id"],
        sheet_title=info["title"],
        sheet_url=spreadsheet_link(spec.spreadsheet_id, info["sheet_id"]),
        tab_created=info["created"],
        instantly_calls=instantly.calls - instantly_before,
        sheets_calls=sheets.calls - sheets_before,
        campaigns=campaigns,
        report=report,
        history_sheet_id=info.get("history_sheet_id"),
        saved_options=saved,
        last_table=last_table(report, now),
        totals=totals,
    )


def _write_plain(
    spec: SyncSpec, report: Report, sheets: SheetsClient, now: datetime,
    check: Callable[[], None],
) -> dict[str, Any]:
    """The numbers alone: no read, one absolute write that is safe to send twice."""
    written = sheets.write_tab(
        spec.spreadsheet_id,
        title=spec.worksheet_title,
        sheet_id=spec.sheet_id,
        tab_requests=lambda sid: render(report, sheet_id=sid, synced_at=now),
        add_sheet=lambda sid, title: add_sheet_request(report, sheet_id=sid, title=title),
        before_write=check,
        attempts=WRITE_ATTEMPTS,
    )
    return {"sheet_id": written.sheet_id, "title": written.title, "created": written.created}


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
    history_rows: HistoryRows | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The one batch for every feature, from the one read (pure: no I/O).

    ``history_rows`` are the history tab's rows per day (``fetch_history_days``); without
    them today's rows are the report's own.

    The batch ends with the revision guard (``revision.py``): it applies at most once,
    and ``info["revision"]`` is what a re-read shows if it did.
    """
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
    titles = {"main": main_title}
    info: dict[str, Any] = {
        "sheet_id": main_id, "title": main_title, "created": main is None, "titles": titles,
    }
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
        edit = history_tab.plan_days(
            existing,
            today,
            history_rows if history_rows is not None
            else {today: history_tab.snapshot(report, today)},
            horizon_days=features.history_days,
        )
        requests += history_tab.requests(edit, history_id)
        info["history_sheet_id"] = history_id
        titles["history"] = title
    before = main.revision if main is not None else None
    after = revision.next_revision(main_id, before)
    requests += revision.requests(main_id, before, after)
    info["revision"] = after
    return requests, info


def _wanted(spec: SyncSpec, known: dict[str, tuple[int, str]] | None) -> list[TabWanted]:
    """The tabs the read asks for: by the ids a lost write planned, else as stored."""
    # Only notes need the main tab's cells (the chart and the revision come with the tab
    # whatever the range): without them one cell is asked for, not the whole table.
    main_cells = "" if spec.features.notes else "A1"
    if known is not None:
        return [TabWanted(name, title, sheet_id, "A:B" if name == "history" else main_cells)
                for name, (sheet_id, title) in known.items()]
    stored = spec.sheet_id is not None
    wanted = [
        TabWanted(
            "main",
            (spec.tab_titles.get("main") if stored else None) or spec.worksheet_title,
            spec.sheet_id,
            main_cells,
        )
    ]
    if spec.features.history:
        wanted.append(
            TabWanted(
                "history",
                (spec.tab_titles.get("history") if stored else None)
                or history_title(spec.worksheet_title),
                spec.history_sheet_id if stored else None,
                "A:B",
            )
        )
    return wanted


def _write_planned(
    spec: SyncSpec, report: Report, sheets: SheetsClient, now: datetime,
    check: Callable[[], None], *, history_rows: HistoryRows | None = None,
) -> dict[str, Any]:
    """One read (cells, charts, revision) plus one guarded atomic write.

    After an unconfirmed write nothing is resent blind: the tabs are read again; if the
    read shows the write's revision it applied, otherwise the batch is planned again from
    what the sheet holds now (a late copy of the lost batch then fails on its guard).
    """
    known: dict[str, tuple[int, str]] | None = None
    pending: dict[str, Any] | None = None
    unconfirmed: SheetsWriteUnconfirmed | None = None
    for _ in range(WRITE_ATTEMPTS):
        try:
            read = sheets.read_tabs(spec.spreadsheet_id, _wanted(spec, known))
        except SyncError:
            if unconfirmed is not None:
                raise unconfirmed from None
            raise
        if pending is not None:
            main = read.tabs.get("main")
            if main is not None and main.revision == pending["revision"]:
                return pending
        requests, info = plan_requests(
            spec, report, read, now=now, history_rows=history_rows
        )
        check()
        try:
            sheets.batch_update(spec.spreadsheet_id, requests)
            return info
        except SheetsWriteUnconfirmed as exc:
            unconfirmed, pending = exc, info
            known = {"main": (info["sheet_id"], info["title"])}
            if "history_sheet_id" in info:
                known["history"] = (info["history_sheet_id"], info["titles"]["history"])
    assert unconfirmed is not None  # noqa: S101 - only unconfirmed writes loop
    raise unconfirmed


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

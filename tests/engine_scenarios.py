"""Representative refreshes of the pure steps, built in memory (no HTTP, no database).

Shared by the golden request-body test (``test_golden_requests.py``) and the engine CPU
benchmark (``benchmarks/engine_cpu.py``): both run exactly what a refresh runs between
"Instantly answered and the sheet was read" and "the body leaves for Google": report →
render → notes → history → revision guard → the JSON bytes requests sends.

Every number is derived from the row's position, so the same scenario always gives the
same body, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import requests

from sheets_sync.pipeline import history as history_tab
from sheets_sync.pipeline import refresh, revision
from sheets_sync.pipeline.instantly_models import Campaign, StepStats
from sheets_sync.pipeline.notes import KEY_HEADER, NOTES_HEADER, REMOVED_PREFIX
from sheets_sync.pipeline.refresh import (
    Features,
    HistoryRows,
    SyncSpec,
    history_title,
    plan_requests,
)
from sheets_sync.pipeline.render import render
from sheets_sync.pipeline.report import (
    ALL_CAMPAIGNS,
    CampaignSection,
    Report,
    build_report,
    subsequence_row_id,
)
from sheets_sync.pipeline.request_body import EncodedRows, batch_update_body
from sheets_sync.pipeline.sheets_writer import TabsRead, TabState

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
TODAY = NOW.date()
MAIN_ID = 424242
HISTORY_ID = 515151
TAB = "Instantly steps"
SPREADSHEET = "golden-spreadsheet-id"
BATCH_URL = f"https://sheets.googleapis.com/v4/spreadsheets/{SPREADSHEET}:batchUpdate"
SUB_NAMES = ("Warm leads", "No reply")


def stats_row(step: int | None, variant: int | None, seed: int, *,
              opportunities: bool = False) -> StepStats:
    """A plausible row: sends around the min sample, replies that give every verdict."""
    sent = 60 + (seed * 37) % 400
    replies = (seed * 7) % 23 + (variant or 0) * (seed % 3)
    fields: dict[str, Any] = {
        "step": step, "variant": variant, "sent": sent,
        "opened": sent // 2 + seed % 5, "unique_opened": sent // 3,
        "replies": replies + seed % 2, "unique_replies": min(replies, sent),
        "replies_automatic": seed % 4, "unique_replies_automatic": seed % 3,
        "clicks": seed % 9, "unique_clicks": seed % 6,
    }
    if opportunities:
        fields.update(opportunities=seed % 5, unique_opportunities=seed % 4,
                      meetings_booked=seed % 3, won=seed % 2)
    return StepStats.model_validate(fields)


def campaign_of(cid: str, name: str, steps: int, variants: int) -> Campaign:
    """A sequence whose subjects cover the cases: text, a formula-looking subject, a
    follow-up in the same thread (empty), and a disabled variant."""
    def subject(s: int, v: int) -> str:
        if s % 3 == 2:
            return ""  # a follow-up in the same thread
        if s == 1 and v == 0:
            return "=HYPERLINK(\"x\") looks like a formula"
        return f"{name}: step {s + 1} idea {v + 1} {{{{firstName}}}}"

    return Campaign.model_validate({
        "id": cid, "name": name, "status": 1,
        "sequences": [{"steps": [
            {"variants": [
                {"subject": subject(s, v), "v_disabled": (s + v) % 7 == 3}
                for v in range(variants)
            ]}
            for s in range(steps)
        ]}],
    })


def campaign_sections(
    cid: str, name: str, steps: int, variants: int, *, opportunities: bool,
    subsequences: int = 0, sub_steps: int = 3, sub_variants: int = 2,
    unattributed: bool = True, past_main: int = 0, seed: int = 0,
) -> list[CampaignSection]:
    campaign = campaign_of(cid, name, steps, variants)
    rows = [
        stats_row(s, v, seed + s * variants + v + 1, opportunities=opportunities)
        for s in range(steps + past_main) for v in range(variants)
    ]
    if unattributed:
        rows.append(stats_row(None, None, seed + 999, opportunities=opportunities))
    # Instantly's order is not ours: the report sorts.
    rows.reverse()
    sections = [CampaignSection(cid, name, rows, campaign,
                                subsequences_fetched=subsequences > 0)]
    for n in range(subsequences):
        sub_id = f"sub-{cid}-{n}"
        sub = campaign_of(sub_id, SUB_NAMES[n % len(SUB_NAMES)], sub_steps, sub_variants)
        sub_rows = [
            stats_row(s, v, seed + 500 + n * 50 + s * sub_variants + v)
            for s in range(sub_steps) for v in range(sub_variants)
        ]
        sections.append(CampaignSection(
            subsequence_row_id(cid, sub_id), name, sub_rows, sub, subsequence=sub.name,
        ))
    return sections


@dataclass(frozen=True)
class Scenario:
    """One refresh's inputs: what Instantly said and what the one read found."""

    name: str
    sections: list[CampaignSection]
    features: Features
    include_opportunities: bool = False
    campaign_ids: tuple[str, ...] = ()
    totals_check: str = "Totals match Instantly's campaign overview"
    date_label: str = "Last 30 days (2026-10-28 to 2026-11-26)"
    # Notes typed on the tab before this refresh: row key → typed value.
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Notes below the table: (hidden key cell text, label, value).
    loose_notes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    history_days: int = 0  # days already on the history tab (today's included)
    history_horizon: int = history_tab.DEFAULT_HORIZON_DAYS
    chart_exists: bool = True
    revision_number: int | None = 7
    first_sync: bool = False  # no tab yet: addSheet for both tabs

    def spec(self) -> SyncSpec:
        return SyncSpec(
            spreadsheet_id=SPREADSHEET, worksheet_title=TAB,
            sheet_id=None if self.first_sync else MAIN_ID,
            campaign_ids=self.campaign_ids,
            include_opportunities=self.include_opportunities,
            features=replace(self.features, history_days=self.history_horizon),
            history_sheet_id=None if self.first_sync else HISTORY_ID,
            history_last_day=None if self.first_sync else TODAY - timedelta(days=1),
        )


def report_of(scenario: Scenario) -> Report:
    f = scenario.features
    report = build_report(
        scenario.sections, include_opportunities=scenario.include_opportunities,
        date_label=scenario.date_label, subjects=f.subjects, winner_calls=f.winner_calls,
        min_sample=f.min_sample,
    )
    return replace(report, totals_check=scenario.totals_check)


def _read_cells(requests_: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The main tab as ``spreadsheets.get`` returns it (entered values only) after the
    previous refresh's write."""
    update = next(r["updateCells"] for r in requests_ if "updateCells" in r)
    grid = []
    for row in update["rows"]:
        cells = [
            {"userEnteredValue": c["userEnteredValue"]} if "userEnteredValue" in c else {}
            for c in row["values"]
        ]
        while cells and not cells[-1]:
            cells.pop()  # Google leaves trailing empty cells out
        grid.append(cells)
    return grid


def sheet_read(scenario: Scenario, report: Report) -> TabsRead:
    """What the refresh's one read returns: the main tab as the last refresh left it,
    with the scenario's notes typed in, and ``history_days`` days of history keys."""
    tabs: dict[str, TabState | None] = {"main": None, "history": None}
    if scenario.first_sync:
        return TabsRead(tabs, {0})
    f = scenario.features
    rows: list[list[dict[str, Any]]] = []
    if f.notes or f.chart:
        # The previous write had the same layout; its cells are what the read sees.
        spec = scenario.spec()
        no_history = replace(spec, features=replace(spec.features, history=False))
        previous = plan_requests(no_history, report, TabsRead(
            {"main": TabState(MAIN_ID, TAB, set(), []), "history": None}, {MAIN_ID}
        ), now=NOW)[0]
        rows = _read_cells(previous)
    if f.notes and rows:
        header = next(i for i, r in enumerate(rows) if any(
            c.get("userEnteredValue", {}).get("stringValue") == KEY_HEADER for c in r))
        texts = [c.get("userEnteredValue", {}).get("stringValue") for c in rows[header]]
        notes_col, key_col = texts.index(NOTES_HEADER), texts.index(KEY_HEADER)
        for cells in rows[header + 1:]:
            key = (cells[key_col].get("userEnteredValue", {}).get("stringValue")
                   if len(cells) > key_col else None)
            if key in scenario.notes:
                cells[notes_col] = {"userEnteredValue": scenario.notes[key]}
        for key, label, value in scenario.loose_notes:
            cells = [{} for _ in range(key_col + 1)]
            cells[0] = {"userEnteredValue": {"stringValue": label}}
            cells[notes_col] = {"userEnteredValue": value}
            if key:
                cells[key_col] = {"userEnteredValue": {"stringValue": key}}
            rows.append(cells)
    chart_id = refresh.chart_id_for(MAIN_ID)
    current = (
        revision.Revision(scenario.revision_number,
                          revision.metadata_id(MAIN_ID, scenario.revision_number))
        if scenario.revision_number is not None else None
    )
    tabs["main"] = TabState(MAIN_ID, TAB, {chart_id} if scenario.chart_exists else set(),
                            rows, current)
    if f.history:
        keys = [key for key, _ in history_tab.snapshot(report, TODAY) if "/sub:" not in key]
        grid: list[list[dict[str, Any]]] = [[
            {"userEnteredValue": {"stringValue": history_tab.COLUMNS[0][1]}},
            {"userEnteredValue": {"stringValue": history_tab.COLUMNS[1][1]}},
        ]]
        for back in range(scenario.history_days - 1, -1, -1):
            serial = history_tab.serial(TODAY - timedelta(days=back))
            # A row typed by hand without a date, and a key gone since, on the oldest day.
            for key in keys if back else keys[: len(keys) // 2]:
                grid.append([{"userEnteredValue": {"numberValue": serial}},
                             {"userEnteredValue": {"stringValue": key}}])
        if scenario.history_days:
            grid.append([{"userEnteredValue": {"stringValue": "my own row"}}])
        tabs["history"] = TabState(HISTORY_ID, history_title(TAB), set(), grid)
    return TabsRead(tabs, {MAIN_ID, HISTORY_ID, 0})


def history_rows(scenario: Scenario, report: Report) -> HistoryRows | None:
    """Each fetched day's rows as ``fetch_history_days`` builds them: yesterday (complete)
    and today (so far), main sequence only, quiet rows filled with zeros."""
    if not scenario.features.history:
        return None
    known = [(k, c) for k, c in history_tab.snapshot(report, TODAY) if "/sub:" not in k]
    out: HistoryRows = {}
    for back, day in ((1, TODAY - timedelta(days=1)), (0, TODAY)):
        day_sections = [
            CampaignSection(s.campaign_id, s.name,
                            [r for i, r in enumerate(s.stats) if (i + back) % 3], s.campaign)
            for s in scenario.sections if s.subsequence is None
        ]
        day_report = build_report(day_sections,
                                  include_opportunities=scenario.include_opportunities,
                                  date_label=day.isoformat())
        out[day] = history_tab.with_quiet_rows(day, history_tab.snapshot(day_report, day),
                                               known)
    return out


def plain(value: Any) -> Any:
    """``value`` with every pre-encoded row list turned back into the dicts it encodes."""
    if isinstance(value, EncodedRows):
        return [plain(row) for row in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def encode(requests_: list[dict[str, Any]]) -> bytes:
    """The bytes gspread would send with ``json={"requests": …}``, encoded by requests
    itself: the reference the goldens were made with (rows written as text are decoded
    first, so requests encodes them from dicts as it always did)."""
    prepared = requests.Request(
        "POST", BATCH_URL, json={"requests": plain(requests_)}
    ).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body


@contextmanager
def fixed_sheet_ids() -> Iterator[None]:
    """A first sync picks random tab ids; pinned here so its body is reproducible."""
    ids = iter(range(900_001, 900_100))
    with mock.patch.object(refresh, "new_sheet_id", lambda: next(ids)):
        yield


def refresh_body(scenario: Scenario, read: TabsRead | None = None) -> bytes:
    """Everything a refresh computes from Instantly's answers and the read, to the bytes
    of its one ``batchUpdate`` (encoded as ``SheetsClient.batch_update`` sends it)."""
    return batch_update_body(refresh_requests(scenario, read))


def refresh_requests(scenario: Scenario, read: TabsRead | None = None) -> list[dict[str, Any]]:
    """The requests of the scenario's one write."""
    report = report_of(scenario)
    if not scenario.features.needs_read:
        return render(report, sheet_id=MAIN_ID, synced_at=NOW)
    read = read if read is not None else sheet_read(scenario, report)
    with fixed_sheet_ids():
        requests_, _ = plan_requests(scenario.spec(), report, read, now=NOW,
                                     history_rows=history_rows(scenario, report))
    return requests_


def _some_notes(sections: list[CampaignSection]) -> dict[str, dict[str, Any]]:
    first = sections[0]
    cid = first.campaign_id or ""
    notes: dict[str, dict[str, Any]] = {
        f"{cid}|0|0": {"stringValue": "keep this one"},
        f"{cid}|0|1": {"numberValue": 42},
        f"{cid}|1|0": {"formulaValue": "=1+1"},
        f"{cid}||": {"stringValue": "unattributed? ask Instantly"},
        "total": {"stringValue": "total note"},
    }
    if len(sections) > 1 and sections[1].subsequence is not None:
        notes[f"{sections[1].campaign_id}|0|1"] = {"stringValue": "subsequence note"}
    return notes


def every_feature(rows: int = 100, *, history_days: int = 10) -> Scenario:
    """One campaign with 2 subsequences, opportunities on, every feature on: ``rows``
    report rows in all (the unattributed row included; the total not counted)."""
    # 100 = 29 steps × 3 variants + 12 subsequence rows + 1 unattributed;
    # 1,000 = 141 × 7 + 12 + 1.
    variants = 3 if rows <= 100 else 7
    sub_rows = 2 * 3 * 2
    steps = (rows - sub_rows - 1) // variants
    cid = "c-0001"
    sections = campaign_sections(cid, "Q4 outbound", steps, variants, opportunities=True,
                                 subsequences=2)
    return Scenario(
        name=f"every_feature_{rows}",
        sections=sections,
        features=Features.all_on(),
        include_opportunities=True,
        campaign_ids=(cid,),
        notes=_some_notes(sections),
        loose_notes=[
            (REMOVED_PREFIX + f"{cid}|40|9", "Step 41 · J", {"stringValue": "tried a GIF"}),
            ("", "typed below", {"stringValue": "a note below the table"}),
        ],
        history_days=history_days,
    )


def scenarios() -> list[Scenario]:
    """The goldens: each exercises a part of the body the others leave out."""
    plain = campaign_sections("c-plain", "Plain", 6, 3, opportunities=False)
    multi = (
        campaign_sections("c-a", "Alpha =SUM(1)", 4, 2, opportunities=False)
        + campaign_sections("c-b", "Beta", 3, 3, opportunities=False, seed=40)
    )
    winners = campaign_sections("c-w", "Winners", 8, 3, opportunities=True)
    subs = campaign_sections("c-s", "Subs", 3, 2, opportunities=False, subsequences=2,
                             past_main=1)
    guessed = campaign_sections("c-g", "Guessed", 3, 2, opportunities=False, past_main=2)
    notes = campaign_sections("c-n", "Notes", 5, 2, opportunities=False)
    hist = campaign_sections("c-h", "History", 4, 2, opportunities=False)
    return [
        every_feature(100),
        Scenario("plain_tab", [CampaignSection(None, ALL_CAMPAIGNS, plain[0].stats)],
                 Features()),
        Scenario("plain_known_campaign", plain, Features(), campaign_ids=("c-plain",)),
        Scenario("totals_multi_campaign", multi, Features(subjects=True),
                 campaign_ids=("c-a", "c-b"),
                 totals_check="Steps add up to 5,421 sent; Instantly's overview says "
                              "5,602 (3.3 % more)"),
        Scenario("winners_opportunities", winners,
                 Features(subjects=True, winner_calls=True, min_sample=150),
                 include_opportunities=True, campaign_ids=("c-w",)),
        Scenario("subsequences", subs,
                 Features(subjects=True, winner_calls=True, subsequences=True),
                 campaign_ids=("c-s",)),
        Scenario("guessed_subsequence_steps", guessed, Features(subjects=True),
                 campaign_ids=("c-g",)),
        Scenario("notes_only", notes, Features(notes=True), campaign_ids=("c-n",),
                 notes=_some_notes(notes),
                 loose_notes=[(REMOVED_PREFIX + "c-n|9|1", "Step 10 · B",
                               {"stringValue": "gone row"}),
                              ("c-n|0|0", "copied by hand", {"stringValue": "duplicate"})]),
        Scenario("history_pruned", hist, Features(history=True), campaign_ids=("c-h",),
                 history_days=6, history_horizon=3, revision_number=None),
        Scenario("chart_added", hist, Features(chart=True), campaign_ids=("c-h",),
                 chart_exists=False),
        Scenario("first_sync_every_feature", subs, Features.all_on(),
                 campaign_ids=("c-s",), first_sync=True, revision_number=None),
    ]


def body_summary(body: bytes) -> dict[str, Any]:
    """Request kinds and cell counts, to say where two bodies differ."""
    parsed = json.loads(body)
    return {
        "requests": [next(iter(r)) for r in parsed["requests"]],
        "cells": sum(len(row.get("values", [])) for r in parsed["requests"]
                     for row in r.get("updateCells", {}).get("rows", [])),
    }

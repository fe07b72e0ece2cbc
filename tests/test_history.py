"""The history tab's upsert plan (pure)."""

from __future__ import annotations

import datetime as dt

from sheets_sync.pipeline import history
from sheets_sync.pipeline.report import CampaignSection, build_report
from tests.factories import step_stats

TODAY = dt.date(2026, 11, 27)


def rows(*keys):
    return [(k, [k]) for k in keys]


def test_serial_dates_round_trip():
    cell = {"userEnteredValue": {"numberValue": history.serial(TODAY)}}
    assert history.day_of(cell) == TODAY
    assert history.day_of({"userEnteredValue": {"stringValue": "2026-11-27"}}) == TODAY
    assert history.day_of({"userEnteredValue": {"stringValue": "n/a"}}) is None


def test_first_snapshot_appends_after_the_header():
    edit = history.plan([], TODAY, rows("a", "b"))
    assert edit.deletes == []
    assert [i for i, _ in edit.writes] == [1, 2]
    assert edit.row_count == 3


def test_same_day_replaces_in_place_and_appends_new_keys():
    yesterday = TODAY - dt.timedelta(days=1)
    existing = [(yesterday, "a"), (yesterday, "b"), (TODAY, "a"), (TODAY, "b")]
    edit = history.plan(existing, TODAY, rows("b", "a", "c"))
    assert edit.deletes == []
    assert [(i, c[0]) for i, c in edit.writes] == [(3, "a"), (4, "b"), (5, "c")]
    assert edit.row_count == 6


def test_old_rows_are_pruned_and_indices_shift():
    old = TODAY - dt.timedelta(days=200)
    existing = [(old, "a"), (old, "b"), (TODAY, "a"), (None, "hand-typed")]
    edit = history.plan(existing, TODAY, rows("a"), horizon_days=180)
    assert edit.deletes == [(1, 3)]
    assert edit.writes == [(1, ["a"])]
    assert edit.row_count == 3  # header, today's a, the hand-typed row (kept)


def test_duplicates_of_a_key_on_one_day_collapse():
    edit = history.plan([(TODAY, "a"), (TODAY, "a")], TODAY, rows("a"))
    assert edit.deletes == [(2, 3)]
    assert edit.writes == [(1, ["a"])]


def test_the_cell_cap_drops_the_oldest_days_first():
    days = [TODAY - dt.timedelta(days=d) for d in (3, 2, 1)]
    existing = [(d, k) for d in days for k in ("a", "b")]
    cap = history.WIDTH * (1 + 6)  # header + 6 rows
    edit = history.plan(existing, TODAY, rows("a", "b"), max_cells=cap)
    assert edit.deletes == [(1, 3)]  # the oldest day
    assert edit.row_count == 7


def test_snapshot_cells_follow_the_fixed_layout():
    stat = step_stats(0, 1, 100, opened=5, unique_opened=4, replies=3, unique_replies=2)
    report = build_report([CampaignSection("c1", "Q4", [stat])], include_opportunities=False,
                          date_label="All time", subjects=False, winner_calls=True)
    [(key, cells)] = history.snapshot(report, TODAY)
    names = [c[0] for c in history.COLUMNS]
    assert key == "c1|0|1"
    assert cells[names.index("date")] == history.serial(TODAY)
    assert cells[names.index("campaign")] == "Q4"
    assert cells[names.index("variant")] == "B"
    assert cells[names.index("sent")] == 100
    assert cells[names.index("reply_rate")] == 0.02
    assert cells[names.index("opportunities")] is None


def test_several_days_upsert_in_one_plan():
    yesterday = TODAY - dt.timedelta(days=1)
    before = TODAY - dt.timedelta(days=2)
    existing = [(before, "a"), (yesterday, "a")]
    edit = history.plan_days(existing, TODAY, {yesterday: rows("a", "b"), TODAY: rows("a")})
    assert edit.deletes == []
    assert [(i, c[0]) for i, c in edit.writes] == [(2, "a"), (3, "b"), (4, "a")]
    assert edit.row_count == 5


def test_days_to_fetch_refetch_the_last_day_and_stop_at_seven():
    assert history.days_to_fetch(None, TODAY) == [TODAY]
    assert history.days_to_fetch(TODAY, TODAY) == [TODAY]
    three_ago = TODAY - dt.timedelta(days=3)
    assert history.days_to_fetch(three_ago, TODAY) == [
        three_ago + dt.timedelta(days=n) for n in range(4)
    ]
    long_ago = history.days_to_fetch(TODAY - dt.timedelta(days=10), TODAY)
    assert len(long_ago) == history.BACKFILL_DAYS
    assert long_ago[-1] == TODAY
    assert history.days_to_fetch(TODAY + dt.timedelta(days=1), TODAY) == [TODAY]


def test_a_quiet_day_gets_zero_rows_for_the_known_keys():
    stat = step_stats(0, 0, 100, unique_replies=2)
    report = build_report([CampaignSection("c1", "Q4", [stat])], include_opportunities=False,
                          date_label="All time", subjects=False, winner_calls=False)
    known = history.snapshot(report, TODAY)
    day = TODAY - dt.timedelta(days=1)
    [(key, cells)] = history.with_quiet_rows(day, [], known)
    names = [c[0] for c in history.COLUMNS]
    assert key == "c1|0|0"
    assert cells[names.index("date")] == history.serial(day)
    assert cells[names.index("campaign")] == "Q4"
    assert cells[names.index("sent")] == 0
    assert cells[names.index("reply_rate")] is None
    assert cells[names.index("opportunities")] is None  # not asked for: blank, not 0


def test_pruning_every_row_keeps_a_spare_row_for_google():
    old = TODAY - dt.timedelta(days=200)
    edit = history.plan([(old, "a")], TODAY, [])
    out = history.requests(edit, 7)
    assert "appendDimension" in out[0]
    assert "deleteDimension" in out[1]


def _ours(day: dt.date, key: str) -> list[dict]:
    return [{"userEnteredValue": {"numberValue": history.serial(day)}},
            {"userEnteredValue": {"stringValue": key}}]


HEADER = [{"userEnteredValue": {"stringValue": "Day (UTC)"}}]


def test_reading_the_tab_back_gives_each_rows_day_and_key():
    yesterday = TODAY - dt.timedelta(days=1)
    grid = [HEADER, _ours(yesterday, "c|0|0"), _ours(TODAY, "c|0|0"), _ours(TODAY, "c|0|1")]
    assert history.existing_rows(grid) == [
        (yesterday, "c|0|0"), (TODAY, "c|0|0"), (TODAY, "c|0|1")]
    assert history.existing_rows([HEADER]) == []


def test_rows_people_typed_or_cleared_are_read_one_by_one_and_ours_still_count():
    grid = [
        HEADER,
        _ours(TODAY, "c|0|0"),
        [{"userEnteredValue": {"stringValue": "2026-11-27"}}, {"userEnteredValue": {
            "stringValue": "typed"}}],                                 # a date typed as text
        [{"userEnteredValue": {"stringValue": "total"}}],              # a note, one cell
        [],                                                            # a cleared row
        [{"userEnteredValue": {"numberValue": history.serial(TODAY)}},
         {"userEnteredValue": {"numberValue": 7}}],                     # a key overtyped
        [{"userEnteredValue": {"boolValue": True}}, {}],
        _ours(TODAY, "c|0|1"),
    ]
    assert history.existing_rows(grid) == [
        (TODAY, "c|0|0"), (TODAY, "typed"), (None, ""), (None, ""), (TODAY, ""),
        (None, ""), (TODAY, "c|0|1")]


def test_a_long_tab_with_one_row_of_someone_elses_is_read_whole():
    days = [TODAY - dt.timedelta(days=n % 40) for n in range(3000)]
    grid = [HEADER] + [_ours(day, f"c|{n}|0") for n, day in enumerate(days)]
    grid[1500] = [{"userEnteredValue": {"stringValue": "my own row"}}]
    read = history.existing_rows(grid)
    assert len(read) == 3000
    assert read[1499] == (None, "")
    assert read[:1499] + read[1500:] == [
        (day, f"c|{n}|0") for n, day in enumerate(days) if n != 1499]

"""The renderer's requests, checked as data (the Sheets fake checks them as HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sheets_sync.errors import ReportTooLarge
from sheets_sync.pipeline.render import FIRST_DATA_ROW, MAX_TAB_CELLS, render
from sheets_sync.pipeline.report import CampaignSection, build_report
from tests.factories import step_stats

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def stat(step, variant, sent):
    return step_stats(step, variant, sent, opened=1, unique_opened=1)


def report_of(sections):
    return build_report(sections, include_opportunities=False, date_label="All time")


def cells(requests):
    update = next(r["updateCells"] for r in requests if "updateCells" in r)
    return update


def test_formula_looking_names_are_written_as_text():
    evil = '=IMPORTXML("http://x","//a")'
    report = report_of(
        [
            CampaignSection("c1", evil, [stat(0, 0, 5)]),
            CampaignSection("c2", "+SUM(1)", [stat(0, 0, 5)]),
        ]
    )
    update = cells(render(report, sheet_id=7, synced_at=NOW))
    first_data = update["rows"][FIRST_DATA_ROW]["values"][0]
    assert first_data["userEnteredValue"] == {"stringValue": evil}
    assert "formulaValue" not in str(update)


def test_grid_is_sized_to_the_report_and_header_frozen():
    report = report_of([CampaignSection(None, "All", [stat(0, 0, 5), stat(0, 1, 5)])])
    reqs = render(report, sheet_id=7, synced_at=NOW)
    props = reqs[0]["updateSheetProperties"]["properties"]["gridProperties"]
    assert props["rowCount"] == FIRST_DATA_ROW + 3  # two rows and the total
    assert props["columnCount"] == len(report.columns)
    assert props["frozenRowCount"] == FIRST_DATA_ROW
    update = cells(reqs)
    assert update["range"]["endRowIndex"] == props["rowCount"]
    assert len(update["rows"]) == props["rowCount"]
    assert all(len(r["values"]) == props["columnCount"] for r in update["rows"])


def test_numbers_are_numbers_and_rates_percentages():
    report = report_of([CampaignSection(None, "All", [stat(0, 0, 10), stat(0, 1, 0)])])
    update = cells(render(report, sheet_id=7, synced_at=NOW))
    keys = [c.key for c in report.columns]
    row_a = update["rows"][FIRST_DATA_ROW]["values"]
    row_b = update["rows"][FIRST_DATA_ROW + 1]["values"]
    assert row_a[keys.index("sent")]["userEnteredValue"] == {"numberValue": 10}
    rate = row_a[keys.index("open_rate")]
    assert rate["userEnteredValue"] == {"numberValue": 0.1}
    assert "userEnteredValue" not in row_b[keys.index("open_rate")]
    reqs = render(report, sheet_id=7, synced_at=NOW)
    repeats = [r["repeatCell"] for r in reqs if "repeatCell" in r]
    by_type = {
        r["cell"]["userEnteredFormat"]["numberFormat"]["type"]: r["range"] for r in repeats
    }
    assert by_type["PERCENT"]["startColumnIndex"] == keys.index("open_rate")
    assert by_type["PERCENT"]["endColumnIndex"] == len(keys)
    assert by_type["NUMBER"]["startColumnIndex"] == keys.index("sent")
    assert by_type["NUMBER"]["startRowIndex"] == FIRST_DATA_ROW


def test_last_synced_time_is_visible_in_utc():
    report = report_of([CampaignSection(None, "All", [])])
    update = cells(render(report, sheet_id=7, synced_at=NOW))
    info = update["rows"][1]["values"][0]["userEnteredValue"]["stringValue"]
    assert "Last synced: 2026-11-27 09:30 UTC" in info
    assert "All time (UTC)" in info


def test_oversized_report_is_refused_before_any_write(monkeypatch):
    assert MAX_TAB_CELLS < 10_000_000  # room left for the user's other tabs
    monkeypatch.setattr("sheets_sync.pipeline.render.MAX_TAB_CELLS", 1_000)
    many = [stat(s, v, 1) for s in range(10) for v in range(10)]
    report = report_of([CampaignSection(None, "All", many)])
    with pytest.raises(ReportTooLarge) as err:
        render(report, sheet_id=7, synced_at=NOW)
    assert "fewer campaigns or a shorter date range" in err.value.message

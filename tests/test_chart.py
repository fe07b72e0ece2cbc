"""The chart's requests as data (the end-to-end return of a deleted chart is in
test_engine_features)."""

from __future__ import annotations

from datetime import UTC, datetime

from sheets_sync.pipeline.render import FIRST_DATA_ROW, Extras, chart_id_for, render
from sheets_sync.pipeline.report import CampaignSection, build_report
from tests.factories import step_stats

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def report(n=3):
    stats = [step_stats(i // 2, i % 2, 10, unique_replies=1) for i in range(n)]
    return build_report([CampaignSection("c", "C", stats)], include_opportunities=False,
                        date_label="All time")


def test_chart_id_is_a_positive_int32_and_stable():
    for sheet_id in (0, 1, 10_000_000, 2_147_483_647):
        cid = chart_id_for(sheet_id)
        assert 0 < cid < 2**31 and cid == chart_id_for(sheet_id)


def test_add_then_update_cover_the_data_rows_only():
    r = report()
    add = [q for q in render(r, sheet_id=5, synced_at=NOW, extras=Extras(chart="add", chart_id=9))
           if "addChart" in q]
    [req] = add
    chart = req["addChart"]["chart"]
    assert chart["chartId"] == 9
    series = chart["spec"]["basicChart"]["series"][0]["series"]["sourceRange"]["sources"][0]
    assert (series["startRowIndex"], series["endRowIndex"]) == (FIRST_DATA_ROW,
                                                                 FIRST_DATA_ROW + 3)
    reqs = render(r, sheet_id=5, synced_at=NOW, extras=Extras(chart="update", chart_id=9))
    [upd] = [q["updateChartSpec"] for q in reqs if "updateChartSpec" in q]
    assert upd["chartId"] == 9 and upd["spec"] == chart["spec"]
    assert not any("addChart" in q for q in reqs)


def test_no_chart_without_rows_or_when_off():
    assert not any("addChart" in q for q in render(report(0), sheet_id=5, synced_at=NOW,
                                                   extras=Extras(chart="add", chart_id=9)))
    assert not any("addChart" in q or "updateChartSpec" in q
                   for q in render(report(), sheet_id=5, synced_at=NOW))

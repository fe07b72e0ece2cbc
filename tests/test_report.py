"""Labels, order, rates and totals: what a reader of the tab sees."""

from __future__ import annotations

import pytest

from sheets_sync.pipeline.instantly_models import Campaign
from sheets_sync.pipeline.report import (
    UNATTRIBUTED_STEP,
    UNATTRIBUTED_VARIANT,
    CampaignSection,
    build_report,
    step_label,
    variant_letter,
)
from tests.factories import step_stats as stat


def col(report, key):
    return [c.key for c in report.columns].index(key)


@pytest.mark.parametrize(
    ("index", "letters"),
    [
        (0, "A"),
        (1, "B"),
        (25, "Z"),
        (26, "AA"),
        (27, "AB"),
        (51, "AZ"),
        (52, "BA"),
        (701, "ZZ"),
        (702, "AAA"),
    ],
)
def test_variant_letters_follow_spreadsheet_columns(index, letters):
    assert variant_letter(index) == letters


def test_steps_are_shown_one_based_and_subsequences_named():
    campaign = Campaign.model_validate(
        {"id": "c", "name": "C", "sequences": [{"steps": [{"variants": []}, {"variants": []}]}]}
    )
    assert step_label(0) == "Step 1"
    assert step_label(1, campaign) == "Step 2"
    assert step_label(2, campaign) == "Subsequence step 1"
    assert step_label(3) == "Step 4"  # sequence unknown: no guess about subsequences
    assert step_label(None) == UNATTRIBUTED_STEP


def test_rows_ordered_by_step_then_variant_unattributed_last():
    stats = [stat(None, None), stat(1, 0), stat(0, 1), stat(0, None), stat(0, 0), stat(1, 1)]
    report = build_report(
        [CampaignSection(None, "All", stats)], include_opportunities=False, date_label="x"
    )
    labels = [(r.values[0], r.values[1]) for r in report.rows]
    assert labels == [
        ("Step 1", "A"),
        ("Step 1", "B"),
        ("Step 1", UNATTRIBUTED_VARIANT),
        ("Step 2", "A"),
        ("Step 2", "B"),
        (UNATTRIBUTED_STEP, UNATTRIBUTED_VARIANT),
    ]
    assert [r.kind for r in report.rows][-1] == "unattributed"


def test_rates_are_unique_events_over_sent_and_blank_when_nothing_sent():
    stats = [
        stat(0, 0, sent=200, unique_replies=5, unique_opened=50, unique_clicks=2),
        stat(0, 1, sent=0, unique_replies=0),
    ]
    report = build_report(
        [CampaignSection(None, "All", stats)], include_opportunities=False, date_label="x"
    )
    a, b = report.rows
    assert a.values[col(report, "reply_rate")] == pytest.approx(0.025)
    assert a.values[col(report, "open_rate")] == pytest.approx(0.25)
    assert a.values[col(report, "click_rate")] == pytest.approx(0.01)
    assert b.values[col(report, "reply_rate")] is None


def test_unattributed_numbers_are_kept_in_rows_and_total():
    stats = [stat(0, 0, sent=10, replies=1), stat(None, None, sent=0, replies=7)]
    report = build_report(
        [CampaignSection(None, "All", stats)], include_opportunities=False, date_label="x"
    )
    assert report.total.values[0] == "Total"
    assert report.total.values[col(report, "replies")] == 8
    assert report.total.values[col(report, "sent")] == 10


def test_opportunity_columns_only_when_requested():
    s = stat(0, 0, sent=50, opportunities=3, unique_opportunities=2, meetings_booked=1, won=1)
    without = build_report(
        [CampaignSection(None, "All", [s])], include_opportunities=False, date_label="x"
    )
    with_ = build_report(
        [CampaignSection(None, "All", [s])], include_opportunities=True, date_label="x"
    )
    assert "opportunities" not in [c.key for c in without.columns]
    row = with_.rows[0]
    assert row.values[col(with_, "won")] == 1
    assert row.values[col(with_, "opportunity_rate")] == pytest.approx(0.04)


def test_several_campaigns_get_a_campaign_column_in_selection_order():
    first = CampaignSection("c2", "Zeta launch", [stat(0, 0, sent=3)])
    second = CampaignSection("c1", "Alpha", [stat(0, 0, sent=4), stat(0, 1, sent=5)])
    report = build_report([first, second], include_opportunities=False, date_label="x")
    assert report.columns[0].header == "Campaign"
    assert [r.values[0] for r in report.rows] == ["Zeta launch", "Alpha", "Alpha"]
    assert [r.key for r in report.rows] == [("c2", 0, 0), ("c1", 0, 0), ("c1", 0, 1)]
    assert report.total.values[col(report, "sent")] == 12


def test_headers_spell_metrics_out():
    report = build_report(
        [CampaignSection(None, "All", [])], include_opportunities=True, date_label="x"
    )
    headers = [c.header for c in report.columns]
    assert headers[:4] == ["Step", "Variant", "Sent", "Opens"]
    assert "Reply rate (unique replies / sent)" in headers
    assert "Unique automatic replies" in headers
    assert "Meetings booked" in headers


def test_subsequence_rows_are_named_keyed_apart_and_stop_the_guess():
    campaign = Campaign.model_validate(
        {"id": "c", "name": "C", "sequences": [{"steps": [{"variants": [{"subject": "Hi"}]}]}]}
    )
    sub = Campaign.model_validate(
        {"id": "s", "name": "Warm leads",
         "sequences": [{"steps": [{"variants": [{"subject": "Again"}]}]}]}
    )
    report = build_report(
        [
            CampaignSection("c", "C", [stat(0, 0), stat(1, 0)], campaign,
                            subsequences_fetched=True),
            CampaignSection("c/sub:s", "C", [stat(0, 0)], sub, subsequence="Warm leads"),
        ],
        include_opportunities=False, date_label="x", subjects=True,
    )
    assert [c.key for c in report.columns][:3] == ["step", "variant", "subject"]
    assert [r.values[:3] for r in report.rows] == [
        ("Step 1", "A", "Hi"),
        ("Step 2 (past the main sequence)", "A", ""),
        ("Subsequence 'Warm leads' · Step 1", "A", "Again"),
    ]
    assert report.rows[2].key == ("c/sub:s", 0, 0)
    assert report.campaign_names == ("C",)
    assert step_label(None, subsequence="W") == f"Subsequence 'W' · {UNATTRIBUTED_STEP}"

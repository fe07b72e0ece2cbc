"""Counts Instantly sends are read strictly: a number that is not what Instantly documents
stops the refresh with a message naming the row and field, and the sheet stays as it was.

Every payload here is served by the Instantly fake over real HTTP.
"""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.errors import InstantlyMalformedResponse
from sheets_sync.pipeline.refresh import SyncSpec, run_sync
from sheets_sync.pipeline.render import FIRST_DATA_ROW
from tests.plugin_fakes import INSTANTLY_KEY

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)
TAB = "Instantly steps"
STEPS = "/analytics/steps"
COUNTS = (
    "sent", "opened", "unique_opened", "replies", "unique_replies", "replies_automatic",
    "unique_replies_automatic", "clicks", "unique_clicks",
)
OPPORTUNITIES = ("opportunities", "unique_opportunities", "meetings_booked", "won")


def good_row(step: str | None, variant: str | None, *, opportunities: bool = False) -> dict:
    row = {"step": step, "variant": variant, **dict.fromkeys(COUNTS, 5)}
    row["sent"] = 100
    if opportunities:
        row.update(dict.fromkeys(OPPORTUNITIES, 1))
    return row


@pytest.fixture
def campaign(workspace):
    cid = workspace.add_campaign("Q4 outbound")
    workspace.record(cid, DAY, 0, 0, sent=200, unique_replies=20, replies=20)
    workspace.record(cid, DAY, 0, 1, sent=180, unique_replies=9, replies=9)
    return cid


def sync(instantly, sheets, spreadsheet_id, campaign_id, **kw):
    spec = SyncSpec(spreadsheet_id=spreadsheet_id, worksheet_title=TAB,
                    campaign_ids=(campaign_id,), **kw)
    return run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sent", True),
        ("sent", "12"),
        ("sent", 12.0),
        ("opened", -3),
        ("unique_replies", "7"),
        ("step", "-1"),
        ("variant", -1),
        ("step", 1.0),
        ("variant", "1.5"),
    ],
)
def test_a_count_or_index_instantly_does_not_document_stops_the_refresh(
    field, value, fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, campaign
):
    first = sync(instantly, sheets, spreadsheet_id, campaign)
    before = fake_sheets.snapshot(spreadsheet_id)
    fake_sheets.reset_calls()
    rows = [good_row("0", "0"), good_row("0", "1"), {**good_row("1", "0"), field: value}]
    fake_instantly.malform_next(rows, count=5, path_contains=STEPS)
    with pytest.raises(InstantlyMalformedResponse) as err:
        sync(instantly, sheets, spreadsheet_id, campaign, sheet_id=first.sheet_id,
             known_campaigns=first.campaigns)
    assert f"row 3, field {field}:" in err.value.message
    assert "sheet was left as it was" in err.value.message
    assert fake_sheets.count() == 0
    assert fake_sheets.snapshot(spreadsheet_id) == before


@pytest.mark.parametrize("missing", OPPORTUNITIES)
def test_an_opportunity_count_asked_for_and_not_sent_is_never_zero(
    missing, fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, campaign
):
    first = sync(instantly, sheets, spreadsheet_id, campaign, include_opportunities=True)
    before = fake_sheets.snapshot(spreadsheet_id)
    fake_sheets.reset_calls()
    second = good_row("0", "1", opportunities=True)
    del second[missing]
    rows = [good_row("0", "0", opportunities=True), second]
    fake_instantly.malform_next(rows, count=5, path_contains=STEPS)
    with pytest.raises(InstantlyMalformedResponse) as err:
        sync(instantly, sheets, spreadsheet_id, campaign, include_opportunities=True,
             sheet_id=first.sheet_id, known_campaigns=first.campaigns)
    assert f"row 2, field {missing}: missing" in err.value.message
    assert fake_sheets.count() == 0
    assert fake_sheets.snapshot(spreadsheet_id) == before


def test_documented_shapes_and_unknown_fields_are_still_read(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, campaign
):
    rows = [
        {**good_row("0", "0"), "bounced": 3, "new_metric": {"x": 1}},
        {**good_row(None, None), "sent": 0},
        # Plain ints for step and variant are read as well as Instantly's strings.
        {**good_row(None, None), "step": 1, "variant": 0},
    ]
    fake_instantly.malform_next(rows, path_contains=STEPS)
    outcome = sync(instantly, sheets, spreadsheet_id, campaign)
    assert outcome.rows_written == 4
    grid = fake_sheets.values(spreadsheet_id, TAB)
    labels = [tuple(r[:2]) for r in grid[FIRST_DATA_ROW:]]
    assert labels == [("Step 1", "A"), ("Step 2", "A"),
                      ("No step (not attributed)", "No variant (not attributed)"),
                      ("Total", None)]


def test_a_negative_variant_is_recorded_as_a_malformed_answer_not_an_internal_error(
    runtime, fake_sheets, fake_instantly, spreadsheet_id, campaign
):
    from sheets_sync.jobs.sync import run_connection_now
    from tests.worker_helpers import add_connections, make_user

    [conn_id] = add_connections(runtime, make_user(runtime), [spreadsheet_id],
                                api_key=INSTANTLY_KEY)
    fake_instantly.malform_next([{**good_row("0", "0"), "variant": -1}], count=100,
                                path_contains=STEPS)
    result = run_connection_now(runtime, conn_id)
    assert not result.ok
    assert result.error_code == "instantly_malformed_response"
    assert "row 1, field variant:" in (result.error_message or "")
    assert fake_sheets.count("batchUpdate") == 0

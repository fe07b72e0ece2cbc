"""After the steps are fetched, one call to Instantly's campaign overview
(``GET /campaigns/analytics``) checks that the step rows add up; the tab's info line and
the run say what it found, and the check never fails a refresh. Real HTTP to both fakes.
"""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.pipeline.refresh import Features, SyncSpec, run_sync
from tests.plugin_fakes import INSTANTLY_KEY

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)
TAB = "Instantly steps"
OVERVIEW = "/campaigns/analytics"
MATCH = "Totals match Instantly's campaign overview"
NOT_MADE = "Could not check the totals against Instantly's campaign overview"


def add_campaign(workspace, name: str, sent: tuple[int, int] = (2800, 2621)) -> str:
    cid = workspace.add_campaign(name)
    for variant, count in enumerate(sent):
        workspace.record(cid, DAY, 0, variant, sent=count, unique_replies=count // 20,
                         replies=count // 20, unique_clicks=count // 50,
                         unique_opportunities=count // 100)
    workspace.record(cid, DAY, None, None, unique_replies=3)  # unattributed counts too
    return cid


def sync(instantly, sheets, spreadsheet_id, campaign_ids=(), **kw):
    spec = SyncSpec(spreadsheet_id=spreadsheet_id, worksheet_title=TAB,
                    campaign_ids=tuple(campaign_ids),
                    date_range={"start": "2026-11-01",
                                "end": "2026-11-26"}, **kw)
    return run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)


def info_line(fake_sheets, spreadsheet_id) -> str:
    return fake_sheets.values(spreadsheet_id, TAB)[1][0]


def overview_calls(fake_instantly):
    return [c for c in fake_instantly.calls if c.path.endswith(OVERVIEW)]


def test_matching_totals_are_said_on_the_info_line_after_one_overview_call(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    cid = add_campaign(workspace, "Q4 outbound")
    fake_instantly.reset_calls()
    outcome = sync(instantly, sheets, spreadsheet_id, (cid,))
    assert outcome.totals is not None and outcome.totals.matches is True
    assert outcome.totals.text == MATCH
    assert info_line(fake_sheets, spreadsheet_id).endswith(MATCH)
    [call] = overview_calls(fake_instantly)
    assert call.query["ids"] == cid
    assert call.query["start_date"].startswith("2026-11-01")
    assert call.query["end_date"].startswith("2026-11-26")


def test_a_difference_is_said_in_numbers(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = add_campaign(workspace, "Q4 outbound")
    workspace.skew_overview(cid, emails_sent_count=181)
    outcome = sync(instantly, sheets, spreadsheet_id, (cid,))
    expected = "Steps add up to 5,421 sent; Instantly's overview says 5,602 (3.3 % more)"
    assert outcome.totals is not None and outcome.totals.matches is False
    assert outcome.totals.text == expected
    assert expected in info_line(fake_sheets, spreadsheet_id)


@pytest.mark.parametrize("campaigns", [1, 5, 20])
def test_one_overview_call_covers_every_selected_campaign(
    campaigns, fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    ids = [add_campaign(workspace, f"C{n}", (100 + n, 50)) for n in range(campaigns)]
    first = sync(instantly, sheets, spreadsheet_id, ids)
    assert first.totals is not None and first.totals.text == MATCH
    # The last campaign's overview disagrees: only a call that asked for it can see it.
    workspace.skew_overview(ids[-1], reply_count_unique_by_step=-2,
                            reply_count_unique=-2)
    fake_instantly.reset_calls()
    again = sync(instantly, sheets, spreadsheet_id, ids, sheet_id=first.sheet_id,
                 known_campaigns=first.campaigns)
    assert len(overview_calls(fake_instantly)) == 1
    assert again.instantly_calls == campaigns + 1
    assert again.totals is not None and "unique replies" in again.totals.text
    assert "fewer" in again.totals.text


def test_all_campaigns_combined_sums_every_campaign_the_overview_returns(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    add_campaign(workspace, "A")
    other = add_campaign(workspace, "B", (10, 10))
    fake_instantly.reset_calls()
    assert sync(instantly, sheets, spreadsheet_id).totals.text == MATCH
    [call] = overview_calls(fake_instantly)
    assert "ids" not in call.query and "id" not in call.query
    workspace.skew_overview(other, emails_sent_count=-20)
    outcome = sync(instantly, sheets, spreadsheet_id)
    assert outcome.totals.text == (
        "Steps add up to 5,441 sent; Instantly's overview says 5,421 (0.4 % fewer)"
    )


def test_opportunities_are_compared_when_they_are_on(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = add_campaign(workspace, "Q4 outbound")
    workspace.skew_overview(cid, total_opportunities=6)
    assert sync(instantly, sheets, spreadsheet_id, (cid,)).totals.text == MATCH
    outcome = sync(instantly, sheets, spreadsheet_id, (cid,), include_opportunities=True)
    assert outcome.totals.text == (
        "Steps add up to 54 unique opportunities; Instantly's overview says 60 (11.1 % more)"
    )


@pytest.mark.parametrize("fault", ["500", "429", "malformed", "bool_count"])
def test_an_overview_that_fails_leaves_the_refresh_successful_and_says_so(
    fault, fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    cid = add_campaign(workspace, "Q4 outbound")
    if fault == "500":
        fake_instantly.fail_next(500, count=10, path_is=OVERVIEW)
    elif fault == "429":
        fake_instantly.fail_next(429, headers={"Retry-After": "0"}, count=10, path_is=OVERVIEW)
    elif fault == "malformed":
        fake_instantly.malform_next({"not": "a list"}, count=10, path_is=OVERVIEW)
    else:
        fake_instantly.malform_next([{"campaign_id": cid, "emails_sent_count": True}],
                                    count=10, path_is=OVERVIEW)
    outcome = sync(instantly, sheets, spreadsheet_id, (cid,))
    assert outcome.rows_written == 4
    assert outcome.totals is not None and outcome.totals.matches is None
    assert outcome.totals.text.startswith(NOT_MADE)
    assert NOT_MADE in info_line(fake_sheets, spreadsheet_id)
    assert fake_instantly.count("/analytics/steps") == 1


@pytest.mark.parametrize("features", [Features(), Features.all_on()],
                         ids=["features_off", "features_on"])
def test_the_check_adds_no_sheets_call(
    features, fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = add_campaign(workspace, "Q4 outbound")
    first = sync(instantly, sheets, spreadsheet_id, (cid,), features=features)
    fake_sheets.reset_calls()
    again = sync(instantly, sheets, spreadsheet_id, (cid,), features=features,
                 sheet_id=first.sheet_id, known_campaigns=first.campaigns,
                 history_sheet_id=first.history_sheet_id,
                 tab_titles=first.saved_options.get("tab_titles", {}))
    assert fake_sheets.count("batchUpdate") == 1
    reads = fake_sheets.count() - fake_sheets.count("batchUpdate")
    assert reads == (1 if features.needs_read else 0)
    assert again.sheets_calls == 1 + reads
    assert again.totals.text == MATCH


def test_the_run_records_the_check_and_the_api_and_runs_page_show_it(
    runtime, client, auth, fake_sheets, fake_instantly, spreadsheet_id, workspace
):
    from sheets_sync import store
    from sheets_sync.jobs.sync import run_connection_now
    from sheets_sync.store.db import take_write_lock
    from sheets_sync.store.models import SyncRun

    cid = add_campaign(workspace, "Q4 outbound")
    workspace.skew_overview(cid, emails_sent_count=181)
    auth.signup()
    with runtime.session_factory() as s, s.begin():
        take_write_lock(s)
        user = store.get_user_by_email(s, "ann@example.com")
        conn = store.create_connection(
            s, user, fernet=runtime.fernet, name="Q4", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
            campaign_ids=[cid],
        )
        conn_id = conn.id
        _, api_key = store.create_api_key(s, user, "tests")
    result = run_connection_now(runtime, conn_id)
    assert result.ok
    expected = "Steps add up to 5,421 sent; Instantly's overview says 5,602 (3.3 % more)"
    with runtime.session_factory() as s:
        [run] = s.query(SyncRun).all()
        assert run.status == "succeeded" and run.drift == expected
        run_id = run.id
    body = client.get(f"/api/v1/runs/{run_id}",
                      headers={"Authorization": f"Bearer {api_key}"}).get_json()
    assert body["drift"] == expected
    assert body["error"] is None
    page = client.get(f"/connections/{conn_id}/runs").get_data(as_text=True)
    assert "5,602 (3.3 % more)" in page
    schema = client.get("/api/v1/openapi.json").get_json()
    assert "drift" in schema["components"]["schemas"]["RunOut"]["properties"]

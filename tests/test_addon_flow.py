"""The add-on end to end, driven like Google: connect → access granted → Refresh now →
the tab written by a worker, with teammates, people who cannot share, and wrong keys."""

from __future__ import annotations

import json

from sheets_sync.jobs.worker import Worker
from sheets_sync.store.models import Connection, SyncRun
from tests.addon_helpers import inputs_of
from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL
from tests.web_helpers import workspace_with_campaign

REQUEST_FILE_SCOPE = {
    "renderActions": {"hostAppAction": {"editorAction": {"requestFileScopeForActiveDocument": {}}}}
}


def _runs(runtime) -> list[SyncRun]:
    with runtime.session_factory() as s:
        return list(s.query(SyncRun).order_by(SyncRun.id))


def _connect(bar, campaign_id: str, **typed) -> None:
    """From a fresh sidebar to a saved connection (the person can share the file)."""
    bar.open()
    assert bar.press("Connect this spreadsheet") == REQUEST_FILE_SCOPE
    bar.grant_file_scope()
    bar.press("Check key", instantly_api_key=INSTANTLY_KEY)
    bar.press("Connect this spreadsheet", campaign_ids=[campaign_id], **typed)


def test_connect_share_and_refresh_fill_the_tab_without_copying_an_address(
    sidebar, fake_sheets, fake_drive, fake_instantly, runtime
):
    _workspace, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    fake_drive.person("ya29.token-of-ann", ssid, "writer")
    bar = sidebar(ssid, title="Q1 numbers")

    bar.open()
    assert "Keeps your Instantly campaign step analytics" in bar.text
    # Google names the open file only after the person allows it: ask first.
    assert bar.press("Connect this spreadsheet") == REQUEST_FILE_SCOPE
    bar.grant_file_scope()
    assert set(inputs_of(bar.card)) >= {"instantly_api_key", "worksheet_title", "schedule"}
    assert inputs_of(bar.card)["worksheet_title"]["value"] == "Instantly steps"

    bar.press("Check key", instantly_api_key=INSTANTLY_KEY)
    assert "The key works: 1 campaign" in bar.text
    picker = inputs_of(bar.card)["campaign_ids"]
    assert [(i["text"], i["value"]) for i in picker["items"]] == [("Q1 outbound", campaign_id)]
    # The key is carried to Save sealed, never shown back.
    assert INSTANTLY_KEY not in json.dumps(bar.card)
    assert "ending" in bar.text

    bar.press("Connect this spreadsheet", campaign_ids=[campaign_id])
    assert bar.notification == "Connected."
    assert f"Shared with {SERVICE_ACCOUNT_EMAIL} as Editor" in bar.text
    assert fake_drive.shares(ssid) == [SERVICE_ACCOUNT_EMAIL]
    assert "The first refresh has started." in bar.text
    with runtime.session_factory() as s:
        (connection,) = s.query(Connection).all()
        assert (connection.spreadsheet_id, connection.name) == (ssid, "Q1 numbers")
        assert connection.campaign_ids == [campaign_id]
        assert connection.timezone == "Europe/Berlin"

    Worker(runtime).drain()
    bar.press("Refresh card")
    assert "Up to date as of the last refresh" in bar.text
    rows = fake_sheets.values(ssid, "Instantly steps")
    assert any(row[:2] == ["Step 1", "A"] for row in rows), rows
    sheet_id = fake_sheets.sheet_properties(ssid, "Instantly steps")["sheetId"]
    assert f"https://docs.google.com/spreadsheets/d/{ssid}/edit#gid={sheet_id}" in json.dumps(
        bar.card)
    assert "Rows written" in bar.text and "UTC" in bar.text

    # Refresh now: queued through the same queue as the web page, marked "addon".
    fake_sheets.reset_calls()
    bar.press("Refresh now")
    assert bar.notification == "Refresh queued."
    assert "Refresh queued" in bar.text
    assert _runs(runtime)[-1].status == "queued" and _runs(runtime)[-1].trigger == "addon"
    Worker(runtime).drain()
    assert _runs(runtime)[-1].status == "succeeded"
    assert fake_sheets.count("batchUpdate", ssid) == 1
    assert [r.trigger for r in _runs(runtime)] == ["addon", "addon"]

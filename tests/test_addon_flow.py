"""The add-on end to end, driven like Google: connect → access granted → Refresh now →
the tab written by a worker, with teammates, people who cannot share, and wrong keys."""

from __future__ import annotations

import json
import logging

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
    sidebar, fake_sheets, fake_drive, fake_instantly, runtime, caplog
):
    caplog.set_level(logging.DEBUG)
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
    # Neither the Instantly key nor the person's Google token reached a log line.
    assert INSTANTLY_KEY not in caplog.text and "ya29.token-of-ann" not in caplog.text


def test_a_share_whose_answer_was_lost_is_sent_once_more(
    sidebar, fake_sheets, fake_drive, fake_instantly
):
    _workspace, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    fake_drive.person("ya29.token-of-ann", ssid, "writer")
    fake_drive.lose_next_answer(503)
    bar = sidebar(ssid)
    _connect(bar, campaign_id)
    assert f"Shared with {SERVICE_ACCOUNT_EMAIL} as Editor" in bar.text
    assert [c["status"] for c in fake_drive.calls] == [503, 200]
    assert fake_drive.shares(ssid) == [SERVICE_ACCOUNT_EMAIL]


def test_a_person_who_cannot_share_is_told_so_with_the_address_and_what_to_do(
    sidebar, fake_sheets, fake_drive, fake_instantly, runtime
):
    _workspace, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    fake_drive.person("ya29.token-of-ann", ssid, "reader")
    bar = sidebar(ssid)
    _connect(bar, campaign_id)
    assert "You cannot share this spreadsheet" in bar.text
    assert SERVICE_ACCOUNT_EMAIL in bar.text
    assert "Ask an editor" in bar.text
    assert fake_drive.shares(ssid) == []
    assert _runs(runtime) == []  # no refresh started against a sheet it cannot write

    # An editor opens the sidebar and gives access with their own token.
    fake_drive.person("ya29.token-of-bob", ssid, "writer")
    editor = sidebar(ssid, sub="bob", file_scope=True)
    editor.open()
    editor.press("Give access")
    assert f"Shared with {SERVICE_ACCOUNT_EMAIL} as Editor" in editor.text
    assert fake_drive.shares(ssid) == [SERVICE_ACCOUNT_EMAIL]
    # Pressing it again is harmless: the same permission, still fine.
    editor.open()
    editor.press("Give access")
    assert f"Shared with {SERVICE_ACCOUNT_EMAIL} as Editor" in editor.text
    assert [c["status"] for c in fake_drive.calls] == [403, 200, 200]
    assert fake_drive.shares(ssid) == [SERVICE_ACCOUNT_EMAIL]
    Worker(runtime).drain()
    assert [r.status for r in _runs(runtime)] == ["succeeded"]


def test_a_domain_that_forbids_outside_sharing_is_named(
    sidebar, fake_sheets, fake_drive, fake_instantly
):
    _workspace, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    fake_drive.person("ya29.token-of-ann", ssid, "owner")
    fake_drive.forbid_outside_sharing(ssid)
    bar = sidebar(ssid)
    _connect(bar, campaign_id)
    assert "Your organisation does not allow sharing" in bar.text
    assert SERVICE_ACCOUNT_EMAIL in bar.text


def test_already_shared_by_hand_counts_as_access(
    sidebar, fake_sheets, fake_drive, fake_instantly
):
    _workspace, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=(SERVICE_ACCOUNT_EMAIL,))
    fake_drive.person("ya29.token-of-ann", ssid, "reader")
    bar = sidebar(ssid)
    _connect(bar, campaign_id)
    assert "already has access" in bar.text
    assert "You cannot share" not in bar.text


def test_a_wrong_key_says_what_to_do_and_keeps_everything_typed_but_the_key(
    sidebar, fake_sheets, fake_drive, fake_instantly, runtime
):
    workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    bar = sidebar(ssid, file_scope=True)
    bar.open()
    bar.press("Connect this spreadsheet")
    wrong = "wrong-instantly-key-0000"
    bar.press("Connect this spreadsheet", instantly_api_key=wrong, worksheet_title="Steps Q1",
              name="Outbound", schedule="hourly", date_preset="last_30_days")
    assert "The Instantly API key was rejected" in bar.text or "rejected" in bar.text.lower()
    assert "Type the key again" in bar.text
    shown = inputs_of(bar.card)
    assert shown["worksheet_title"]["value"] == "Steps Q1"
    assert shown["name"]["value"] == "Outbound"
    assert [i["value"] for i in shown["schedule"]["items"] if i["selected"]] == ["hourly"]
    assert [i["value"] for i in shown["date_preset"]["items"] if i["selected"]] == [
        "last_30_days"]
    assert "value" not in shown["instantly_api_key"]
    assert wrong not in json.dumps(bar.card)
    with runtime.session_factory() as s:
        assert s.query(Connection).count() == 0


def test_a_second_connect_to_the_same_tab_is_refused(
    sidebar, fake_sheets, fake_drive, fake_instantly, runtime
):
    _workspace, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    fake_drive.person("ya29.token-of-ann", ssid, "writer")
    bar = sidebar(ssid)
    _connect(bar, campaign_id)
    bar.press("Connect another tab")
    bar.press("Connect this spreadsheet", instantly_api_key=INSTANTLY_KEY,
              worksheet_title="instantly STEPS")
    assert "is already written by the connection" in bar.text
    assert inputs_of(bar.card)["worksheet_title"]["value"] == "instantly STEPS"
    bar.press("Connect this spreadsheet", worksheet_title="Second tab")
    with runtime.session_factory() as s:
        assert sorted(c.worksheet_title for c in s.query(Connection)) == [
            "Instantly steps", "Second tab"]

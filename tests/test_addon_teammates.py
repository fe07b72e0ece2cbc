"""Teammates see status and may refresh; only the owner changes a connection; a
connection id from another spreadsheet is "not found", whatever the card's parameters say."""

from __future__ import annotations

import json

from sheets_sync import store
from sheets_sync.store.db import session_scope
from sheets_sync.store.models import Connection, SyncRun, User
from tests.addon_helpers import PUBLIC_URL
from tests.plugin_fakes import INSTANTLY_KEY
from tests.web_helpers import workspace_with_campaign
from tests.worker_helpers import add_connections, make_user

CAMPAIGN = "0b9c1f52-7a3e-4c1d-9f00-3d2e1a4b5c61"


def _connection_of(runtime, owner_email: str, ssid: str) -> int:
    user_id = make_user(runtime, owner_email)
    (cid,) = add_connections(runtime, user_id, [ssid], api_key=INSTANTLY_KEY, schedule="daily")
    return cid


def _runs(runtime) -> list[SyncRun]:
    with runtime.session_factory() as s:
        return list(s.query(SyncRun).order_by(SyncRun.id))


def test_a_teammate_sees_status_and_may_refresh_but_not_change(
    sidebar, fake_instantly, runtime, spreadsheet_id
):
    workspace_with_campaign(fake_instantly)
    # Made on the web page by someone else: the sidebar shows it in its spreadsheet.
    cid = _connection_of(runtime, "owner@example.com", spreadsheet_id)
    bar = sidebar(spreadsheet_id, sub="tina", file_scope=True)
    bar.open()
    assert "Outbound 0" in bar.text
    assert bar.buttons_in_section("Outbound 0") == ["Refresh now", "Give access"]
    assert "Set up by a teammate" in bar.text
    assert INSTANTLY_KEY not in json.dumps(bar.card) and "3f9a" not in json.dumps(bar.card)

    bar.press("Refresh now")
    assert bar.notification == "Refresh queued."
    assert [(r.connection_id, r.trigger) for r in _runs(runtime)] == [(cid, "addon")]
    # The owner sees that run in the JSON API, marked as made in the sidebar.
    with session_scope(runtime.session_factory, write=True) as s:
        owner = store.get_user_by_email(s, "owner@example.com")
        _key, api_key = store.create_api_key(s, owner, "test")
    listed = bar.client.get(f"/api/v1/connections/{cid}/runs",
                            headers={"Authorization": f"Bearer {api_key}"})
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert [r["trigger"] for r in listed.get_json()["runs"]] == ["addon"]

    # Forged parameters on an owner's action: refused, nothing changed.
    for path in ("pause", "delete", "edit"):
        event = bar.event({"connection_id": str(cid), "confirm": "yes"})
        bar._take(bar.post(f"{PUBLIC_URL}/addon/connections/{path}", event))
        assert bar.notification == "Only the person who set this connection up can change it."
    save = bar.event({"connection_id": str(cid)}, {"worksheet_title": ["Hijacked"],
                                                   "schedule": ["off"]})
    bar._take(bar.post(f"{PUBLIC_URL}/addon/connect/save", save))
    assert bar.notification == "Only the person who set this connection up can change it."
    with runtime.session_factory() as s:
        connection = s.get(Connection, cid)
        assert connection is not None
        assert (connection.worksheet_title, connection.schedule) == ("Instantly steps", "daily")
        assert connection.paused_reason is None


def test_the_owner_can_change_pause_resume_and_delete(
    sidebar, fake_sheets, fake_drive, fake_instantly, runtime
):
    _ws, campaign_id = workspace_with_campaign(fake_instantly)
    ssid = fake_sheets.create_spreadsheet("Q1 numbers", shared_with=())
    fake_drive.person("ya29.token-of-ann", ssid, "writer")
    bar = sidebar(ssid, file_scope=True)
    bar.open()
    bar.press("Connect this spreadsheet")
    bar.press("Connect this spreadsheet", instantly_api_key=INSTANTLY_KEY,
              campaign_ids=[campaign_id])
    with runtime.session_factory() as s:
        (connection,) = s.query(Connection).all()
        name = connection.name
    assert bar.buttons_in_section(name)[-3:] == ["Change settings", "Pause", "Delete"]

    bar.press("Change settings")
    assert "value" not in bar.card["sections"][0]["widgets"][0]["textInput"]  # no key shown
    bar.press("Save", worksheet_title="Renamed steps", schedule="hourly")
    assert bar.notification == "Saved."
    bar.press("Pause")
    assert "Paused" in bar.text
    bar.press("Resume")
    assert bar.notification == "Scheduled refreshes resumed."
    with runtime.session_factory() as s:
        connection = s.query(Connection).one()
        assert (connection.worksheet_title, connection.schedule) == ("Renamed steps", "hourly")
        assert connection.paused_reason is None
        assert connection.campaign_ids == [campaign_id]
        # The key was kept: the stored one still decrypts to the key typed at connect.
        assert store.decrypted_api_key(runtime.fernet, connection) == INSTANTLY_KEY
    bar.press("Delete")
    bar.press("Delete")
    assert "Deleted" in bar.notification
    with runtime.session_factory() as s:
        assert s.query(Connection).count() == 0
    assert fake_sheets.sheet_titles(ssid)  # the spreadsheet itself untouched


def test_a_connection_of_another_spreadsheet_is_not_found(
    sidebar, fake_sheets, fake_instantly, runtime, spreadsheet_id
):
    workspace_with_campaign(fake_instantly)
    other_sheet = fake_sheets.create_spreadsheet("Other team", shared_with=())
    # Ann's own connection, in another spreadsheet: still not reachable from this one.
    bar = sidebar(spreadsheet_id, sub="ann", file_scope=True)
    bar.open()
    with runtime.session_factory() as s:
        ann = s.query(User).one()
        ann_id = ann.id
    (theirs,) = add_connections(runtime, make_user(runtime, "x@example.com"), [other_sheet],
                                api_key=INSTANTLY_KEY)
    (own_elsewhere,) = add_connections(runtime, ann_id, [other_sheet], api_key=INSTANTLY_KEY)
    for cid in (theirs, own_elsewhere, 999999, "1 OR 1=1"):
        for path in ("refresh", "share", "pause", "delete", "edit"):
            event = bar.event({"connection_id": str(cid), "confirm": "yes"})
            bar._take(bar.post(f"{PUBLIC_URL}/addon/connections/{path}", event))
            assert bar.notification == (
                "That connection is not in this spreadsheet (it may have been deleted)."
            ), (cid, path)
    assert _runs(runtime) == []
    with runtime.session_factory() as s:
        assert s.query(Connection).count() == 2
        assert all(c.paused_reason is None for c in s.query(Connection))


def test_editing_in_the_sidebar_keeps_what_the_form_does_not_show(
    sidebar, fake_instantly, runtime, spreadsheet_id
):
    workspace_with_campaign(fake_instantly)
    bar = sidebar(spreadsheet_id, file_scope=True)
    bar.open()
    with runtime.session_factory() as s:
        owner_id = s.query(User).one().id
    with session_scope(runtime.session_factory, write=True) as s:
        owner = s.get(User, owner_id)
        made = store.create_connection(
            s, owner, fernet=runtime.fernet, name="Set on the web", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
            campaign_ids=[CAMPAIGN],
            date_range={"start": "2026-01-01", "end": "2026-01-31"},
            schedule="weekly", schedule_time="07:30", schedule_weekday=2,
            timezone="America/New_York",
            options={"campaign_cache": {CAMPAIGN: {"campaign": {"name": "Q1 outbound"}}}},
        )
        cid = made.id
    bar.open()
    bar.press("Change settings")
    assert "Q1 outbound" in bar.text  # the campaign by name, without a call to Instantly
    bar.press("Save", worksheet_title="Renamed")
    assert bar.notification == "Saved."
    with runtime.session_factory() as s:
        c = s.get(Connection, cid)
        assert c is not None
        assert c.worksheet_title == "Renamed"
        assert c.date_range == {"start": "2026-01-01", "end": "2026-01-31"}
        assert (c.schedule, c.schedule_time, c.schedule_weekday, c.timezone) == (
            "weekly", "07:30", 2, "America/New_York")
        assert c.campaign_ids == [CAMPAIGN]

"""Linking a sidebar (Google) account to a web account needs proof on both sides."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from sheets_sync import store
from sheets_sync.errors import InvalidInput
from sheets_sync.store import identities
from sheets_sync.store.models import AccountLinkToken, Connection, GoogleIdentity, User
from tests.plugin_fakes import INSTANTLY_KEY
from tests.plugin_web import csrf_token
from tests.web_helpers import create_connection, sheet_url, workspace_with_campaign


def _link(bar) -> tuple[str, str]:
    """The one-time link's path and the code the sidebar shows beside it."""
    bar.press("Link to a web account")
    (url,) = re.findall(r'"url": "([^"]+)"', json.dumps(bar.card))
    assert url.startswith("https://sync.example.test/link-google/")
    (code,) = re.findall(r"<b>([A-Z2-7]{4}-[A-Z2-7]{4})</b>", json.dumps(bar.card))
    assert code not in url
    return url[len("https://sync.example.test"):], code


def test_linking_moves_sidebar_connections_to_the_web_account_and_back_again(
    sidebar, addon_client, fake_sheets, fake_drive, fake_instantly, runtime, spreadsheet_id
):
    _ws, campaign_id = workspace_with_campaign(fake_instantly)
    fake_drive.person("ya29.token-of-ann", spreadsheet_id, "writer")
    bar = sidebar(spreadsheet_id, file_scope=True)
    bar.open()
    bar.press("Connect this spreadsheet")
    bar.press("Connect this spreadsheet", instantly_api_key=INSTANTLY_KEY,
              campaign_ids=[campaign_id], name="From the sidebar")
    path, code = _link(bar)

    web = addon_client.application.test_client()
    # Not signed in: the link alone proves nothing.
    assert web.get(path).status_code == 302
    page = web.get("/signup")
    web.post("/signup", data={"email": "ann.web@example.com", "password": "correct horse b",
                              "confirm": "correct horse b",
                              "csrf_token": csrf_token(page.get_data(as_text=True))})
    # A sheet made on the web, in the same spreadsheet.
    create_connection(web, name="From the web", spreadsheet_url=sheet_url(spreadsheet_id))
    shown = web.get(path)
    assert shown.status_code == 200 and "ann@example.com" in shown.get_data(as_text=True)
    with runtime.session_factory() as s:
        assert s.query(Connection).filter(Connection.name == "From the sidebar").one().user.email \
            != "ann.web@example.com"  # nothing moved by just looking

    confirmed = web.post(path, data={"csrf_token": csrf_token(shown.get_data(as_text=True)),
                                     "code": code.lower().replace("-", "")})
    assert confirmed.status_code == 302
    dashboard = web.get("/").get_data(as_text=True)
    assert "From the sidebar" in dashboard and "From the web" in dashboard
    with runtime.session_factory() as s:
        web_user = s.query(User).filter(User.email == "ann.web@example.com").one()
        assert s.query(GoogleIdentity).one().user_id == web_user.id
        assert {c.user_id for c in s.query(Connection)} == {web_user.id}
        assert s.query(User).count() == 1  # the sidebar-only account is gone
    # The sidebar now shows both as Ann's own.
    bar.open()
    assert "From the web" in bar.text and "From the sidebar" in bar.text
    assert "Set up by a teammate" not in bar.text
    assert "Link to a web account" not in bar.text

    # The link works once.
    again = web.post(path, data={"csrf_token": csrf_token(dashboard), "code": code})
    assert again.status_code == 400 and "expired or was already used" in again.get_data(True)


def test_the_link_alone_is_not_enough_and_a_wrong_code_spends_it(
    sidebar, addon_client, runtime, spreadsheet_id
):
    bar = sidebar(spreadsheet_id, file_scope=True)
    bar.open()
    path, code = _link(bar)
    web = addon_client.application.test_client()
    page = web.get("/signup")
    web.post("/signup", data={"email": "mallory@example.com", "password": "correct horse b",
                              "confirm": "correct horse b",
                              "csrf_token": csrf_token(page.get_data(as_text=True))})
    shown = web.get(path)
    token = csrf_token(shown.get_data(as_text=True))
    wrong = web.post(path, data={"csrf_token": token, "code": "AAAA-AAAA"})
    assert wrong.status_code == 400 and "does not match" in wrong.get_data(as_text=True)
    # Even the right code now finds the link spent.
    late = web.post(path, data={"csrf_token": token, "code": code})
    assert late.status_code == 400 and "expired or was already used" in late.get_data(True)
    with runtime.session_factory() as s:
        mallory = s.query(User).filter(User.email == "mallory@example.com").one()
        assert s.query(GoogleIdentity).one().user_id != mallory.id


def test_a_guessed_link_is_refused(auth, client):
    auth.signup("bob@example.com")
    response = client.get("/link-google/" + "x" * 43)
    assert response.status_code == 400
    assert "expired or was already used" in response.get_data(as_text=True)


def test_a_link_expires_after_half_an_hour_and_moves_connections_once_used(
    session_factory, fernet
):
    from sheets_sync.store.db import session_scope

    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    with session_scope(session_factory, write=True) as s:
        sidebar_user = identities.google_user(s, "sub-ann", "ann@example.com")
        token, _expires = identities.create_link_token(s, sidebar_user, now=start)
        web_user = User(email="ann.web@example.com", password_hash="unused")
        s.add(web_user)
        s.flush()
        web_id = web_user.id
    late = start + dt.timedelta(minutes=31)
    with session_scope(session_factory, write=True) as s:
        web_user = s.get(User, web_id)
        with pytest.raises(InvalidInput, match="expired"):
            identities.redeem_link_token(s, token, web_user, now=late)
    with session_scope(session_factory, write=True) as s:
        sidebar_user = s.query(User).filter(User.id != web_id).one()
        made = store.create_connection(
            s, sidebar_user, fernet=fernet, name="From the sidebar",
            instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=sheet_url("1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
        )
        store.enqueue_run(s, made, "addon")
    with session_scope(session_factory, write=True) as s:
        web_user = s.get(User, web_id)
        identity = identities.redeem_link_token(
            s, token, web_user, now=start + dt.timedelta(minutes=29))
        assert identity.user_id == web_id
        assert s.query(AccountLinkToken).one().used_at is not None
    with session_scope(session_factory) as s:
        # The connection and its run moved with the identity; the password-less account
        # the sidebar had made is gone.
        (connection,) = s.query(Connection).all()
        assert connection.user_id == web_id and len(connection.runs) == 1
        assert [u.id for u in s.query(User)] == [web_id]
        assert s.query(GoogleIdentity).one().user_id == web_id

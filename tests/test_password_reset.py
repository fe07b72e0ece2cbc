"""Forgotten passwords: an e-mailed one-time link (real SMTP, aiosmtpd), time-limited,
single use, stored hashed; the same answer for every address; a reset ends every
earlier session."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

from sheets_sync.jobs.runtime import build_runtime
from sheets_sync.store.models import PasswordResetToken
from sheets_sync.store.users import RESET_TOKEN_LIFETIME
from tests.plugin_web import AuthActions, csrf_token
from web import create_app

NEW_PASSWORD = "a brand new passphrase"
LINK = re.compile(r"https://sync\.example\.com/reset-password/([A-Za-z0-9_-]+)")


@pytest.fixture
def mail_app(settings, runtime, inbox):  # noqa: F811
    handler, controller = inbox
    cfg = settings.model_copy(update={
        "smtp_url": f"smtp://127.0.0.1:{controller.port}",
        "public_url": "https://sync.example.com",
    })
    rt = build_runtime(cfg)
    app = create_app({"TESTING": True, "SETTINGS": cfg, "RUNTIME": rt})
    yield app, handler
    app.extensions["reset_mailer"].drain()
    rt.engine.dispose()


def ask_for_reset(app, email: str):
    client = app.test_client()
    page = client.get("/forgot-password")
    response = client.post("/forgot-password", data={
        "email": email, "csrf_token": csrf_token(page.get_data(as_text=True))})
    app.extensions["reset_mailer"].drain()
    return response


def choose_password(client, token: str, password: str = NEW_PASSWORD):
    page = client.get(f"/reset-password/{token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(f"/reset-password/{token}", data={
        "password": password, "confirm": password,
        "csrf_token": csrf_token(page.get_data(as_text=True))})


def mailed_token(handler, index: int = -1) -> str:
    body = handler.messages[index].get_payload(decode=True).decode()
    match = LINK.search(body)
    assert match, body
    return match.group(1)


def test_the_login_page_links_to_forgot_password(client):
    html = client.get("/login").get_data(as_text=True)
    assert 'href="/forgot-password"' in html and "Forgot password?" in html


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(mail_app, runtime):
    app, handler = mail_app
    ann = app.test_client()
    AuthActions(ann).signup()
    cookie = ann.get_cookie("session").value

    answer = ask_for_reset(app, "Ann@Example.com")
    assert answer.status_code == 200
    assert len(handler.messages) == 1
    mail = handler.messages[0]
    assert mail["To"] == "ann@example.com"
    token = mailed_token(handler)
    # Only a hash of the token is stored.
    with runtime.session_factory() as s:
        stored = s.query(PasswordResetToken).one()
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()

    browser = app.test_client()
    done = choose_password(browser, token)
    assert done.status_code == 302 and done.headers["Location"] == "/login"
    # Every earlier session is over, the new password works, the old one does not.
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/api-keys").status_code == 302
    assert ann.get("/api-keys").status_code == 302
    assert AuthActions(app.test_client()).login().status_code == 401
    assert AuthActions(app.test_client()).login(password=NEW_PASSWORD).status_code == 302
    # Single use.
    again = app.test_client().get(f"/reset-password/{token}")
    assert again.status_code == 404
    assert "expired or was already used" in again.get_data(as_text=True)


def test_the_answer_is_the_same_for_unknown_addresses_and_nothing_is_sent(mail_app):
    app, handler = mail_app
    AuthActions(app.test_client()).signup()
    known = ask_for_reset(app, "ann@example.com")
    unknown = ask_for_reset(app, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200

    def strip(html: str) -> str:
        return re.sub(r'content="[^"]+"|value="[^"]+"', "", html)

    assert strip(known.get_data(as_text=True)) == strip(unknown.get_data(as_text=True))
    assert "If an account exists for that address" in known.get_data(as_text=True)
    assert [m["To"] for m in handler.messages] == ["ann@example.com"]


def test_an_expired_link_does_not_work(mail_app, runtime):
    app, handler = mail_app
    AuthActions(app.test_client()).signup()
    ask_for_reset(app, "ann@example.com")
    token = mailed_token(handler)
    with runtime.session_factory() as s, s.begin():
        stored = s.query(PasswordResetToken).one()
        stored.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    client = app.test_client()
    assert client.get(f"/reset-password/{token}").status_code == 404
    assert AuthActions(app.test_client()).login().status_code == 302  # password unchanged
    assert RESET_TOKEN_LIFETIME == dt.timedelta(hours=1)


def test_a_newer_password_voids_older_links(mail_app):
    app, handler = mail_app
    AuthActions(app.test_client()).signup()
    ask_for_reset(app, "ann@example.com")
    ask_for_reset(app, "ann@example.com")
    first, second = mailed_token(handler, 0), mailed_token(handler, 1)
    assert choose_password(app.test_client(), second).status_code == 302
    assert app.test_client().get(f"/reset-password/{first}").status_code == 404


def test_reset_requests_are_limited_per_address(mail_app):
    app, handler = mail_app
    for _ in range(10):
        assert ask_for_reset(app, "someone@example.com").status_code == 200
    blocked = ask_for_reset(app, "someone@example.com")
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


def test_without_smtp_the_page_points_to_the_command_line(client):
    html = client.get("/forgot-password").get_data(as_text=True)
    assert "sheets-sync users set-password" in html
    assert 'name="email"' not in html

"""Sign-out, a password change and a password reset end every earlier session: a
replayed session cookie gets the sign-in page, not the dashboard."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sheets_sync import store
from tests.plugin_web import AuthActions, csrf_token
from tests.worker_helpers import ROOT

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def replay(app, cookie: str):
    """A different browser presenting a copy of the cookie."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief.get("/api-keys")


def assert_signed_out(response) -> None:
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_cookie_replayed_after_sign_out_gets_the_sign_in_page(app, client, auth):
    auth.signup()
    cookie = session_cookie(client)
    assert replay(app, cookie).status_code == 200  # a copy works while signed in
    other = app.test_client()
    assert AuthActions(other).login().status_code == 302  # a second browser

    assert auth.logout().status_code == 302
    assert_signed_out(replay(app, cookie))
    # Sign-out ends the account's other sessions too.
    assert_signed_out(other.get("/api-keys"))
    # Signing in again works, with a cookie the old copies cannot stand in for.
    assert auth.login().status_code == 302
    assert client.get("/api-keys").status_code == 200
    assert_signed_out(replay(app, cookie))


def test_a_raw_replayed_cookie_header_after_sign_out(app, client, auth):
    auth.signup()
    raw = f"session={session_cookie(client)}"
    fresh = app.test_client(use_cookies=False)  # sends exactly the header given
    ok = fresh.get("/", headers={"Cookie": raw})
    assert ok.status_code == 200 and "Your connections" in ok.get_data(as_text=True)
    auth.logout()
    dashboard = fresh.get("/", headers={"Cookie": raw})
    assert "Your connections" not in dashboard.get_data(as_text=True)
    assert_signed_out(fresh.get("/api-keys", headers={"Cookie": raw}))
    api_style = fresh.get("/api-keys", headers={"Cookie": raw, "Accept": "application/json",
                                                     "X-Requested-With": "fetch"})
    assert api_style.status_code == 401


def test_changing_the_password_ends_other_sessions_and_keeps_this_one(app, client, auth):
    auth.signup()
    other = app.test_client()
    AuthActions(other).login()
    old_cookie = session_cookie(client)
    page = client.get("/account/password")
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))

    wrong = client.post("/account/password", data={
        "current": "not my password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": token})
    assert wrong.status_code == 400
    assert "not your current password" in wrong.get_data(as_text=True)
    assert other.get("/api-keys").status_code == 200  # nothing changed yet

    done = client.post("/account/password", data={
        "current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": token})
    assert done.status_code == 302
    assert client.get("/api-keys").status_code == 200
    assert_signed_out(other.get("/api-keys"))
    assert_signed_out(replay(app, old_cookie))
    assert AuthActions(app.test_client()).login(password=PASSWORD).status_code == 401
    assert AuthActions(app.test_client()).login(password=NEW_PASSWORD).status_code == 302


def test_a_cookie_without_the_session_generation_is_refused(app, client, auth):
    auth.signup()
    with client.session_transaction() as sess:
        user_id = sess["_user_id"].split(".")[0]
        sess["_user_id"] = user_id  # what a cookie issued before generations holds
    assert_signed_out(client.get("/api-keys"))


@pytest.mark.parametrize("how", ["stdin", "prompt"])
def test_users_set_password_command_ends_sessions(app, client, auth, runtime, settings, how,
                                                  monkeypatch):
    auth.signup()
    cookie = session_cookie(client)
    env = {
        "SHEETS_SYNC_DATA_DIR": str(settings.data_dir),
        "SHEETS_SYNC_DATABASE_URL": settings.resolved_database_url,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
    }
    args = [sys.executable, "-m", "sheets_sync.cli.main", "users", "set-password",
            "Ann@Example.com"]
    if how == "stdin":
        result = subprocess.run([*args, "--password-stdin"], input=NEW_PASSWORD + "\n",
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Password changed for ann@example.com" in result.stdout
    else:
        from sheets_sync.cli import main as cli

        prompts = iter([NEW_PASSWORD, NEW_PASSWORD])
        monkeypatch.setattr("getpass.getpass", lambda _prompt: next(prompts))
        for name in ("SHEETS_SYNC_DATA_DIR", "SHEETS_SYNC_DATABASE_URL"):
            monkeypatch.setenv(name, env[name])
        assert cli.main(["users", "set-password", "ann@example.com"]) == 0
    assert_signed_out(replay(app, cookie))
    assert AuthActions(app.test_client()).login(password=NEW_PASSWORD).status_code == 302

    missing = subprocess.run([*args[:-1], "nobody@example.com", "--password-stdin"],
                             input=NEW_PASSWORD + "\n", env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2
    assert "no user" in missing.stderr
    with runtime.session_factory() as s:
        assert store.get_user_by_email(s, "nobody@example.com") is None

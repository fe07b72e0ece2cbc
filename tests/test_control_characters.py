"""NUL and other control characters in any text field: a 400 naming the field on the
pages, a 422 naming it in the API, never a 500, on SQLite and on PostgreSQL (which
refuses NUL in text outright). Nothing is stored."""

from __future__ import annotations

import pytest

from sheets_sync import store
from sheets_sync.jobs.runtime import build_runtime
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.migrate import upgrade
from sheets_sync.store.models import Connection, User
from tests.plugin_fakes import INSTANTLY_KEY
from tests.plugin_web import AuthActions, csrf_token
from tests.web_helpers import connection_form, token
from web import create_app

SHEET = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"
NASTY = ["\x00", "\x01", "\x1b", "\x7f"]


@pytest.fixture
def db_app(settings, db_url, fast_retry, workspace):
    """The app on SQLite and on PostgreSQL."""
    cfg = settings.model_copy(update={"database_url": db_url})
    upgrade(db_url)
    rt = build_runtime(cfg, retry=fast_retry)
    yield create_app({"TESTING": True, "SETTINGS": cfg, "RUNTIME": rt}), rt
    rt.engine.dispose()


def count(rt, model) -> int:
    with rt.session_factory() as s:
        return s.query(model).count()


def api_key_for(rt, email: str = "ann@example.com") -> str:
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)  # looks the user up, then adds a key
        user = store.get_user_by_email(s, email)
        _, key = store.create_api_key(s, user, "test")
    return key


@pytest.mark.parametrize("char", NASTY)
def test_public_pages_name_the_field(db_app, char):
    app, rt = db_app
    client = app.test_client()
    signup = AuthActions(client).signup(f"ann{char}@example.com")
    assert signup.status_code == 400
    assert "Email contains a control character" in signup.get_data(as_text=True)
    assert count(rt, User) == 0

    login = AuthActions(client).login(f"ann{char}@example.com")
    assert login.status_code == 400
    assert "Email contains a control character" in login.get_data(as_text=True)

    # A NUL inside a password is refused too (nobody types one).
    page = client.get("/login")
    nul_password = client.post("/login", data={
        "email": "ann@example.com", "password": "pass\x00word",
        "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert nul_password.status_code == 400
    assert "Password contains a control character" in nul_password.get_data(as_text=True)


@pytest.mark.parametrize("field", ["name", "spreadsheet_url", "worksheet_title"])
def test_the_connection_form_names_the_field(db_app, field):
    app, rt = db_app
    client = app.test_client()
    AuthActions(client).signup()
    value = {"name": "Q1\x00", "spreadsheet_url": SHEET + "\x00",
             "worksheet_title": "Steps\x00"}[field]
    data = connection_form(**{field: value})
    response = client.post("/connections/new", data={**data, "csrf_token": token(client)})
    assert response.status_code == 400
    expected = {"name": "Name contains a control character",
                "spreadsheet_url": "Google Sheet link contains a control character",
                "worksheet_title": "on one line"}[field]
    assert expected in response.get_data(as_text=True)
    assert count(rt, Connection) == 0

    keys = client.post("/api-keys", data={"name": "script\x00", "csrf_token": token(client)})
    assert keys.status_code == 400
    assert "Name contains a control character" in keys.get_data(as_text=True)


@pytest.mark.parametrize("field,value", [
    ("name", "Q1\x00outbound"),
    ("name", "tab\tin name"),
    ("worksheet_title", "Steps\x00"),
    ("spreadsheet_url", SHEET + "\x00"),
    ("timezone", "Europe/Berlin\x00"),
    ("schedule_time", "09:00\x00"),
])
def test_the_api_answers_422_naming_the_field(db_app, field, value):
    app, rt = db_app
    AuthActions(app.test_client()).signup()
    headers = {"Authorization": f"Bearer {api_key_for(rt)}"}
    client = app.test_client()
    body = {"name": "Q1", "instantly_api_key": INSTANTLY_KEY, "spreadsheet_url": SHEET,
            field: value}
    created = client.post("/api/v1/connections", json=body, headers=headers)
    assert created.status_code == 422, created.get_json()
    message = created.get_json()["error"]["message"]
    assert message.startswith(f"{field}:"), message
    expected = "on one line" if field == "worksheet_title" else "control character"
    assert expected in message
    assert count(rt, Connection) == 0

    good = client.post("/api/v1/connections", json={**body, field: "Q1" if field == "name" else
                       {"worksheet_title": "Steps", "spreadsheet_url": SHEET,
                        "timezone": "UTC", "schedule_time": "09:00"}[field]}, headers=headers)
    assert good.status_code == 201
    cid = good.get_json()["id"]
    patched = client.patch(f"/api/v1/connections/{cid}", json={field: value}, headers=headers)
    assert patched.status_code == 422
    assert patched.get_json()["error"]["message"].startswith(f"{field}:")

"""``/internal/cron/run-due``: who may call it, and that it runs what is due."""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.jobs.runtime import build_runtime
from sheets_sync.store.migrate import upgrade
from tests.plugin_fakes import SERVICE_ACCOUNT_EMAIL
from tests.worker_helpers import add_connections, make_user, runs_by_status
from web import create_app

TOKEN = "cron-token-0123456789abcdef"
URL = "/internal/cron/run-due"


@pytest.fixture
def make_client(settings, fast_retry, monkeypatch):
    monkeypatch.delenv("GAE_ENV", raising=False)
    runtimes = []

    def build(token: str | None):
        s = settings.model_copy(update={"cron_token": token})
        upgrade(s.resolved_database_url)
        rt = build_runtime(s, retry=fast_retry)
        runtimes.append(rt)
        app = create_app({"TESTING": True, "SETTINGS": s, "RUNTIME": rt})
        return app.test_client(), rt

    yield build
    for rt in runtimes:
        rt.engine.dispose()


def test_off_without_a_token_and_outside_app_engine(make_client) -> None:
    client, _ = make_client(None)
    assert client.post(URL).status_code == 404
    assert client.post(URL, headers={"X-Appengine-Cron": "true"}).status_code == 404


def test_bearer_token(make_client) -> None:
    client, _ = make_client(TOKEN)
    assert client.post(URL).status_code == 401
    assert client.post(URL, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post(URL, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    # Outside App Engine anyone can send the App Engine header: it means nothing here.
    assert client.post(URL, headers={"X-Appengine-Cron": "true"}).status_code == 401
    response = client.post(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.get_json()["ran"] == 0
    # No CSRF token needed (no cookie), and GET does not start work off App Engine.
    assert client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_app_engine_cron_header_only_on_app_engine(make_client, monkeypatch) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    client, _ = make_client(None)
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers={"X-Appengine-Cron": "false"}).status_code == 401
    response = client.get(URL, headers={"X-Appengine-Cron": "true"})
    assert response.status_code == 200 and "backlog" in response.get_json()


def test_runs_due_syncs_and_says_what_it_did(make_client, fake_sheets, fake_instantly) -> None:
    client, rt = make_client(TOKEN)
    fake_instantly.add_workspace("cron-instantly-key-77")
    books = [fake_sheets.create_spreadsheet(f"C{i}", shared_with=(SERVICE_ACCOUNT_EMAIL,))
             for i in range(3)]
    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    add_connections(rt, make_user(rt), books, api_key="cron-instantly-key-77", due_at=due)
    body = client.post(URL, headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert (body["queued"], body["ran"], body["succeeded"], body["failed"]) == (3, 3, 3, 0)
    assert body["backlog"]["queued"] == 0
    assert runs_by_status(rt) == {"succeeded": 3}
    assert "cron-instantly-key-77" not in str(body)

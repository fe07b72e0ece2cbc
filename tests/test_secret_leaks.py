"""An Instantly that echoes the API key in its error text must not get the key stored or
shown anywhere: the run record, the runs page, the JSON API, the Test-key reply, the log
and the database file. Real clients against the local fakes, through the web app."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from markupsafe import escape

from sheets_sync import store
from sheets_sync.errors import InstantlyKeyRejected
from sheets_sync.jobs.sync import _record_failure
from sheets_sync.store.db import session_scope
from sheets_sync.store.models import Connection
from tests.web_helpers import FETCH, create_connection, only_connection, run_queued, sheet_url
from tests.web_helpers import runs_of as runs_of_connection
from tests.web_helpers import token as csrf

# "+", "/" and "=" make the URL-encoded forms differ from the key itself.
KEY = "sk_live+Echo/Key==9f3cQ7mZ"
FORMS = tuple({KEY, quote(KEY, safe=""), quote(KEY), quote_plus(KEY)})

ECHOES = {
    # 4xx text is copied into the message ("Instantly rejected the request (HTTP 400: …)").
    "400_plain": (400, f"Invalid api key {KEY} for this workspace"),
    "400_url_encoded": (
        400,
        f"querystring must not carry credentials: /api/v2/campaigns?api_key={quote(KEY, safe='')}",
    ),
    "422_header": (422, f"Unprocessable request, headers were Authorization: Bearer {KEY}"),
    "401": (401, f"Invalid API key {KEY}"),
    "500": (500, f"Internal error while handling key {KEY}"),
}


def assert_no_key(where: str, text: str | bytes) -> None:
    for form in FORMS:
        needle = form.encode() if isinstance(text, bytes) else form
        assert needle not in text, f"the key ({form!r}) leaked into {where}"


@pytest.fixture
def signed_in(client, auth):
    auth.signup()
    return client


@pytest.fixture
def connection_id(signed_in, runtime, fake_instantly, spreadsheet_id) -> int:
    workspace = fake_instantly.add_workspace(KEY)
    workspace.add_campaign("Q1 outbound")
    create_connection(
        signed_in, instantly_api_key=KEY, spreadsheet_url=sheet_url(spreadsheet_id)
    )
    return only_connection(runtime).id


@pytest.mark.parametrize(("status", "message"), ECHOES.values(), ids=ECHOES.keys())
def test_an_echoed_key_is_never_stored_or_shown(
    signed_in, runtime, settings, fake_instantly, connection_id, caplog, status, message
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"statusCode": status, "error": "Error", "message": message}
    fake_instantly.fail_next(status, body, count=1000)

    # A refresh, as the page's button and the worker do it.
    queued = signed_in.post(
        f"/connections/{connection_id}/refresh",
        data={"csrf_token": csrf(signed_in)},
        headers=FETCH,
    )
    result = run_queued(runtime, queued.get_json()["run"]["id"])
    assert not result.ok
    assert_no_key("the run's result", result.summary)
    [run] = runs_of_connection(runtime, connection_id)
    assert run.status == "failed" and run.error_message
    assert_no_key("the run record", run.error_message)
    if status == 400 and "Invalid api key" in message:
        # The useful part of Instantly's words is still there.
        assert "Invalid api key [redacted] for this workspace" in run.error_message

    page = signed_in.get(f"/connections/{connection_id}/runs").get_data(as_text=True)
    assert str(escape(run.error_message)) in page
    assert_no_key("the runs page", page)
    status_json = signed_in.get(f"/connections/{connection_id}/runs/{run.id}.json")
    assert_no_key("the page's run status", status_json.get_data(as_text=True))

    with session_scope(runtime.session_factory, write=True) as s:
        user = s.get(Connection, connection_id).user
        _, api_key = store.create_api_key(s, user, "leak test")
    headers = {"Authorization": f"Bearer {api_key}"}
    api_run = signed_in.get(f"/api/v1/runs/{run.id}", headers=headers)
    assert api_run.status_code == 200
    assert api_run.get_json()["error"]["code"] == run.error_code
    assert_no_key("GET /api/v1/runs/<id>", api_run.get_data(as_text=True))
    api_runs = signed_in.get(f"/api/v1/connections/{connection_id}/runs", headers=headers)
    assert_no_key("GET /api/v1/connections/<id>/runs", api_runs.get_data(as_text=True))

    # Test key, with the key typed and with the saved one, with and without JavaScript.
    typed = signed_in.post(
        "/connections/test-key",
        data={"instantly_api_key": KEY, "csrf_token": csrf(signed_in)},
        headers=FETCH,
    )
    assert typed.get_json()["ok"] is False
    assert_no_key("the Test-key reply", typed.get_data(as_text=True))
    saved = signed_in.post(
        "/connections/test-key",
        data={"connection_id": str(connection_id), "csrf_token": csrf(signed_in)},
        headers=FETCH,
    )
    assert saved.get_json()["ok"] is False
    assert_no_key("the Test-key reply for the saved key", saved.get_data(as_text=True))
    plain = signed_in.post(
        "/connections/test-key",
        data={"instantly_api_key": KEY, "csrf_token": csrf(signed_in)},
    )
    assert_no_key("the Test-key page", plain.get_data(as_text=True))

    assert_no_key("the log", caplog.text)
    for record in caplog.records:
        assert_no_key("a log record", record.getMessage())

    runtime.engine.dispose()  # flush SQLite's write-ahead log into the file
    files = [p for p in Path(settings.data_dir).rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite3" for p in files)
    for path in files:
        assert_no_key(str(path), path.read_bytes())


def test_the_store_scrubs_what_it_keeps_whatever_it_is_given(runtime, spreadsheet_id) -> None:
    with session_scope(runtime.session_factory, write=True) as s:
        user = store.create_user(s, "ann@example.com", "correct horse battery")
        s.flush()
        connection = store.create_connection(
            s, user, fernet=runtime.fernet, name="Q1", instantly_api_key=KEY,
            spreadsheet_url=sheet_url(spreadsheet_id), schedule="hourly",
        )
        s.flush()
        cid = connection.id
    # A message that, against every rule, carries the key: the store still keeps it out.
    leaky = InstantlyKeyRejected(f"Rejected key {KEY}; Authorization: Bearer {KEY}")
    for _ in range(3):
        with session_scope(runtime.session_factory, write=True) as s:
            run, _ = store.enqueue_run(s, s.get(Connection, cid), "schedule")
            s.flush()
            run_id = run.id
        with session_scope(runtime.session_factory, write=True) as s:
            assert store.claim_run(s, run_id, "w", lease_seconds=60) is not None
        _record_failure(runtime, run_id, cid, leaky, None, None, 0.0, secrets=(KEY,))
    with runtime.session_factory() as s:
        c = s.get(Connection, cid)
        assert c.paused_reason is not None
        assert_no_key("the pause reason", c.paused_reason)
        assert len(c.runs) == 3
        for run in c.runs:
            assert run.error_message
            assert_no_key("a run record", run.error_message)

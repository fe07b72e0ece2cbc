"""A pool of service accounts: pinning at creation, writing as the pinned account only,
moving on request, a removed key, and the address shown by the API and the page.

Three accounts in two Google Cloud projects are registered with the Sheets fake; each
spreadsheet is shared with one of them only, as a customer would share it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from sheets_sync import store
from sheets_sync.cli.main import main
from sheets_sync.config import Settings
from sheets_sync.jobs.sync import run_connection_now
from sheets_sync.jobs.worker import Worker
from sheets_sync.store.db import session_scope, take_write_lock
from sheets_sync.store.models import Connection, RateLimitGrant, SyncRun, User
from tests.fakes.sheets_api import make_service_account_info
from tests.plugin_fakes import INSTANTLY_KEY

A = "pool-a@proj-one.iam.gserviceaccount.com"
B = "pool-b@proj-one.iam.gserviceaccount.com"
C = "pool-c@proj-two.iam.gserviceaccount.com"


@pytest.fixture(scope="session")
def key_files(tmp_path_factory, fake_sheets_server) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pool")
    files: dict[str, Path] = {}
    for email in (A, B, C):
        info = make_service_account_info(fake_sheets_server.token_uri, email)
        fake_sheets_server.register_service_account(info)
        path = folder / f"{email.split('@')[0]}.json"
        path.write_text(json.dumps(info))
        files[email] = path
    return files


@pytest.fixture
def settings(tmp_path, fake_sheets, fake_instantly, key_files) -> Settings:
    return Settings(
        data_dir=tmp_path / "instance",
        instantly_api_url=fake_instantly.url,
        sheets_api_url=fake_sheets.url,
        service_account_files=",".join(str(key_files[e]) for e in (A, B, C)),
        http_connect_timeout=2.0,
        http_read_timeout=5.0,
        retry_max_wait=2.0,
    )


@pytest.fixture
def campaign(fake_instantly):
    ws = fake_instantly.add_workspace(INSTANTLY_KEY)
    cid = ws.add_campaign("Pool campaign")
    ws.record(cid, dt.date(2026, 1, 10), 0, 0, sent=30, unique_replies=3)
    return cid


def owner(runtime) -> User:
    with session_scope(runtime.session_factory) as s:
        take_write_lock(s)
        user = store.get_user_by_email(s, "owner@example.com")
        if user is None:
            user = store.create_user(s, "owner@example.com", "correct horse battery")
        return user


def create(runtime, spreadsheet_id: str, *, schedule: str = "hourly", pool: bool = True) -> int:
    user = owner(runtime)
    with session_scope(runtime.session_factory) as s:
        take_write_lock(s)
        connection = store.create_connection(
            s,
            s.merge(user),
            fernet=runtime.fernet,
            name="Outbound",
            instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
            schedule=schedule,
            service_accounts=runtime.service_account_emails if pool else (),
        )
        return connection.id


def pinned(runtime, connection_id: int) -> str | None:
    with runtime.session_factory() as s:
        return s.scalar(
            select(Connection.service_account_email).where(Connection.id == connection_id)
        )


def test_the_pool_is_read_from_the_key_files_in_order(runtime) -> None:
    assert runtime.service_account_emails == [A, B, C]
    assert runtime.service_account_email == A  # the primary
    assert [a.project_id for a in runtime.pool.accounts] == ["proj-one", "proj-one", "proj-two"]


def test_new_connections_go_to_the_least_loaded_account(runtime, fake_sheets) -> None:
    book = fake_sheets.create_spreadsheet("Any", shared_with=(A, B, C))
    firsts = [pinned(runtime, create(runtime, book)) for _ in range(3)]
    assert firsts == [A, B, C]  # equal loads: in the pool's order
    # A weekly one costs 1/168 writes an hour: the next hourly one avoids its account.
    weekly = pinned(runtime, create(runtime, book, schedule="weekly"))
    assert weekly == A
    assert pinned(runtime, create(runtime, book)) == B
    # An hourly connection weighs 24 daily ones: C (hourly + daily) is still lighter
    # than A and B (hourly + hourly-ish) for the next daily connection.
    assert pinned(runtime, create(runtime, book, schedule="daily")) == C


def test_each_connection_is_written_by_its_pinned_account_only(
    runtime, fake_sheets, campaign
) -> None:
    connections: dict[int, tuple[str, str]] = {}
    for n in range(6):
        # Each book is shared with every account, so a wrong account would succeed: only
        # the fake's log of who wrote can tell.
        book = fake_sheets.create_spreadsheet(f"Book {n}", shared_with=(A, B, C))
        cid = create(runtime, book)
        connections[cid] = (book, pinned(runtime, cid) or "")
    assert sorted(email for _, email in connections.values()) == [A, A, B, B, C, C]
    with session_scope(runtime.session_factory) as s:
        take_write_lock(s)
        for cid in connections:
            connection = s.get(Connection, cid)
            assert connection is not None
            store.enqueue_run(s, connection, "manual")
    Worker(runtime, concurrency=2).drain()
    with runtime.session_factory() as s:
        assert set(s.scalars(select(SyncRun.status))) == {"succeeded"}
    for book, email in connections.values():
        writers = {c.email for c in fake_sheets.calls
                   if c.spreadsheet_id == book and c.kind != "token"}
        assert writers == {email}
        assert fake_sheets.count("batchUpdate", book, status=200) == 1
    # Each write spent its own account's permit and its project's.
    with runtime.session_factory() as s:
        names = list(s.scalars(select(RateLimitGrant.name)))
    assert names.count(f"sheets:write:{A}") == 2
    assert names.count("sheets:project:write:proj-one") == 4
    assert names.count("sheets:project:write:proj-two") == 2


def test_an_unshared_sheet_names_the_connection_s_own_account(
    runtime, fake_sheets, campaign
) -> None:
    book = fake_sheets.create_spreadsheet("Shared with A only", shared_with=(A,))
    create(runtime, book)  # A
    second = create(runtime, book)  # B: the sheet is not shared with it
    assert pinned(runtime, second) == B
    result = run_connection_now(runtime, second)
    assert not result.ok and result.error_code == "sheet_not_shared"
    assert f"Share the sheet with {B} as Editor" in (result.error_message or "")


def test_a_removed_key_fails_its_connections_and_never_repins_them(
    runtime, fake_sheets, campaign, key_files
) -> None:
    book = fake_sheets.create_spreadsheet("Book", shared_with=(A, B, C))
    create(runtime, book)
    moved_away = create(runtime, book)
    assert pinned(runtime, moved_away) == B
    # The operator drops B's key file from the pool.
    runtime.settings = runtime.settings.model_copy(
        update={"service_account_files": f"{key_files[A]},{key_files[C]}"}
    )
    fake_sheets.reset_calls()
    result = run_connection_now(runtime, moved_away)
    assert not result.ok and result.error_code == "service_account_removed"
    message = result.error_message or ""
    assert B in message and "no longer has that account's key" in message
    assert f"sheets-sync connections move {moved_away} --to EMAIL" in message
    assert pinned(runtime, moved_away) == B  # not silently moved to A or C
    assert fake_sheets.count("batchUpdate") == 0
    # A worker does not leave such a run waiting for a permit of an account it has no
    # key for: it takes it (with the primary's permit, given back) and fails it.
    with session_scope(runtime.session_factory) as s:
        take_write_lock(s)
        connection = s.get(Connection, moved_away)
        assert connection is not None
        store.enqueue_run(s, connection, "manual")
    Worker(runtime).drain()
    with runtime.session_factory() as s:
        last = s.scalars(
            select(SyncRun).where(SyncRun.connection_id == moved_away).order_by(SyncRun.id)
        ).all()[-1]
        assert (last.status, last.error_code) == ("failed", "service_account_removed")
        assert not list(s.scalars(select(RateLimitGrant.name).where(
            RateLimitGrant.name == f"sheets:write:{A}")))


def test_a_connection_from_before_the_pool_is_pinned_by_its_first_refresh(
    runtime, fake_sheets, campaign
) -> None:
    book = fake_sheets.create_spreadsheet("Old", shared_with=(A,))
    old = create(runtime, book, pool=False)
    assert pinned(runtime, old) is None
    with runtime.session_factory() as s:
        connection = s.get(Connection, old)
        assert connection is not None
        assert runtime.service_account_email_for(connection) == A
    assert run_connection_now(runtime, old).ok
    assert pinned(runtime, old) == A


def test_connections_move_pins_explicitly_and_says_to_share(
    runtime, fake_sheets, settings, monkeypatch, capsys
) -> None:
    book = fake_sheets.create_spreadsheet("Book", shared_with=(A,))
    cid = create(runtime, book)
    assert pinned(runtime, cid) == A
    monkeypatch.setenv("SHEETS_SYNC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SHEETS_SYNC_SERVICE_ACCOUNT_FILES", settings.service_account_files)
    assert main(["connections", "move", str(cid), "--to", C]) == 0
    out = capsys.readouterr().out
    assert f"moved from {A} to {C}" in out
    assert f"must be shared with {C} as Editor" in out
    assert pinned(runtime, cid) == C
    # An address the pool has no key for is refused, and nothing changes.
    stranger = "stranger@x.iam.gserviceaccount.com"
    assert main(["connections", "move", str(cid), "--to", stranger]) == 2
    err = capsys.readouterr().err
    assert "not one of the service accounts" in err and A in err
    assert pinned(runtime, cid) == C
    assert main(["connections", "move", "999", "--to", A]) == 2
    assert "There is no connection 999" in capsys.readouterr().err


def test_the_api_shows_the_connection_s_address(
    runtime, fake_sheets, client
) -> None:
    from sheets_sync.store.db import session_scope as scope

    with scope(runtime.session_factory) as s:
        user = store.create_user(s, "api@example.com", "correct horse battery")
        s.flush()
        _, key = store.create_api_key(s, user, "tests")
    headers = {"Authorization": f"Bearer {key}"}
    emails = []
    for n in range(2):
        book = fake_sheets.create_spreadsheet(f"API {n}", shared_with=(A, B, C))
        response = client.post("/api/v1/connections", headers=headers, json={
            "name": f"API {n}", "instantly_api_key": INSTANTLY_KEY,
            "spreadsheet_url": f"https://docs.google.com/spreadsheets/d/{book}/edit",
            "schedule": "hourly",
        })
        assert response.status_code == 201, response.get_data(as_text=True)
        emails.append(response.get_json()["service_account_email"])
        # Read-only: a PATCH cannot move a connection (unknown fields are refused).
        url = f"/api/v1/connections/{response.get_json()['id']}"
        patched = client.patch(url, headers=headers, json={"service_account_email": C})
        assert patched.status_code == 422, patched.get_data(as_text=True)
        assert client.get(url, headers=headers).get_json()["service_account_email"] == emails[-1]
    assert emails == [A, B]
    listed = client.get("/api/v1/connections", headers=headers).get_json()["connections"]
    assert [c["service_account_email"] for c in listed] == [A, B]
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    field = schema["ConnectionOut"]["properties"]["service_account_email"]
    assert field.get("readOnly") is True


def test_the_page_shows_each_connection_s_address(runtime, fake_sheets, client, auth) -> None:
    auth.signup()
    for n in range(2):
        book = fake_sheets.create_spreadsheet(f"Page {n}", shared_with=(A, B, C))
        create_for_page_user(runtime, book)
    page = client.get("/").get_data(as_text=True)
    assert '<code id="sa-email-' in page
    assert A in page and B in page
    assert "Share each sheet with its connection's address" in page
    # A new connection's form names the account it will get: the least loaded one (C).
    form = client.get("/connections/new").get_data(as_text=True)
    assert f"Share the sheet with <code>{C}</code>" in form


def create_for_page_user(runtime, spreadsheet_id: str) -> None:
    with session_scope(runtime.session_factory) as s:
        take_write_lock(s)
        user = s.scalars(select(User).order_by(User.id)).first()
        assert user is not None
        store.create_connection(
            s, user, fernet=runtime.fernet, name="Page", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
            schedule="hourly", service_accounts=runtime.service_account_emails,
        )

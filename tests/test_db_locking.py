"""Transactions and locks: on SQLite, reads never wait for a writer and read-then-write
units never fail with "database is locked"; on both dialects, SQL parameters never show
up in exception text.

The SQLite tests hold the write lock from a raw ``sqlite3`` connection (as another
process would) and raise ``busy_timeout`` to a minute, so a request that does wait for
the lock cannot finish within the join timeout below: "answered while the lock was
held" then means "did not wait", with no timing assertion finer than ten seconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import MultiFernet
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sheets_sync import store
from sheets_sync.jobs.quota import SHEETS_WRITE, QuotaBudget
from sheets_sync.store import db, migrate
from sheets_sync.store.db import make_engine, make_session_factory, session_scope, take_write_lock
from sheets_sync.store.models import Connection, SyncRun, User
from tests.plugin_web import csrf_token

SHEET = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"
# Far below busy_timeout (patched to 60 s below), far above any request's own time.
JOIN_SECONDS = 10.0


@pytest.fixture
def patient_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections opened from now on wait a minute for a busy lock (read at connect)."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 60_000)


@pytest.fixture
def settings(tmp_path: Path, patient_sqlite: None) -> Any:
    # No network fakes: nothing here syncs. Requesting patient_sqlite here makes it apply
    # before the runtime opens its first connection.
    from sheets_sync.config import Settings

    return Settings(
        data_dir=tmp_path / "instance",
        instantly_api_url="http://127.0.0.1:9",
        sheets_api_url="http://127.0.0.1:9",
    )


@contextmanager
def write_lock_held_elsewhere(database: str) -> Iterator[None]:
    """Another connection holds SQLite's write lock for the duration (BEGIN IMMEDIATE)."""
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        # It really is held: nobody else can take it, not even for a moment.
        probe = sqlite3.connect(database, isolation_level=None, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                probe.execute("BEGIN IMMEDIATE")
        finally:
            probe.close()
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def run_while_locked(database: str, work: Callable[[], Any]) -> Any:
    """``work()`` in a thread while the write lock is held elsewhere; its result, or a
    failure if it was still waiting after ``JOIN_SECONDS``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    with write_lock_held_elsewhere(database):
        thread.start()
        thread.join(JOIN_SECONDS)
        finished_while_locked = not thread.is_alive()
    thread.join(90)  # it may go on once the lock is released; let it end either way
    assert finished_while_locked, "waited for the write lock held by another connection"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def sqlite_path(engine: Engine) -> str:
    assert engine.dialect.name == "sqlite"
    assert engine.url.database
    return engine.url.database


# --- reads do not wait ------------------------------------------------------------------


def test_api_reads_and_pages_answer_while_another_connection_holds_the_write_lock(
    client, auth, runtime
) -> None:
    auth.signup()
    with session_scope(runtime.session_factory, write=True) as s:
        user = store.get_user_by_email(s, "ann@example.com")
        assert user is not None
        _key, api_key = store.create_api_key(s, user, "reader")
        connection = store.create_connection(
            s, user, fernet=runtime.fernet, name="Outbound", instantly_api_key="k" * 24,
            spreadsheet_url=SHEET,
        )
        run, _ = store.enqueue_run(s, connection, "manual")
        cid, rid = connection.id, run.id
    headers = {"Authorization": f"Bearer {api_key}"}
    # The key's first use is stamped (a write, once a minute); later reads write nothing.
    assert client.get("/api/v1/connections", headers=headers).status_code == 200

    api_paths = [
        "/api/v1/connections",
        f"/api/v1/connections/{cid}",
        f"/api/v1/connections/{cid}/runs",
        f"/api/v1/runs/{rid}",
    ]
    page_paths = ["/", f"/connections/{cid}/runs", f"/connections/{cid}/runs/{rid}.json"]

    def read_everything() -> dict[str, int]:
        statuses = {p: client.get(p, headers=headers).status_code for p in api_paths}
        statuses.update({p: client.get(p).status_code for p in page_paths})
        return statuses

    statuses = run_while_locked(sqlite_path(runtime.engine), read_everything)
    assert statuses == dict.fromkeys(api_paths + page_paths, 200)


def test_sign_in_answers_while_another_connection_holds_the_write_lock(
    client, auth, runtime
) -> None:
    auth.signup()
    auth.logout()
    page = client.get("/login").get_data(as_text=True)
    form = {
        "email": "ann@example.com",
        "password": "correct horse battery",
        "csrf_token": csrf_token(page),
    }
    response = run_while_locked(
        sqlite_path(runtime.engine), lambda: client.post("/login", data=form)
    )
    assert response.status_code == 302


def test_a_read_session_leaves_the_write_lock_free(tmp_path: Path, patient_sqlite: None) -> None:
    factory, engine = _sqlite_factory(tmp_path)
    try:
        with session_scope(factory) as s:
            assert s.scalar(select(User)) is None  # an open read transaction
            other = sqlite3.connect(sqlite_path(engine), isolation_level=None, timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")  # would raise "locked" if we held it
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        engine.dispose()


# --- take_write_lock --------------------------------------------------------------------


def test_take_write_lock_holds_the_lock_and_refuses_a_transaction_that_already_read(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_scope(session_factory) as s:
        take_write_lock(s)
        take_write_lock(s)  # again in the same transaction: nothing to do
        if engine.dialect.name == "sqlite":
            probe = sqlite3.connect(sqlite_path(engine), isolation_level=None, timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    probe.execute("BEGIN IMMEDIATE")
            finally:
                probe.close()

    with session_scope(session_factory) as s:
        s.scalar(select(User))
        if engine.dialect.name == "sqlite":
            with pytest.raises(RuntimeError, match="take_write_lock"):
                take_write_lock(s)
            # ...and so does every store function that writes, called after a bare read.
            with pytest.raises(RuntimeError, match="take_write_lock"):
                store.create_user(s, "late@example.com", "pw")
        else:
            take_write_lock(s)  # PostgreSQL: row locks do the job; nothing to take

    # The next transaction of the same session starts afresh.
    with session_scope(session_factory) as s:
        s.scalar(select(User))
    with session_scope(session_factory, write=True) as s:
        s.scalar(select(User))
        store.create_user(s, "ok@example.com", "pw")
    with session_scope(session_factory) as s:
        assert s.scalar(select(User.email)) == "ok@example.com"


# --- writers never fail -----------------------------------------------------------------


def _sqlite_factory(tmp_path: Path) -> tuple[sessionmaker[Session], Engine]:
    url = f"sqlite:///{tmp_path / 'locking.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    return make_session_factory(engine), engine


def test_concurrent_writers_never_see_database_is_locked(
    tmp_path: Path, fernet: MultiFernet, patient_sqlite: None
) -> None:
    """Threads queue, claim and finish runs, take and refund permits, expire leases and
    read, all at once on one SQLite file. A deferred transaction that read and then
    wrote would fail here at once with "database is locked" (busy_timeout does not
    apply to that upgrade); every write unit taking the lock first makes them wait."""
    factory, engine = _sqlite_factory(tmp_path)
    writers, readers, rounds = 6, 2, 10
    try:
        with session_scope(factory) as s:
            user = store.create_user(s, "owner@example.com", "pw")
            ids = [
                store.create_connection(
                    s, user, fernet=fernet, name=f"c{i}", instantly_api_key="k" * 24,
                    spreadsheet_url=SHEET,
                ).id
                for i in range(writers * 2)
            ]
            user_id = user.id
        budget = QuotaBudget(factory, window=60.0)
        errors: list[BaseException] = []
        finished: list[int] = []
        done = threading.Event()
        start = threading.Barrier(writers + readers)

        def writer(i: int) -> None:
            try:
                start.wait(timeout=30)
                for n in range(rounds):
                    # The web Refresh: look the connection up, then queue a run.
                    with session_scope(factory, write=True) as s:
                        connection = s.get(Connection, ids[(i + n) % len(ids)])
                        assert connection is not None
                        store.enqueue_run(s, connection, "manual")
                    grant = budget.try_acquire(SHEETS_WRITE, 1_000_000, pending_for=60)
                    assert grant.id is not None
                    with factory() as s, s.begin():
                        run = store.claim_next_run(s, f"worker-{i}", 60)
                        run_id = run.id if run is not None else None
                    if run_id is None:
                        budget.refund(grant.id)
                    else:
                        budget.touch(grant.id)
                        with factory() as s, s.begin():
                            assert store.finish_run(s, run_id, status="succeeded")
                        finished.append(run_id)
                    budget.cooldown(f"instantly:{i}", 0.001)
                    with factory() as s, s.begin():
                        store.expire_leases(s)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        def reader() -> None:
            try:
                start.wait(timeout=30)
                # A pause between reads, or the readers' Python work starves the writers
                # of the GIL while they hold the lock, and the test just gets slow.
                while not done.wait(0.005):
                    with session_scope(factory) as s:
                        owner = s.get(User, user_id)
                        assert owner is not None
                        store.last_runs(s, store.list_connections(s, owner))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        write_threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
        read_threads = [threading.Thread(target=reader) for _ in range(readers)]
        for t in write_threads + read_threads:
            t.start()
        for t in write_threads:
            t.join(120)
        done.set()
        for t in read_threads:
            t.join(30)
        assert not any(t.is_alive() for t in write_threads + read_threads)
        assert errors == [], errors[:3]

        with session_scope(factory) as s:
            statuses = list(s.scalars(select(SyncRun.status)))
        assert len(finished) == len(set(finished)) == statuses.count("succeeded")
        assert set(statuses) <= {"queued", "succeeded"}
        assert finished
    finally:
        engine.dispose()


# --- parameters stay out of error text -------------------------------------------------


def test_sql_parameters_never_show_in_exception_text(
    db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    secret_hash = "scrypt:32768:8:1$NotARealSalt$0123456789abcdef-secret-hash"
    with session_scope(session_factory) as s:
        s.add(User(email="ann@example.com", password_hash="first"))
    with pytest.raises(IntegrityError) as duplicate:
        with session_scope(session_factory) as s:
            s.add(User(email="ann@example.com", password_hash=secret_hash))
    assert secret_hash not in str(duplicate.value)
    assert "hidden due to hide_parameters" in str(duplicate.value)

    with pytest.raises(DBAPIError) as failing:
        with db_engine.connect() as conn:
            conn.execute(
                text("SELECT * FROM no_such_table WHERE secret = :secret"),
                {"secret": secret_hash},
            )
    assert secret_hash not in str(failing.value)
    assert secret_hash not in repr(failing.value)

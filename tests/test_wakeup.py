"""Workers woken by PostgreSQL NOTIFY instead of waiting for their next poll.

The workers here poll every 30 s, so a run picked up within ``WAKE_BOUND`` seconds of
being queued from another connection was picked up because of the notification. The
real worker process is tested in test_worker_processes.py. Tests marked ``postgres`` are
skipped without PostgreSQL locally and fail under CI=true (see tests/db_fixtures.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.jobs import worker as worker_module
from sheets_sync.jobs.runtime import Runtime, build_runtime
from sheets_sync.jobs.sync import RunResult
from sheets_sync.jobs.wakeup import RUNS_CHANNEL, QueueListener
from sheets_sync.jobs.worker import Worker
from sheets_sync.store import migrate
from sheets_sync.store.db import make_engine, make_session_factory, session_scope
from sheets_sync.store.models import Connection, User
from tests.db_fixtures import _admin_engine

SHEET = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"
POLL = 30.0
# Far below POLL, far above the milliseconds a notification takes even on a busy machine.
WAKE_BOUND = 5.0
SETUP_BOUND = 20.0


@pytest.fixture
def runtime_pg(postgres_url: str, tmp_path: Path) -> Iterator[Runtime]:
    migrate.upgrade(postgres_url)
    settings = Settings(
        data_dir=tmp_path / "instance",
        database_url=postgres_url,
        instantly_api_url="http://127.0.0.1:9",
        sheets_api_url="http://127.0.0.1:9",
    )
    rt = build_runtime(settings)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def elsewhere(postgres_url: str) -> Iterator[Engine]:
    """Another engine on the same database, standing in for another process."""
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def add_connection(engine: Engine, rt: Runtime) -> int:
    with session_scope(make_session_factory(engine)) as s:
        user = User(email="owner@example.com", password_hash="unused")
        s.add(user)
        s.flush()
        connection = store.create_connection(
            s, user, fernet=rt.fernet, name="Outbound", instantly_api_key="k" * 24,
            spreadsheet_url=SHEET,
        )
        return connection.id


def queue_run(engine: Engine, connection_id: int) -> int:
    with session_scope(make_session_factory(engine), write=True) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        run, created = store.enqueue_run(s, connection, "api")
        assert created
        return run.id


def terminate(pid: int) -> None:
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
    finally:
        admin.dispose()


class StubbedSyncs:
    """Stands in for ``execute_run``: records when each run was started and finishes it."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.changed = threading.Condition()

    def __call__(self, rt: Runtime, run_id: int) -> RunResult:
        with rt.session_factory() as s, s.begin():
            store.finish_run(s, run_id, status="succeeded", rows_written=0)
        with self.changed:
            self.started[run_id] = time.monotonic()
            self.changed.notify_all()
        return RunResult(run_id, True, "succeeded", 0, None, None, None)

    def wait_for(self, run_id: int, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: run_id in self.started, timeout)
            return self.started.get(run_id)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> StubbedSyncs:
    stub = StubbedSyncs()
    monkeypatch.setattr(worker_module, "execute_run", stub)
    return stub


def idle_worker(rt: Runtime) -> tuple[Worker, threading.Event]:
    """A started worker polling every 30 s; the event is set once it found the queue
    empty, i.e. it has looked and is now waiting."""
    worker = Worker(rt, concurrency=1, idle_poll=POLL)
    found_nothing = threading.Event()
    claim = worker.claim_one

    def claim_and_note() -> int | None:
        run_id = claim()
        if run_id is None:
            found_nothing.set()
        return run_id

    worker.claim_one = claim_and_note  # type: ignore[method-assign]
    worker.start()
    return worker, found_nothing


@pytest.mark.postgres
def test_a_run_queued_elsewhere_wakes_an_idle_worker_at_once(
    runtime_pg: Runtime, elsewhere: Engine, syncs: StubbedSyncs
) -> None:
    connection_id = add_connection(elsewhere, runtime_pg)
    worker, found_nothing = idle_worker(runtime_pg)
    try:
        assert worker.listener is not None
        assert worker.listener.wait_listening(timeout=SETUP_BOUND)
        assert found_nothing.wait(SETUP_BOUND), "the worker never looked at the queue"
        for _ in range(3):
            queued = time.monotonic()
            run_id = queue_run(elsewhere, connection_id)  # no in-process wake-up
            started = syncs.wait_for(run_id, WAKE_BOUND)
            assert started is not None, f"run {run_id} waited for the {POLL:.0f} s poll"
            print(f"queued -> started in {(started - queued) * 1000:.0f} ms")
    finally:
        worker.stop(timeout=10)
    assert worker.listener.backend_pid is None  # stop() closed the listen connection


@pytest.mark.postgres
def test_a_killed_listen_connection_reconnects_and_wakes_the_worker_again(
    runtime_pg: Runtime, elsewhere: Engine, syncs: StubbedSyncs
) -> None:
    connection_id = add_connection(elsewhere, runtime_pg)
    worker, found_nothing = idle_worker(runtime_pg)
    listener = worker.listener
    assert listener is not None
    try:
        assert listener.wait_listening(timeout=SETUP_BOUND) == 1
        assert found_nothing.wait(SETUP_BOUND)
        first_pid = listener.backend_pid
        assert first_pid is not None
        terminate(first_pid)
        assert listener.wait_listening(after=1, timeout=SETUP_BOUND) == 2, "no reconnect"
        assert listener.backend_pid not in (None, first_pid)

        queued = time.monotonic()
        run_id = queue_run(elsewhere, connection_id)
        started = syncs.wait_for(run_id, WAKE_BOUND)
        assert started is not None, "the reconnected listener did not wake the worker"
        print(f"after reconnect: queued -> started in {(started - queued) * 1000:.0f} ms")
        assert all(t.is_alive() for t in worker._threads), "a worker thread died"
    finally:
        worker.stop(timeout=10)


@pytest.mark.postgres
def test_the_notification_is_sent_on_commit_only(
    runtime_pg: Runtime, elsewhere: Engine, postgres_url: str
) -> None:
    connection_id = add_connection(elsewhere, runtime_pg)
    cargs, cparams = elsewhere.dialect.create_connect_args(elsewhere.url)
    with psycopg.connect(*cargs, **cparams, autocommit=True) as listen:
        listen.execute(f"LISTEN {RUNS_CHANNEL}")
        with make_session_factory(elsewhere)() as s:
            connection = s.get(Connection, connection_id)
            assert connection is not None
            _run, created = store.enqueue_run(s, connection, "api")
            assert created
            s.rollback()
        # A notification takes milliseconds; none may come for a rolled-back run.
        schema = listen.execute("SELECT current_schema()").fetchone()[0]

        def ours(notifies: Any) -> list[Any]:
            # Other test runs may share the database (and the channel), not the schema.
            return [n for n in notifies if n.payload == schema]

        assert ours(listen.notifies(timeout=0.5)) == []
        queue_run(elsewhere, connection_id)
        received: list[Any] = []
        deadline = time.monotonic() + WAKE_BOUND
        while not received and time.monotonic() < deadline:
            received = ours(listen.notifies(timeout=0.2, stop_after=1))
        assert [n.channel for n in received] == [RUNS_CHANNEL]


def test_the_listener_backs_off_while_the_server_is_unreachable() -> None:
    # A port nobody listens on: every attempt fails at once. The thread keeps trying
    # (never raises, never calls back) and stops when asked.
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    woken = threading.Event()
    listener = QueueListener(engine, woken.set, min_backoff=0.05, max_backoff=0.2)
    listener.start()
    try:
        assert listener.wait_listening(timeout=1.0) is None
        assert not woken.is_set()
    finally:
        listener.stop()
        engine.dispose()
    assert listener.backend_pid is None


def test_sqlite_workers_do_not_listen(runtime: Runtime) -> None:
    worker = Worker(runtime)
    assert worker.listener is None
    worker.start()
    worker.stop(timeout=5)

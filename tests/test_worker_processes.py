"""Real worker processes on real PostgreSQL against the local fakes.

Each test starts ``python -m sheets_sync.cli worker`` subprocesses (the same code as the
``sheets-sync worker`` command) pointed at a fresh PostgreSQL schema and at fakes served
by this test process, then checks the outcome in the database and in the fakes' call logs.
Skipped without PostgreSQL locally, failed under CI=true (see tests/db_fixtures.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.jobs.runtime import Runtime, build_runtime
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.migrate import upgrade
from sheets_sync.store.models import Connection, SyncRun
from tests.fakes.instantly_api import FakeInstantlyServer
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info
from tests.worker_helpers import (
    SERVICE_ACCOUNT_EMAIL,
    add_connections,
    make_user,
    runs_by_status,
    start_worker,
    worker_env,
)

pytestmark = pytest.mark.postgres

API_KEY = "proc-test-instantly-key-77aa"
# How many due connections 4 processes must each sync exactly once. The issue asks for 500;
# with the fakes in this process that takes ~15-25 s on a 2-core machine.
MANY = 500


class Stack:
    def __init__(self, rt: Runtime, settings: Settings, sheets: FakeSheetsServer,
                 instantly: FakeInstantlyServer, tmp: Path) -> None:
        self.rt, self.settings, self.sheets, self.instantly, self.tmp = (
            rt, settings, sheets, instantly, tmp)
        self.procs: list[subprocess.Popen[bytes]] = []

    def spreadsheets(self, n: int) -> list[str]:
        return [
            self.sheets.create_spreadsheet(f"Book {i}", shared_with=(SERVICE_ACCOUNT_EMAIL,))
            for i in range(n)
        ]

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        proc = start_worker(
            worker_env(self.settings, **env), *args,
            log_path=self.tmp / f"worker-{len(self.procs)}.log",
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log")))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; runs={runs_by_status(stack.rt)}\n"
                         f"{stack.logs()[-4000:]}")


@pytest.fixture
def make_stack(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def build(*, sheets: FakeSheetsServer | None = None, **settings_overrides: object) -> Stack:
        sheets = sheets or FakeSheetsServer(
            reads_per_minute=1_000_000, writes_per_minute=1_000_000,
            project_reads_per_minute=1_000_000, project_writes_per_minute=1_000_000,
        )
        sheets.start()
        info = make_service_account_info(sheets.token_uri, SERVICE_ACCOUNT_EMAIL)
        sheets.register_service_account(info)
        sa_file = tmp_path / "service-account.json"
        sa_file.write_text(json.dumps(info))
        instantly = FakeInstantlyServer().start()
        workspace = instantly.add_workspace(API_KEY)
        campaign = workspace.add_campaign("Q1 outbound")
        workspace.record(campaign, dt.date(2026, 1, 5), step=0, variant=0, sent=40, replies=2)
        settings = Settings(
            data_dir=tmp_path / "instance",
            database_url=postgres_url,
            instantly_api_url=instantly.url,
            sheets_api_url=sheets.url,
            google_application_credentials=sa_file,
            retry_max_wait=5.0,
            **settings_overrides,  # type: ignore[arg-type]
        )
        upgrade(settings.resolved_database_url)
        rt = build_runtime(settings)
        stack = Stack(rt, settings, sheets, instantly, tmp_path)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        for proc in stack.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        stack.rt.engine.dispose()
        stack.sheets.stop()
        stack.instantly.stop()


def _due(minutes: int = 1) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)


GENEROUS = {
    "SHEETS_SYNC_SHEETS_WRITES_PER_MINUTE": "1000000",
    "SHEETS_SYNC_SHEETS_READS_PER_MINUTE": "1000000",
    "SHEETS_SYNC_INSTANTLY_REQUESTS_PER_MINUTE": "1000000",
}


def test_four_processes_sync_each_due_connection_exactly_once(make_stack) -> None:
    stack = make_stack()
    books = stack.spreadsheets(MANY)
    user_id = make_user(stack.rt)
    ids = add_connections(stack.rt, user_id, books, api_key=API_KEY, due_at=_due())

    started = time.monotonic()
    for _ in range(4):
        stack.start("--concurrency", "6", "--poll", "0.2", **GENEROUS)
    wait_for(lambda: runs_by_status(stack.rt).get("succeeded", 0) >= MANY, 120,
             "every due connection to sync", stack)
    elapsed = time.monotonic() - started
    # Give a double run the chance to show up before counting.
    time.sleep(1.0)

    for proc in stack.procs:
        proc.send_signal(signal.SIGTERM)
    for proc in stack.procs:
        assert proc.wait(30) == 0

    assert runs_by_status(stack.rt) == {"succeeded": MANY}
    with stack.rt.session_factory() as s:
        per_connection = {cid: 0 for cid in ids}
        workers = set()
        for run in s.scalars(select(SyncRun)):
            per_connection[run.connection_id] += 1
            workers.add(run.worker_id.rsplit(":", 2)[1])
    assert set(per_connection.values()) == {1}
    assert len(workers) == 4, "every process took part"
    writes = {ssid: stack.sheets.count("batchUpdate", ssid, status=200) for ssid in books}
    assert set(writes.values()) == {1}, "each spreadsheet written exactly once in this slot"
    assert stack.sheets.status_counts().get(429) is None
    print(f"{MANY} connections synced by 4 processes in {elapsed:.1f}s")


def test_a_killed_worker_s_run_is_retried_after_its_lease_expires(make_stack) -> None:
    stack = make_stack()
    # Slow Instantly: the sync is still fetching (no Sheets write yet) when the worker dies.
    stack.instantly.latency = 2.0
    books = stack.spreadsheets(1)
    user_id = make_user(stack.rt)
    [cid] = add_connections(stack.rt, user_id, books, api_key=API_KEY, due_at=_due())
    lease = ("--lease-seconds", "2", "--poll", "0.2")

    doomed = stack.start("--concurrency", "1", *lease, **GENEROUS)

    def running_on_doomed() -> bool:
        with stack.rt.session_factory() as s:
            run = s.scalar(select(SyncRun).where(SyncRun.status == "running"))
            return run is not None and f":{doomed.pid}:" in (run.worker_id or "")

    wait_for(running_on_doomed, 30, "the first worker to claim the run", stack)
    survivor = stack.start("--concurrency", "2", *lease, **GENEROUS)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)

    wait_for(lambda: runs_by_status(stack.rt).get("succeeded") == 1, 40,
             "another worker to retry the run", stack)
    with stack.rt.session_factory() as s:
        runs = list(s.scalars(select(SyncRun).where(SyncRun.connection_id == cid)
                              .order_by(SyncRun.id)))
    assert [(r.status, r.attempt) for r in runs] == [("interrupted", 1), ("succeeded", 2)]
    assert runs[0].error_code == "worker_lost"
    assert f":{survivor.pid}:" in (runs[1].worker_id or "")
    assert stack.sheets.count("batchUpdate", books[0], status=200) == 1
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(30) == 0


def test_the_writes_budget_holds_across_processes(make_stack) -> None:
    # Time runs 15x faster for the fake's per-minute quota and for our budget window, so
    # a "minute" lasts 4 s. Google (the fake) allows 25 writes a minute; our budget is 20.
    speed = 15.0
    sheets = FakeSheetsServer(
        reads_per_minute=1_000_000, writes_per_minute=25,
        project_reads_per_minute=1_000_000, project_writes_per_minute=1_000_000,
        clock=lambda: time.monotonic() * speed,
    )
    window = 60.0 / speed
    stack = make_stack(sheets=sheets, quota_window_seconds=window)
    audit_write_permits(stack, window + window / 60)
    count = 50
    books = stack.spreadsheets(count)
    user_id = make_user(stack.rt)
    add_connections(stack.rt, user_id, books, api_key=API_KEY, due_at=_due())
    env = {
        "SHEETS_SYNC_SHEETS_WRITES_PER_MINUTE": "20",
        "SHEETS_SYNC_SHEETS_READS_PER_MINUTE": "1000000",
        "SHEETS_SYNC_INSTANTLY_REQUESTS_PER_MINUTE": "1000000",
        "SHEETS_SYNC_QUOTA_WINDOW_SECONDS": str(window),
    }
    for _ in range(4):
        stack.start("--concurrency", "4", "--poll", "0.2", **env)
    wait_for(lambda: runs_by_status(stack.rt).get("succeeded", 0) >= count, 60,
             "the backlog to drain under the budget", stack)

    # The budget's promise, read from its own log: every permit's final time on the one
    # clock that granted it (the database server's, under the budget's lock), windows
    # computed on that same clock. A loaded machine delaying a call on its way to Google
    # cannot fail this. (Whether Google itself answers 429 depends on those delays, so
    # it is measured by benchmarks/pool_budgets.py, not asserted here; a 429 would only
    # cost a retry, and every run below still writes exactly once.)
    assert max_permits_in_a_window(stack, window + window / 60) <= 20
    assert runs_by_status(stack.rt) == {"succeeded": count}
    assert all(stack.sheets.count("batchUpdate", b, status=200) == 1 for b in books)
    # The scheduler said how long the backlog would take instead of hammering Google.
    assert "backlog queued=" in stack.logs()


def audit_write_permits(stack: Stack, span: float) -> None:
    """Keep every write permit's final time (a permit is re-dated when its call is made)
    in a side table; a refund (deleted while it still counts) is dropped, while pruning
    (deleted once it stopped counting) keeps it."""
    with stack.rt.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE permit_audit (id integer PRIMARY KEY, granted_at double precision)"
        )
        conn.exec_driver_sql("""
            CREATE FUNCTION permit_audit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    IF OLD.granted_at > extract(epoch from clock_timestamp()) - SPAN THEN
                        DELETE FROM permit_audit WHERE id = OLD.id;  -- a refund
                    END IF;
                    RETURN OLD;
                END IF;
                IF NEW.name = 'sheets:write:EMAIL' THEN
                    INSERT INTO permit_audit VALUES (NEW.id, NEW.granted_at)
                    ON CONFLICT (id) DO UPDATE SET granted_at = EXCLUDED.granted_at;
                END IF;
                RETURN NEW;
            END $$""".replace("SPAN", repr(span)).replace("EMAIL", SERVICE_ACCOUNT_EMAIL))
        conn.exec_driver_sql(
            "CREATE TRIGGER permit_audit AFTER INSERT OR UPDATE OR DELETE ON rate_limit_grants "
            "FOR EACH ROW EXECUTE FUNCTION permit_audit()"
        )


def max_permits_in_a_window(stack: Stack, span: float) -> int:
    with stack.rt.engine.connect() as conn:
        times = sorted(conn.exec_driver_sql("SELECT granted_at FROM permit_audit").scalars())
    assert times, "no write permit was logged"
    start, most = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - span:
            start += 1
        most = max(most, end - start + 1)
    return most


# Far below the 30 s poll of the worker below, far above what a notification takes.
WAKE_BOUND = 5.0


def listen_backends(stack: Stack) -> list[int]:
    """Server pids of the LISTEN connections of this test's worker processes (they share
    the test schema's application_name)."""
    with stack.rt.engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND application_name = current_setting('application_name') "
            "AND query LIKE 'LISTEN %' ORDER BY pid"
        )).scalars())


def queue_and_wait_started(stack: Stack, connection_id: int) -> float:
    """Queue a run from this process (no in-process wake-up reaches the worker); seconds
    from queueing to the worker starting it, failing after WAKE_BOUND."""
    with stack.rt.session_factory() as s, s.begin():
        take_write_lock(s)
        run, created = store.enqueue_run(s, s.get(Connection, connection_id), "api")
        assert created
        run_id = run.id

    def started() -> bool:
        with stack.rt.session_factory() as s:
            return s.get(SyncRun, run_id).status != "queued"  # type: ignore[union-attr]

    wait_for(started, WAKE_BOUND, f"run {run_id} to start before the worker's next poll",
             stack)
    wait_for(lambda: runs_by_status(stack.rt).keys() == {"succeeded"}, 30,
             f"run {run_id} to finish", stack)
    with stack.rt.session_factory() as s:
        done = s.get(SyncRun, run_id)
        assert done is not None and done.started_at is not None
        return (done.started_at - done.queued_at).total_seconds()


def test_a_queued_run_wakes_a_worker_process_and_a_lost_listen_connection_comes_back(
    make_stack,
) -> None:
    stack = make_stack()
    books = stack.spreadsheets(1)
    user_id = make_user(stack.rt)
    [cid] = add_connections(stack.rt, user_id, books, api_key=API_KEY, schedule="off")
    proc = stack.start("--concurrency", "2", "--poll", "30", **GENEROUS)
    wait_for(lambda: len(listen_backends(stack)) == 1, 30, "the worker to LISTEN", stack)
    [first] = listen_backends(stack)

    seconds = queue_and_wait_started(stack, cid)
    print(f"queued -> started by the worker process in {seconds * 1000:.0f} ms")

    with stack.rt.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    wait_for(lambda: listen_backends(stack) not in ([], [first]), 30,
             "the worker to LISTEN again", stack)
    seconds = queue_and_wait_started(stack, cid)
    print(f"after the reconnect: queued -> started in {seconds * 1000:.0f} ms")
    assert proc.poll() is None, "losing the listen connection stopped the worker"
    assert "listen connection for queued runs lost" in stack.logs()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert stack.sheets.count("batchUpdate", books[0], status=200) == 2

"""Workers on SQLite (the embedded default): no double runs between threads and the
embedded worker, housekeeping, the cron-style bounded drain and ``worker --once``."""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import event

from sheets_sync import store
from sheets_sync.cli.main import main
from sheets_sync.jobs.scheduler import enqueue_due
from sheets_sync.jobs.worker import EmbeddedWorker, Worker, run_due
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import Connection, SyncRun
from tests.plugin_fakes import SERVICE_ACCOUNT_EMAIL
from tests.worker_helpers import (
    add_connections,
    make_user,
    queue_run,
    runs_by_status,
    runs_of,
    wait_until_finished,
)

KEY = "worker-test-instantly-key-1a2b"


def books(fake_sheets, n: int) -> list[str]:
    return [fake_sheets.create_spreadsheet(f"W{i}", shared_with=(SERVICE_ACCOUNT_EMAIL,))
            for i in range(n)]


def past(minutes: int = 1) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)


def test_two_threads_and_the_embedded_worker_never_double_run(
    runtime, fake_sheets, fake_instantly
) -> None:
    # Many runs in a few seconds: lift the Sheets budget (tested in test_quota.py).
    runtime.settings = runtime.settings.model_copy(
        update={"sheets_writes_per_minute": 100_000, "sheets_reads_per_minute": 100_000}
    )
    fake_instantly.add_workspace(KEY)
    fake_instantly.latency = 0.02
    ids = add_connections(runtime, make_user(runtime), books(fake_sheets, 12), api_key=KEY,
                          due_at=past())
    pool = Worker(runtime, concurrency=2, idle_poll=0.05, before_claim=lambda: enqueue_due(runtime))
    embedded = EmbeddedWorker(runtime, idle_poll=0.05)
    pool.start()
    embedded.start()
    try:
        # People keep clicking Refresh while the workers run.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with runtime.session_factory() as s, s.begin():
                take_write_lock(s)
                for cid in ids[::3]:
                    store.enqueue_run(s, s.get(Connection, cid), "manual")
            runtime.notify_enqueued()
            time.sleep(0.1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and set(runs_by_status(runtime)) - {
            "succeeded"
        }:
            time.sleep(0.05)
    finally:
        pool.stop()
        embedded.stop()

    assert set(runs_by_status(runtime)) == {"succeeded"}
    workers = set()
    for cid in ids:
        runs = runs_of(runtime, cid)
        workers |= {r.worker_id for r in runs}
        # Never two runs of one connection at once: their intervals do not overlap.
        spans = sorted((r.started_at, r.finished_at) for r in runs)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start
        c = runtime.session_factory()
        spreadsheet = c.get(Connection, cid).spreadsheet_id
        c.close()
        assert fake_sheets.count("batchUpdate", spreadsheet, status=200) == len(runs)
    assert {pool.worker_id, embedded.worker_id} <= workers


def test_run_due_is_bounded_and_reports(runtime, fake_sheets, fake_instantly) -> None:
    fake_instantly.add_workspace(KEY)
    add_connections(runtime, make_user(runtime), books(fake_sheets, 3), api_key=KEY,
                    due_at=past())
    result = run_due(runtime, max_seconds=20, concurrency=2)
    assert result["queued"] == 3 and result["ran"] == 3 and result["succeeded"] == 3
    assert result["backlog"]["queued"] == 0
    # Nothing starts after the deadline.
    add_connections(runtime, make_user(runtime), books(fake_sheets, 2), api_key=KEY,
                    due_at=past())
    result = run_due(runtime, max_seconds=0, concurrency=2)
    assert result["queued"] == 2 and result["ran"] == 0 and result["backlog"]["queued"] == 2


def test_housekeeping_prunes_old_history_once_an_hour(runtime, fake_sheets) -> None:
    [cid] = add_connections(runtime, make_user(runtime), books(fake_sheets, 1), api_key=KEY,
                            schedule="off")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=120)
    with runtime.session_factory() as s, s.begin():
        for n in range(3):
            s.add(SyncRun(connection_id=cid, status="failed", trigger="manual",
                          queued_at=old, started_at=old, finished_at=old + dt.timedelta(n)))
        s.add(SyncRun(connection_id=cid, status="succeeded", trigger="manual",
                      queued_at=old, started_at=old,
                      finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    Worker(runtime).drain()
    assert runs_by_status(runtime) == {"succeeded": 1}
    # The newest run stays even when it is old (the page shows it as the last result).
    with runtime.session_factory() as s, s.begin():
        s.add(SyncRun(connection_id=cid, status="failed", trigger="manual",
                      queued_at=old, started_at=old, finished_at=old))
    Worker(runtime).drain()  # within the hour: no second pruning
    assert runs_by_status(runtime) == {"succeeded": 1, "failed": 1}


def test_heartbeat_keeps_a_long_sync_s_lease(runtime, fake_sheets, fake_instantly) -> None:
    fake_instantly.add_workspace(KEY)
    fake_instantly.latency = 1.0  # the sync outlives the 0.6 s lease several times
    [cid] = add_connections(runtime, make_user(runtime), books(fake_sheets, 1), api_key=KEY,
                            due_at=past())
    worker = Worker(runtime, lease_seconds=0.6, before_claim=lambda: enqueue_due(runtime))
    other = Worker(runtime, lease_seconds=0.6)
    t = threading.Thread(target=worker.drain)
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and t.is_alive():
        other._housekeeping()  # would expire the lease if the heartbeat did not renew it
        time.sleep(0.1)
    t.join()
    assert [r.status for r in runs_of(runtime, cid)] == ["succeeded"]


def test_worker_once_command(monkeypatch, settings, fake_sheets, fake_instantly, capsys) -> None:
    from sheets_sync.jobs.runtime import build_runtime
    from sheets_sync.store.migrate import upgrade

    monkeypatch.setenv("SHEETS_SYNC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SHEETS_SYNC_INSTANTLY_API_URL", settings.instantly_api_url)
    monkeypatch.setenv("SHEETS_SYNC_SHEETS_API_URL", settings.sheets_api_url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                       str(settings.google_application_credentials))
    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings)
    fake_instantly.add_workspace(KEY)
    add_connections(rt, make_user(rt), books(fake_sheets, 2), api_key=KEY, due_at=past())
    rt.engine.dispose()
    assert main(["worker", "--once"]) == 0
    assert "Ran 2 sync(s): 2 succeeded." in capsys.readouterr().out


def test_runs_queued_one_after_another_do_not_each_rerun_the_housekeeping(
    runtime, fake_sheets, fake_instantly
) -> None:
    # Every process listening is woken by every run queued anywhere: if each wake-up
    # expired leases and queued due connections, a busy hour of clicks would multiply that
    # work by the number of processes.
    fake_instantly.add_workspace(KEY)
    (cid,) = add_connections(runtime, make_user(runtime), books(fake_sheets, 1), api_key=KEY)
    rounds: list[int] = []
    worker = Worker(runtime, idle_poll=3600, before_claim=lambda: rounds.append(1))
    worker.start()
    try:
        for _ in range(3):
            run_id = queue_run(runtime, cid)
            runtime.notify_enqueued()
            wait_until_finished(runtime, run_id)
    finally:
        worker.stop()
    assert [r.status for r in runs_of(runtime, cid)] == ["succeeded"] * 3
    assert len(rounds) == 1


def write_permits_asked(runtime, monkeypatch) -> list[str]:
    """Records each time a worker asks the shared budget for a Sheets write permit."""
    asked: list[str] = []
    real = runtime.quota.try_acquire_all

    def counting(budgets, **kwargs):
        asked.extend(name for name, _ in budgets if name.startswith("sheets:write:"))
        return real(budgets, **kwargs)

    monkeypatch.setattr(runtime.quota, "try_acquire_all", counting)
    return asked


def test_a_worker_that_took_the_last_queued_run_does_not_ask_again_until_a_run_is_queued(
    runtime, fake_sheets, fake_instantly, monkeypatch
) -> None:
    # Asking costs a permit, a claim and a refund on the busiest budget rows, after
    # every click's run: the claim that took the last run already knew the queue was empty.
    fake_instantly.add_workspace(KEY)
    a, b = add_connections(runtime, make_user(runtime), books(fake_sheets, 2), api_key=KEY)
    asked = write_permits_asked(runtime, monkeypatch)
    worker = Worker(runtime, idle_poll=3600)
    queue_run(runtime, a)
    queue_run(runtime, b)
    assert worker.work_one() and worker.work_one()
    assert len(asked) == 2
    assert not worker.work_one()
    assert len(asked) == 2  # known empty: nothing asked
    queue_run(runtime, a)
    worker.wake()  # what the in-process hook or a NOTIFY does
    assert worker.work_one()
    assert len(asked) == 3
    assert runs_by_status(runtime) == {"succeeded": 3}


def test_a_run_queued_just_after_the_last_claim_is_not_left_waiting(
    runtime, fake_sheets, fake_instantly, monkeypatch
) -> None:
    # The claim saw no other run, but one was queued (and its wake-up arrived) before the
    # worker noted the queue as empty: noting it would leave that run for a poll interval.
    fake_instantly.add_workspace(KEY)
    a, b = add_connections(runtime, make_user(runtime), books(fake_sheets, 2), api_key=KEY)
    worker = Worker(runtime, idle_poll=3600)
    real_claim = store.claim_next_run_id
    queued_after: list[int] = []

    def claim_then_queue_another(s, *args, **kwargs):
        claimed = real_claim(s, *args, **kwargs)

        @event.listens_for(s, "after_commit", once=True)
        def queue_another(_session) -> None:
            if not queued_after:
                queued_after.append(queue_run(runtime, b))
                worker.wake()

        return claimed

    monkeypatch.setattr(store, "claim_next_run_id", claim_then_queue_another)
    queue_run(runtime, a)
    assert worker.work_one()
    assert queued_after  # queued after the claim that took the then-last run
    assert worker.work_one()
    assert runs_by_status(runtime) == {"succeeded": 2}

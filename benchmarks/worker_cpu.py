"""Whole worker process CPU per steady refresh, and its peak RSS.

    python benchmarks/worker_cpu.py [--refreshes 40] [--repeat 3] [--without-notes]
        [--postgres URL]

A real ``sheets-sync worker`` process (``python -m sheets_sync.cli.main worker``, one
thread) refreshes one stored connection of 100 report rows with every feature on
(subjects, winner calls, notes, history, chart, two subsequences, opportunities) against
the Instantly and Sheets fakes of ``tests/fakes``, which run in this process, so their
CPU is not counted (``--without-notes``: the same with notes off). The quotas are lifted
(their bookkeeping still runs) and the database is a fresh PostgreSQL schema, as in
production with several workers.

After three warm-up refreshes (the first sync, and two that reach the steady state),
this process queues ``--refreshes`` runs one after another (each queued once the last
has finished, waking the worker by NOTIFY) and reads the worker's CPU time (user +
system, every thread, from ``/proc/<pid>/stat``) before and after: HTTP, JSON, database
and engine together, per refresh. Peak RSS is the worker's high-water mark (``VmHWM``
in ``/proc/<pid>/status``) just before it is stopped: the child's ``ru_maxrss`` from
``os.wait4`` would also count this process's memory at the fork, before the exec. Each
repeat starts a new worker; figures are medians. ``steal_percent`` is the share of the
machine's CPU time the hypervisor gave to other guests during the timed refreshes (from
``/proc/stat``): on a shared virtual machine, compare only runs that saw little of it.
``reference_ms`` is this process's CPU for a fixed pure-Python task measured before and
after the timed refreshes (``reference_ms()``); ``refresh_per_reference`` divides a
refresh's CPU by it, which compares across hours on a machine whose speed drifts.
Needs PostgreSQL (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Nothing
here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from sheets_sync import store  # noqa: E402
from sheets_sync.config import Settings  # noqa: E402
from sheets_sync.jobs.runtime import build_runtime  # noqa: E402
from sheets_sync.store.migrate import upgrade  # noqa: E402
from sheets_sync.store.models import Connection, SyncRun, User  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402
from tests.worker_helpers import SERVICE_ACCOUNT_EMAIL, make_user, start_worker, worker_env  # noqa: E402

API_KEY = "bench-instantly-key-cpu-0001"
CAMPAIGN_ID = "0b5e7c4a-6f1d-4e2b-9a3c-8d7f6e5a4b3c"
GENEROUS = 1_000_000
TICKS = os.sysconf("SC_CLK_TCK")
# 29 steps × 3 variants + 2 subsequences × 3 steps × 2 variants + 1 unattributed = 100.
STEPS, VARIANTS, SUBSEQUENCES, SUB_STEPS, SUB_VARIANTS = 29, 3, 2, 3, 2


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests, all cores together, since boot: on
    a shared virtual machine a run that saw much of it reads slower than it is."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / TICKS if len(fields) > 8 else 0.0


def reference_ms() -> float:
    """CPU milliseconds of one fixed pure-Python task, best of 5: a 100-row table of
    dicts built, JSON-encoded and decoded 20 times. A shared virtual machine's cores run
    faster or slower from one hour to the next with no steal showing (the same commit
    read 27.5 and 41.5 ms per refresh within minutes), so a refresh's CPU divided by this
    figure is what compares across runs."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(20):
            table = [{"row": i, "cells": [str(i * j) for j in range(20)]} for i in range(100)]
            json.loads(json.dumps(table))
        best = min(best, time.process_time() - started)
    return best * 1000


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def seed_instantly(instantly: FakeInstantlyServer) -> None:
    ws = instantly.add_workspace(API_KEY)
    steps = [[{"subject": f"Step {s + 1} idea {v + 1}", "body": "b"} for v in range(VARIANTS)]
             for s in range(STEPS)]
    cid = ws.add_campaign("CPU bench", steps=steps, campaign_id=CAMPAIGN_ID)
    today = dt.datetime.now(dt.UTC).date()
    for back in range(3):  # within the last 30 days, today's included (history)
        day = today - dt.timedelta(days=back)
        for s in range(STEPS):
            for v in range(VARIANTS):
                n = s * VARIANTS + v + back
                ws.record(cid, day, s, v, sent=60 + n * 7 % 90, opened=30, unique_opened=20,
                          replies=n % 7, unique_replies=n % 5, clicks=n % 3,
                          unique_clicks=n % 2, opportunities=n % 3,
                          unique_opportunities=n % 2)
        ws.record(cid, day, None, None, sent=3, opened=1, unique_opened=1)
        for k in range(SUBSEQUENCES):
            if back == 0:
                ws.add_subsequence(cid, f"Subsequence {k + 1}", subsequence_id=f"cpu-sub-{k}",
                                   steps=[[{"subject": f"Sub {k} {s}", "body": "b"}
                                           for _ in range(SUB_VARIANTS)]
                                          for s in range(SUB_STEPS)])
            for s in range(SUB_STEPS):
                for v in range(SUB_VARIANTS):
                    ws.record_subsequence(f"cpu-sub-{k}", day, s, v, sent=40 + s + v,
                                          unique_replies=v, replies=v)


class Schema:
    def __init__(self, admin_url: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        sep = "&" if "?" in admin_url else "?"
        self.url = f"{admin_url}{sep}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        self.admin.dispose()


def refresh(rt, connection_id: int, timeout: float) -> str:
    """Queue one run and wait until the worker has finished it; its status."""
    with rt.session_factory() as s, s.begin():
        connection = s.get(Connection, connection_id)
        run, _ = store.enqueue_run(s, connection, "manual")
        run_id = run.id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.session_factory() as s:
            row = s.execute(
                select(SyncRun.status, SyncRun.error_message).where(SyncRun.id == run_id)
            ).one()
        if row.status in ("succeeded", "failed"):
            if row.status == "failed":
                raise SystemExit(f"run {run_id} failed: {row.error_message}")
            return row.status
        time.sleep(0.01)
    raise SystemExit(f"run {run_id} did not finish within {timeout} s")


def one_worker(args, rt, settings, connection_id: int, tmp: Path, n: int) -> dict[str, float]:
    env = worker_env(
        settings,
        SHEETS_SYNC_SHEETS_WRITES_PER_MINUTE=str(GENEROUS),
        SHEETS_SYNC_SHEETS_READS_PER_MINUTE=str(GENEROUS),
        SHEETS_SYNC_INSTANTLY_REQUESTS_PER_MINUTE=str(GENEROUS),
    )
    proc = start_worker(env, "--concurrency", "1", log_path=tmp / f"worker-{n}.log")
    try:
        for _ in range(args.warmup):
            refresh(rt, connection_id, args.timeout)
        reference = reference_ms()
        started_cpu, started = cpu_seconds(proc.pid), time.monotonic()
        started_steal = steal_seconds()
        for _ in range(args.refreshes):
            refresh(rt, connection_id, args.timeout)
        cpu = cpu_seconds(proc.pid) - started_cpu
        elapsed = time.monotonic() - started
        stolen = steal_seconds() - started_steal
        reference = (reference + reference_ms()) / 2
        peak_kb = peak_rss_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {
        "cpu_ms_per_refresh": round(cpu * 1000 / args.refreshes, 1),
        "wall_ms_per_refresh": round(elapsed * 1000 / args.refreshes, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        # Share of the machine's CPU time taken by other guests meanwhile.
        "steal_percent": round(100 * stolen / (elapsed * (os.cpu_count() or 1)), 1),
        # The machine's speed meanwhile, and a refresh's CPU in units of it.
        "reference_ms": round(reference, 2),
        "refresh_per_reference": round(cpu * 1000 / args.refreshes / reference, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refreshes", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--without-notes", action="store_true",
                        help="every feature but notes (the refresh reads one cell of the "
                             "table, not all of it)")
    parser.add_argument("--close-connections", action="store_true",
                        help="the fakes close every connection after one answer (as the "
                             "tests' fakes do) instead of keeping it open as Google and "
                             "Instantly do")
    parser.add_argument("--postgres", default=os.environ.get(
        "SHEETS_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    sheets = FakeSheetsServer(
        reads_per_minute=GENEROUS, writes_per_minute=GENEROUS,
        project_reads_per_minute=GENEROUS, project_writes_per_minute=GENEROUS,
        keep_alive=not args.close_connections,
    ).start()
    instantly = FakeInstantlyServer(keep_alive=not args.close_connections).start()
    seed_instantly(instantly)
    schema = Schema(args.postgres)
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            info = make_service_account_info(sheets.token_uri, SERVICE_ACCOUNT_EMAIL)
            sheets.register_service_account(info)
            sa_file = tmp / "service-account.json"
            sa_file.write_text(json.dumps(info))
            settings = Settings(
                data_dir=tmp / "instance", database_url=schema.url,
                instantly_api_url=instantly.url, sheets_api_url=sheets.url,
                google_application_credentials=sa_file,
            )
            upgrade(schema.url)
            rt = build_runtime(settings)
            book = sheets.create_spreadsheet("CPU bench", shared_with=(SERVICE_ACCOUNT_EMAIL,))
            user_id = make_user(rt)
            with rt.session_factory() as s, s.begin():
                user = s.get(User, user_id)
                connection = store.create_connection(
                    s, user, fernet=rt.fernet, name="CPU bench", instantly_api_key=API_KEY,
                    spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{book}/edit",
                    campaign_ids=[CAMPAIGN_ID], include_opportunities=True,
                    date_range={"preset": "last_30_days"},
                    options={"features": {"notes": False}} if args.without_notes else None,
                )
                connection_id = connection.id
            results = []
            for n in range(args.repeat):
                result = one_worker(args, rt, settings, connection_id, tmp, n)
                print(json.dumps(result), flush=True)
                results.append(result)
            rows = len(sheets.values(book, "Instantly steps")) - 4  # title, info, header, total
            rt.engine.dispose()
    finally:
        schema.drop()
        sheets.stop()
        instantly.stop()
    features = "every feature but notes" if args.without_notes else "every feature on"
    print(f"\nworker CPU per steady refresh ({rows} report rows, {features}, "
          f"{args.refreshes} refreshes, median of {args.repeat}): "
          f"{statistics.median(r['cpu_ms_per_refresh'] for r in results):.1f} ms "
          f"({statistics.median(r['refresh_per_reference'] for r in results):.2f} × the "
          f"reference task); peak RSS {max(r['peak_rss_mb'] for r in results):.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

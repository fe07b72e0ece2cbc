"""Scheduled refresh throughput: 1,000 due connections, real worker processes, PostgreSQL.

    python benchmarks/scheduled_throughput.py [--connections 1000] [--repeat 1]
        [--concurrency 16] [--latency 0.1] [--postgres URL]

The Instantly and Sheets fakes from ``tests/fakes`` run in this process, each adding
``--latency`` seconds to every HTTP call, with a generous Google quota. For 1 and for 4
``sheets-sync worker`` processes (``python -m sheets_sync.cli worker``) it measures the
time from the moment the connections fall due, with the workers already started and
listening, until every one is synced (``seconds``: a scheduled round as production
runs it), and separately the workers' start-up (``start_up_seconds``: from starting the
processes until each listens for runs; earlier figures counted both), the peak RSS of a
worker process (VmHWM from /proc), HTTP calls per sync, 429s seen and double runs (a
spreadsheet written twice, or a connection run twice: must be 0), the CPU seconds of the
workers, of the fakes and of PostgreSQL (/proc), and what the workers' database sessions
were doing, sampled from ``pg_stat_activity`` every 0.1 s
(average sessions waiting on a lock, on the WAL, or idle inside a transaction, labelled
with that transaction's last statement). Then, with the default budget of 60 Sheets
writes a minute, it asks the scheduler how long the same backlog takes
(``scheduler.backlog``) and runs one worker for a few seconds to show it stays within the
budget instead of hammering Google.

Each scenario gets a fresh PostgreSQL schema (dropped afterwards). Needs PostgreSQL
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Standard library + the
project's code only.
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

from sqlalchemy import create_engine, func, select, text, update  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from sheets_sync.config import Settings  # noqa: E402
from sheets_sync.jobs.runtime import build_runtime  # noqa: E402
from sheets_sync.jobs.scheduler import backlog, enqueue_due  # noqa: E402
from sheets_sync.store.migrate import upgrade  # noqa: E402
from sheets_sync.store.models import Connection, SyncRun  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402
from tests.worker_helpers import (  # noqa: E402
    SERVICE_ACCOUNT_EMAIL,
    add_connections,
    make_user,
    start_worker,
    worker_env,
)

API_KEYS = [f"bench-instantly-key-{n:02d}" for n in range(10)]
GENEROUS = 1_000_000


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc (clock ticks)."""
    try:
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class WaitSampler:
    """What the workers' database sessions are doing, sampled from pg_stat_activity: lock
    waits (advisory = the budgets, transactionid/tuple = row locks), client reads (the
    server waiting for a worker that holds a transaction open), idle in transaction."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self.conn = self.engine.connect()
        self.samples = 0
        self.counts: dict[str, int] = {}

    def sample(self) -> None:
        rows = self.conn.exec_driver_sql(
            "SELECT state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).all()
        self.conn.commit()
        self.samples += 1
        for state, kind, event, query in rows:
            if state == "active" and kind in ("Lock", "LWLock", "IO", "IPC"):
                label = f"waiting:{kind}:{event}"
            elif state == "active":
                label = "active"
            elif state == "idle in transaction":
                # The transaction's last statement says which unit holds it open.
                label = "idle in transaction after: " + " ".join(str(query).split())[:50]
            else:
                continue
            self.counts[label] = self.counts.get(label, 0) + 1

    def report(self) -> dict[str, float]:
        """Average number of sessions in each state per sample."""
        self.conn.close()
        self.engine.dispose()
        return {k: round(v / max(1, self.samples), 2) for k, v in
                sorted(self.counts.items(), key=lambda kv: -kv[1])
                if v / max(1, self.samples) >= 0.05}


def postgres_cpu_seconds() -> float:
    """CPU of this machine's PostgreSQL server so far: every live ``postgres`` process,
    plus the reaped backends' time, which the kernel adds to their parent's (the
    postmaster's) children's time (/proc). Only differences between two readings mean
    anything."""
    stats: dict[str, list[str]] = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                stats[comm.parent.name] = _stat_fields(comm.parent.name)
        except OSError:
            continue  # the process ended meanwhile
    ticks = 0
    for fields in stats.values():
        ticks += int(fields[11]) + int(fields[12])
        if fields[1] not in stats:  # its parent is no postgres process: the postmaster
            ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


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


def seed(args: argparse.Namespace, schema: Schema, sheets: FakeSheetsServer,
         instantly: FakeInstantlyServer, sa_file: Path, tmp: Path, prefix: str) -> tuple:
    """A migrated schema, one spreadsheet per connection, a user and a due time."""
    settings = Settings(
        data_dir=tmp / "instance",
        database_url=schema.url,
        instantly_api_url=instantly.url,
        sheets_api_url=sheets.url,
        google_application_credentials=sa_file,
    )
    upgrade(schema.url)
    rt = build_runtime(settings)
    books = [
        sheets.create_spreadsheet(f"{prefix} {i}", shared_with=(SERVICE_ACCOUNT_EMAIL,))
        for i in range(args.connections)
    ]
    user_id = make_user(rt)
    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return settings, rt, books, user_id, due


def scenario(args: argparse.Namespace, sheets: FakeSheetsServer, instantly: FakeInstantlyServer,
             sa_file: Path, tmp: Path, processes: int) -> dict[str, float]:
    schema = Schema(args.postgres)
    try:
        settings, rt, books, user_id, due = seed(args, schema, sheets, instantly, sa_file, tmp,
                                                 "Bench")
        later = due + dt.timedelta(days=1)  # not due while the workers start
        for n, key in enumerate(API_KEYS):
            add_connections(rt, user_id, books[n :: len(API_KEYS)], api_key=key, due_at=later)
        not_again_soon(rt)
        sheets.reset_calls()
        instantly.reset_calls()
        env = worker_env(
            settings,
            SHEETS_SYNC_SHEETS_WRITES_PER_MINUTE=str(GENEROUS),
            SHEETS_SYNC_SHEETS_READS_PER_MINUTE=str(GENEROUS),
            SHEETS_SYNC_SHEETS_PROJECT_WRITES_PER_MINUTE=str(GENEROUS),
            SHEETS_SYNC_SHEETS_PROJECT_READS_PER_MINUTE=str(GENEROUS),
            SHEETS_SYNC_INSTANTLY_REQUESTS_PER_MINUTE=str(GENEROUS),
        )
        launched = time.monotonic()
        procs = [
            start_worker(env, "--concurrency", str(args.concurrency), "--poll", "0.2",
                         log_path=tmp / f"worker-{processes}-{i}.log")
            for i in range(processes)
        ]
        start_up = wait_until_listening(schema.url, processes, launched + args.timeout)
        workers_cpu_at_start = sum(cpu_seconds(p.pid) for p in procs)
        started = time.monotonic()
        cpu_started = time.process_time()
        postgres_started = postgres_cpu_seconds()
        fall_due(rt, due)
        peak_kb = 0
        done = 0
        sampler = WaitSampler(schema.url)
        while time.monotonic() - started < args.timeout:
            with rt.session_factory() as s:
                done = s.scalar(
                    select(func.count()).select_from(SyncRun)
                    .where(SyncRun.status.in_(("succeeded", "failed")))
                ) or 0
            peak_kb = max([peak_kb, *(vm_hwm_kb(p.pid) for p in procs)])
            if done >= args.connections:
                break
            sampler.sample()
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        fakes_cpu = time.process_time() - cpu_started
        peak_kb = max([peak_kb, *(vm_hwm_kb(p.pid) for p in procs)])
        time.sleep(0.5)  # a double run would show up now
        workers_cpu = sum(cpu_seconds(p.pid) for p in procs) - workers_cpu_at_start
        postgres_cpu = postgres_cpu_seconds() - postgres_started
        waits = sampler.report()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        with rt.session_factory() as s:
            runs = s.execute(
                select(SyncRun.connection_id, SyncRun.status, SyncRun.http_calls)
            ).all()
        per_connection: dict[int, int] = {}
        for cid, _status, _calls in runs:
            per_connection[cid] = per_connection.get(cid, 0) + 1
        succeeded = sum(1 for r in runs if r[1] == "succeeded")
        writes_per_book = [sheets.count("batchUpdate", b, status=200) for b in books]
        double_runs = sum(1 for n in per_connection.values() if n > 1) + sum(
            1 for n in writes_per_book if n > 1
        )
        sheets_api_calls = sum(1 for c in sheets.calls if c.kind != "token")
        rt.engine.dispose()
        return {
            "processes": processes,
            "synced": succeeded,
            "seconds": round(elapsed, 2),
            "start_up_seconds": round(start_up, 2),
            "workers_start_up_cpu_seconds": round(workers_cpu_at_start, 1),
            "syncs_per_second": round(succeeded / elapsed, 1) if elapsed else 0.0,
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "http_calls_per_sync": round(
                (sheets_api_calls + instantly.count()) / max(1, succeeded), 2
            ),
            "recorded_http_calls_per_sync": round(
                sum(r[2] or 0 for r in runs) / max(1, len(runs)), 2
            ),
            "sheets_429": sheets.status_counts().get(429, 0),
            "instantly_429": sum(1 for c in instantly.calls if c.status == 429),
            "double_runs": double_runs,
            # CPU of this process (the fakes, mostly): the fakes share one core-bound GIL.
            "fakes_cpu_seconds": round(fakes_cpu, 1),
            "workers_cpu_seconds": round(workers_cpu, 1),
            # The database server's CPU over the same span (every session, not only the
            # workers': this process's progress queries and the sampler count too).
            "postgres_cpu_seconds": round(postgres_cpu, 1),
            "db_sessions": waits,
        }
    finally:
        schema.drop()


def wait_until_listening(url: str, processes: int, deadline: float) -> float:
    """Seconds until ``processes`` workers hold their LISTEN connection: imported,
    connected and ready for runs."""
    engine = create_engine(url, poolclass=NullPool)
    began = time.monotonic()
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                listening = conn.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
                ))
            if (listening or 0) >= processes:
                return time.monotonic() - began
            time.sleep(0.02)
    finally:
        engine.dispose()
    raise TimeoutError(f"{processes} workers did not start listening")


def fall_due(rt, due: dt.datetime) -> None:
    """Every connection falls due at once, as a busy hour's schedules do."""
    with rt.session_factory() as s, s.begin():
        s.execute(update(Connection).values(next_run_at=due))


def not_again_soon(rt) -> None:
    """Daily at a time 12 hours away: a connection synced during the run is not due
    again before it ends (an hourly schedule crossing the hour would run some twice)."""
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).strftime("%H:%M")
    with rt.session_factory() as s, s.begin():
        s.execute(update(Connection).values(schedule="daily", schedule_time=at, timezone="UTC"))


def default_budget_backlog(args: argparse.Namespace, sheets: FakeSheetsServer,
                           instantly: FakeInstantlyServer, sa_file: Path, tmp: Path) -> dict:
    schema = Schema(args.postgres)
    try:
        settings, rt, books, user_id, due = seed(args, schema, sheets, instantly, sa_file, tmp,
                                                 "Backlog")
        add_connections(rt, user_id, books, api_key=API_KEYS[0], due_at=due)
        enqueue_due(rt, limit=args.connections)
        report = backlog(rt)
        sheets.reset_calls()
        env = worker_env(settings)  # the default budget: 60 writes a minute
        proc = start_worker(env, "--concurrency", str(args.concurrency), "--poll", "0.2",
                            log_path=tmp / "worker-default-budget.log")
        time.sleep(args.observe)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log_lines = [
            line for line in (tmp / "worker-default-budget.log").read_text().splitlines()
            if "backlog" in line
        ]
        rt.engine.dispose()
        return {
            "queued": report.queued,
            "writes_per_minute": report.writes_per_minute,
            "eta_seconds": round(report.eta_seconds, 1),
            "observed_seconds": args.observe,
            "writes_in_observed_window": sheets.count("batchUpdate"),
            "sheets_429": sheets.status_counts().get(429, 0),
            "worker_log": log_lines[-1] if log_lines else None,
        }
    finally:
        schema.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per HTTP call")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--observe", type=float, default=8.0,
                        help="seconds to watch a worker under the default budget")
    parser.add_argument("--processes", default="1,4")
    parser.add_argument("--workdir", default=None, help="where worker logs go (kept if set)")
    parser.add_argument("--close-connections", action="store_true",
                        help="the fakes close every connection after one answer (as the "
                             "tests' fakes do) instead of keeping it open as Google and "
                             "Instantly do")
    parser.add_argument("--postgres", default=os.environ.get(
        "SHEETS_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    keep = tempfile.mkdtemp(dir=args.workdir) if args.workdir else None
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(keep or tmpdir)
        sheets = FakeSheetsServer(
            reads_per_minute=GENEROUS, writes_per_minute=GENEROUS,
            project_reads_per_minute=GENEROUS, project_writes_per_minute=GENEROUS,
            latency=args.latency, keep_alive=not args.close_connections,
        ).start()
        instantly = FakeInstantlyServer(keep_alive=not args.close_connections).start()
        instantly.latency = args.latency
        for key in API_KEYS:
            ws = instantly.add_workspace(key)
            cid = ws.add_campaign("Bench campaign")
            ws.record(cid, dt.date(2026, 1, 5), step=0, variant=0, sent=100, replies=3)
            ws.record(cid, dt.date(2026, 1, 5), step=0, variant=1, sent=90, replies=5)
        info = make_service_account_info(sheets.token_uri, SERVICE_ACCOUNT_EMAIL)
        sheets.register_service_account(info)
        sa_file = tmp / "service-account.json"
        sa_file.write_text(json.dumps(info))
        if args.workdir:
            print(f"worker logs: {tmp}")
        try:
            results: dict[int, list[dict[str, float]]] = {}
            for processes in (int(p) for p in args.processes.split(",")):
                for _ in range(args.repeat):
                    result = scenario(args, sheets, instantly, sa_file, tmp, processes)
                    print(json.dumps(result), flush=True)
                    results.setdefault(processes, []).append(result)
            print()
            print(f"{args.connections} due connections, {args.latency * 1000:.0f} ms per HTTP "
                  f"call, {args.concurrency} threads per worker, median of {args.repeat}:")
            print("| processes | seconds | syncs/s | peak RSS MB | HTTP calls/sync | 429s "
                  "| double runs |")
            print("|---|---|---|---|---|---|---|")
            for processes, rows in results.items():
                def med(key: str, rows: list[dict[str, float]] = rows) -> float:
                    return statistics.median(r[key] for r in rows)
                print(f"| {processes} | {med('seconds')} | {med('syncs_per_second')} | "
                      f"{max(r['peak_rss_mb'] for r in rows)} | {med('http_calls_per_sync')} | "
                      f"{sum(r['sheets_429'] + r['instantly_429'] for r in rows)} | "
                      f"{sum(r['double_runs'] for r in rows)} |")
            print()
            report = default_budget_backlog(args, sheets, instantly, sa_file, tmp)
            print("default budget:", json.dumps(report))
        finally:
            sheets.stop()
            instantly.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Three service accounts at their real budgets, with the window shortened.

    python benchmarks/pool_budgets.py [--per-account 150] [--window 20] [--processes 2]
        [--concurrency 8] [--repeat 3] [--postgres URL]

Google allows each service account 60 Sheets writes (and 60 reads) per minute, and each
project 300. Here the minute is shortened to ``--window`` seconds on both sides: the
Sheets fake (tests/fakes/sheets_api.py, per-user and per-project rolling windows that
answer 429 like Google) runs its clock ``60 / window`` times faster, and the workers get
``SHEETS_SYNC_QUOTA_WINDOW_SECONDS=window`` with the default 60 writes, 60 reads per
account and 300 per project. ``--per-account`` due connections per account are created
through the store (each pinned to the least loaded account) and each spreadsheet is
shared with its connection's account only. The window must be long enough for the
workers to outrun the budgets (3 x 60 writes per window): on a busy 2-core machine a 6 s
window is CPU-bound, not budget-bound, hence the default of 20 s.

Then ``--processes`` real ``sheets-sync worker`` processes drain the backlog against
PostgreSQL. Reported per run: the most writes any account made in one rolling window, as
the fake counted them (arrival times) and as the budget's grant log says (the database
clock), 429s, connections written by an account other than their own (must be 0), and
how long the backlog took against the ideal (``backlog_eta``). Standard library + the
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scheduled_throughput import Schema, not_again_soon  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from sheets_sync import store  # noqa: E402
from sheets_sync.config import Settings  # noqa: E402
from sheets_sync.jobs.quota import backlog_eta  # noqa: E402
from sheets_sync.jobs.runtime import build_runtime  # noqa: E402
from sheets_sync.store.db import take_write_lock  # noqa: E402
from sheets_sync.store.migrate import upgrade  # noqa: E402
from sheets_sync.store.models import Connection, RateLimitGrant, SyncRun, User  # noqa: E402
from tests.fakes.instantly_api import FakeInstantlyServer  # noqa: E402
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info  # noqa: E402
from tests.worker_helpers import start_worker, worker_env  # noqa: E402

ACCOUNTS = [f"sync-{n}@bench-project.iam.gserviceaccount.com" for n in range(3)]
API_KEY = "bench-pool-instantly-key-01"
LIMIT = 60


def most_in_a_window(times: list[float], span: float) -> int:
    times = sorted(times)
    start = most = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - span:
            start += 1
        most = max(most, end - start + 1)
    return most


def one_run(args: argparse.Namespace, tmp: Path, instantly: FakeInstantlyServer) -> dict:
    speed = 60.0 / args.window
    sheets = FakeSheetsServer(
        reads_per_minute=LIMIT, writes_per_minute=LIMIT,
        project_reads_per_minute=300, project_writes_per_minute=300,
        clock=lambda: time.monotonic() * speed,
    ).start()
    files = []
    for email in ACCOUNTS:
        info = make_service_account_info(sheets.token_uri, email)
        sheets.register_service_account(info)
        path = tmp / f"{email.split('@')[0]}.json"
        path.write_text(json.dumps(info))
        files.append(path)
    schema = Schema(args.postgres)
    try:
        settings = Settings(
            data_dir=tmp / "instance",
            database_url=schema.url,
            instantly_api_url=instantly.url,
            sheets_api_url=sheets.url,
            google_application_credentials=files[0],
            service_account_files=",".join(str(f) for f in files),
            quota_window_seconds=args.window,
        )
        upgrade(schema.url)
        rt = build_runtime(settings)
        pins: dict[str, str] = {}  # spreadsheet id -> account
        due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        with rt.session_factory() as s, s.begin():
            take_write_lock(s)
            user = User(email="bench@example.com", password_hash="unused")
            s.add(user)
            s.flush()
            for n in range(args.per_account * len(ACCOUNTS)):
                # Equal schedules fill the accounts in turn; checked below, not assumed.
                expected = ACCOUNTS[n % len(ACCOUNTS)]
                book = sheets.create_spreadsheet(f"Pool {n}", shared_with=(expected,))
                connection = store.create_connection(
                    s, user, fernet=rt.fernet, name=f"Pool {n}", instantly_api_key=API_KEY,
                    spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{book}/edit",
                    schedule="hourly", service_accounts=rt.service_account_emails,
                )
                connection.next_run_at = due
                pins[book] = connection.service_account_email or ""
        not_again_soon(rt)
        misplaced = sum(1 for n, (book, email) in enumerate(pins.items())
                        if email != ACCOUNTS[n % len(ACCOUNTS)])
        sheets.reset_calls()
        env = worker_env(
            settings,
            SHEETS_SYNC_SERVICE_ACCOUNT_FILES=settings.service_account_files or "",
            SHEETS_SYNC_QUOTA_WINDOW_SECONDS=str(args.window),
            SHEETS_SYNC_INSTANTLY_REQUESTS_PER_MINUTE="1000000",
        )
        started = time.monotonic()
        procs = [
            start_worker(env, "--concurrency", str(args.concurrency), "--poll", "0.5",
                         log_path=tmp / f"pool-worker-{i}.log")
            for i in range(args.processes)
        ]
        total = len(pins)
        done = 0
        while time.monotonic() - started < args.timeout:
            with rt.session_factory() as s:
                done = s.scalar(select(func.count()).select_from(SyncRun)
                                .where(SyncRun.status == "succeeded")) or 0
            if done >= total:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        span = args.window + args.window / 60
        writes = [c for c in sheets.calls if c.kind == "batchUpdate" and c.status == 200]
        # The fake's own window (exactly one shortened minute) on arrival times.
        fake_most = {
            email: most_in_a_window(
                [c.at / speed for c in writes if c.email == email], args.window)
            for email in ACCOUNTS
        }
        with rt.session_factory() as s:
            grants = s.execute(select(RateLimitGrant.name, RateLimitGrant.granted_at)).all()
            wrong_writer = 0
            for book, email in pins.items():
                writers = {c.email for c in sheets.calls
                           if c.spreadsheet_id == book and c.kind != "token"}
                wrong_writer += int(bool(writers - {email}))
            unpinned = s.scalar(select(func.count()).select_from(Connection)
                                .where(Connection.service_account_email.is_(None)))
        # The grant log keeps only about a window of permits (older ones are pruned):
        # enough for the steady state's windows.
        log_most = {
            email: most_in_a_window(
                [at for name, at in grants if name == f"sheets:write:{email}"], span)
            for email in ACCOUNTS
        }
        rt.engine.dispose()
        return {
            "connections": total,
            "succeeded": done,
            "seconds": round(elapsed, 1),
            "ideal_seconds": round(backlog_eta(args.per_account, LIMIT, args.window), 1),
            "most_writes_in_a_window_by_account_fake": fake_most,
            "most_writes_in_a_window_by_account_grant_log": log_most,
            "sheets_429": sheets.status_counts().get(429, 0),
            "written_by_another_account": wrong_writer,
            "pinned_elsewhere_than_round_robin": misplaced,
            "unpinned": unpinned,
        }
    finally:
        schema.drop()
        sheets.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-account", type=int, default=150)
    parser.add_argument("--window", type=float, default=20.0, help="seconds standing for 60")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--postgres", default=os.environ.get(
        "SHEETS_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    instantly = FakeInstantlyServer().start()
    ws = instantly.add_workspace(API_KEY)
    cid = ws.add_campaign("Pool campaign")
    ws.record(cid, dt.date(2026, 1, 5), step=0, variant=0, sent=100, replies=3)
    rows = []
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmpdir:
                row = one_run(args, Path(tmpdir), instantly)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        instantly.stop()
    print()
    print(f"3 accounts x {args.per_account} due connections, {LIMIT} writes per "
          f"{args.window:g} s window each, {args.processes} workers x {args.concurrency} "
          f"threads, median of {len(rows)}:")
    print("| seconds (ideal) | most writes/window/account (fake; grant log) | 429s "
          "| written by another account |")
    print("|---|---|---|---|")
    fake = [max(r["most_writes_in_a_window_by_account_fake"].values()) for r in rows]
    log = [max(r["most_writes_in_a_window_by_account_grant_log"].values()) for r in rows]
    print(f"| {statistics.median(r['seconds'] for r in rows)} ({rows[0]['ideal_seconds']}) "
          f"| {statistics.median(fake)}; {statistics.median(log)} "
          f"| {sum(r['sheets_429'] for r in rows)} "
          f"| {sum(r['written_by_another_account'] for r in rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

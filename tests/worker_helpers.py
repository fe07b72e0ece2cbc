"""Helpers shared by the scheduler/worker/quota/alert/cron tests (and the benchmark)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import undefer

from sheets_sync import store
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import Connection, SyncRun, User

ROOT = Path(__file__).resolve().parent.parent
SERVICE_ACCOUNT_EMAIL = "sheets-sync@test-project.iam.gserviceaccount.com"


def make_user(rt: Runtime, email: str = "owner@example.com") -> int:
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)  # looks the user up, then may add it
        user = store.get_user_by_email(s, email)
        if user is None:
            # A cheap hash: these tests never log in.
            user = User(email=email, password_hash="unused")
            s.add(user)
            s.flush()
        return user.id


def add_connections(
    rt: Runtime,
    user_id: int,
    spreadsheet_ids: Iterable[str],
    *,
    api_key: str,
    schedule: str = "daily",
    due_at: dt.datetime | None = None,
    name: str = "Outbound",
) -> list[int]:
    """Store one connection per spreadsheet; ``due_at`` overrides the computed next slot.

    A daily schedule's slot is put 12 hours from now, so a connection run once is not due
    again while a test runs (an hourly one was, whenever a test crossed the full hour)."""
    schedule_time = (
        (dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)).strftime("%H:%M")
        if schedule == "daily" else None
    )
    ids: list[int] = []
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        user = s.get(User, user_id)
        assert user is not None
        for n, ssid in enumerate(spreadsheet_ids):
            connection = store.create_connection(
                s,
                user,
                fernet=rt.fernet,
                name=f"{name} {n}",
                instantly_api_key=api_key,
                spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{ssid}/edit",
                schedule=schedule,
                schedule_time=schedule_time,
            )
            if due_at is not None:
                connection.next_run_at = due_at
            ids.append(connection.id)
    return ids


def queue_run(rt: Runtime, connection_id: int) -> int:
    """Queue a manual run of the connection, as a Refresh click does; its id."""
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        run, _ = store.enqueue_run(s, s.get(Connection, connection_id), "manual")
        return run.id


def wait_until_finished(rt: Runtime, run_id: int, timeout: float = 30.0) -> str:
    """Poll until the run has succeeded or failed; its status (AssertionError after
    ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.session_factory() as s:
            status = s.scalar(select(SyncRun.status).where(SyncRun.id == run_id))
        if status in ("succeeded", "failed"):
            return status
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s: {runs_by_status(rt)}")


def runs_by_status(rt: Runtime) -> dict[str, int]:
    with rt.session_factory() as s:
        out: dict[str, int] = {}
        for status in s.scalars(select(SyncRun.status)):
            out[status] = out.get(status, 0) + 1
        return out


def runs_of(rt: Runtime, connection_id: int) -> list[SyncRun]:
    with rt.session_factory() as s:
        return list(
            s.scalars(
                select(SyncRun).where(SyncRun.connection_id == connection_id).order_by(SyncRun.id)
            )
        )


def connection(rt: Runtime, connection_id: int) -> Connection:
    with rt.session_factory() as s:
        # Every column loaded: the test reads it after the session is gone.
        c = s.get(Connection, connection_id, options=[undefer(Connection.last_table)])
        assert c is not None
        return c


def worker_env(settings: Any, **extra: str) -> dict[str, str]:
    """The environment of a ``sheets-sync worker`` subprocess pointed at the test's
    database, keys (data dir) and fakes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHEETS_SYNC_")}
    env.update(
        {
            "SHEETS_SYNC_DATA_DIR": str(settings.data_dir),
            "SHEETS_SYNC_DATABASE_URL": settings.resolved_database_url,
            "SHEETS_SYNC_INSTANTLY_API_URL": settings.instantly_api_url,
            "SHEETS_SYNC_SHEETS_API_URL": settings.sheets_api_url,
            "GOOGLE_APPLICATION_CREDENTIALS": str(settings.google_application_credentials),
            "SHEETS_SYNC_RETRY_MAX_WAIT": str(settings.retry_max_wait),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def start_worker(
    env: dict[str, str], *args: str, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "sheets_sync.cli.main", "worker", *args],
        env=env,
        cwd=str(ROOT),
        stdout=out,
        stderr=subprocess.STDOUT,
    )

"""Queueing the connections that are due, and how long the backlog will take.

The next-slot arithmetic itself is pure and lives in ``sheets_sync.schedules``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select

from sheets_sync import store
from sheets_sync.jobs.quota import backlog_eta, write_budget_name
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import Connection, SyncRun

log = logging.getLogger("sheets_sync.scheduler")

def enqueue_due(rt: Runtime, limit: int = 500) -> int:
    """Queue a scheduled run for each due connection and move its next_run_at on."""
    now = rt.clock()
    with rt.session_factory() as s, s.begin():
        # Reads the due connections, then queues runs and moves next_run_at on.
        take_write_lock(s)
        query = (
            select(Connection)
            .where(Connection.schedule != "off", Connection.paused_reason.is_(None))
            .where((Connection.next_run_at.is_(None)) | (Connection.next_run_at <= now))
            .order_by(Connection.next_run_at)
            .limit(limit)
        )
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        due = list(s.scalars(query))
        # A connection without a slot yet (its schedule was just switched on) gets one
        # below and is queued when that comes.
        queued = store.enqueue_runs(
            s, [c.id for c in due if c.next_run_at is not None], "schedule"
        )
        for connection in due:
            store.schedule_next(connection, now)
    if queued:
        rt.notify_enqueued()
        report = backlog(rt)
        if report.eta_seconds > rt.settings.quota_window_seconds:
            # Say how long the backlog takes instead of hammering Google: the budget
            # holds every worker to the configured writes per minute.
            log.warning(
                "backlog queued=%s running=%s writes_per_minute=%s eta_seconds=%.0f",
                report.queued,
                report.running,
                report.writes_per_minute,
                report.eta_seconds,
            )
    return queued


@dataclass(frozen=True)
class Backlog:
    queued: int
    running: int
    due_not_queued: int
    writes_per_minute: int
    eta_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backlog(rt: Runtime) -> Backlog:
    """How many syncs wait and how long the Sheets write budgets need to serve them: each
    account writes its own connections at its own rate, so the backlog takes as long as
    the busiest account's share."""
    now = rt.clock()
    with rt.session_factory() as s:
        counts = dict(
            s.execute(
                select(SyncRun.status, func.count())
                .where(SyncRun.status.in_(("queued", "running")))
                .group_by(SyncRun.status)
            ).all()
        )
        queued_by = s.execute(
            select(Connection.service_account_email, func.count())
            .join(SyncRun, SyncRun.connection_id == Connection.id)
            .where(SyncRun.status == "queued")
            .group_by(Connection.service_account_email)
        ).all()
        due_by = s.execute(
            select(Connection.service_account_email, func.count())
            .where(
                Connection.schedule != "off",
                Connection.paused_reason.is_(None),
                Connection.next_run_at <= now,
            )
            .group_by(Connection.service_account_email)
        ).all()
    queued, running = int(counts.get("queued", 0)), int(counts.get("running", 0))
    due = sum(int(n) for _, n in due_by)
    emails = rt.service_account_emails or [""]
    pending = dict.fromkeys(emails, 0)
    for email, n in [*queued_by, *due_by]:
        # Unpinned connections (and those of a removed key, which fail without writing)
        # go with the primary account.
        pending[email if email in pending else emails[0]] += int(n)
    limit = rt.settings.sheets_writes_per_minute
    eta = 0.0
    for email, n in pending.items():
        wait_now = 0.0
        if rt.quota is not None and n and email:
            wait_now = rt.quota.wait_hint(write_budget_name(email), limit)
        eta = max(eta, backlog_eta(n, limit, rt.settings.quota_window_seconds, wait_now=wait_now))
    return Backlog(queued, running, due, limit * len(emails), eta)

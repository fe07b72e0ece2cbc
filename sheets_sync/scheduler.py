"""When a connection is due, and queueing the due ones.

The arithmetic is pure and done in the connection's own time zone with zoneinfo, so
"daily at 09:00 Europe/Berlin" stays at 09:00 local across daylight-saving changes. A
per-connection offset of up to ``SPREAD_SECONDS`` keeps a thousand "09:00" connections
from reaching Google in the same second.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from . import store
from .db import take_write_lock
from .models import Connection, SyncRun
from .quota import SHEETS_WRITE, backlog_eta
from .runtime import Runtime

log = logging.getLogger("sheets_sync.scheduler")

SPREAD_SECONDS = 300


def spread_for(connection_id: int, limit: int = SPREAD_SECONDS) -> timedelta:
    digest = hashlib.sha256(str(connection_id).encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:4], "big") % max(1, limit))


def _local_at(day: datetime, hh: int, mm: int, zone: ZoneInfo) -> datetime:
    # fold=0: in the repeated hour of a fall-back change, take the first occurrence; a
    # time inside a spring-forward gap resolves to the same wall-clock time + 1 hour.
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=zone, fold=0)


def next_run_at(
    schedule: str,
    *,
    after: datetime,
    schedule_time: str | None = None,
    weekday: int | None = None,
    timezone: str = "UTC",
) -> datetime | None:
    """The first scheduled moment strictly after ``after`` (UTC), without the spread."""
    if schedule == "off":
        return None
    zone = ZoneInfo(timezone or "UTC")
    local = after.astimezone(zone)
    if schedule in ("hourly", "every_6_hours"):
        step = 1 if schedule == "hourly" else 6
        # Count in UTC so a DST change never yields a 0- or 2-hour gap between runs;
        # align 6-hourly runs to local midnight, 06:00, 12:00, 18:00 where possible.
        base = local.replace(minute=0, second=0, microsecond=0)
        candidate = base
        while candidate.astimezone(UTC) <= after or candidate.hour % step:
            candidate = (candidate.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
        return candidate.astimezone(UTC)
    hh, mm = (int(x) for x in (schedule_time or "09:00").split(":"))
    for days_ahead in range(0, 9):
        day = local + timedelta(days=days_ahead)
        if schedule == "weekly" and day.weekday() != (weekday or 0):
            continue
        candidate = _local_at(day, hh, mm, zone)
        # Normalise through UTC so gap times land on a real instant.
        candidate_utc = candidate.astimezone(UTC)
        if candidate_utc > after:
            return candidate_utc
    raise ValueError(f"no next run for schedule {schedule!r}")


def connection_next_run(connection: Connection, after: datetime) -> datetime | None:
    base = next_run_at(
        connection.schedule,
        after=after,
        schedule_time=connection.schedule_time,
        weekday=connection.schedule_weekday,
        timezone=connection.timezone or "UTC",
    )
    return None if base is None else base + spread_for(connection.id)


def schedule_next(connection: Connection, now: datetime) -> None:
    """Set ``next_run_at`` from the connection's schedule (None when off). The connection
    must have an id (flushed), which the spread is derived from."""
    connection.next_run_at = connection_next_run(connection, now)


def enqueue_due(rt: Runtime, limit: int = 500) -> int:
    """Queue a scheduled run for each due connection and move its next_run_at on."""
    now = rt.clock()
    queued = 0
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
        for connection in s.scalars(query):
            if connection.next_run_at is not None:
                _run, created = store.enqueue_run(s, connection, "schedule")
                queued += int(created)
            schedule_next(connection, now)
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
    """How many syncs wait and how long the Sheets write budget needs to serve them."""
    now = rt.clock()
    with rt.session_factory() as s:
        counts = dict(
            s.execute(
                select(SyncRun.status, func.count())
                .where(SyncRun.status.in_(("queued", "running")))
                .group_by(SyncRun.status)
            ).all()
        )
        due = (
            s.scalar(
                select(func.count())
                .select_from(Connection)
                .where(
                    Connection.schedule != "off",
                    Connection.paused_reason.is_(None),
                    Connection.next_run_at <= now,
                )
            )
            or 0
        )
    queued, running = int(counts.get("queued", 0)), int(counts.get("running", 0))
    limit = rt.settings.sheets_writes_per_minute
    wait_now = 0.0
    if rt.quota is not None and queued + due:
        wait_now = rt.quota.wait_hint(SHEETS_WRITE, limit)
    eta = backlog_eta(
        queued + due, limit, rt.settings.quota_window_seconds, wait_now=wait_now
    )
    return Backlog(queued, running, int(due), limit, eta)

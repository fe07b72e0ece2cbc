"""When a schedule is next due (pure arithmetic, no I/O).

Done in the connection's own time zone with zoneinfo, so "daily at 09:00 Europe/Berlin"
stays at 09:00 local across daylight-saving changes. A per-connection offset of up to
``SPREAD_SECONDS`` keeps a thousand "09:00" connections from reaching Google in the same
second.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

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

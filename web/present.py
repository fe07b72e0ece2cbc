"""How stored things read on the page: times, schedules, runs (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import url_for

from sheets_sync.connection_rules import SCHEDULE_LABELS, WEEKDAYS
from sheets_sync.date_ranges import PRESETS
from sheets_sync.errors import InvalidInput
from sheets_sync.links import spreadsheet_link
from sheets_sync.store.models import Connection, SyncRun

STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "interrupted": "Interrupted",
}


def utc_text(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "in a moment" if future else "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size or unit == "minute":
            n = max(1, round(seconds / size))
            words = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    return ""  # pragma: no cover


def schedule_text(connection: Connection) -> str:
    schedule = connection.schedule or "off"
    zone = connection.timezone or "UTC"
    at = connection.schedule_time or "09:00"
    if schedule == "off":
        return "Off: refresh by hand"
    if schedule == "daily":
        return f"Daily at {at} ({zone})"
    if schedule == "weekly":
        day = WEEKDAYS[connection.schedule_weekday or 0]
        return f"Weekly on {day} at {at} ({zone})"
    return SCHEDULE_LABELS.get(schedule, schedule)


def date_range_text(connection: Connection) -> str:
    spec = connection.date_range or {"preset": "all_time"}
    if "preset" in spec:
        return PRESETS.get(spec["preset"], spec["preset"])
    return f"{spec.get('start')} to {spec.get('end')} (UTC)"


def campaigns_text(connection: Connection) -> str:
    ids = list(connection.campaign_ids or [])
    if not ids:
        return "All campaigns combined"
    options = connection.options or {}
    cache = options.get("campaign_cache") or {}
    # Names found when the connection was saved, until a refresh caches the campaigns.
    saved = options.get("campaign_names") or {}
    names = []
    for campaign_id in ids:
        entry = cache.get(campaign_id) or {}
        name = (entry.get("campaign") or {}).get("name") if isinstance(entry, dict) else None
        name = name or (saved.get(campaign_id) if isinstance(saved, dict) else None)
        names.append(str(name) if name else campaign_id)
    return ", ".join(names)


def sheet_link(connection: Connection) -> str:
    try:
        return spreadsheet_link(connection.spreadsheet_id, connection.sheet_id)
    except InvalidInput:  # pragma: no cover - stored links were validated on the way in
        return connection.spreadsheet_url


def run_moment(run: SyncRun) -> datetime | None:
    return run.finished_at or run.started_at or run.queued_at


def run_json(run: SyncRun, now: datetime | None = None) -> dict[str, Any]:
    moment = run_moment(run)
    error = None
    if run.error_code or run.error_message:
        error = {"code": run.error_code, "message": run.error_message}
    return {
        "id": run.id,
        # For people: the run's place among its connection's runs (older rows: the id).
        "number": run.number if run.number is not None else run.id,
        "connection_id": run.connection_id,
        "status": run.status,
        "status_label": STATUS_LABELS.get(run.status, run.status),
        "active": run.status in ("queued", "running"),
        "trigger": run.trigger,
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "when_utc": utc_text(moment),
        "queued_utc": utc_text(run.queued_at),
        "finished_utc": utc_text(run.finished_at),
        "when_relative": relative(moment, now),
        "rows_written": run.rows_written,
        "http_calls": run.http_calls,
        "sheet_url": run.sheet_url,
        "drift": run.drift,
        "error": error,
        "status_url": url_for(
            "pages.run_status", connection_id=run.connection_id, run_id=run.id
        ),
    }

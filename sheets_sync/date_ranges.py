"""Date ranges: presets and custom, inclusive, in UTC (pure).

Instantly reads a date-only ``end_date`` as *midnight at the start* of that day, so an
inclusive end is sent as the last millisecond of the day instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sheets_sync.errors import InvalidInput

PRESETS: dict[str, str] = {
    "all_time": "All time",
    "today": "Today",
    "yesterday": "Yesterday",
    "last_7_days": "Last 7 days",
    "last_30_days": "Last 30 days",
    "last_90_days": "Last 90 days",
    "this_month": "This month",
    "last_month": "Last month",
    "this_year": "This year",
}
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class DateRange:
    start: date | None
    end: date | None
    label: str

    @property
    def start_instant(self) -> datetime | None:
        return datetime.combine(self.start, time.min, UTC) if self.start else None

    @property
    def end_instant(self) -> datetime | None:
        if self.end is None:
            return None
        return datetime.combine(self.end, time(23, 59, 59, 999000), UTC)


def _parse_day(value: Any, field: str) -> date:
    if isinstance(value, date):
        return value
    text = str(value)
    # Only the documented YYYY-MM-DD: fromisoformat alone also takes 20260131 or 2026-W05-6.
    if _ISO_DAY.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise InvalidInput(f"The {field} date must look like 2026-01-31.")


def validate_date_range(spec: dict[str, Any] | None) -> dict[str, str]:
    """Normalise a stored/posted range to ``{"preset": …}`` or ``{"start": …, "end": …}``."""
    if not spec:
        return {"preset": "all_time"}
    if "preset" in spec:
        preset = spec["preset"]
        if preset not in PRESETS:
            raise InvalidInput(
                f"Unknown date range {preset!r}; use one of: {', '.join(PRESETS)}, "
                "or a start and end date."
            )
        return {"preset": preset}
    if "start" in spec and "end" in spec:
        start = _parse_day(spec["start"], "start")
        end = _parse_day(spec["end"], "end")
        if end < start:
            raise InvalidInput("The end date is before the start date.")
        return {"start": start.isoformat(), "end": end.isoformat()}
    raise InvalidInput("A date range needs a preset, or both a start and an end date.")


def resolve(spec: dict[str, Any] | None, today: date) -> DateRange:
    """The concrete dates of a range on ``today`` (UTC)."""
    spec = validate_date_range(spec)
    if "start" in spec:
        start, end = date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])
        return DateRange(start, end, f"{start.isoformat()} to {end.isoformat()}")
    preset = spec["preset"]
    label = PRESETS[preset]
    first_of_month = today.replace(day=1)
    ranges: dict[str, tuple[date | None, date | None]] = {
        "all_time": (None, None),
        "today": (today, today),
        "yesterday": (today - timedelta(days=1), today - timedelta(days=1)),
        "last_7_days": (today - timedelta(days=6), today),
        "last_30_days": (today - timedelta(days=29), today),
        "last_90_days": (today - timedelta(days=89), today),
        "this_month": (first_of_month, today),
        "last_month": (
            (first_of_month - timedelta(days=1)).replace(day=1),
            first_of_month - timedelta(days=1),
        ),
        "this_year": (today.replace(month=1, day=1), today),
    }
    preset_start, preset_end = ranges[preset]
    if preset_start and preset_end:
        label = f"{label} ({preset_start.isoformat()} to {preset_end.isoformat()})"
    return DateRange(preset_start, preset_end, label)

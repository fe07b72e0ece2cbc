"""Ids that arrive from outside, and the one "not found" answer for them."""

from __future__ import annotations

from datetime import UTC, datetime


class NotFound(Exception):
    """The object does not exist or is not the caller's: answer 404 either way."""

    def __init__(self, what: str = "object") -> None:
        super().__init__(f"No such {what}.")
        self.what = what


def _now() -> datetime:
    return datetime.now(UTC)


def _valid_id(value: object) -> int | None:
    # Ids arrive from URLs and JSON; anything that is not a plausible primary key is
    # simply "not found" (and never reaches PostgreSQL as an out-of-range integer).
    if isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    if not 0 < number < 2**31:
        return None
    return number

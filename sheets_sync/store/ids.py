"""Ids that arrive from outside, and the one "not found" answer for them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import SupportsIndex, SupportsInt


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
    # Only what int() converts (a string, or a number-like object); anything else, like
    # None or a JSON list, is not an id. A bool is not one either, though int() takes it.
    if isinstance(value, bool) or not isinstance(
        value, str | bytes | bytearray | SupportsInt | SupportsIndex
    ):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    if not 0 < number < 2**31:
        return None
    return number

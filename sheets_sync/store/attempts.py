"""Counting sign-in, sign-up and reset attempts in the database every web process shares.

Counting reads only (``wait_seconds``); recording is a short write unit, serialised
across processes (PostgreSQL: a transaction-scoped advisory lock; SQLite: the write
lock), which also deletes rows past the longest window. Every process reads the same
rows, so N processes together allow what one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import AuthAttempt

# Arbitrary constant naming "sign-in throttle" among PostgreSQL advisory locks.
_PG_LOCK_ID = 0x5EE75_0002


@dataclass(frozen=True)
class Limit:
    """At most ``count`` attempts of ``kind`` in ``window`` seconds, per address, or per
    account and address (``per_account``), or per account from anywhere (``account_only``)."""

    kind: str
    count: int
    window: float
    per_account: bool = False
    account_only: bool = False


def _lock(s: Session) -> None:
    take_write_lock(s)
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})


def _times(s: Session, limit: Limit, address: str, account: str | None, now: float) -> list[float]:
    query = select(AuthAttempt.attempted_at).where(
        AuthAttempt.kind == limit.kind, AuthAttempt.attempted_at > now - limit.window
    )
    if not limit.account_only:
        query = query.where(AuthAttempt.address == address)
    if limit.per_account or limit.account_only:
        query = query.where(AuthAttempt.account == account)
    return sorted(s.scalars(query))


def count_recent(s: Session, limit: Limit, address: str, account: str | None, now: float) -> int:
    return len(_times(s, limit, address, account, now))


def wait_seconds(
    s: Session, limits: Sequence[Limit], address: str, account: str | None, now: float
) -> float:
    """Seconds until every limit lets one more attempt through; 0 when they do now."""
    wait = 0.0
    for limit in limits:
        times = _times(s, limit, address, account, now)
        if len(times) >= limit.count:
            # The attempt that must age out first is the count-th most recent one.
            wait = max(wait, times[-limit.count] + limit.window - now)
    return wait


def begin(s: Session, now: float, *, horizon: float) -> None:
    """Start a check-and-record unit: serialise it with every other process's, and delete
    attempts older than ``horizon`` seconds (the longest window in use)."""
    _lock(s)
    s.execute(delete(AuthAttempt).where(AuthAttempt.attempted_at < now - horizon))


def record(s: Session, kind: str, address: str, account: str | None, now: float) -> int:
    """Count one attempt (inside a unit opened with ``begin``); its id.
    ``address`` (at most 64 characters) is stored as given, so lookups find it again."""
    take_write_lock(s)
    attempt = AuthAttempt(kind=kind, address=address, account=account, attempted_at=now)
    s.add(attempt)
    s.flush()
    return attempt.id


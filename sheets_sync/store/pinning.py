"""Which service account serves each connection: the least loaded at creation, moved only
on request.

Load is what the schedules will cost an account: scheduled Sheets writes per hour (one
write per refresh). A connection that is "off" still gets Refresh clicks, so it counts a
little instead of nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sheets_sync.store.db import take_write_lock
from sheets_sync.store.ids import NotFound, _valid_id
from sheets_sync.store.models import Connection

# Scheduled writes per hour of one connection, by schedule.
WRITES_PER_HOUR = {
    "hourly": 1.0,
    "every_6_hours": 1 / 6,
    "daily": 1 / 24,
    "weekly": 1 / 168,
    "off": 1 / 720,  # a click now and then
}


def writes_per_hour(schedule: str) -> float:
    return WRITES_PER_HOUR.get(schedule, 1.0)


def account_loads(s: Session, accounts: Sequence[str]) -> dict[str, float]:
    """Scheduled writes per hour of each account (the first is the primary: unpinned
    connections are its). Paused connections cost nothing until resumed, but they are
    likely to be resumed, so they count."""
    loads = {email: 0.0 for email in accounts}
    if not accounts:
        return loads
    primary = accounts[0]
    rows = s.execute(
        select(Connection.service_account_email, Connection.schedule, func.count())
        .group_by(Connection.service_account_email, Connection.schedule)
    ).all()
    for email, schedule, count in rows:
        key = primary if email is None else email
        if key in loads:
            loads[key] += writes_per_hour(schedule) * int(count)
    return loads


def least_loaded_account(s: Session, accounts: Sequence[str]) -> str | None:
    """The pool's account with the fewest scheduled writes per hour (the earlier one on a
    tie, so a fresh pool fills the primary first only when loads are equal)."""
    if not accounts:
        return None
    loads = account_loads(s, accounts)
    return min(accounts, key=lambda email: (loads[email], accounts.index(email)))


def move_connection(s: Session, connection_id: int, email: str) -> tuple[Connection, str | None]:
    """Pin a connection to another account (the operator's ``connections move``): the
    connection and the account it had (None: unpinned). Any user's connection: this is
    an administrator's command, not a web request."""
    take_write_lock(s)
    number = _valid_id(connection_id)
    connection = s.get(Connection, number) if number is not None else None
    if connection is None:
        raise NotFound("connection")
    previous = connection.service_account_email
    s.execute(
        update(Connection)
        .where(Connection.id == connection.id)
        .values(service_account_email=email, version=Connection.version + 1)
        .execution_options(synchronize_session=False)
    )
    s.refresh(connection)
    return connection, previous


def pin_if_unpinned(s: Session, connection_id: int, email: str) -> None:
    """Record the account that served a connection stored before the pool (no-op once
    pinned: a pin is only ever changed by ``move_connection``)."""
    take_write_lock(s)
    s.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.service_account_email.is_(None))
        .values(service_account_email=email)
        .execution_options(synchronize_session=False)
    )

"""Connections seen from one spreadsheet, as the Sheets add-on sees them.

In the sidebar the open spreadsheet decides what a person sees: every connection that
writes to it, whoever owns it (teammates see freshness and may refresh). Changing one
stays the owner's right and goes through ``store.get_connection``, the ownership check.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sheets_sync.store.connections import get_connection
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.ids import NotFound, _valid_id
from sheets_sync.store.models import Connection, User

PAUSED_BY_OWNER = "Paused by its owner. Choose Resume to restart scheduled refreshes."


def connections_for_spreadsheet(s: Session, spreadsheet_id: str) -> list[Connection]:
    return list(
        s.scalars(
            select(Connection)
            .where(Connection.spreadsheet_id == spreadsheet_id)
            .order_by(Connection.id)
        )
    )


def get_spreadsheet_connection(s: Session, spreadsheet_id: str, connection_id: object
                               ) -> Connection:
    """The connection if it writes to ``spreadsheet_id``; else ``NotFound`` (the same
    answer for another spreadsheet's connection as for an id that does not exist)."""
    number = _valid_id(connection_id)
    connection = None
    if number is not None and spreadsheet_id:
        connection = s.scalar(
            select(Connection).where(
                Connection.id == number, Connection.spreadsheet_id == spreadsheet_id
            )
        )
    if connection is None:
        raise NotFound("connection")
    return connection


def pause_connection(s: Session, user: User, connection_id: int) -> Connection:
    """The owner stops scheduled refreshes (``NotFound`` if not theirs); Refresh still
    works, and Resume (``store.resume_connection``) restarts them."""
    take_write_lock(s)
    connection = get_connection(s, user, connection_id, for_update=True)
    connection.paused_reason = PAUSED_BY_OWNER
    connection.version = (connection.version or 0) + 1
    s.flush()
    return connection

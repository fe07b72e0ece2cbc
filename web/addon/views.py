"""A stored connection as the sidebar shows it (never its key)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sheets_sync import store
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.links import spreadsheet_link
from sheets_sync.store.models import Connection, SyncRun

from .. import present
from .cards import ConnectionView


def share_address(rt: Runtime, connection: Connection) -> str | None:
    """The address this connection's spreadsheet must be shared with: its pinned account."""
    return rt.service_account_email_for(connection)


def tab_link(connection: Connection) -> str | None:
    """The managed tab itself (``#gid=``), once a refresh has created or found it."""
    if connection.sheet_id is None:
        return None
    return spreadsheet_link(connection.spreadsheet_id, connection.sheet_id)


def _last_succeeded(s: Session, connection_id: int) -> SyncRun | None:
    return s.scalar(
        select(SyncRun)
        .where(SyncRun.connection_id == connection_id, SyncRun.status == "succeeded")
        .order_by(SyncRun.finished_at.desc(), SyncRun.id.desc())
        .limit(1)
    )


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    return f"{present.relative(moment, now)} ({present.utc_text(moment)})"


# The refresh could not open the spreadsheet with the service account.
_NO_ACCESS = ("sheet_not_shared", "spreadsheet_not_found")

_STATUS = {
    "queued": "Refresh queued: press Refresh card in a moment to see the outcome.",
    "running": "Refreshing now: press Refresh card in a moment to see the outcome.",
    "succeeded": "Up to date as of the last refresh",
    "failed": "The last refresh failed",
    "interrupted": "The last refresh was interrupted; it is tried again",
}


def connection_view(s: Session, rt: Runtime, connection: Connection, user_id: int,
                    now: datetime) -> ConnectionView:
    last = store.last_run(s, connection)
    ok = last if last is not None and last.status == "succeeded" else _last_succeeded(
        s, connection.id
    )
    if connection.paused_reason:
        next_refresh = "Paused"
    elif connection.schedule == "off" or connection.next_run_at is None:
        next_refresh = "None: refreshed by hand"
    else:
        next_refresh = f"{_when(connection.next_run_at, now)} · {present.schedule_text(connection)}"
    error = None
    if last is not None and last.status in ("failed", "interrupted") and last.error_message:
        error = last.error_message
    return ConnectionView(
        id=connection.id,
        name=connection.name,
        tab_title=connection.worksheet_title,
        tab_url=tab_link(connection),
        last_synced=_when(ok.finished_at if ok else None, now),
        status=_STATUS.get(last.status, last.status) if last else "Not refreshed yet",
        rows_written=ok.rows_written if ok else None,
        next_refresh=next_refresh,
        error=error,
        paused=connection.paused_reason,
        active=last is not None and last.status in ("queued", "running"),
        owned=connection.user_id == user_id,
        service_account=share_address(rt, connection),
        needs_access=ok is None or (last is not None and last.error_code in _NO_ACCESS),
    )

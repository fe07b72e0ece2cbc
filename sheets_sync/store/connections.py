"""Connections: the one ownership check, create, edit, delete, pause and resume."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography.fernet import MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from sheets_sync.connection_rules import DEFAULT_WORKSHEET_TITLE, check_fields
from sheets_sync.errors import scrub
from sheets_sync.links import parse_spreadsheet_url, spreadsheet_link
from sheets_sync.schedules import next_run_at, spread_for
from sheets_sync.store import secrets as crypto
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.ids import NotFound, _now, _valid_id
from sheets_sync.store.models import Connection, User
from sheets_sync.store.pinning import least_loaded_account

# --- connections -----------------------------------------------------------------------

# Fields a user may set through create/update. Engine-owned state (sheet_id, next_run_at,
# paused_reason, consecutive_failures) is set by the sync/scheduler, not through here.
EDITABLE_FIELDS = frozenset(
    {
        "name",
        "instantly_api_key",
        "spreadsheet_url",
        "worksheet_title",
        "campaign_ids",
        "date_range",
        "include_opportunities",
        "schedule",
        "schedule_time",
        "schedule_weekday",
        "timezone",
        "options",
    }
)


def get_connection(
    s: Session, user: User, connection_id: int, *, for_update: bool = False
) -> Connection:
    """THE ownership check: the user's connection, else ``NotFound`` (missing or not theirs).

    ``for_update``: read the row as it is now and, on PostgreSQL, hold it until the
    transaction ends, for an edit computed from what is stored (a finishing sync writes
    the same row; see ``sync._locked_connection``).
    """
    number = _valid_id(connection_id)
    connection = None
    if number is not None:
        query = select(Connection).where(Connection.id == number, Connection.user_id == user.id)
        if for_update:
            # FOR NO KEY UPDATE: queueing a run, which only references the row, goes on.
            query = query.with_for_update(key_share=True).execution_options(
                populate_existing=True
            )
        connection = s.scalar(query)
    if connection is None:
        raise NotFound("connection")
    return connection


def list_connections(s: Session, user: User) -> list[Connection]:
    return list(
        s.scalars(select(Connection).where(Connection.user_id == user.id).order_by(Connection.id))
    )


def create_connection(
    s: Session,
    user: User,
    *,
    fernet: MultiFernet,
    name: str,
    instantly_api_key: str,
    spreadsheet_url: str,
    worksheet_title: str | None = DEFAULT_WORKSHEET_TITLE,
    campaign_ids: Iterable[str] | None = None,
    date_range: Mapping[str, Any] | None = None,
    include_opportunities: bool = False,
    schedule: str = "off",
    schedule_time: str | None = None,
    schedule_weekday: int | None = None,
    timezone: str = "UTC",
    options: Mapping[str, Any] | None = None,
    service_accounts: Sequence[str] = (),
) -> Connection:
    """Validate and store a new connection; ``InvalidInput`` names the first bad field.

    ``service_accounts``: the pool's addresses (primary first); the connection is pinned
    to the least loaded one. Empty: unpinned (served by the primary account)."""
    fields = check_fields(
        dict(
            name=name, instantly_api_key=instantly_api_key, spreadsheet_url=spreadsheet_url,
            worksheet_title=worksheet_title, campaign_ids=campaign_ids, date_range=date_range,
            include_opportunities=include_opportunities, schedule=schedule,
            schedule_time=schedule_time, schedule_weekday=schedule_weekday, timezone=timezone,
            options=options,
        ),
        creating=True,
    )
    api_key = fields.pop("instantly_api_key")
    key, gid = parse_spreadsheet_url(fields.pop("spreadsheet_url"))
    take_write_lock(s)
    # Under the write lock: two connections created at once see each other's load.
    account = least_loaded_account(s, service_accounts) if service_accounts else None
    connection = Connection(
        user_id=user.id,
        service_account_email=account,
        instantly_api_key_encrypted=crypto.encrypt(fernet, api_key),
        instantly_api_key_hint=crypto.key_hint(api_key),
        spreadsheet_id=key,
        # Canonical form: no tracking parameters or odd sub-paths get stored and rendered.
        spreadsheet_url=spreadsheet_link(key, gid),
        # The gid is the tab the person happened to have open, not ours: the managed tab is
        # found/created by the sync, which must never overwrite a tab the user owns.
        sheet_id=None,
        consecutive_failures=0,
        **fields,
    )
    s.add(connection)
    s.flush()
    if connection.schedule != "off":
        # The spread comes from the id, so this is a second flush (which also stamps
        # updated_at: flush it now, so the caller sees what is stored).
        _schedule_next(connection)
        s.flush()
    return connection


def update_connection(
    s: Session, user: User, connection_id: int, *, fernet: MultiFernet, **fields: Any
) -> Connection:
    """Apply a partial update (PATCH semantics) to the user's connection.

    * ``instantly_api_key``: a non-empty value is re-encrypted; empty/None keeps the old
      key (forms never echo the key back, so a blank field means "unchanged").
    * a different spreadsheet or tab title resets ``sheet_id``: the stored tab id belongs to
      the old target. Submitting the same values again (forms send every field) does not.
    * a new key, sheet or schedule clears ``paused_reason``/``consecutive_failures``: the
      user acted on the problem, so scheduled syncs get another chance.
    * ``version`` goes up, so a sync that started before this edit does not store what
      it learnt about the old settings over the new ones.
    """
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"update_connection: not editable: {', '.join(sorted(unknown))}")
    take_write_lock(s)
    connection = get_connection(s, user, connection_id, for_update=True)
    checked = check_fields(fields)
    retry = False
    reschedule = False

    api_key = checked.pop("instantly_api_key", None)
    if api_key is not None:
        connection.instantly_api_key_encrypted = crypto.encrypt(fernet, api_key)
        connection.instantly_api_key_hint = crypto.key_hint(api_key)
        retry = True
    if "spreadsheet_url" in checked:
        key, gid = parse_spreadsheet_url(checked.pop("spreadsheet_url"))
        if key != connection.spreadsheet_id:
            connection.sheet_id = None
            retry = True
        connection.spreadsheet_id = key
        connection.spreadsheet_url = spreadsheet_link(key, gid)
    if checked.get("worksheet_title", connection.worksheet_title) != connection.worksheet_title:
        connection.sheet_id = None
        retry = True
    for name in _SCHEDULE_FIELDS:
        if name in checked:
            reschedule |= checked[name] != getattr(connection, name)
    for name, value in checked.items():
        setattr(connection, name, value)

    if reschedule or (retry and connection.paused_reason is not None):
        # The next slot from the new settings (or again, for a schedule that was paused).
        _schedule_next(connection)
    if retry or reschedule:
        connection.paused_reason = None
        connection.consecutive_failures = 0
    connection.updated_at = _now()
    connection.version = (connection.version or 0) + 1
    s.flush()
    return connection


def merge_connection_options(
    s: Session, user: User, connection_id: int, found: Mapping[str, Any]
) -> Connection:
    """Record what a check found about the connection (say, how its sheet is shared) in
    its options. Not a person's edit of the settings: ``version`` stays, so a sync running
    meanwhile still records what it learnt."""
    take_write_lock(s)
    connection = get_connection(s, user, connection_id, for_update=True)
    connection.options = {**(connection.options or {}), **found}
    s.flush()
    return connection


def delete_connection(s: Session, user: User, connection_id: int) -> None:
    """Delete the user's connection and its run history (``NotFound`` if not theirs)."""
    take_write_lock(s)
    connection = get_connection(s, user, connection_id)
    s.delete(connection)
    s.flush()


def decrypted_api_key(fernet: MultiFernet, connection: Connection) -> str:
    """The plaintext Instantly key, for the moment of the API call only. Never log it."""
    return crypto.decrypt(fernet, connection.instantly_api_key_encrypted)


# Fields whose change moves the next scheduled slot.
_SCHEDULE_FIELDS = ("schedule", "schedule_time", "schedule_weekday", "timezone")


# --- scheduling, pausing, history ------------------------------------------------------

PAUSE_AFTER_FAILURES = 3


def _schedule_next(connection: Connection, now: datetime | None = None) -> None:
    schedule_next(connection, now or _now())


def connection_next_run(connection: Connection, after: datetime) -> datetime | None:
    """The connection's next slot: its schedule's next moment plus its own spread."""
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


def resume_connection(
    s: Session, user: User, connection_id: int, *, now: datetime | None = None
) -> Connection:
    """The dashboard's "Resume": clear the pause and the failure streak, compute the
    next slot. ``NotFound`` if not the user's."""
    take_write_lock(s)
    connection = get_connection(s, user, connection_id, for_update=True)
    connection.paused_reason = None
    connection.consecutive_failures = 0
    connection.version = (connection.version or 0) + 1
    _schedule_next(connection, now)
    s.flush()
    return connection


def pause_reason_for(
    error_code: str, error_message: str, failures: int, redact: Iterable[str] = ()
) -> str:
    return (
        f"{failures} refreshes in a row failed. Last error: {scrub(error_message, redact)} "
        "Fix it, then choose Resume (or Refresh)."
    )

"""Every query for users' objects lives here.

Ownership is enforced in one place: ``get_connection`` (and ``get_run`` through the run's
connection) only ever returns objects owned by the given user and raises ``NotFound``
otherwise, with the same message whether the id does not exist or belongs to somebody
else, so ids cannot be probed. Web and API code call these functions and never query
``Connection`` or ``SyncRun`` by id themselves.

Every function takes the caller's ``Session`` and does not commit: the caller's
``session_scope`` decides the transaction. Flushes happen where an id or a constraint
check is needed.

Every function that writes calls ``db.take_write_lock`` before its first statement, so on
SQLite its transaction holds the write lock from the start (see ``sheets_sync.db``). A
caller that reads in the same transaction before calling one takes the lock itself
first; reading functions take nothing, so read-only requests never wait for a writer.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import MultiFernet
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from . import secrets as crypto
from .date_ranges import validate_date_range
from .db import take_write_lock
from .errors import InvalidInput, scrub
from .links import parse_spreadsheet_url, spreadsheet_link
from .models import (
    ACTIVE_RUN_STATUSES,
    DEFAULT_WORKSHEET_TITLE,
    FINISHED_RUN_STATUSES,
    RUN_TRIGGERS,
    SCHEDULES,
    ApiKey,
    Connection,
    SyncRun,
    User,
)
from .wakeup import notify_run_queued


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


# --- users -----------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_PASSWORD_METHOD = "scrypt"  # noqa: S105 - the hash algorithm, not a password
_DUMMY_HASH: str | None = None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(s: Session, email: str, password: str) -> User:
    """Create a user; ``InvalidInput`` for a malformed or already registered email."""
    email = normalize_email(email)
    if len(email) > 320 or not _EMAIL_RE.match(email):
        raise InvalidInput("Enter an email address such as name@example.com.")
    if not password:
        raise InvalidInput("Enter a password.")
    take_write_lock(s)
    user = User(email=email, password_hash=generate_password_hash(password, _PASSWORD_METHOD))
    try:
        # SAVEPOINT: a duplicate must not roll back the caller's whole transaction.
        with s.begin_nested():
            s.add(user)
    except IntegrityError:
        raise InvalidInput(f"A user with the email {email} already exists.") from None
    return user


def get_user_by_email(s: Session, email: str) -> User | None:
    return s.scalar(select(User).where(User.email == normalize_email(email)))


def get_user(s: Session, user_id: int) -> User | None:
    """For session loaders (Flask-Login) that stored the id themselves."""
    number = _valid_id(user_id)
    return None if number is None else s.get(User, number)


def authenticate(s: Session, email: str, password: str) -> User | None:
    """The user if the password matches, else None, in the same time either way."""
    user = get_user_by_email(s, email)
    if user is None:
        # Hash anyway so "no such user" takes as long as "wrong password" and the
        # response time does not reveal which emails are registered.
        check_password_hash(_dummy_hash(), password)
        return None
    if check_password_hash(user.password_hash, password):
        return user
    return None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16), _PASSWORD_METHOD)
    return _DUMMY_HASH


# --- API keys --------------------------------------------------------------------------

API_KEY_PREFIX = "ssk_"
_API_KEY_SHOWN_CHARS = 8
# Writing last_used_at on every request would turn every API read into a write (and on
# SQLite, into a wait for the write lock); minute precision is what a person needs.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_api_key(s: Session, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for ``user``; the plaintext is returned here once and never stored."""
    name = (name or "").strip() or "API key"
    if len(name) > 200:
        raise InvalidInput("The key name is too long (200 characters at most).")
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    take_write_lock(s)
    key = ApiKey(
        user_id=user.id,
        name=name,
        prefix=plaintext[:_API_KEY_SHOWN_CHARS],
        key_hash=_hash_api_key(plaintext),
    )
    s.add(key)
    s.flush()
    return key, plaintext


def list_api_keys(s: Session, user: User) -> list[ApiKey]:
    return list(s.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)))


def revoke_api_key(s: Session, user: User, key_id: int) -> ApiKey:
    """Revoke one of the user's keys (idempotent); ``NotFound`` if it is not theirs."""
    take_write_lock(s)
    number = _valid_id(key_id)
    key = None
    if number is not None:
        key = s.scalar(select(ApiKey).where(ApiKey.id == number, ApiKey.user_id == user.id))
    if key is None:
        raise NotFound("API key")
    if key.revoked_at is None:
        key.revoked_at = _now()
        s.flush()
    return key


def find_api_key(s: Session, plaintext: str) -> ApiKey | None:
    """The valid, unrevoked key ``plaintext`` names, else None. Reads only.

    The lookup is by sha256 through a unique index rather than a constant-time compare:
    timing can at most reveal a prefix of the *hash*, which does not help find a key.
    """
    if not isinstance(plaintext, str) or not plaintext.startswith(API_KEY_PREFIX):
        return None
    if len(plaintext) > 200:
        return None
    return s.scalar(
        select(ApiKey).where(
            ApiKey.key_hash == _hash_api_key(plaintext), ApiKey.revoked_at.is_(None)
        )
    )


def user_for_api_key(s: Session, plaintext: str) -> User | None:
    """The owner of a valid, unrevoked key, else None. Reads only: the request's use of
    the key is recorded separately (``api_key_use_due``, ``record_api_key_use``)."""
    key = find_api_key(s, plaintext)
    return None if key is None else s.get(User, key.user_id)


def api_key_use_due(key: ApiKey, *, now: datetime | None = None) -> bool:
    """Whether ``last_used_at`` is stale enough to be written again (once a minute)."""
    last = key.last_used_at
    return last is None or (now or _now()) - last >= _LAST_USED_RESOLUTION


def record_api_key_use(s: Session, key_id: int, *, now: datetime | None = None) -> bool:
    """Stamp ``last_used_at`` unless another request did within the last minute; a
    unit of its own, so an API read takes the write lock only when a stamp is due."""
    take_write_lock(s)
    now = now or _now()
    result = s.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.last_used_at.is_(None))
            | (ApiKey.last_used_at <= now - _LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


# --- connections -----------------------------------------------------------------------

_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

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
) -> Connection:
    """Validate and store a new connection; ``InvalidInput`` names the first bad field."""
    api_key = _clean_api_key(instantly_api_key)
    if api_key is None:
        raise InvalidInput("Enter the Instantly API key.")
    key, gid = parse_spreadsheet_url(spreadsheet_url)
    take_write_lock(s)
    connection = Connection(
        user_id=user.id,
        name=_clean_name(name),
        instantly_api_key_encrypted=crypto.encrypt(fernet, api_key),
        instantly_api_key_hint=crypto.key_hint(api_key),
        spreadsheet_id=key,
        # Canonical form: no tracking parameters or odd sub-paths get stored and rendered.
        spreadsheet_url=spreadsheet_link(key, gid),
        # The gid is the tab the person happened to have open, not ours: the managed tab is
        # found/created by the sync, which must never overwrite a tab the user owns.
        sheet_id=None,
        worksheet_title=_clean_worksheet_title(worksheet_title),
        campaign_ids=_clean_campaign_ids(campaign_ids),
        date_range=_clean_date_range(date_range),
        include_opportunities=_clean_bool(include_opportunities, "include_opportunities"),
        schedule=_clean_schedule(schedule),
        schedule_time=_clean_schedule_time(schedule_time),
        schedule_weekday=_clean_weekday(schedule_weekday),
        timezone=_clean_timezone(timezone),
        options=_clean_options(options),
        consecutive_failures=0,
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
    retry = False
    reschedule = False

    if "name" in fields:
        connection.name = _clean_name(fields["name"])
    if "instantly_api_key" in fields:
        api_key = _clean_api_key(fields["instantly_api_key"])
        if api_key is not None:
            connection.instantly_api_key_encrypted = crypto.encrypt(fernet, api_key)
            connection.instantly_api_key_hint = crypto.key_hint(api_key)
            retry = True
    if "spreadsheet_url" in fields:
        key, gid = parse_spreadsheet_url(fields["spreadsheet_url"])
        if key != connection.spreadsheet_id:
            connection.sheet_id = None
            retry = True
        connection.spreadsheet_id = key
        connection.spreadsheet_url = spreadsheet_link(key, gid)
    if "worksheet_title" in fields:
        title = _clean_worksheet_title(fields["worksheet_title"])
        if title != connection.worksheet_title:
            connection.sheet_id = None
            retry = True
        connection.worksheet_title = title
    if "campaign_ids" in fields:
        connection.campaign_ids = _clean_campaign_ids(fields["campaign_ids"])
    if "date_range" in fields:
        connection.date_range = _clean_date_range(fields["date_range"])
    if "include_opportunities" in fields:
        connection.include_opportunities = _clean_bool(
            fields["include_opportunities"], "include_opportunities"
        )
    for name, clean in _SCHEDULE_FIELDS:
        if name in fields:
            value = clean(fields[name])
            reschedule |= value != getattr(connection, name)
            setattr(connection, name, value)
    if "options" in fields:
        connection.options = _clean_options(fields["options"])

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


def delete_connection(s: Session, user: User, connection_id: int) -> None:
    """Delete the user's connection and its run history (``NotFound`` if not theirs)."""
    take_write_lock(s)
    connection = get_connection(s, user, connection_id)
    s.delete(connection)
    s.flush()


def decrypted_api_key(fernet: MultiFernet, connection: Connection) -> str:
    """The plaintext Instantly key, for the moment of the API call only. Never log it."""
    return crypto.decrypt(fernet, connection.instantly_api_key_encrypted)


def _clean_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("Give the connection a name.")
    value = value.strip()
    if len(value) > 200:
        raise InvalidInput("The name is too long (200 characters at most).")
    return value


def _clean_api_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("The Instantly API key must be text.")
    value = value.strip()
    if not value:
        return None
    if len(value) > 500 or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidInput(
            "That does not look like an Instantly API key. Copy it again from Instantly: "
            "Settings, Integrations, API Keys."
        )
    return value


def _clean_worksheet_title(value: Any) -> str:
    if value is None:
        return DEFAULT_WORKSHEET_TITLE
    if not isinstance(value, str):
        raise InvalidInput("The tab name must be text.")
    value = value.strip()
    if not value:
        return DEFAULT_WORKSHEET_TITLE
    if len(value) > 100 or any(ord(c) < 32 for c in value):
        raise InvalidInput("The tab name must be at most 100 characters, on one line.")
    return value


def _clean_campaign_ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidInput("campaign_ids must be a list of campaign ids (empty = all campaigns).")
    result: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item.strip()) > 100:
            raise InvalidInput("Each campaign id must be a non-empty text value.")
        item = item.strip()
        if item not in result:
            result.append(item)
    return result


def _clean_date_range(value: Any) -> dict[str, str]:
    shape = 'date_range must be {"preset": ...} or {"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}.'
    if value is None:
        return {"preset": "all_time"}
    if not isinstance(value, Mapping) or set(value) not in ({"preset"}, {"start", "end"}):
        raise InvalidInput(shape)
    for field in ("start", "end"):
        if field in value and not (
            isinstance(value[field], str) and _ISO_DATE_RE.match(value[field])
        ):
            raise InvalidInput(f"The {field} date must be written YYYY-MM-DD.")
    # One rule for presets and ordering, shared with the sync (sheets_sync.date_ranges).
    return validate_date_range(dict(value))


def _clean_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false.")
    return value


def _clean_schedule(value: Any) -> str:
    if value not in SCHEDULES:
        raise InvalidInput(f"schedule must be one of: {', '.join(SCHEDULES)}.")
    return str(value)


def _clean_schedule_time(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TIME_RE.match(value):
        raise InvalidInput("The time must be written HH:MM, 24-hour clock (e.g. 07:30).")
    return value


def _clean_weekday(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
        raise InvalidInput("schedule_weekday must be 0 (Monday) to 6 (Sunday).")
    return value


def _clean_timezone(value: Any) -> str:
    if value is None or value == "":
        return "UTC"
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput("Unknown time zone; use a name such as Europe/Berlin or UTC.")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("Unknown time zone; use a name such as Europe/Berlin or UTC.") from None
    return value


# Fields whose change moves the next scheduled slot, each with its cleaner.
_SCHEDULE_FIELDS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("schedule", _clean_schedule),
    ("schedule_time", _clean_schedule_time),
    ("schedule_weekday", _clean_weekday),
    ("timezone", _clean_timezone),
)


def _clean_options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput("options must be an object with text keys.")
    return dict(value)


# --- runs ------------------------------------------------------------------------------
#
# Every run function takes an optional aware ``now``: the worker passes its runtime clock,
# so leases, queue times and expiry are all measured on the same clock (a test with a
# fake clock cannot get a lease stamped in real time and expired in fake time).

DEFAULT_MAX_ATTEMPTS = 3
_MAX_ERROR_MESSAGE = 4000
WORKER_LOST = "worker_lost"


def enqueue_run(
    s: Session, connection: Connection, trigger: str, *, now: datetime | None = None
) -> tuple[SyncRun, bool]:
    """Queue a sync: ``(new run, True)``, or ``(the queued/running run, False)`` if any.

    Race-safe without locks: the partial unique index allows one active run per
    connection, so of two concurrent inserts one fails; it is caught inside a SAVEPOINT
    (the caller's transaction survives) and the winner's run is returned.

    On PostgreSQL a new run also sends a ``NOTIFY`` that wakes the workers when the
    caller's transaction commits (``sheets_sync.wakeup``).
    """
    if trigger not in RUN_TRIGGERS:
        raise ValueError(f"trigger must be one of {RUN_TRIGGERS}")
    take_write_lock(s)
    return _enqueue(s, connection.id, trigger, attempt=1, now=now or _now())


def _find_active_run(s: Session, connection_id: int) -> SyncRun | None:
    return s.scalar(
        select(SyncRun)
        .where(SyncRun.connection_id == connection_id, SyncRun.status.in_(ACTIVE_RUN_STATUSES))
        .execution_options(populate_existing=True)
    )


def _enqueue(
    s: Session, connection_id: int, trigger: str, *, attempt: int, now: datetime
) -> tuple[SyncRun, bool]:
    existing = _find_active_run(s, connection_id)
    if existing is not None:
        return existing, False
    run = SyncRun(
        connection_id=connection_id,
        status="queued",
        trigger=trigger,
        queued_at=now,
        attempt=attempt,
    )
    try:
        with s.begin_nested():
            s.add(run)
    except IntegrityError:
        # Someone else's run won the unique index between our SELECT and INSERT
        # (PostgreSQL: our INSERT waited for their commit). Return theirs.
        existing = _find_active_run(s, connection_id)
        if existing is None:
            raise  # a different integrity problem, e.g. the connection was just deleted
        return existing, False
    notify_run_queued(s)
    return run, True


def claim_next_run(
    s: Session, worker_id: str, lease_seconds: float, *, now: datetime | None = None
) -> SyncRun | None:
    """Take the oldest queued run for this worker (status running + lease), or None.

    Correct under any concurrency: the conditional UPDATE only succeeds while the run is
    still queued, so of two workers exactly one sees rowcount 1. On PostgreSQL the
    candidate is selected ``FOR UPDATE SKIP LOCKED`` so concurrent workers pick different
    runs instead of queueing on the same row; on SQLite the transaction takes the write
    lock first (``db.take_write_lock``), so the SELECT and the UPDATE see the same queue.
    """
    take_write_lock(s)
    query = (
        select(SyncRun.id)
        .where(SyncRun.status == "queued")
        .order_by(SyncRun.queued_at, SyncRun.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    for _ in range(5):
        candidate = s.scalar(query)
        if candidate is None:
            return None
        run = claim_run(s, candidate, worker_id, lease_seconds, now=now)
        if run is not None:
            return run
        # Lost the race for this one (only possible without row locks); try the next.
    return None


def claim_run(
    s: Session,
    run_id: int,
    worker_id: str,
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> SyncRun | None:
    """Claim a specific queued run (e.g. the CLI's foreground sync); None if not queued."""
    if not worker_id:
        raise ValueError("worker_id is required")
    take_write_lock(s)
    now = now or _now()
    result = s.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return s.get(SyncRun, run_id, populate_existing=True)


def renew_lease(
    s: Session,
    run_id: int,
    worker_id: str,
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> bool:
    """Extend the lease of a run this worker holds; False if it no longer holds it."""
    take_write_lock(s)
    result = s.execute(
        update(SyncRun)
        .where(
            SyncRun.id == run_id,
            SyncRun.worker_id == worker_id,
            SyncRun.status == "running",
        )
        .values(lease_expires_at=(now or _now()) + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish_run(
    s: Session,
    run_id: int,
    *,
    status: str,
    rows_written: int | None = None,
    http_calls: int | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    sheet_url: str | None = None,
    worker_id: str | None = None,
    now: datetime | None = None,
    redact: Iterable[str] = (),
) -> bool:
    """Record a running run's outcome. False (nothing written) if it is not running any
    more, e.g. its lease expired and it was already marked interrupted and re-queued;
    pass ``worker_id`` to also require that this worker still holds it.

    ``error_message`` is scrubbed of ``redact`` (the connection's Instantly key) and of
    anything credential-like before it is stored: the last line of defence for text that
    came from an upstream answer."""
    if status not in FINISHED_RUN_STATUSES:
        raise ValueError(f"status must be one of {FINISHED_RUN_STATUSES}")
    if error_message is not None:
        error_message = scrub(error_message, redact)
    if error_message is not None and len(error_message) > _MAX_ERROR_MESSAGE:
        error_message = error_message[: _MAX_ERROR_MESSAGE - 1] + "…"
    take_write_lock(s)
    conditions = [SyncRun.id == run_id, SyncRun.status == "running"]
    if worker_id is not None:
        conditions.append(SyncRun.worker_id == worker_id)
    result = s.execute(
        update(SyncRun)
        .where(*conditions)
        .values(
            status=status,
            finished_at=now or _now(),
            lease_expires_at=None,
            rows_written=rows_written,
            http_calls=http_calls,
            error_code=error_code,
            error_message=error_message,
            sheet_url=sheet_url,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    s.get(SyncRun, run_id, populate_existing=True)  # refresh a copy the caller may hold
    return True


def expire_leases(
    s: Session, now: datetime | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> int:
    """Mark running runs whose lease has passed as ``interrupted`` ("worker_lost") and
    queue a fresh run (attempt + 1) for the same connection; returns how many expired.

    The interrupted run stays in the history. After ``max_attempts`` nothing is re-queued:
    a run that keeps killing its worker (out of memory, say) must not loop forever.
    """
    take_write_lock(s)
    now = now or _now()
    expired = list(
        s.execute(
            select(SyncRun.id, SyncRun.connection_id, SyncRun.trigger, SyncRun.attempt)
            .where(SyncRun.status == "running", SyncRun.lease_expires_at < now)
            .order_by(SyncRun.id)
            .with_for_update(skip_locked=True)
        )
    )
    count = 0
    for run_id, connection_id, trigger, attempt in expired:
        requeue = attempt < max_attempts
        message = "The worker running this sync stopped responding before it finished."
        message += (
            " The sync was queued again."
            if requeue
            else f" Gave up after {attempt} attempts; start it again with Refresh."
        )
        result = s.execute(
            update(SyncRun)
            .where(
                SyncRun.id == run_id,
                SyncRun.status == "running",
                SyncRun.lease_expires_at < now,
            )
            .values(
                status="interrupted",
                finished_at=now,
                error_code=WORKER_LOST,
                error_message=message,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue  # renewed or finished in the meantime
        count += 1
        s.get(SyncRun, run_id, populate_existing=True)
        if requeue:
            _enqueue(s, connection_id, trigger, attempt=attempt + 1, now=now)
    return count


def list_runs(s: Session, user: User, connection_id: int, limit: int = 50) -> list[SyncRun]:
    """The user's connection's runs, newest first (``NotFound`` if not theirs)."""
    connection = get_connection(s, user, connection_id)
    limit = max(1, min(int(limit), 1000))
    return list(
        s.scalars(
            select(SyncRun)
            .where(SyncRun.connection_id == connection.id)
            .order_by(SyncRun.queued_at.desc(), SyncRun.id.desc())
            .limit(limit)
        )
    )


def get_run(s: Session, user: User, run_id: int) -> SyncRun:
    """A run of one of the user's connections, else ``NotFound``."""
    number = _valid_id(run_id)
    run = None
    if number is not None:
        run = s.scalar(
            select(SyncRun)
            .join(Connection, Connection.id == SyncRun.connection_id)
            .where(SyncRun.id == number, Connection.user_id == user.id)
        )
    if run is None:
        raise NotFound("run")
    return run


def last_run(s: Session, connection: Connection) -> SyncRun | None:
    return s.scalar(
        select(SyncRun)
        .where(SyncRun.connection_id == connection.id)
        .order_by(SyncRun.queued_at.desc(), SyncRun.id.desc())
        .limit(1)
    )


def last_runs(s: Session, connections: Iterable[Connection]) -> dict[int, SyncRun]:
    """The newest run of each connection in one query (the dashboard lists many)."""
    ids = [c.id for c in connections]
    if not ids:
        return {}
    newest = (
        select(SyncRun.connection_id, func.max(SyncRun.id).label("run_id"))
        .where(SyncRun.connection_id.in_(ids))
        .group_by(SyncRun.connection_id)
        .subquery()
    )
    runs = s.scalars(select(SyncRun).join(newest, SyncRun.id == newest.c.run_id))
    return {run.connection_id: run for run in runs}


# --- scheduling, pausing, history ------------------------------------------------------

PAUSE_AFTER_FAILURES = 3


def _schedule_next(connection: Connection, now: datetime | None = None) -> None:
    from .scheduler import schedule_next  # the scheduler imports this module

    schedule_next(connection, now or _now())


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


def prune_runs(s: Session, older_than: datetime) -> int:
    """Delete finished runs that finished before ``older_than``, keeping each connection's
    newest run (the page shows it as the last result however old it is)."""
    take_write_lock(s)
    newest = (
        select(func.max(SyncRun.id)).group_by(SyncRun.connection_id).scalar_subquery()
    )
    result = s.execute(
        delete(SyncRun)
        .where(
            SyncRun.status.in_(FINISHED_RUN_STATUSES),
            SyncRun.finished_at < older_than,
            SyncRun.id.not_in(newest),
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

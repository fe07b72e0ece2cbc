"""The stored data: users, their API keys, their connections and the runs of each sync.

Rules that hold for every table:

* Every datetime is timezone-aware UTC in Python (``UTCDateTime`` below), whatever the
  database. A naive datetime is refused on write: mixing naive and aware values is the
  classic source of "the schedule is off by two hours" bugs.
* Enumerations are short strings guarded by CHECK constraints (portable, readable in a
  SQL shell, and adding a value is a one-line migration).
* The schema here is the truth the migrations are checked against
  (``tests/test_store.py`` asserts that alembic sees no difference).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.ext.mutable import MutableDict, MutableList
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# The schedule vocabulary is the rules' own, so the CHECK below cannot drift from them.
from sheets_sync.connection_rules import DEFAULT_WORKSHEET_TITLE, SCHEDULES

# --- vocabularies ----------------------------------------------------------------------

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "interrupted")
ACTIVE_RUN_STATUSES = ("queued", "running")
FINISHED_RUN_STATUSES = ("succeeded", "failed", "interrupted")
RUN_TRIGGERS = ("manual", "api", "schedule", "cli", "addon")

# Deterministic constraint names: SQLite batch migrations (copy-and-move) can only drop or
# alter constraints that have a name, and identical names on both databases keep future
# migrations portable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sql_in(values: tuple[str, ...]) -> str:
    # Only ever called with the constant vocabularies above, never with user input.
    return ", ".join(f"'{v}'" for v in values)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that always gives back aware UTC datetimes.

    PostgreSQL stores ``timestamptz`` and returns it in the session's time zone; SQLite has
    no datetime type at all and SQLAlchemy stores ISO text without an offset. So: convert
    to UTC on the way in (and drop the offset for SQLite, where every stored value is UTC by
    this rule, so text comparison orders correctly), and attach/convert to UTC on the way
    out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "naive datetime given to a UTC column; use datetime.now(UTC) or an aware value"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- users and their API keys ----------------------------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Always stored lower-cased (store.create_user), so the unique constraint is
    # case-insensitive in effect on every database without citext or functional indexes.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Part of the id every session carries (web.users): bumped by sign-out, a password
    # change or a reset, which ends every session signed in before.
    session_generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    connections: Mapped[list[Connection]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    google_identity: Mapped[GoogleIdentity | None] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def contact_email(self) -> str:
        """Where to write to the person: an account made from the Sheets add-on has a
        placeholder login e-mail (it has no password), its Google address is the real one."""
        if self.email.endswith(GOOGLE_ACCOUNT_EMAIL_DOMAIN) and self.google_identity:
            return self.google_identity.email
        return self.email

    def __repr__(self) -> str:
        return f"<User id={self.id} email={self.email!r}>"


# An account created by the add-on for a first-time Google user has this login e-mail
# (``.invalid`` is reserved, so it can never collide with a real address a person signs up
# with, and nobody can sign in with it: its password hash matches no password).
GOOGLE_ACCOUNT_EMAIL_DOMAIN = "@google-account.sheets-sync.invalid"


class GoogleIdentity(Base):
    """A Google account (the add-on's verified ``userIdToken``) bound to one user.

    Bound by Google's ``sub``, never by e-mail: an address can change hands, ``sub`` not.
    """

    __tablename__ = "google_identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    sub: Mapped[str] = mapped_column(String(255), unique=True)
    # As Google last verified it; for display and e-mail only, never for matching.
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship(back_populates="google_identity")

    def __repr__(self) -> str:
        return f"<GoogleIdentity id={self.id} user_id={self.user_id}>"


class AccountLinkToken(Base):
    """A one-time link, made in the sidebar for one Google identity, that a person signed
    in on the web page confirms to join the two accounts. Only its sha256 is stored."""

    __tablename__ = "account_link_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    google_identity_id: Mapped[int] = mapped_column(
        ForeignKey("google_identities.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The first 8 characters ("ssk_" + 4), shown in lists so a person can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    # sha256 hex of the whole key. The keys are 256-bit random tokens we generate, so a
    # fast unsalted hash is the right tool: there is nothing to brute-force or look up in
    # a dictionary, and a slow password hash would cost ~50 ms on every API request.
    # Unique + indexed: the lookup is by hash, never by comparing plaintext.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="api_keys")

    def __repr__(self) -> str:
        return f"<ApiKey id={self.id} prefix={self.prefix!r}>"


# --- connections -----------------------------------------------------------------------


class Connection(Base):
    """One Instantly workspace key + one Google Sheet tab, refreshed on click or schedule."""

    __tablename__ = "connections"
    __table_args__ = (
        CheckConstraint(f"schedule IN ({_sql_in(SCHEDULES)})", name="schedule"),
        CheckConstraint(
            "schedule_weekday IS NULL OR (schedule_weekday >= 0 AND schedule_weekday <= 6)",
            name="schedule_weekday",
        ),
        CheckConstraint("consecutive_failures >= 0", name="consecutive_failures"),
        # The scheduler asks "which connections are due" on every tick.
        Index("ix_connections_next_run_at", "next_run_at"),
        # Choosing the least loaded account counts schedules per account.
        Index("ix_connections_service_account_email", "service_account_email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # Fernet token (sheets_sync.secrets); the plaintext never touches the database.
    instantly_api_key_encrypted: Mapped[str] = mapped_column(Text)
    # "…3f9a": enough for a person to recognise which key is stored, useless to anyone else.
    instantly_api_key_hint: Mapped[str] = mapped_column(String(16))
    spreadsheet_id: Mapped[str] = mapped_column(String(200))
    spreadsheet_url: Mapped[str] = mapped_column(String(2048))
    worksheet_title: Mapped[str] = mapped_column(
        String(100), default=DEFAULT_WORKSHEET_TITLE, server_default=DEFAULT_WORKSHEET_TITLE
    )
    # The managed tab's sheetId once created/found. Sheet ids survive renames, so this is
    # how the tab is found again; None means "find by title or create".
    sheet_id: Mapped[int | None] = mapped_column(Integer)
    # Empty list = all campaigns combined (Instantly's own default when campaign_id is
    # omitted). Mutable* so in-place edits (``c.options["x"] = 1``) are saved too.
    campaign_ids: Mapped[list[str]] = mapped_column(MutableList.as_mutable(JSON()), default=list)
    # {"preset": "last_30_days"} or {"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}.
    date_range: Mapped[dict[str, str]] = mapped_column(
        MutableDict.as_mutable(JSON()), default=lambda: {"preset": "all_time"}
    )
    include_opportunities: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    schedule: Mapped[str] = mapped_column(String(16), default="off", server_default="off")
    schedule_time: Mapped[str | None] = mapped_column(String(5))  # "HH:MM", local time
    schedule_weekday: Mapped[int | None] = mapped_column(Integer)  # Monday = 0
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # None with a schedule other than "off" means "the scheduler must compute it".
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why scheduled syncs stopped (e.g. the key was rejected); None = not paused.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the owner was e-mailed about the current failure streak (None = not told, or
    # no streak). One e-mail per streak, and a recovery e-mail only after one was sent.
    failure_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The service account this connection's sheet is shared with (its client_email), one
    # of the pool's (sheets_sync.jobs.accounts). None: stored before the pool, served by
    # the primary account and pinned to it by its first successful refresh.
    service_account_email: Mapped[str | None] = mapped_column(String(320))
    # Per-connection feature switches, so a new option needs no migration.
    options: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    # The table of the last successful refresh, for the connection's page: most of what a
    # sync stores. Apart from the options and loaded only when read, so a worker neither
    # parses nor rewrites it with the options on every refresh (0010 moved it here).
    last_table: Mapped[dict[str, Any] | None] = mapped_column(JSON(), deferred=True)
    # Bumped by every edit a person makes (store.update_connection, resume), never by a
    # sync's own bookkeeping: a finishing sync compares it with the version it started
    # from, so what it learnt about the old settings never lands on the new ones.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="connections")
    runs: Mapped[list[SyncRun]] = relationship(
        back_populates="connection",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SyncRun.id",
    )

    def __repr__(self) -> str:
        # Deliberately no key material, not even the encrypted token.
        return f"<Connection id={self.id} name={self.name!r} user_id={self.user_id}>"


# --- runs ------------------------------------------------------------------------------

# The rows the one-active-run index covers (an insert's ON CONFLICT names them too).
ACTIVE_RUN_WHERE = text(f"status IN ({_sql_in(ACTIVE_RUN_STATUSES)})")


class SyncRun(Base):
    """One attempt to refresh a connection's tab, from queued to a final status."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_sql_in(RUN_STATUSES)})", name="status"),
        CheckConstraint(f"trigger IN ({_sql_in(RUN_TRIGGERS)})", name="trigger"),
        CheckConstraint("attempt >= 1", name="attempt"),
        # At most one queued-or-running run per connection, enforced by the database
        # itself: two clicks, an API call and the scheduler racing each other still yield
        # one run, and two workers can never write the same tab at once.
        Index(
            "uq_sync_runs_one_active_per_connection",
            "connection_id",
            unique=True,
            sqlite_where=ACTIVE_RUN_WHERE,
            postgresql_where=ACTIVE_RUN_WHERE,
        ),
        # Workers look for the oldest queued run.
        Index("ix_sync_runs_status_queued_at", "status", "queued_at"),
        # Run history of one connection, newest first.
        Index("ix_sync_runs_connection_id_queued_at", "connection_id", "queued_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rows_written: Mapped[int | None] = mapped_column(Integer)
    http_calls: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    # A running run whose lease passes is presumed orphaned (worker crashed or was killed)
    # and is re-queued by store.expire_leases.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    sheet_url: Mapped[str | None] = mapped_column(String(2048))
    # The totals check of a succeeded run (step rows against Instantly's overview), in
    # the words the tab's info line uses; never a failure.
    drift: Mapped[str | None] = mapped_column(Text)
    # The run's number among its connection's runs (1 = its first), shown to people;
    # ``id`` is global and stays the API's. Set when the run is queued.
    number: Mapped[int | None] = mapped_column(Integer)

    connection: Mapped[Connection] = relationship(back_populates="runs")

    def __repr__(self) -> str:
        return (
            f"<SyncRun id={self.id} connection_id={self.connection_id} "
            f"status={self.status!r} attempt={self.attempt}>"
        )


# --- coordination between workers ------------------------------------------------------


class RateLimit(Base):
    """One shared budget (``sheets:write``, ``instantly:<key digest>``) or a named
    once-in-a-while job (``housekeeping:prune_runs``), coordinated by every worker process.

    The row is the lock for its budget's grants (``SELECT … FOR UPDATE``) and carries the
    cooldown a 429 imposes on every worker. Times are Unix seconds (floats): sub-second
    precision, no time-zone handling in the hot path.
    """

    __tablename__ = "rate_limits"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    blocked_until: Mapped[float] = mapped_column(Double(), default=0.0, server_default="0")


class RateLimitGrant(Base):
    """One permit handed out (an HTTP call made or about to be made) under a budget."""

    __tablename__ = "rate_limit_grants"
    __table_args__ = (Index("ix_rate_limit_grants_name_granted_at", "name", "granted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    granted_at: Mapped[float] = mapped_column(Double())


# --- account security ------------------------------------------------------------------

AUTH_ATTEMPT_KINDS = ("login", "signup", "reset")


class AuthAttempt(Base):
    """One sign-in (failed, or still being checked), sign-up or reset request, counted by
    every web process against the throttle's limits (``store.attempts``). Rows older than
    the longest window are deleted as new ones arrive."""

    __tablename__ = "auth_attempts"
    __table_args__ = (
        Index("ix_auth_attempts_kind_address_attempted_at", "kind", "address", "attempted_at"),
        Index("ix_auth_attempts_kind_account_attempted_at", "kind", "account", "attempted_at"),
        Index("ix_auth_attempts_attempted_at", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # The client address as the app sees it (through ProxyFix when proxies are trusted).
    address: Mapped[str] = mapped_column(String(64))
    # The normalized e-mail typed, for sign-ins; None for the others.
    account: Mapped[str | None] = mapped_column(String(320))
    # Unix seconds, like the call budgets: plain arithmetic in the window queries.
    attempted_at: Mapped[float] = mapped_column(Double())


class PasswordResetToken(Base):
    """An e-mailed reset link: single use, time-limited, only its sha256 is stored."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The tokens are 256-bit random values: a fast hash is enough (as for API keys).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

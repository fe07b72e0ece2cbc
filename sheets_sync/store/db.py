"""Engines and sessions for SQLite (the embedded default) and PostgreSQL (production).

Keep transactions short: open a ``session_scope`` for one unit of work (claim a run,
record a result) and never hold one across a network call.

Read units and write units on SQLite
------------------------------------

Sessions begin ``DEFERRED``: a transaction that only reads takes no lock, and under WAL
it reads its snapshot while another connection writes, so page views and API reads
never queue behind a worker recording a run.

A unit that reads and then writes must instead hold SQLite's write lock from its first
statement, by calling ``take_write_lock(s)`` before anything else. The reason is SQLite,
not taste: a deferred transaction that has read and then writes fails at once with
"database is locked" if another connection holds the write lock or committed since the
read (WAL snapshot conflict; ``busy_timeout`` is not consulted for that upgrade). With
the lock taken at ``BEGIN IMMEDIATE``, a busy database is a wait of at most
``SQLITE_BUSY_TIMEOUT_MS`` instead of an error.

Every store and quota function that writes calls ``take_write_lock`` first. A caller
whose own code reads before calling one (look up the user, then create a connection)
calls it at the top of its unit (``session_scope(factory, write=True)``); the store's
calls are then no-ops. A caller that forgets gets a ``RuntimeError`` from the store
function, in the tests and every time, not only the day two writers collide. Code
outside the store whose unit starts with a write statement would not need the lock
(SQLite takes it at that statement and waits for it like for any other), but the
store functions take it anyway, so the rule stays "writes take the lock first".

On PostgreSQL ``take_write_lock`` does nothing: row locks (``FOR UPDATE``, ``SKIP
LOCKED``) and the unique indexes already make those units safe, and readers never wait.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Engine,
    Result,
    Table,
    Update,
    bindparam,
    create_engine,
    event,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import StaticPool

# Milliseconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

# Execution option read by the SQLite "begin" hook: "DEFERRED" (SQLite's default) or
# "IMMEDIATE" (take the write lock at BEGIN).
SQLITE_BEGIN_OPTION = "sheets_sync_sqlite_begin"
# Session.info key: how the session's current transaction began on SQLite, so that
# take_write_lock can tell "not begun yet" from "already read without the lock".
_BEGUN_AS = "sheets_sync_sqlite_begun_as"


# libpq settings for every PostgreSQL connection unless the URL sets them: give up on an
# unreachable server after 10 s instead of hanging, and have the kernel probe a connection
# idle for 30 s. The probes keep a NAT or firewall between a worker and the database from
# silently forgetting a pooled connection, and a dead one fails them within about a
# minute, so the ping before reusing an idle connection fails at once instead of
# waiting out TCP's retransmissions (many minutes).
POSTGRES_CONNECT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(url: str, *, sqlite_foreign_keys: bool = True) -> Engine:
    """Create an engine with the settings this application relies on.

    ``sqlite_foreign_keys=False`` exists for migrations only: SQLite batch migrations
    rebuild tables (create copy, drop original), and with foreign keys on, dropping the
    original would cascade-delete every child row.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url, foreign_keys=sqlite_foreign_keys)
    # The pool is sized for a worker's sync threads plus its heartbeat and housekeeping,
    # while staying far enough below PostgreSQL's default 100 connections for several
    # workers (each also holds one LISTEN connection outside the pool, see
    # sheets_sync.wakeup).
    connect_args = {
        name: value for name, value in POSTGRES_CONNECT_DEFAULTS.items()
        if name not in parsed.query  # the URL's own say wins
    }
    engine = create_engine(
        url, pool_size=10, max_overflow=10, hide_parameters=True, connect_args=connect_args
    )
    _ping_idle_connections(engine)
    return engine


def commit_without_waiting_for_flush(engine: Engine) -> None:
    """For a worker process's engine: its commits (claims, leases, results) return
    without waiting for PostgreSQL's WAL flush (``synchronous_commit = off``).

    Several workers committing small transactions all the time queued on the WAL flush
    (``LWLock:WALWrite`` waits in benchmarks/scheduled_throughput.py). What a server crash
    can forget is the last fraction of a second of such commits, never older data and
    never a person's edit (the web app keeps full durability): a forgotten claim or
    result leaves the run queued or running, so it is refreshed again after its lease,
    and a refresh is safe to repeat (it reads the sheet first; a duplicate write fails
    its revision check)."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _quick_commits(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        dbapi_connection.commit()

    engine.dispose()  # connections opened before this get the setting too


# A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 10.0
_CHECKED_IN_AT = "sheets_sync_checked_in_at"


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling, for idle connections only.

    A server restart or an idle-connection reaper (PgBouncer, cloud proxies) otherwise
    surfaces as one failed request. SQLAlchemy's ``pool_pre_ping`` pings on *every*
    checkout: a busy worker checks a connection out for each of its ~10 short
    transactions per sync, so that was a third of its database round trips (measured by
    benchmarks/scheduled_throughput.py). A connection handed back moments ago was alive
    moments ago; only one that sat idle gets the ping.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return  # new (just connected) or recently used
        try:
            _ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and hands out a fresh one instead.
            raise DisconnectionError(str(exc).partition("\n")[0]) from exc


def _ping(dbapi_connection: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    dbapi_connection.rollback()


def _make_sqlite_engine(url: str, *, foreign_keys: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {
        # Bound values include password hashes and encrypted Instantly keys: keep them out
        # of exception text, and so out of logs and error pages.
        "hide_parameters": True,
        # The embedded server shares the engine between the web threads and the worker
        # thread; the pool hands each thread its own connection, so this check only gets
        # in the way.
        "connect_args": {"check_same_thread": False},
    }
    if in_memory:
        # One shared connection, else every pooled connection sees its own empty database.
        kwargs["poolclass"] = StaticPool
    elif not parsed.query.get("uri"):
        _create_private_file(Path(database).expanduser())

    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (the "begin" hook below) issue BEGIN itself. pysqlite's own
        # implicit transactions start late and break SAVEPOINT, which store.enqueue_run
        # relies on.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # First: switching to WAL needs the lock too, and must wait for it like
            # everything else when several processes open a fresh database at once.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
            if not in_memory:
                # WAL: readers never block the writer and vice versa; persistent per file.
                _enable_wal(cursor)
            # Off by default in SQLite; without it ON DELETE CASCADE silently does nothing.
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE"):
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be DEFERRED or IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cursor: Any) -> None:
    # Switching a fresh file to WAL needs an exclusive lock, and SQLite may answer "locked"
    # at once rather than call the busy handler when another process is opening the same
    # new file (serve and workers starting together). Wait for it like busy_timeout would.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _create_private_file(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite does it with 0644.

    It holds password hashes and encrypted keys; SQLite gives its -wal and -shm files
    the database file's permissions. The data directory is created 0700 for the same
    reason. Existing files and directories are left as the operator set them up.
    """
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it first


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for application code; on SQLite they begin ``DEFERRED`` (read units).

    ``expire_on_commit=False``: objects stay readable after the scope commits, so a caller
    can return a run or connection from a ``session_scope`` without a surprise query.

    A write unit calls ``take_write_lock`` first (module docstring). On SQLite the
    factory records how each transaction began, which is what lets ``take_write_lock``
    refuse a transaction that already read without the lock.
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    if engine.dialect.name == "sqlite":
        event.listen(factory, "after_begin", _note_begin_mode)
        event.listen(factory, "after_transaction_end", _forget_begin_mode)
    return factory


def make_autocommit_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for units that only read (a worker loading what a sync needs) or write
    in one statement (a worker's claim).

    On PostgreSQL each statement runs in autocommit: no BEGIN and no COMMIT/ROLLBACK
    round trip around it (psycopg sends BEGIN as a command of its own), which is two of
    such a unit's three round trips. Each statement sees what was committed before it,
    so a unit of several statements must not rely on them agreeing with each other.
    SQLite keeps the ordinary factory: a transaction there costs no round trip.
    """
    if engine.dialect.name != "postgresql":
        return make_session_factory(engine)
    return sessionmaker(
        bind=engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


def _note_begin_mode(session: Session, _transaction: SessionTransaction, conn: Any) -> None:
    session.info[_BEGUN_AS] = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")


def _forget_begin_mode(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a SAVEPOINT ending leaves its transaction as it was
        session.info.pop(_BEGUN_AS, None)


def take_write_lock(s: Session) -> None:
    """Make the current transaction of ``s`` a write unit: on SQLite, begin it
    ``IMMEDIATE`` (taking the database's write lock, waiting for it if busy). Call it
    before the unit's first statement; calling it again in the same transaction is a
    no-op. On PostgreSQL it does nothing.

    ``RuntimeError`` if the transaction already began without the lock: its read may
    be followed by a write that fails with "database is locked" under load, so the
    mistake is reported every time instead.
    """
    if s.get_bind().dialect.name != "sqlite":
        return
    begun_as = s.info.get(_BEGUN_AS)
    if begun_as == "IMMEDIATE":
        return
    if begun_as is not None:
        raise RuntimeError(
            "This SQLite transaction began without the write lock and has already run a "
            "statement; call db.take_write_lock(session) at the start of the unit of work."
        )
    s.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE run through ``Session.execute`` matched.

    The session declares a plain ``Result`` for every statement; for these it returns a
    ``CursorResult``, the only kind that carries the count."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"no row count on {type(result).__name__}: not an UPDATE or DELETE")
    return result.rowcount


def update_by_id(model: type[Any], names: Sequence[str]) -> Update:
    """``UPDATE <model's table> SET <name> = :new_<name>, … WHERE id = :row_id``, to build
    once for a statement every run sends: built for each call and run through the ORM,
    such a statement cost about 1 ms of CPU. Run it on ``Session.connection()``; each
    parameter has its column's type."""
    table = cast(Table, model.__table__)
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names})
    )


def insert_skipping_conflicts(
    s: Session, entity: Any, *, index_elements: Sequence[str], index_where: Any = None
) -> Any:
    """An INSERT into ``entity`` that skips the rows a unique index already holds
    (``ON CONFLICT … DO NOTHING``), built for the session's database: PostgreSQL and
    SQLite each have their own construct for it."""
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(entity).on_conflict_do_nothing(
        index_elements=list(index_elements), index_where=index_where
    )


@contextmanager
def session_scope(factory: sessionmaker[Session], *, write: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception, always close.
    ``write=True``: a unit that reads and then writes (``take_write_lock`` first)."""
    session = factory()
    try:
        if write:
            take_write_lock(session)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def autocommit_statement(engine: Engine, sql: str, params: dict[str, Any]) -> Any:
    """One statement in autocommit on a pooled connection, through the driver itself;
    its first row, if it returns any. ``sql`` uses the driver's ``%(name)s`` markers.

    For the statements every call of a sync makes (the rate budgets' permits): through
    a SQLAlchemy ``Connection`` each cost about twice the driver's own CPU (measured by
    benchmarks/worker_cpu.py). Errors are SQLAlchemy's, as from any other statement, and
    a connection the server dropped is discarded, not handed out again."""
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None  # noqa: S101 - a checked-out connection has one
        driver.autocommit = True
        try:
            with driver.cursor() as cursor:
                try:
                    cursor.execute(sql, params)
                    return cursor.fetchone() if cursor.description else None
                except engine.dialect.loaded_dbapi.Error as exc:
                    dropped = engine.dialect.is_disconnect(exc, driver, cursor)
                    if dropped:
                        raw.invalidate(exc)
                    raise DBAPIError.instance(
                        sql, params, exc, engine.dialect.loaded_dbapi.Error,
                        hide_parameters=True, connection_invalidated=dropped,
                        dialect=engine.dialect,
                    ) from exc
        finally:
            if not driver.closed:
                driver.autocommit = False
    finally:
        raw.close()


def is_transient_error(exc: BaseException) -> bool:
    """Whether the same transaction may succeed in a fresh session a moment later.

    A dropped or reset connection, a SQLite write lock held past the busy timeout, a
    PostgreSQL deadlock or serialization conflict: yes. SQLite's other operational errors
    ("no such table") stay what they are however often they are retried.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.OperationalError):
        return "locked" in str(exc.orig)
    return True

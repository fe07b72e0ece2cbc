"""Engines and sessions for SQLite (the embedded default) and PostgreSQL (production).

Keep transactions short: open a ``session_scope`` for one unit of work (claim a run,
record a result) and never hold one across a network call. On SQLite every ORM session
takes the database's write lock when it begins (see ``make_session_factory``), so a
session left open during a 10-second Instantly call would stall every other writer.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

# Milliseconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

# Execution option read by the SQLite "begin" hook: "DEFERRED" (SQLite's default) or
# "IMMEDIATE" (take the write lock at BEGIN).
SQLITE_BEGIN_OPTION = "sheets_sync_sqlite_begin"


def make_engine(url: str, *, sqlite_foreign_keys: bool = True) -> Engine:
    """Create an engine with the settings this application relies on.

    ``sqlite_foreign_keys=False`` exists for migrations only: SQLite batch migrations
    rebuild tables (create copy, drop original), and with foreign keys on, dropping the
    original would cascade-delete every child row.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url, foreign_keys=sqlite_foreign_keys)
    # pool_pre_ping: a server restart or an idle-connection reaper (PgBouncer, cloud
    # proxies) otherwise surfaces as one failed request per pooled connection. The pool
    # is sized for a worker's sync threads plus its heartbeat and housekeeping, while
    # staying far enough below PostgreSQL's default 100 connections for several workers.
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
    )


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
    """Sessions for application code.

    ``expire_on_commit=False``: objects stay readable after the scope commits, so a caller
    can return a run or connection from a ``session_scope`` without a surprise query.

    On SQLite, sessions begin with ``BEGIN IMMEDIATE``. A deferred transaction that read
    first and writes later fails at once with "database is locked" if another connection
    committed in between (WAL snapshot conflict; ``busy_timeout`` does not help there).
    Taking the write lock up front turns that failure into a short wait, at the cost of
    serialising sessions: fine for the embedded default as long as transactions are short.
    """
    bind = engine
    if engine.dialect.name == "sqlite":
        bind = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    return sessionmaker(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

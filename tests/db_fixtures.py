"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

``db_url`` is parametrised: ``sqlite`` is a fresh file under tmp_path; ``postgresql`` is
a fresh schema in the server named by ``SHEETS_SYNC_TEST_POSTGRES_URL``, selected through
the connection's ``search_path`` (so application code, alembic and the tests all see it
as the default schema) and dropped afterwards. Schemas are much cheaper than databases
and just as isolated for our purposes.

No PostgreSQL server: the PostgreSQL variants are skipped locally, but fail under
``CI=true``, where a silently skipped half of the matrix would look like a pass.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from sheets_sync.store import migrate
from sheets_sync.store.db import make_engine, make_session_factory
from tests.unavailable import unavailable

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_pg_unreachable: str | None = None  # cached reason, so a dead server costs one timeout
_pg_checked = False


def postgres_admin_url() -> str:
    return os.environ.get("SHEETS_SYNC_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def _admin_engine() -> Engine:
    return create_engine(
        postgres_admin_url(),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )


def require_postgres() -> None:
    """Skip (locally) or fail (CI=true) when the PostgreSQL server cannot be reached."""
    global _pg_checked, _pg_unreachable
    if not _pg_checked:
        _pg_checked = True
        engine = _admin_engine()
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:  # any driver/connect error means "not reachable"
            _pg_unreachable = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        finally:
            engine.dispose()
    if _pg_unreachable is None:
        return
    where = make_url(postgres_admin_url()).render_as_string(hide_password=True)
    message = (
        f"PostgreSQL not reachable at {where} ({_pg_unreachable}); start it with: "
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start, "
        "or set SHEETS_SYNC_TEST_POSTGRES_URL"
    )
    unavailable(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL whose default schema is a fresh, empty schema (dropped after)."""
    require_postgres()
    name = f"sstest_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    base = make_url(postgres_admin_url())
    options = " ".join(filter(None, [base.query.get("options"), f"-csearch_path={name}"]))
    url = base.update_query_dict({"options": options, "application_name": name})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # A test that forgot to close a connection must not hang the drop on locks.
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %(name)s AND pid <> pg_backend_pid()",
                {"name": name},
            )
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'sheets-sync.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty database."""
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(db_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(db_engine)


@pytest.fixture
def fernet() -> MultiFernet:
    return MultiFernet([Fernet(Fernet.generate_key())])

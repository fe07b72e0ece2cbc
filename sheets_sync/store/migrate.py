"""Apply the database migrations shipped inside the package, without an alembic.ini.

``upgrade(url)`` is safe to call from every process at start-up (``serve``, each
``worker``): concurrent callers are serialised (PostgreSQL advisory lock, SQLite write
lock) and all but the first find the schema already at head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from sheets_sync.store.db import SQLITE_BEGIN_OPTION, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant naming "sheets-sync schema migration" among advisory locks.
_PG_MIGRATION_LOCK_ID = 0x5EE75_0001


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An alembic ``Config`` pointing at the packaged scripts (also handy for
    ``command.revision(alembic_config(url), autogenerate=True, message=...)``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % (e.g. in a password) must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (default: the latest)."""
    _run(url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, revision: str) -> None:
    """Step the schema back (development and tests; production only moves forward)."""
    _run(url, lambda cfg: command.downgrade(cfg, revision))


def _run(url: str, action: Callable[[Config], None]) -> None:
    # Foreign keys off on SQLite: batch migrations rebuild tables by drop-and-rename, and
    # with enforcement on, dropping a parent table would cascade-delete child rows.
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Take the write lock before alembic reads alembic_version, so a second
                # process waits and then sees the finished schema.
                conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Transaction-scoped: released at commit/rollback, even on a crash.
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK_ID}
                    )
                action(alembic_config(url, conn))
                if conn.dialect.name == "sqlite":
                    _check_sqlite_foreign_keys(conn)
    finally:
        engine.dispose()


def _check_sqlite_foreign_keys(conn: Connection) -> None:
    # With enforcement off during the migration, verify integrity before committing.
    problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration left {len(problems)} rows with broken foreign keys")

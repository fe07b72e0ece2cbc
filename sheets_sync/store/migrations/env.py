"""Alembic environment for sheets-sync.

Normally run through ``sheets_sync.migrate.upgrade(url)``, which passes an open
connection in ``config.attributes["connection"]`` (already inside a transaction and, on
PostgreSQL, holding the migration lock). The fallbacks below let a developer also run
plain ``alembic`` commands with ``sqlalchemy.url`` set, or against the configured store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from alembic import context
from sqlalchemy import JSON, DateTime

from sheets_sync.store.models import Base, UTCDateTime

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

config = context.config
target_metadata = Base.metadata


def _render_item(
    type_: str, obj: Any, autogen_context: AutogenContext
) -> str | Literal[False]:
    # Revisions must not import application types: they are frozen history, the models
    # are not. Render our decorated/mutable types as the plain column types they store.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, JSON):
        return "sa.JSON()"
    if type_ == "type" and isinstance(obj, DateTime) and obj.timezone:
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from sheets_sync.store.db import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from sheets_sync.config import load_settings

        url = load_settings().resolved_database_url
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""The last synced table gets its own column, out of the connection's options.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The table the connection's page shows (up to 200 rows) was most of the options JSON,
which every refresh parses and writes back whole. In a column of its own, loaded only
when the page reads it, a refresh writes it and never reads it. Stored tables move with
the upgrade and back with the downgrade, so no page loses its table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "last_table"

# This migration's own view of the table (later models must not change what it does).
_connections = sa.table(
    "connections",
    sa.column("id", sa.Integer()),
    sa.column("options", sa.JSON()),
    sa.column(KEY, sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column(KEY, sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(_connections.c.id, _connections.c.options)).all()
    for connection_id, options in rows:
        if isinstance(options, dict) and KEY in options:
            rest = {k: v for k, v in options.items() if k != KEY}
            _save(bind, connection_id, options=rest, **{KEY: options[KEY]})


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_connections.c.id, _connections.c.options, _connections.c[KEY])
    ).all()
    for connection_id, options, table in rows:
        if table is not None:
            _save(bind, connection_id, options={**(options or {}), KEY: table})
    with op.batch_alter_table("connections") as batch:
        batch.drop_column(KEY)


def _save(bind: sa.Connection, connection_id: int, **values: Any) -> None:
    bind.execute(
        _connections.update().where(_connections.c.id == connection_id).values(**values)
    )

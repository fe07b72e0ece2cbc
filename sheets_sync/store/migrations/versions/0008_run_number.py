"""Each run's number among its connection's runs, for people: #1 is a connection's first
run, whatever other connections did. The JSON API keeps the global ids.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Existing runs are numbered in id order per connection. Nullable: the number is only
shown, never looked up, and a NULL (which no code writes) reads as the id.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("number", sa.Integer(), nullable=True))
    # Portable SQL (SQLite and PostgreSQL): a correlated count, not a window UPDATE.
    op.execute(
        "UPDATE sync_runs SET number = (SELECT count(*) FROM sync_runs AS earlier "
        "WHERE earlier.connection_id = sync_runs.connection_id "
        "AND earlier.id <= sync_runs.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("number")

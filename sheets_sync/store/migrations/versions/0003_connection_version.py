"""A version number on connections, bumped by every edit a person makes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

A sync remembers the version it loaded; when it finishes and the version moved, the
person changed the connection meanwhile, and what the sync learnt about the old target
(tab ids and titles) must not be stored over the new settings (sheets_sync.sync).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("version", sa.Integer(), server_default="1", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("version")

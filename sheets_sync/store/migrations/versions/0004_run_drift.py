"""What a run's totals check found: the step rows against Instantly's campaign overview.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Nullable text: failed runs and runs recorded before the check existed have none, and a
succeeded run says "Totals match…", the difference, or that the check could not be made.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("drift", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("drift")

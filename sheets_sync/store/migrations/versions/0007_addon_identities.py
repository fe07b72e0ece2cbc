"""The Sheets add-on: Google identities bound to users, one-time account links, and
runs triggered from the sidebar.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The name 0001 gave it (the naming convention was applied to an already prefixed name).
_TRIGGER_CHECK = "ck_sync_runs_ck_sync_runs_trigger"
_OLD_TRIGGERS = "trigger IN ('manual', 'api', 'schedule', 'cli')"
_NEW_TRIGGERS = "trigger IN ('manual', 'api', 'schedule', 'cli', 'addon')"


def upgrade() -> None:
    op.create_table(
        "google_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_google_identities_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_google_identities"),
        sa.UniqueConstraint("sub", name="uq_google_identities_sub"),
        sa.UniqueConstraint("user_id", name="uq_google_identities_user_id"),
    )
    op.create_table(
        "account_link_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("google_identity_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["google_identity_id"], ["google_identities.id"],
            name="fk_account_link_tokens_google_identity_id_google_identities",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_account_link_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_account_link_tokens_token_hash"),
    )
    op.create_index(
        "ix_account_link_tokens_google_identity_id",
        "account_link_tokens",
        ["google_identity_id"],
    )
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_constraint(op.f(_TRIGGER_CHECK), type_="check")
        batch.create_check_constraint(op.f(_TRIGGER_CHECK), _NEW_TRIGGERS)


def downgrade() -> None:
    op.execute("DELETE FROM sync_runs WHERE trigger = 'addon'")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_constraint(op.f(_TRIGGER_CHECK), type_="check")
        batch.create_check_constraint(op.f(_TRIGGER_CHECK), _OLD_TRIGGERS)
    op.drop_index("ix_account_link_tokens_google_identity_id", table_name="account_link_tokens")
    op.drop_table("account_link_tokens")
    op.drop_table("google_identities")

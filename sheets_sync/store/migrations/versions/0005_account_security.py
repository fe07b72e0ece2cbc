"""Account security: session generations, shared sign-in throttling, password resets.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

- ``users.session_generation``: part of every session's user id; bumping it (sign-out,
  password change or reset) ends every session signed in before.
- ``auth_attempts``: failed sign-ins and sign-ups per client address (and account), so
  every web process counts the same attempts.
- ``password_reset_tokens``: e-mailed one-time links, stored as sha256 of the token.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "auth_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=320), nullable=True),
        sa.Column("attempted_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_attempts")),
    )
    op.create_index(
        "ix_auth_attempts_kind_address_attempted_at",
        "auth_attempts",
        ["kind", "address", "attempted_at"],
    )
    op.create_index(
        "ix_auth_attempts_kind_account_attempted_at",
        "auth_attempts",
        ["kind", "account", "attempted_at"],
    )
    op.create_index("ix_auth_attempts_attempted_at", "auth_attempts", ["attempted_at"])
    op.create_table(
        "password_reset_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_password_reset_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_reset_tokens_token_hash")),
    )
    op.create_index(
        "ix_password_reset_tokens_user_id", "password_reset_tokens", ["user_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_password_reset_tokens_user_id", table_name="password_reset_tokens")
    op.drop_table("password_reset_tokens")
    op.drop_index("ix_auth_attempts_attempted_at", table_name="auth_attempts")
    op.drop_index("ix_auth_attempts_kind_account_attempted_at", table_name="auth_attempts")
    op.drop_index("ix_auth_attempts_kind_address_attempted_at", table_name="auth_attempts")
    op.drop_table("auth_attempts")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_generation")

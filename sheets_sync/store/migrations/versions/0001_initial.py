"""Initial schema: users, api_keys, connections, sync_runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Hand-checked against sheets_sync.models (tests/test_store.py asserts alembic finds no
difference on SQLite and PostgreSQL). Types are spelled as plain SQLAlchemy types, not
the application's, so this file keeps meaning the same thing when the models change.
Constraint names follow models.NAMING_CONVENTION.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One active (queued or running) run per connection; the same predicate on both
# databases.
ACTIVE = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"], unique=False)

    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("instantly_api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("instantly_api_key_hint", sa.String(length=16), nullable=False),
        sa.Column("spreadsheet_id", sa.String(length=200), nullable=False),
        sa.Column("spreadsheet_url", sa.String(length=2048), nullable=False),
        sa.Column(
            "worksheet_title",
            sa.String(length=100),
            server_default="Instantly steps",
            nullable=False,
        ),
        sa.Column("sheet_id", sa.Integer(), nullable=True),
        sa.Column("campaign_ids", sa.JSON(), nullable=False),
        sa.Column("date_range", sa.JSON(), nullable=False),
        # sa.false() renders FALSE on PostgreSQL and 0 on SQLite (a literal '0' would be
        # an integer default for a boolean column on PostgreSQL, which it refuses).
        sa.Column("include_opportunities", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("schedule", sa.String(length=16), server_default="off", nullable=False),
        sa.Column("schedule_time", sa.String(length=5), nullable=True),
        sa.Column("schedule_weekday", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "schedule IN ('off', 'hourly', 'every_6_hours', 'daily', 'weekly')",
            name="ck_connections_schedule",
        ),
        sa.CheckConstraint(
            "schedule_weekday IS NULL OR (schedule_weekday >= 0 AND schedule_weekday <= 6)",
            name="ck_connections_schedule_weekday",
        ),
        sa.CheckConstraint("consecutive_failures >= 0", name="ck_connections_consecutive_failures"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_connections_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_connections"),
    )
    op.create_index("ix_connections_user_id", "connections", ["user_id"], unique=False)
    op.create_index("ix_connections_next_run_at", "connections", ["next_run_at"], unique=False)

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_written", sa.Integer(), nullable=True),
        sa.Column("http_calls", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("sheet_url", sa.String(length=2048), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')",
            name="ck_sync_runs_status",
        ),
        sa.CheckConstraint(
            "trigger IN ('manual', 'api', 'schedule', 'cli')", name="ck_sync_runs_trigger"
        ),
        sa.CheckConstraint("attempt >= 1", name="ck_sync_runs_attempt"),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name="fk_sync_runs_connection_id_connections",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sync_runs"),
    )
    op.create_index(
        "uq_sync_runs_one_active_per_connection",
        "sync_runs",
        ["connection_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index(
        "ix_sync_runs_status_queued_at", "sync_runs", ["status", "queued_at"], unique=False
    )
    op.create_index(
        "ix_sync_runs_connection_id_queued_at",
        "sync_runs",
        ["connection_id", "queued_at"],
        unique=False,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; children first for the foreign keys.
    op.drop_table("sync_runs")
    op.drop_table("connections")
    op.drop_table("api_keys")
    op.drop_table("users")

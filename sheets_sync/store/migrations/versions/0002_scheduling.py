"""Scheduling at scale: shared rate-limit budgets and failure-alert state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

* ``rate_limits`` / ``rate_limit_grants``: the Sheets write budget (and the Instantly
  per-key budget) shared by every worker process through the database (sheets_sync.quota).
* ``connections.failure_notified_at``: the owner was e-mailed about the current failure
  streak (sheets_sync.alerts), so consecutive failures never send a second e-mail.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# PostgreSQL: take a permit in one statement, so the per-budget lock is held for
# microseconds inside the server and never across a client round trip (a worker thread
# waiting for its GIL while holding the lock would stall every other worker). The
# advisory lock serialises permits of one budget; each statement after it sees the
# grants committed before. Times come from the server clock unless p_now is given (tests).
TAKE_PERMIT = """
CREATE OR REPLACE FUNCTION sheets_sync_take_permit(
    p_name text, p_span double precision, p_limit integer, p_now double precision,
    p_ahead double precision
) RETURNS TABLE (grant_id integer, wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision;
    v_blocked double precision;
    v_used integer;
    v_pivot double precision;
    v_id integer;
BEGIN
    -- Do not hold the lock while the commit waits for the WAL flush: a permit lost in a
    -- server crash costs nothing.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended('sheets_sync_permit:' || p_name, 0));
    v_now := coalesce(p_now, extract(epoch from clock_timestamp()));
    SELECT r.blocked_until INTO v_blocked FROM rate_limits r WHERE r.name = p_name;
    IF v_blocked IS NOT NULL AND v_blocked > v_now THEN
        RETURN QUERY SELECT NULL::integer, v_blocked - v_now;
        RETURN;
    END IF;
    SELECT count(*) INTO v_used FROM rate_limit_grants g
        WHERE g.name = p_name AND g.granted_at > v_now - p_span;
    IF v_used >= p_limit THEN
        DELETE FROM rate_limit_grants g WHERE g.name = p_name AND g.granted_at <= v_now - p_span;
        SELECT g.granted_at INTO v_pivot FROM rate_limit_grants g
            WHERE g.name = p_name AND g.granted_at > v_now - p_span
            ORDER BY g.granted_at OFFSET v_used - p_limit LIMIT 1;
        RETURN QUERY SELECT NULL::integer,
            least(greatest(coalesce(v_pivot, v_now) + p_span - v_now, 0.005), p_span)
                ::double precision;
        RETURN;
    END IF;
    IF v_used > 0 AND v_used % 64 = 0 THEN
        DELETE FROM rate_limit_grants g WHERE g.name = p_name AND g.granted_at <= v_now - p_span;
    END IF;
    INSERT INTO rate_limit_grants (name, granted_at) VALUES (p_name, v_now + p_ahead)
        RETURNING id INTO v_id;
    RETURN QUERY SELECT v_id, 0.0::double precision;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("blocked_until", sa.Double(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rate_limits"),
    )
    op.create_table(
        "rate_limit_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("granted_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rate_limit_grants"),
    )
    op.create_index(
        "ix_rate_limit_grants_name_granted_at",
        "rate_limit_grants",
        ["name", "granted_at"],
        unique=False,
    )
    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("failure_notified_at", sa.DateTime(timezone=True), nullable=True)
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TAKE_PERMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS sheets_sync_take_permit(text, double precision, integer, "
            "double precision, double precision)"
        )
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("failure_notified_at")
    op.drop_table("rate_limit_grants")
    op.drop_table("rate_limits")

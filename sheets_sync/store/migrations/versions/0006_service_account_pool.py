"""A pool of service accounts: each connection pinned to one, budgets per account.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

* ``connections.service_account_email``: the account the connection's sheet is shared
  with. Existing connections stay NULL: they belong to the primary account (the first
  key file, i.e. the single account they were shared with until now) and their first
  successful refresh pins them to it (sheets_sync.jobs.accounts).
* ``sheets_sync_take_permits``: take a permit from several budgets at once (an account's
  and its Google Cloud project's), all or none, in one statement on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Locks are taken in name order, so two callers wanting the same two budgets cannot
# deadlock. A refused budget inserts nothing anywhere: no permit is leaked. Returns the
# new grant ids in the order of p_names, or NULL ids and the longest wait.
TAKE_PERMITS = """
CREATE OR REPLACE FUNCTION sheets_sync_take_permits(
    p_names text[], p_limits integer[], p_span double precision, p_now double precision,
    p_ahead double precision
) RETURNS TABLE (grant_ids integer[], wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision;
    v_blocked double precision;
    v_edge double precision;
    v_wait double precision := 0;
    v_ids integer[] := '{}';
    v_id integer;
    v_name text;
    i integer;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR v_name IN SELECT n FROM unnest(p_names) AS n ORDER BY n LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('sheets_sync_permit:' || v_name, 0));
    END LOOP;
    v_now := coalesce(p_now, extract(epoch from clock_timestamp()));
    FOR i IN 1 .. array_length(p_names, 1) LOOP
        SELECT r.blocked_until INTO v_blocked FROM rate_limits r WHERE r.name = p_names[i];
        IF v_blocked IS NOT NULL AND v_blocked > v_now THEN
            v_wait := greatest(v_wait, v_blocked - v_now);
            CONTINUE;
        END IF;
        -- The limit-th newest permit: if it still counts, the budget is full, and it is
        -- the one that must age out before the next fits. Reads at most p_limit index
        -- entries, never the whole log.
        SELECT g.granted_at INTO v_edge FROM rate_limit_grants g
            WHERE g.name = p_names[i]
            ORDER BY g.granted_at DESC OFFSET p_limits[i] - 1 LIMIT 1;
        IF v_edge IS NOT NULL AND v_edge > v_now - p_span THEN
            v_wait := greatest(v_wait, least(greatest(v_edge + p_span - v_now, 0.005), p_span));
        END IF;
    END LOOP;
    IF v_wait > 0 THEN
        RETURN QUERY SELECT NULL::integer[], v_wait;
        RETURN;
    END IF;
    FOR i IN 1 .. array_length(p_names, 1) LOOP
        INSERT INTO rate_limit_grants (name, granted_at) VALUES (p_names[i], v_now + p_ahead)
            RETURNING id INTO v_id;
        v_ids := v_ids || v_id;
        -- Now and then, drop permits that no longer count (the log's size stays about
        -- one window's worth).
        IF v_id % 64 = 0 THEN
            DELETE FROM rate_limit_grants g
                WHERE g.name = p_names[i] AND g.granted_at <= v_now - p_span;
        END IF;
    END LOOP;
    RETURN QUERY SELECT v_ids, 0.0::double precision;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("service_account_email", sa.String(length=320)))
        batch.create_index(
            "ix_connections_service_account_email", ["service_account_email"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TAKE_PERMITS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS sheets_sync_take_permits(text[], integer[], "
            "double precision, double precision, double precision)"
        )
    with op.batch_alter_table("connections") as batch:
        batch.drop_index("ix_connections_service_account_email")
        batch.drop_column("service_account_email")

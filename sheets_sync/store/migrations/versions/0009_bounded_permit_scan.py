"""The permit function reads only the grant log's current window.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

``sheets_sync_take_permits`` (0006) finds a budget's limit-th newest permit by walking
the budget's grant log newest first. Permits older than the window no longer count, and
the log keeps them until the next pruning, so with a large limit (a raised Google quota)
each permit walked them too, while holding the budget's lock that every worker waits
on. Bounded by the window, the walk reads at most the permits that still count, and
the answer is the same: a limit-th newest permit outside the window never made the
budget full.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0006's function, as it was written there, with the window's bound as a placeholder (a
# migration keeps its own copy: later code must not change what it installs).
_TAKE_PERMITS = """
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
        -- the one that must age out before the next fits.
        SELECT g.granted_at INTO v_edge FROM rate_limit_grants g
            WHERE g.name = p_names[i]{bound}
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
BOUND = "\n              AND g.granted_at > v_now - p_span"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_TAKE_PERMITS.replace("{bound}", BOUND))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_TAKE_PERMITS.replace("{bound}", ""))

"""How the workers' engine talks to PostgreSQL: connection checks only after idling,
autocommit reads, commits that do not wait for the WAL flush. Real PostgreSQL (skipped
without it locally, failed under CI=true)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from sheets_sync.store import db
from sheets_sync.store.db import (
    commit_without_waiting_for_flush,
    make_autocommit_session_factory,
    make_engine,
)

pytestmark = pytest.mark.postgres


def test_a_recently_used_connection_is_not_pinged_an_idle_one_is(postgres_url, monkeypatch):
    pings: list[object] = []
    real_ping = db._ping
    monkeypatch.setattr(db, "_ping", lambda c: (pings.append(c), real_ping(c)))
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:  # a new connection: just connected, no ping
            conn.execute(text("SELECT 1"))
        with engine.connect() as conn:  # handed back moments ago: no ping
            conn.execute(text("SELECT 2"))
        assert pings == []
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)  # as if it sat idle
        with engine.connect() as conn:
            conn.execute(text("SELECT 3"))
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_dead_idle_connection_is_replaced_before_use(postgres_url, monkeypatch):
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        admin = make_engine(postgres_url)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.commit()
        admin.dispose()
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)
        # The pooled connection is dead; the idle check notices and a fresh one is used.
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()


def test_reads_in_autocommit_send_no_begin(postgres_url):
    engine = make_engine(postgres_url)
    try:
        factory = make_autocommit_session_factory(engine)
        with factory() as s:
            raw = s.connection().connection.dbapi_connection
            assert s.execute(text("SELECT 1")).scalar() == 1
            assert raw.autocommit is True
            assert raw.info.transaction_status.name == "IDLE"  # no transaction open
    finally:
        engine.dispose()


def test_worker_commits_do_not_wait_for_the_flush(postgres_url):
    engine = make_engine(postgres_url)
    web = make_engine(postgres_url)
    try:
        commit_without_waiting_for_flush(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "off"
        with web.connect() as conn:  # the web app's engine keeps full durability
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
    finally:
        engine.dispose()
        web.dispose()

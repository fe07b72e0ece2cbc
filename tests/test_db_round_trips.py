"""How the workers' engine talks to PostgreSQL: connection checks only after idling,
autocommit reads, commits that do not wait for the WAL flush. Real PostgreSQL (skipped
without it locally, failed under CI=true)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from sheets_sync.store import db
from sheets_sync.store.db import (
    autocommit_statement,
    commit_without_waiting_for_flush,
    is_transient_error,
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


def _libpq_keepalives(engine) -> dict[str, str]:
    with engine.connect() as conn:
        params = conn.connection.dbapi_connection.info.get_parameters()
    return {k: v for k, v in params.items() if k.startswith("keepalives") or k == "connect_timeout"}


def test_pooled_connections_probe_a_silent_peer_and_give_up_on_an_unreachable_server(
    postgres_url,
):
    """A NAT between a worker and the database that forgets an idle pooled connection
    cannot be staged here; what guards against it is libpq's keepalive probes (the ping
    before reusing an idle connection then fails at once, not after many minutes), and
    a connect timeout. A URL that says otherwise is obeyed."""
    engine = make_engine(postgres_url)
    try:
        assert _libpq_keepalives(engine) == {
            "connect_timeout": "10", "keepalives": "1", "keepalives_idle": "30",
            "keepalives_interval": "10", "keepalives_count": "3",
        }
    finally:
        engine.dispose()
    own = make_engine(str(make_url(postgres_url).update_query_dict({"keepalives_idle": "5"})))
    try:
        assert _libpq_keepalives(own)["keepalives_idle"] == "5"
    finally:
        own.dispose()


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


def test_a_quick_statement_commits_alone_and_leaves_the_next_unit_transactional(postgres_url):
    engine = make_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE quick_probe (n integer)"))
        row = autocommit_statement(
            engine, "INSERT INTO quick_probe VALUES (%(n)s) RETURNING n", {"n": 7}
        )
        assert row == (7,)
        assert autocommit_statement(engine, "DELETE FROM quick_probe WHERE n = 0", {}) is None
        # The same pooled connection, handed to an ordinary unit: its rollback undoes.
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO quick_probe VALUES (8)"))
            conn.rollback()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT n FROM quick_probe")).scalars().all() == [7]
    finally:
        engine.dispose()


def test_a_quick_statement_on_a_dropped_connection_fails_as_transient_and_is_not_reused(
    postgres_url,
):
    engine = make_engine(postgres_url)
    try:
        pid = autocommit_statement(engine, "SELECT pg_backend_pid()", {})[0]
        admin = make_engine(postgres_url)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.commit()
        admin.dispose()
        with pytest.raises(OperationalError) as failed:
            autocommit_statement(engine, "SELECT pg_backend_pid()", {})
        assert is_transient_error(failed.value)  # the caller may simply try again
        assert autocommit_statement(engine, "SELECT pg_backend_pid()", {})[0] != pid
    finally:
        engine.dispose()


def test_a_quick_statement_error_names_no_parameters(postgres_url):
    engine = make_engine(postgres_url)
    try:
        with pytest.raises(ProgrammingError) as failed:
            autocommit_statement(
                engine, "SELECT * FROM no_such_table WHERE k = %(k)s", {"k": "secret-value-1"}
            )
        assert "no_such_table" in str(failed.value)
        assert "secret-value-1" not in str(failed.value)
        # The connection stays usable for the next statement.
        assert autocommit_statement(engine, "SELECT 1", {}) == (1,)
    finally:
        engine.dispose()

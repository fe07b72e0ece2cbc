"""Storage layer: schema, ownership, secrets at rest, and the run queue under concurrency.

Every test taking ``db_url``/``session_factory`` runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, delete, insert, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from sheets_sync import store
from sheets_sync.config import load_settings
from sheets_sync.errors import ConfigurationError, InvalidInput
from sheets_sync.store import NotFound, migrate, passwords, runs, users
from sheets_sync.store import secrets as crypto
from sheets_sync.store.db import make_engine, make_session_factory, session_scope
from sheets_sync.store.models import Base, Connection, SyncRun, User

SHEET_KEY = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
SHEET_URL = f"https://docs.google.com/spreadsheets/d/{SHEET_KEY}/edit?gid=0#gid=0"
OTHER_SHEET_URL = (
    "https://docs.google.com/spreadsheets/d/2CyjNWt1YSB6oGNeLwCeCakhnVVrqumct85PhwF3vqnt/edit"
)
INSTANTLY_KEY = "instantly-PLAINTEXT-c2VjcmV0LWtleS1mb3ItdGVzdHM6OTk5-3f9a"


# --- helpers ---------------------------------------------------------------------------

_REAL_PASSWORD_HASHING = {"test_users_and_authentication"}


@pytest.fixture(autouse=True)
def fast_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt costs ~0.1 s a user by design; tests that only need *a* user use a cheap hash."""
    if request.node.originalname not in _REAL_PASSWORD_HASHING:
        monkeypatch.setattr(passwords, "WORK", (16, 8, 1))
        monkeypatch.setattr(users, "_DUMMY_HASH", None)


def make_user(s: Session, email: str = "a@example.com") -> User:
    return store.create_user(s, email, "correct horse battery staple")


def make_connection(s: Session, user: User, fernet: MultiFernet, **overrides: Any) -> Connection:
    fields: dict[str, Any] = {
        "name": "Q3 outbound",
        "instantly_api_key": INSTANTLY_KEY,
        "spreadsheet_url": SHEET_URL,
        "worksheet_title": "Instantly steps",
        "campaign_ids": [],
        "date_range": {"preset": "last_30_days"},
        "include_opportunities": True,
        "schedule": "daily",
        "schedule_time": "07:30",
        "schedule_weekday": None,
        "timezone": "Europe/Berlin",
        "options": {},
    }
    fields.update(overrides)
    return store.create_connection(s, user, fernet=fernet, **fields)


@pytest.fixture
def owner_and_connection(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> tuple[int, int]:
    with session_scope(session_factory) as s:
        user = make_user(s)
        connection = make_connection(s, user, fernet)
        return user.id, connection.id


def run_concurrently(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Start ``n`` threads at the same instant; return results (exceptions re-raised)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return results


# --- schema ----------------------------------------------------------------------------


def _predicate_values(where: Any) -> set[str]:
    return set(re.findall(r"'(\w+)'", str(where)))


def test_migrations_match_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []

        # alembic does not compare partial-index predicates: check them ourselves.
        dialect = conn.dialect.name
        inspector = inspect(conn)
        for table in Base.metadata.sorted_tables:
            reflected = {ix["name"]: ix for ix in inspector.get_indexes(table.name)}
            for index in table.indexes:
                expected = index.dialect_kwargs.get(f"{dialect}_where")
                got = reflected[index.name].get("dialect_options", {}).get(f"{dialect}_where")
                assert (got is not None) == (expected is not None), index.name
                if expected is not None:
                    assert _predicate_values(got) == _predicate_values(expected), index.name
                assert bool(reflected[index.name]["unique"]) == bool(index.unique), index.name


def test_migrations_are_idempotent_and_reversible(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.upgrade(db_url)  # every process runs this at start-up
    migrate.downgrade(db_url, "base")
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    try:
        names = set(inspect(engine).get_table_names())
        assert {"users", "api_keys", "connections", "sync_runs"} <= names
    finally:
        engine.dispose()


def test_concurrent_upgrades_on_a_fresh_database(db_url: str) -> None:
    """serve and several workers start together; each migrates; none may fail."""
    run_concurrently(3, lambda _: migrate.upgrade(db_url))
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
                (head,)
            ]
    finally:
        engine.dispose()


def test_a_stored_last_table_moves_to_its_column_and_back(db_url: str) -> None:
    """Tables synced before 0010 are still on their pages after the upgrade (and after a
    downgrade); the options keep everything else."""
    table = {"title": "Q4", "columns": [["Sent", "int"]], "rows": [[[300], "", "data"]]}
    migrate.upgrade(db_url, "0009")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO users (id, email, password_hash, created_at) "
                "VALUES (1, 'old@example.com', 'x', '2026-01-01 00:00:00')"
            )
            conn.execute(insert(Connection.__table__), [
                {"id": cid, "user_id": 1, "name": "c", "instantly_api_key_encrypted": "x",
                 "instantly_api_key_hint": "x", "spreadsheet_id": "s", "spreadsheet_url": "u",
                 "campaign_ids": [], "date_range": {}, "options": options,
                 "consecutive_failures": 0, "version": 1}
                for cid, options in ((1, {"last_table": table, "last_sent": {"a": 1}}),
                                     (2, {"last_sent": {"b": 2}}))
            ])

        def stored() -> list[tuple[Any, ...]]:
            with engine.connect() as conn:
                columns = {c["name"] for c in inspect(conn).get_columns("connections")}
                picked = ["id", "options"] + (["last_table"] if "last_table" in columns else [])
                rows = conn.execute(
                    select(*(Connection.__table__.c[n] for n in picked)).order_by("id")
                )
                return [tuple(r) for r in rows]

        migrate.upgrade(db_url)
        assert stored() == [(1, {"last_sent": {"a": 1}}, table), (2, {"last_sent": {"b": 2}}, None)]
        migrate.downgrade(db_url, "0009")
        assert stored() == [(1, {"last_sent": {"a": 1}, "last_table": table}),
                            (2, {"last_sent": {"b": 2}})]
    finally:
        engine.dispose()


def test_datetimes_come_back_aware_utc(
    session_factory: sessionmaker[Session], owner_and_connection: tuple[int, int]
) -> None:
    _, connection_id = owner_and_connection
    berlin_time = datetime(2026, 1, 15, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    with session_scope(session_factory) as s:
        s.get(Connection, connection_id).next_run_at = berlin_time  # type: ignore[union-attr]
    with session_scope(session_factory) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        for value in (connection.created_at, connection.updated_at, connection.next_run_at):
            assert value is not None and value.utcoffset() == timedelta(0)
        assert connection.next_run_at == datetime(2026, 1, 15, 8, 30, tzinfo=UTC)
    with session_scope(session_factory) as s:
        s.get(Connection, connection_id).next_run_at = datetime(2026, 1, 1)  # type: ignore[union-attr]
        with pytest.raises(StatementError, match="naive datetime"):
            s.flush()
        s.rollback()


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.sqlite3'}"
    engine = make_engine(url)  # creates the parent directory
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.commit()
            # Password hashes and encrypted keys live here: owner-only, -wal included.
            db_dir = tmp_path / "nested" / "dir"
            assert stat.S_IMODE(db_dir.stat().st_mode) == 0o700
            for name in ("x.sqlite3", "x.sqlite3-wal"):
                assert stat.S_IMODE((db_dir / name).stat().st_mode) == 0o600, name
    finally:
        engine.dispose()


# --- users and API keys ----------------------------------------------------------------


def test_users_and_authentication(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as s:
        user = store.create_user(s, "  Alice@Example.COM ", "s3cret-pass")
        assert user.email == "alice@example.com"
        assert user.password_hash.startswith("scrypt:")
        assert "s3cret-pass" not in user.password_hash
    with session_scope(session_factory, write=True) as s:
        assert store.authenticate(s, "ALICE@example.com", "s3cret-pass") is not None
        assert store.authenticate(s, "alice@example.com", "wrong") is None
        assert store.authenticate(s, "nobody@example.com", "s3cret-pass") is None
        assert store.get_user_by_email(s, "Alice@example.com") is not None
        with pytest.raises(InvalidInput, match="already exists"):
            store.create_user(s, "alice@EXAMPLE.com", "other")
        # The failed insert was confined to a savepoint: the session is still usable.
        assert store.get_user_by_email(s, "alice@example.com") is not None
        with pytest.raises(InvalidInput):
            store.create_user(s, "not-an-email", "x")


def test_authenticate_hashes_even_for_unknown_users(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = users.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        calls.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(users, "check_password_hash", counting)
    with session_scope(session_factory) as s:
        assert store.authenticate(s, "ghost@example.com", "whatever") is None
    assert len(calls) == 1


def test_api_keys(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as s:
        alice = make_user(s, "alice@example.com")
        bob = make_user(s, "bob@example.com")
        key, plaintext = store.create_api_key(s, alice, "ci")
        assert plaintext.startswith("ssk_") and len(plaintext) > 40
        assert key.prefix == plaintext[:8]
        assert key.key_hash != plaintext and plaintext not in key.key_hash
        alice_id, bob_id, key_id = alice.id, bob.id, key.id

    with session_scope(session_factory) as s:
        user = store.user_for_api_key(s, plaintext)
        assert user is not None and user.id == alice_id
        assert store.user_for_api_key(s, plaintext + "x") is None
        assert store.user_for_api_key(s, "not-a-key") is None
        found = store.find_api_key(s, plaintext)
        assert found is not None and found.id == key_id
        assert found.last_used_at is None and store.api_key_use_due(found)

    # The use is stamped in a write of its own, at most once a minute.
    now = datetime.now(UTC)
    with session_scope(session_factory) as s:
        assert store.record_api_key_use(s, key_id, now=now)
        assert not store.record_api_key_use(s, key_id, now=now + timedelta(seconds=59))
    with session_scope(session_factory) as s:
        listed = store.list_api_keys(s, s.get(User, alice_id))  # type: ignore[arg-type]
        assert [k.id for k in listed] == [key_id]
        assert listed[0].last_used_at == now
        assert not store.api_key_use_due(listed[0], now=now + timedelta(seconds=59))
        assert store.api_key_use_due(listed[0], now=now + timedelta(seconds=60))
    with session_scope(session_factory) as s:
        assert store.record_api_key_use(s, key_id, now=now + timedelta(seconds=60))

    with session_scope(session_factory, write=True) as s:
        bob = s.get(User, bob_id)
        assert bob is not None
        assert store.list_api_keys(s, bob) == []
        with pytest.raises(NotFound):
            store.revoke_api_key(s, bob, key_id)
        alice = s.get(User, alice_id)
        assert alice is not None
        store.revoke_api_key(s, alice, key_id)
        store.revoke_api_key(s, alice, key_id)  # idempotent

    with session_scope(session_factory) as s:
        assert store.user_for_api_key(s, plaintext) is None


# --- connections: ownership ------------------------------------------------------------


def test_other_users_objects_are_not_found(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    with session_scope(session_factory) as s:
        alice = make_user(s, "alice@example.com")
        bob = make_user(s, "bob@example.com")
        connection = make_connection(s, alice, fernet)
        run, _ = store.enqueue_run(s, connection, "manual")
        connection_id, run_id, bob_id, alice_id = connection.id, run.id, bob.id, alice.id

    with session_scope(session_factory, write=True) as s:
        bob = s.get(User, bob_id)
        assert bob is not None
        # Another user's id and a missing id are indistinguishable.
        with pytest.raises(NotFound) as theirs:
            store.get_connection(s, bob, connection_id)
        with pytest.raises(NotFound) as missing:
            store.get_connection(s, bob, 999_999)
        assert str(theirs.value) == str(missing.value)
        for bad_id in ("abc", None, -1, 2**40, True):
            with pytest.raises(NotFound):
                store.get_connection(s, bob, bad_id)  # type: ignore[arg-type]

        with pytest.raises(NotFound):
            store.update_connection(s, bob, connection_id, fernet=fernet, name="mine now")
        with pytest.raises(NotFound):
            store.delete_connection(s, bob, connection_id)
        with pytest.raises(NotFound):
            store.list_runs(s, bob, connection_id)
        with pytest.raises(NotFound) as run_theirs:
            store.get_run(s, bob, run_id)
        with pytest.raises(NotFound) as run_missing:
            store.get_run(s, bob, 999_999)
        assert str(run_theirs.value) == str(run_missing.value)
        assert store.list_connections(s, bob) == []

    with session_scope(session_factory) as s:
        alice = s.get(User, alice_id)
        assert alice is not None
        connection = store.get_connection(s, alice, connection_id)
        assert connection.name == "Q3 outbound"
        assert [c.id for c in store.list_connections(s, alice)] == [connection_id]
        assert [r.id for r in store.list_runs(s, alice, connection_id)] == [run_id]
        assert store.get_run(s, alice, run_id).id == run_id


def test_create_connection_stores_canonical_values(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    with session_scope(session_factory) as s:
        user = make_user(s)
        connection = make_connection(
            s, user, fernet, campaign_ids=[C1, C2, C1], options={"freeze_header": True}
        )
        connection_id, user_id = connection.id, user.id
    with session_scope(session_factory) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        assert connection.spreadsheet_id == SHEET_KEY
        assert connection.spreadsheet_url == (
            f"https://docs.google.com/spreadsheets/d/{SHEET_KEY}/edit#gid=0"
        )
        # The gid in the link is the user's open tab, never adopted as the managed tab.
        assert connection.sheet_id is None
        assert connection.campaign_ids == [C1, C2]
        assert connection.date_range == {"preset": "last_30_days"}
        assert connection.include_opportunities is True
        assert connection.options == {"freeze_header": True}
        assert connection.consecutive_failures == 0
        assert connection.instantly_api_key_hint == "…3f9a"
        # In-place edits of JSON columns are saved (mutable tracking).
        connection.options["extra"] = 1
    with session_scope(session_factory) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None and connection.options == {"freeze_header": True, "extra": 1}

    with session_scope(session_factory, write=True) as s:
        user = s.get(User, user_id)
        assert user is not None
        bad_inputs: list[dict[str, Any]] = [
            {"spreadsheet_url": "https://example.com/sheet"},
            {"instantly_api_key": "  "},
            {"name": ""},
            {"schedule": "every_minute"},
            {"schedule_time": "25:00"},
            {"schedule_weekday": 7},
            {"timezone": "Mars/Olympus_Mons"},
            {"date_range": {"start": "2026-02-01", "end": "2026-01-01"}},
            {"date_range": {"start": "2026-02-30", "end": "2026-03-01"}},
            {"date_range": {"preset": "all_time", "start": "2026-01-01"}},
            {"campaign_ids": "c1"},
            {"include_opportunities": "yes"},
        ]
        for bad in bad_inputs:
            with pytest.raises(InvalidInput):
                make_connection(s, user, fernet, **bad)


C1 = "5b6f0d4e-1c2a-4d3b-9e8f-0a1b2c3d4e5f"
C2 = "0f1e2d3c-4b5a-4968-8776-655443322110"

# The limits of connection_rules, which the form and the API apply too; before they were
# shared the store let a 200-character name, a key with spaces or a campaign id with
# punctuation through.
STORE_REFUSES: list[tuple[dict[str, Any], str]] = [
    ({"name": "n" * 121}, "The name is too long (120 characters at most)."),
    ({"name": "n" * 200}, "The name is too long (120 characters at most)."),
    ({"name": None}, "Give the connection a name."),
    ({"instantly_api_key": "has spaces in the middle"}, "does not look like an Instantly API key"),
    ({"instantly_api_key": "k" * 501}, "does not look like an Instantly API key"),
    ({"spreadsheet_url": SHEET_URL + "x" * 2000}, "not a Google Sheets link"),
    ({"worksheet_title": "Steps/Q3"}, "A tab title cannot contain"),
    ({"worksheet_title": "t" * 101}, "at most 100 characters, on one line"),
    ({"worksheet_title": "two\nlines"}, "at most 100 characters, on one line"),
    ({"campaign_ids": ["Q1 outbound"]}, "“Q1 outbound” is not a campaign id. Paste campaign ids"),
    ({"campaign_ids": ["c-1", C1, "c_2"]}, "“c-1”, “c_2” are not campaign ids."),
    ({"campaign_ids": [f"c{i}" for i in range(201)]}, "At most 200 campaign ids"),
    ({"date_range": {"start": "20260101", "end": "2026-01-31"}}, "must look like 2026-01-31"),
    ({"schedule_weekday": True}, "0 (Monday) to 6 (Sunday)"),
    ({"options": ["freeze_header"]}, "options must be an object with text keys."),
]


@pytest.mark.parametrize(("bad", "message"), STORE_REFUSES)
def test_store_applies_the_connection_rules(
    session_factory: sessionmaker[Session],
    fernet: MultiFernet,
    owner_and_connection: tuple[int, int],
    bad: dict[str, Any],
    message: str,
) -> None:
    user_id, connection_id = owner_and_connection
    with session_scope(session_factory, write=True) as s:
        user = s.get(User, user_id)
        assert user is not None
        with pytest.raises(InvalidInput, match=re.escape(message)):
            make_connection(s, user, fernet, **bad)
        with pytest.raises(InvalidInput, match=re.escape(message)):
            store.update_connection(s, user, connection_id, fernet=fernet, **bad)


def test_store_keeps_a_name_of_120_characters_and_normalises_ids(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    with session_scope(session_factory) as s:
        connection = make_connection(
            s, make_user(s), fernet, name="n" * 120,
            campaign_ids=(" " + C1.upper(), C2, "", C1),
        )
        assert connection.name == "n" * 120
        assert connection.campaign_ids == [C1, C2]


def test_update_connection(session_factory: sessionmaker[Session], fernet: MultiFernet) -> None:
    with session_scope(session_factory) as s:
        user = make_user(s)
        connection = make_connection(s, user, fernet)
        connection.sheet_id = 1234
        connection.paused_reason = "The Instantly API key was rejected."
        connection.consecutive_failures = 3
        connection.next_run_at = datetime(2030, 1, 1, tzinfo=UTC)
        user_id, connection_id = user.id, connection.id
        old_token = connection.instantly_api_key_encrypted

    def update(**fields: Any) -> Connection:
        with session_scope(session_factory, write=True) as s:
            user = s.get(User, user_id)
            assert user is not None
            return store.update_connection(s, user, connection_id, fernet=fernet, **fields)

    # A form re-submitting every unchanged field (and a blank key) changes nothing that
    # matters: the managed tab id, the key and the schedule state survive.
    c = update(
        name="Renamed",
        instantly_api_key="",
        spreadsheet_url=SHEET_URL,
        worksheet_title="Instantly steps",
        schedule="daily",
        schedule_time="07:30",
        timezone="Europe/Berlin",
    )
    assert c.name == "Renamed"
    assert c.sheet_id == 1234
    assert c.instantly_api_key_encrypted == old_token
    assert c.paused_reason is not None and c.next_run_at is not None
    c = update(instantly_api_key=None)
    assert c.instantly_api_key_encrypted == old_token

    # A new key is re-encrypted, and un-pauses.
    c = update(instantly_api_key="new-instantly-key-000000000000abcd")
    assert c.instantly_api_key_encrypted != old_token
    assert c.instantly_api_key_hint == "…abcd"
    assert store.decrypted_api_key(fernet, c) == "new-instantly-key-000000000000abcd"
    assert c.paused_reason is None and c.consecutive_failures == 0

    # Another tab title or another spreadsheet: the old tab id no longer applies.
    with session_scope(session_factory) as s:
        s.get(Connection, connection_id).sheet_id = 1234  # type: ignore[union-attr]
    assert update(worksheet_title="Steps (Instantly)").sheet_id is None
    with session_scope(session_factory) as s:
        s.get(Connection, connection_id).sheet_id = 1234  # type: ignore[union-attr]
    c = update(spreadsheet_url=OTHER_SHEET_URL)
    assert c.sheet_id is None and c.spreadsheet_id.startswith("2Cyj")

    # A schedule change recomputes the next slot at once (the page shows it).
    c = update(schedule="weekly", schedule_weekday=0)
    assert c.next_run_at is not None and c.next_run_at > datetime.now(UTC)
    local = c.next_run_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.weekday() == 0 and (local.hour, local.minute // 5) == (7, 6)

    with pytest.raises(TypeError):
        update(sheet_id=5)
    with pytest.raises(InvalidInput):
        update(spreadsheet_url="http://docs.google.com/spreadsheets/d/x")


def test_every_edit_by_a_person_moves_the_version(
    session_factory: sessionmaker[Session],
    owner_and_connection: tuple[int, int],
    fernet: MultiFernet,
) -> None:
    user_id, connection_id = owner_and_connection

    def version() -> int:
        with session_scope(session_factory) as s:
            return s.get(Connection, connection_id).version  # type: ignore[union-attr]

    assert version() == 1
    with session_scope(session_factory, write=True) as s:
        user = s.get(User, user_id)
        assert user is not None
        # Any save counts, even of an unchanged form.
        store.update_connection(s, user, connection_id, fernet=fernet, name="Q3 outbound")
    assert version() == 2
    with session_scope(session_factory, write=True) as s:
        user = s.get(User, user_id)
        assert user is not None
        store.resume_connection(s, user, connection_id)
    assert version() == 3
    with session_scope(session_factory) as s:
        # The sync's bookkeeping is not an edit.
        s.get(Connection, connection_id).sheet_id = 99  # type: ignore[union-attr]
    assert version() == 3


def test_delete_cascades(session_factory: sessionmaker[Session], fernet: MultiFernet) -> None:
    with session_scope(session_factory) as s:
        user = make_user(s)
        connection = make_connection(s, user, fernet)
        store.enqueue_run(s, connection, "manual")
        other = make_connection(s, user, fernet, name="second")
        store.enqueue_run(s, other, "api")
        user_id, connection_id = user.id, connection.id
    with session_scope(session_factory, write=True) as s:
        user = s.get(User, user_id)
        assert user is not None
        store.delete_connection(s, user, connection_id)
    with session_scope(session_factory) as s:
        assert s.scalar(select(SyncRun).where(SyncRun.connection_id == connection_id)) is None
        assert len(list(s.scalars(select(SyncRun)))) == 1
        # The database (not only the ORM) cascades: delete the user with plain SQL.
        s.execute(delete(User).where(User.id == user_id))
    with session_scope(session_factory) as s:
        assert list(s.scalars(select(Connection))) == []
        assert list(s.scalars(select(SyncRun))) == []


# --- secrets at rest -------------------------------------------------------------------


def test_instantly_key_is_encrypted_at_rest(
    db_url: str, db_engine: Engine, session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    with session_scope(session_factory) as s:
        user = make_user(s)
        connection = make_connection(s, user, fernet)
        connection_id = connection.id
        assert INSTANTLY_KEY not in repr(connection)

    with session_scope(session_factory) as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                assert INSTANTLY_KEY not in repr(tuple(row))
                assert "PLAINTEXT" not in repr(tuple(row))
        connection = s.get(Connection, connection_id)
        assert connection is not None
        assert connection.instantly_api_key_hint == "…" + INSTANTLY_KEY[-4:]
        assert store.decrypted_api_key(fernet, connection) == INSTANTLY_KEY

    if db_url.startswith("sqlite"):
        db_engine.dispose()
        db_dir = Path(db_url.removeprefix("sqlite:///")).parent
        files = list(db_dir.iterdir())
        assert files
        for path in files:  # the database, its -wal and -shm
            data = path.read_bytes()
            assert INSTANTLY_KEY.encode() not in data
            assert b"PLAINTEXT" not in data


def test_undecryptable_key_has_an_actionable_message(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    with session_scope(session_factory) as s:
        connection = make_connection(s, make_user(s), fernet)
    stranger = MultiFernet([Fernet(Fernet.generate_key())])
    with pytest.raises(ConfigurationError) as info:
        store.decrypted_api_key(stranger, connection)
    assert info.value.message.startswith(
        "A stored Instantly key cannot be decrypted with SHEETS_SYNC_ENCRYPTION_KEYS"
    )
    assert INSTANTLY_KEY not in info.value.message


def test_rotate_reencrypts_with_the_new_first_key(
    session_factory: sessionmaker[Session],
) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old_only = MultiFernet([Fernet(old_key)])
    new_only = MultiFernet([Fernet(new_key)])
    with session_scope(session_factory) as s:
        user = make_user(s)
        ids = [make_connection(s, user, old_only, name=f"c{i}").id for i in range(3)]
        before = s.get(Connection, ids[0]).updated_at  # type: ignore[union-attr]

    with session_scope(session_factory, write=True) as s:
        with pytest.raises(ConfigurationError):
            store.decrypted_api_key(new_only, s.get(Connection, ids[0]))  # type: ignore[arg-type]
        # A key list that cannot read the data refuses to rotate.
        with pytest.raises(ConfigurationError):
            crypto.rotate(s, new_only)

    with session_scope(session_factory) as s:
        assert crypto.rotate(s, MultiFernet([Fernet(new_key), Fernet(old_key)])) == 3

    with session_scope(session_factory) as s:
        for connection_id in ids:
            connection = s.get(Connection, connection_id)
            assert connection is not None
            assert store.decrypted_api_key(new_only, connection) == INSTANTLY_KEY
            with pytest.raises(ConfigurationError):
                store.decrypted_api_key(old_only, connection)
        assert s.get(Connection, ids[0]).updated_at == before  # type: ignore[union-attr]


def test_bad_encryption_key_names_the_variable_not_the_key(tmp_path: Path) -> None:
    good = Fernet.generate_key().decode()
    for value in ("not-a-fernet-key-TOPSECRET", f"{good},TOPSECRET-second-key"):
        settings = load_settings(data_dir=tmp_path, encryption_keys=value)
        with pytest.raises(ConfigurationError) as info:
            crypto.load_or_create_keys(settings)
        assert "SHEETS_SYNC_ENCRYPTION_KEYS" in info.value.message
        assert "TOPSECRET" not in info.value.message
        assert good not in info.value.message
        assert "TOPSECRET" not in repr(info.value.args)


def test_encryption_keys_from_the_environment(tmp_path: Path) -> None:
    first, second = Fernet.generate_key(), Fernet.generate_key()
    token = Fernet(second).encrypt(b"legacy").decode()
    settings = load_settings(
        data_dir=tmp_path / "data", encryption_keys=f" {first.decode()} , {second.decode()} "
    )
    keys = crypto.load_or_create_keys(settings)
    assert crypto.decrypt(keys, token) == "legacy"  # all keys decrypt
    assert Fernet(first).decrypt(crypto.encrypt(keys, "new").encode()) == b"new"  # first encrypts
    assert not (tmp_path / "data").exists()  # nothing generated when configured


def test_generated_keys_are_private_and_stable(tmp_path: Path) -> None:
    data_dir = tmp_path / "instance"
    settings = load_settings(data_dir=data_dir, encryption_keys=None, secret_key=None)
    keys = crypto.load_or_create_keys(settings)
    secret = crypto.load_or_create_secret_key(settings)

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("encryption.key", "secret.key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir() if p.name.startswith(".")] == []

    token = crypto.encrypt(keys, "hello")
    assert crypto.decrypt(crypto.load_or_create_keys(settings), token) == "hello"
    assert crypto.load_or_create_secret_key(settings) == secret
    assert len(secret) >= 32

    explicit = load_settings(data_dir=data_dir, secret_key="from-the-environment")
    assert crypto.load_or_create_secret_key(explicit) == "from-the-environment"


def test_key_hint() -> None:
    assert crypto.key_hint("abcdefghijkl3f9a") == "…3f9a"
    assert crypto.key_hint("short") == "…"


# --- runs: queue, claims, leases -------------------------------------------------------


def test_enqueue_dedupes(
    session_factory: sessionmaker[Session], owner_and_connection: tuple[int, int]
) -> None:
    _, connection_id = owner_and_connection
    with session_scope(session_factory, write=True) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        first, created = store.enqueue_run(s, connection, "manual")
        assert created and first.status == "queued" and first.attempt == 1
        second, created_again = store.enqueue_run(s, connection, "api")
        assert not created_again and second.id == first.id
    with session_scope(session_factory) as s:
        claimed = store.claim_next_run(s, "w1", 60)
        assert claimed is not None and claimed.id == first.id
    with session_scope(session_factory, write=True) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        running, created = store.enqueue_run(s, connection, "schedule")
        assert not created and running.id == first.id and running.status == "running"
        assert store.finish_run(s, first.id, status="succeeded", rows_written=12, http_calls=3)
        fresh, created = store.enqueue_run(s, connection, "schedule")
        assert created and fresh.id != first.id
        assert store.last_run(s, connection).id == fresh.id  # type: ignore[union-attr]


def test_a_claim_says_whether_it_took_its_account_s_last_queued_run(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    # A worker that knows it took the last run does not ask again (a permit, a claim
    # and a refund) until a run is queued: the answer must be per account. The primary
    # account also takes unpinned connections and those of an account that left the pool
    # (they fail without writing, and must not wait forever).
    pool = ["first@pool.example", "second@pool.example"]
    pins = [pool[0], pool[0], None, "gone@pool.example", pool[1]]
    with session_scope(session_factory, write=True) as s:
        user = make_user(s)
        for n, email in enumerate(pins):
            connection = make_connection(s, user, fernet, name=f"Outbound {n}")
            connection.service_account_email = email
            store.enqueue_run(s, connection, "manual")

    def claim(account: str) -> store.ClaimedRun | None:
        with session_scope(session_factory) as s:
            return store.claim_next_run_id(s, "w1", 60, account=account, pool=pool)

    # The second account's run was queued last: it takes that one, and only that one.
    only = claim(pool[1])
    assert only is not None and not only.more_queued
    assert claim(pool[1]) is None
    primary = [claim(pool[0]) for _ in range(4)]
    assert all(c is not None for c in primary)
    assert [c.more_queued for c in primary if c] == [True, True, True, False]
    assert claim(pool[0]) is None
    with session_scope(session_factory) as s:
        taken = dict(
            s.execute(
                select(SyncRun.id, Connection.service_account_email).join(
                    Connection, Connection.id == SyncRun.connection_id
                )
            ).all()
        )
    assert sorted(map(str, (taken[c.id] for c in primary if c))) == sorted(
        map(str, pins[:4])
    )
    assert taken[only.id] == pool[1]


def test_enqueue_recovers_when_the_unique_index_fires(
    session_factory: sessionmaker[Session],
    owner_and_connection: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulate losing the race: our SELECT saw nothing, the INSERT hits the index."""
    _, connection_id = owner_and_connection
    with session_scope(session_factory, write=True) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        existing, _ = store.enqueue_run(s, connection, "manual")

    real = runs._find_active_run
    calls = {"n": 0}

    def blind_once(s: Session, cid: int) -> SyncRun | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real(s, cid)

    monkeypatch.setattr(runs, "_find_active_run", blind_once)
    with session_scope(session_factory, write=True) as s:
        connection = s.get(Connection, connection_id)
        assert connection is not None
        connection.name = "edited in the same transaction"
        run, created = store.enqueue_run(s, connection, "api")
        assert not created and run.id == existing.id
    # The caller's other work in the transaction survived the failed INSERT.
    with session_scope(session_factory) as s:
        assert s.get(Connection, connection_id).name == "edited in the same transaction"  # type: ignore[union-attr]
        assert len(list(s.scalars(select(SyncRun)))) == 1


def _three_connections(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> tuple[int, int, int]:
    """One with a finished run, one with a queued run, one with none."""
    with session_scope(session_factory, write=True) as s:
        user = make_user(s)
        finished, queued, fresh = (make_connection(s, user, fernet) for _ in range(3))
        s.flush()
        done, _ = store.enqueue_run(s, finished, "manual")
        store.enqueue_run(s, queued, "api")
        done.status = "succeeded"
        return finished.id, queued.id, fresh.id


def _active_runs(session_factory: sessionmaker[Session]) -> list[tuple[int, str, int | None]]:
    with session_scope(session_factory) as s:
        return [
            (r.connection_id, r.trigger, r.number)
            for r in s.scalars(select(SyncRun).where(SyncRun.status == "queued")
                               .order_by(SyncRun.connection_id))
        ]


def test_enqueue_runs_queues_each_due_connection_once_numbered_after_its_last_run(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    finished, queued, fresh = _three_connections(session_factory, fernet)
    with session_scope(session_factory, write=True) as s:
        assert store.enqueue_runs(s, [finished, queued, fresh, fresh], "schedule") == 2
    assert _active_runs(session_factory) == [
        (finished, "schedule", 2), (queued, "api", 1), (fresh, "schedule", 1)]
    with session_scope(session_factory, write=True) as s:
        assert store.enqueue_runs(s, [finished, queued, fresh], "schedule") == 0
        assert store.enqueue_runs(s, [], "schedule") == 0
    assert len(_active_runs(session_factory)) == 3


def test_enqueue_runs_leaves_a_run_queued_meanwhile_alone(
    session_factory: sessionmaker[Session], fernet: MultiFernet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate losing the race: the check saw no active runs, the insert meets one."""
    finished, queued, fresh = _three_connections(session_factory, fernet)
    monkeypatch.setattr(runs, "_with_active_runs", lambda s, ids: set())
    with session_scope(session_factory, write=True) as s:
        s.get(Connection, fresh).name = "edited in the same transaction"  # type: ignore[union-attr]
        assert store.enqueue_runs(s, [finished, queued, fresh], "schedule") == 2
    assert _active_runs(session_factory) == [
        (finished, "schedule", 2), (queued, "api", 1), (fresh, "schedule", 1)]
    with session_scope(session_factory) as s:
        assert s.get(Connection, fresh).name == "edited in the same transaction"  # type: ignore[union-attr]


def test_the_scheduler_and_clicks_racing_still_queue_one_run_per_connection(
    session_factory: sessionmaker[Session], fernet: MultiFernet
) -> None:
    with session_scope(session_factory, write=True) as s:
        user = make_user(s)
        ids = [make_connection(s, user, fernet).id for _ in range(6)]

    def enqueue(i: int) -> int:
        with session_scope(session_factory, write=True) as s:
            if i % 2:
                return store.enqueue_runs(s, ids, "schedule")
            connection = s.get(Connection, ids[i])
            assert connection is not None
            return int(store.enqueue_run(s, connection, "manual")[1])

    created = run_concurrently(4, enqueue)
    active = _active_runs(session_factory)
    assert sorted(cid for cid, _, _ in active) == ids
    assert sum(created) == len(ids)


def test_database_refuses_two_active_runs(
    session_factory: sessionmaker[Session], owner_and_connection: tuple[int, int]
) -> None:
    _, connection_id = owner_and_connection
    now = datetime.now(UTC)
    row = {"connection_id": connection_id, "trigger": "manual", "queued_at": now}
    with session_scope(session_factory) as s:
        # Finished runs do not count: any number of them may coexist with one active run.
        for status in ("succeeded", "failed", "interrupted", "failed"):
            s.execute(insert(SyncRun).values(status=status, **row))
        s.execute(insert(SyncRun).values(status="queued", **row))
    for status in ("queued", "running"):
        with pytest.raises(IntegrityError):
            with session_scope(session_factory) as s:
                s.execute(insert(SyncRun).values(status=status, **row))
    with pytest.raises(IntegrityError):
        with session_scope(session_factory) as s:
            s.execute(insert(SyncRun).values(status="bogus", **row))


def test_concurrent_enqueues_create_one_run(
    session_factory: sessionmaker[Session], owner_and_connection: tuple[int, int]
) -> None:
    _, connection_id = owner_and_connection

    def enqueue(_: int) -> tuple[int, bool]:
        with session_scope(session_factory, write=True) as s:
            connection = s.get(Connection, connection_id)
            assert connection is not None
            run, created = store.enqueue_run(s, connection, "manual")
            return run.id, created

    results = run_concurrently(4, enqueue)
    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


@pytest.mark.parametrize("claim_next", ["claim_next_run", "claim_next_run_id"])
def test_claim_race_has_exactly_one_winner(
    session_factory: sessionmaker[Session], fernet: MultiFernet, claim_next: str
) -> None:
    # claim_next_run_id is the workers' (one statement, written out for PostgreSQL).
    claim_next_run = getattr(store, claim_next)
    with session_scope(session_factory) as s:
        user = make_user(s)
        connection_id = make_connection(s, user, fernet).id

    for round_ in range(8):
        with session_scope(session_factory, write=True) as s:
            connection = s.get(Connection, connection_id)
            assert connection is not None
            run, created = store.enqueue_run(s, connection, "schedule")
            assert created

        def claim(i: int, round_: int = round_) -> int | None:
            with session_scope(session_factory) as s:
                claimed = claim_next_run(s, f"worker-{round_}-{i}", 60)
                return None if claimed is None else claimed.id

        results = run_concurrently(2, claim)
        winners = [r for r in results if r is not None]
        assert winners == [run.id], results

        with session_scope(session_factory, write=True) as s:
            claimed_run = s.get(SyncRun, run.id)
            assert claimed_run is not None
            assert claimed_run.status == "running"
            assert claimed_run.worker_id is not None
            assert claimed_run.worker_id.startswith(f"worker-{round_}-")
            assert claimed_run.started_at is not None
            assert claimed_run.lease_expires_at is not None
            assert claimed_run.lease_expires_at > claimed_run.started_at
            assert store.finish_run(s, run.id, status="succeeded")


def _migrated_factory(url: str) -> tuple[Engine, sessionmaker[Session]]:
    migrate.upgrade(url)
    engine = make_engine(url)
    return engine, make_session_factory(engine)


def _queue_one_run(factory: sessionmaker[Session], fernet: MultiFernet) -> int:
    with session_scope(factory) as s:
        connection = make_connection(s, make_user(s), fernet)
        run, _ = store.enqueue_run(s, connection, "manual")
        return run.id


@pytest.mark.postgres
def test_postgresql_claim_skips_a_row_another_worker_holds(
    postgres_url: str, fernet: MultiFernet
) -> None:
    """Interleaved: B claims while A holds the row lock and has not committed yet."""
    engine, factory = _migrated_factory(postgres_url)
    a, b = factory(), factory()
    try:
        run_id = _queue_one_run(factory, fernet)
        run_a = store.claim_next_run(a, "worker-a", 60)
        assert run_a is not None and run_a.id == run_id
        assert store.claim_next_run(b, "worker-b", 60) is None  # skipped, not blocked
        a.commit()
        b.rollback()
        assert store.claim_run(b, run_id, "worker-b", 60) is None  # no longer queued
        assert store.claim_next_run(b, "worker-b", 60) is None
    finally:
        a.close()
        b.close()
        engine.dispose()


def test_sqlite_claim_waits_for_the_writer_instead_of_failing(
    tmp_path: Path, fernet: MultiFernet
) -> None:
    """Interleaved: B starts while A's claim is uncommitted; B waits, then finds nothing."""
    engine, factory = _migrated_factory(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    a = factory()
    try:
        run_id = _queue_one_run(factory, fernet)
        run_a = store.claim_next_run(a, "worker-a", 60)
        assert run_a is not None and run_a.id == run_id
        outcome: dict[str, Any] = {}

        def worker_b() -> None:
            started = time.monotonic()
            try:
                with session_scope(factory) as b:
                    outcome["run"] = store.claim_next_run(b, "worker-b", 60)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                outcome["error"] = exc
            outcome["waited"] = time.monotonic() - started

        thread = threading.Thread(target=worker_b)
        thread.start()
        time.sleep(0.3)
        a.commit()
        thread.join(timeout=10)
        assert "error" not in outcome, outcome
        assert outcome["run"] is None
        assert outcome["waited"] >= 0.25
    finally:
        a.close()
        engine.dispose()


def test_leases(
    session_factory: sessionmaker[Session], owner_and_connection: tuple[int, int]
) -> None:
    _, connection_id = owner_and_connection
    with session_scope(session_factory, write=True) as s:
        run, _ = store.enqueue_run(s, s.get(Connection, connection_id), "cli")  # type: ignore[arg-type]
    with session_scope(session_factory) as s:
        claimed = store.claim_run(s, run.id, "worker-1", 30)
        assert claimed is not None and claimed.status == "running"
        assert store.claim_run(s, run.id, "worker-2", 30) is None
        first_lease = claimed.lease_expires_at
    with session_scope(session_factory) as s:
        assert store.renew_lease(s, run.id, "worker-1", 300)
        assert not store.renew_lease(s, run.id, "worker-2", 300)
        renewed = s.get(SyncRun, run.id)
        assert renewed is not None and first_lease is not None
        assert renewed.lease_expires_at is not None and renewed.lease_expires_at > first_lease
    with session_scope(session_factory) as s:
        assert not store.finish_run(s, run.id, status="succeeded", worker_id="worker-2")
        assert store.finish_run(
            s,
            run.id,
            status="failed",
            error_code="sheet_not_shared",
            error_message="Share the sheet with x@y.iam.gserviceaccount.com",
            http_calls=2,
            sheet_url=SHEET_URL,
            worker_id="worker-1",
        )
        assert not store.finish_run(s, run.id, status="succeeded")  # already finished
        assert not store.renew_lease(s, run.id, "worker-1", 300)
        with pytest.raises(ValueError):
            store.finish_run(s, run.id, status="running")
    with session_scope(session_factory) as s:
        done = s.get(SyncRun, run.id)
        assert done is not None
        assert (done.status, done.error_code, done.http_calls) == ("failed", "sheet_not_shared", 2)
        assert done.finished_at is not None and done.lease_expires_at is None


def test_expire_leases_requeues_with_the_next_attempt(
    session_factory: sessionmaker[Session], owner_and_connection: tuple[int, int]
) -> None:
    _, connection_id = owner_and_connection
    with session_scope(session_factory, write=True) as s:
        store.enqueue_run(s, s.get(Connection, connection_id), "schedule")  # type: ignore[arg-type]
    with session_scope(session_factory) as s:
        lost = store.claim_next_run(s, "worker-that-dies", 30)
        assert lost is not None

    now = datetime.now(UTC)
    with session_scope(session_factory) as s:
        assert store.expire_leases(s, now) == 0  # lease still valid
    with session_scope(session_factory) as s:
        assert store.expire_leases(s, now + timedelta(seconds=31)) == 1
    with session_scope(session_factory) as s:
        assert store.expire_leases(s, now + timedelta(seconds=31)) == 0
        runs = list(s.scalars(select(SyncRun).order_by(SyncRun.id)))
        assert [(r.status, r.attempt, r.trigger) for r in runs] == [
            ("interrupted", 1, "schedule"),
            ("queued", 2, "schedule"),
        ]
        assert runs[0].error_code == "worker_lost" and runs[0].error_message
        assert runs[0].finished_at is not None
        # The worker that lost its lease cannot overwrite the outcome afterwards.
        assert not store.finish_run(s, lost.id, status="succeeded")

    # Give up after max_attempts: a run that kills its worker must not loop forever.
    for attempt in (2, 3):
        with session_scope(session_factory) as s:
            claimed = store.claim_next_run(s, "w", 1)
            assert claimed is not None and claimed.attempt == attempt
        with session_scope(session_factory) as s:
            later = datetime.now(UTC) + timedelta(seconds=5)
            assert store.expire_leases(s, later, max_attempts=3) == 1
    with session_scope(session_factory) as s:
        statuses = [r.status for r in s.scalars(select(SyncRun).order_by(SyncRun.id))]
        assert statuses == ["interrupted", "interrupted", "interrupted"]
        last = s.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert last is not None and "Gave up" in (last.error_message or "")

"""A stored connection's sync racing what people and the database do meanwhile.

* A person edits the connection while its sync runs: the edit wins, and the sync keeps
  only what it owns (the run record, the last table, the failure streak).
* A person deletes the connection while its sync runs: nothing is written for it.
* The database hiccups right after the sheet was written: the run is still recorded as
  succeeded, and the sheet is not written a second time.

The moments are set by wrapping the real clients the sync gets from the runtime (real
requests, gspread and google-auth against the local fakes), so every interleaving is
sequenced, never timed. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.connection_rules import features_of, with_features
from sheets_sync.errors import ConnectionDeleted
from sheets_sync.jobs.runtime import Runtime, build_runtime
from sheets_sync.jobs.sync import RunResult, execute_run, run_connection_now
from sheets_sync.pipeline.retry import RetryPolicy
from sheets_sync.store import secrets as crypto
from sheets_sync.store.db import is_transient_error, take_write_lock
from sheets_sync.store.migrate import upgrade
from sheets_sync.store.models import User
from tests.db_fixtures import postgres_admin_url
from tests.plugin_fakes import INSTANTLY_KEY
from tests.worker_helpers import add_connections, connection, make_user, runs_of

TAB = "Instantly steps"
RENAMED = "Steps, renamed"


def _runtime(settings: Settings, url: str, retry: RetryPolicy) -> Iterator[Runtime]:
    configured = settings.model_copy(update={"database_url": url})
    upgrade(url)
    runtime = build_runtime(configured, retry=retry)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def rt(db_url: str, settings: Settings, fast_retry: RetryPolicy) -> Iterator[Runtime]:
    yield from _runtime(settings, db_url, fast_retry)


@pytest.fixture
def pg_rt(postgres_url: str, settings: Settings, fast_retry: RetryPolicy) -> Iterator[Runtime]:
    yield from _runtime(settings, postgres_url, fast_retry)


@pytest.fixture
def stored(rt: Runtime, workspace: Any, spreadsheet_id: str) -> tuple[int, int]:
    return _stored(rt, workspace, spreadsheet_id)


def _stored(rt: Runtime, workspace: Any, spreadsheet_id: str) -> tuple[int, int]:
    """(user id, connection id) of a connection with every feature on (the default)."""
    campaign = workspace.add_campaign("Q4 outbound")
    day = dt.date(2026, 1, 5)
    workspace.record(campaign, day, step=0, variant=0, sent=120, replies=6)
    workspace.record(campaign, day, step=0, variant=1, sent=110, replies=2)
    user_id = make_user(rt)
    [cid] = add_connections(rt, user_id, [spreadsheet_id], api_key=INSTANTLY_KEY, schedule="off")
    return user_id, cid


def when_called(
    monkeypatch: pytest.MonkeyPatch,
    rt: Runtime,
    client: str,
    method: str,
    action: Callable[[], None],
    *,
    after: bool = False,
) -> None:
    """Run ``action`` once, right before (or right after) the sync's ``client``
    ("instantly" or "sheets", as made by the runtime) calls ``method``."""
    make = getattr(rt, client)
    pending = [action]

    def factory(*args: Any) -> Any:
        made = make(*args)
        real = getattr(made, method)

        def hooked(*a: Any, **kw: Any) -> Any:
            if pending and not after:
                pending.pop()()
            try:
                return real(*a, **kw)
            finally:
                if pending and after:
                    pending.pop()()

        setattr(made, method, hooked)
        return made

    monkeypatch.setattr(rt, client, factory)


def edit(rt: Runtime, user_id: int, cid: int, **fields: Any) -> None:
    """What the connection form and ``PATCH /api/v1/connections/<id>`` do."""
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        user = s.get(User, user_id)
        features = fields.pop("features", None)
        if features is not None:
            current = store.get_connection(s, user, cid, for_update=True)
            fields["options"] = with_features(dict(current.options or {}), features)
        store.update_connection(s, user, cid, fernet=rt.fernet, **fields)


def delete(rt: Runtime, user_id: int, cid: int) -> None:
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        store.delete_connection(s, s.get(User, user_id), cid)


def tab_id(fake_sheets: Any, spreadsheet_id: str, title: str) -> int:
    tab = fake_sheets.sheet_properties(spreadsheet_id, title=title)
    assert tab is not None, f"no tab {title!r}"
    return int(tab["sheetId"])


# --- a person's edit during the sync wins ----------------------------------------------


def test_a_tab_renamed_during_the_sync_is_where_the_next_sync_writes(
    rt, stored, monkeypatch, fake_sheets, spreadsheet_id
) -> None:
    user_id, cid = stored
    assert run_connection_now(rt, cid).ok
    old_tab = tab_id(fake_sheets, spreadsheet_id, TAB)
    before = connection(rt, cid)
    assert before.sheet_id == old_tab

    when_called(monkeypatch, rt, "sheets", "batch_update",
                lambda: edit(rt, user_id, cid, worksheet_title=RENAMED))
    second = run_connection_now(rt, cid)
    assert second.ok

    after = connection(rt, cid)
    assert after.worksheet_title == RENAMED
    # The old tab's id and titles are not stored over the new title...
    assert after.sheet_id is None
    assert after.options["tab_titles"] == before.options["tab_titles"]
    assert after.options["history_sheet_id"] == before.options["history_sheet_id"]
    # ...while what the sync owns is: the page shows the table it wrote.
    assert after.last_table["synced_at"] != before.last_table["synced_at"]
    assert runs_of(rt, cid)[-1].rows_written == second.rows_written

    old_cells = fake_sheets.values(spreadsheet_id, TAB)
    third = run_connection_now(rt, cid)
    assert third.ok
    new_tab = tab_id(fake_sheets, spreadsheet_id, RENAMED)
    assert new_tab != old_tab
    assert connection(rt, cid).sheet_id == new_tab
    assert f"{RENAMED} history" in fake_sheets.sheet_titles(spreadsheet_id)
    assert [row[:2] for row in fake_sheets.values(spreadsheet_id, RENAMED)[3:5]] == [
        ["Step 1", "A"],
        ["Step 1", "B"],
    ]
    assert fake_sheets.values(spreadsheet_id, TAB) == old_cells


def test_a_feature_switched_off_during_the_sync_stays_off(
    rt, stored, monkeypatch, fake_sheets, spreadsheet_id
) -> None:
    user_id, cid = stored
    assert run_connection_now(rt, cid).ok
    before = connection(rt, cid)

    when_called(monkeypatch, rt, "sheets", "batch_update",
                lambda: edit(rt, user_id, cid, features={"chart": False}))
    assert run_connection_now(rt, cid).ok

    after = connection(rt, cid)
    assert features_of(after.options)["chart"] is False
    assert features_of(after.options)["notes"] is True
    # The target did not change, so its id is still the one stored before.
    assert after.sheet_id == before.sheet_id == tab_id(fake_sheets, spreadsheet_id, TAB)
    assert after.last_table["synced_at"] != before.last_table["synced_at"]


def test_the_sync_does_not_move_the_version(rt, stored) -> None:
    user_id, cid = stored
    assert connection(rt, cid).version == 1
    assert run_connection_now(rt, cid).ok
    assert connection(rt, cid).version == 1
    edit(rt, user_id, cid, name="Renamed")
    assert connection(rt, cid).version == 2
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        store.resume_connection(s, s.get(User, user_id), cid)
    assert connection(rt, cid).version == 3


class DuringFinish:
    """Runs ``action`` in another thread while the sync's finishing transaction is open
    (right after it read the connection), and lets the sync go on once that thread has
    either finished or is waiting for a PostgreSQL lock."""

    def __init__(self, rt: Runtime, action: Callable[[], None]) -> None:
        self.rt, self.action = rt, action
        self.thread: threading.Thread | None = None
        self.errors: list[BaseException] = []
        self._armed_in: int | None = None
        self._app = rt.engine.url.query["application_name"]
        event.listen(rt.engine, "after_cursor_execute", self._after)

    def arm(self) -> None:
        self._armed_in = threading.get_ident()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if self._armed_in != threading.get_ident() or "FROM connections" not in statement:
            return
        self._armed_in = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        admin = create_engine(postgres_admin_url(), poolclass=NullPool)
        try:
            with admin.connect() as c:
                while self.thread.is_alive():
                    waiting = c.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                             ":app AND wait_event_type = 'Lock'"),
                        {"app": self._app},
                    ).scalar_one()
                    if waiting:
                        return
                    c.rollback()
                    self.thread.join(0.01)
        finally:
            admin.dispose()

    def _run(self) -> None:
        try:
            self.action()
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self.errors.append(exc)

    def join(self) -> None:
        event.remove(self.rt.engine, "after_cursor_execute", self._after)
        assert self.thread is not None, "the finishing transaction never read the connection"
        self.thread.join(30)
        if self.errors:
            raise self.errors[0]


@pytest.mark.postgres
def test_an_edit_saved_while_the_success_is_recorded_is_not_overwritten(
    pg_rt, workspace, spreadsheet_id, monkeypatch
) -> None:
    user_id, cid = _stored(pg_rt, workspace, spreadsheet_id)
    during = DuringFinish(pg_rt, lambda: edit(pg_rt, user_id, cid, features={"chart": False}))
    when_called(monkeypatch, pg_rt, "sheets", "batch_update", during.arm, after=True)
    assert run_connection_now(pg_rt, cid).ok
    during.join()
    after = connection(pg_rt, cid)
    assert features_of(after.options)["chart"] is False
    # The edit started from what the sync stored, so that survives too.
    assert after.sheet_id is not None
    assert after.options["tab_titles"] == {"main": TAB, "history": f"{TAB} history"}
    assert after.last_table is not None and "last_table" not in after.options
    assert runs_of(pg_rt, cid)[-1].status == "succeeded"


@pytest.mark.postgres
def test_a_new_key_saved_while_a_failure_is_recorded_ends_the_streak(
    pg_rt, workspace, spreadsheet_id, monkeypatch
) -> None:
    user_id, cid = _stored(pg_rt, workspace, spreadsheet_id)
    with pg_rt.session_factory() as s, s.begin():
        take_write_lock(s)
        c = s.get(store.Connection, cid)
        c.instantly_api_key_encrypted = crypto.encrypt(pg_rt.fernet, "revoked-key-0000")
        c.schedule = "hourly"
        c.consecutive_failures = store.PAUSE_AFTER_FAILURES - 1
    during = DuringFinish(pg_rt, lambda: edit(pg_rt, user_id, cid, instantly_api_key=INSTANTLY_KEY))
    when_called(monkeypatch, pg_rt, "instantly", "step_analytics", during.arm, after=True)
    result = run_connection_now(pg_rt, cid)
    during.join()
    assert result.error_code == "instantly_key_rejected"
    after = connection(pg_rt, cid)
    # The person's fix came after the failed call: the schedule is not paused over it.
    assert after.paused_reason is None
    assert after.consecutive_failures == 0


# --- a connection deleted during the sync is not written -------------------------------


@pytest.mark.parametrize(
    ("client", "method", "after"),
    [("instantly", "step_analytics", False), ("sheets", "read_tabs", True)],
    ids=["during-the-instantly-fetch", "after-the-sheets-read"],
)
def test_a_connection_deleted_during_the_sync_is_not_written(
    rt, stored, monkeypatch, fake_sheets, spreadsheet_id, client, method, after
) -> None:
    user_id, cid = stored
    when_called(monkeypatch, rt, client, method, lambda: delete(rt, user_id, cid), after=after)
    result = run_connection_now(rt, cid)
    assert not result.ok
    assert result.error_code == ConnectionDeleted.code
    assert "deleted" in (result.error_message or "")
    assert fake_sheets.count("batchUpdate", spreadsheet_id) == 0
    # Its run went with it (ON DELETE CASCADE): nothing left to record.
    assert runs_of(rt, cid) == []


def test_a_run_whose_connection_was_deleted_before_it_started_is_not_written(
    rt, stored, fake_sheets, spreadsheet_id
) -> None:
    user_id, cid = stored
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        run, _ = store.enqueue_run(s, s.get(store.Connection, cid), "manual")
        assert store.claim_run(s, run.id, "test-worker", lease_seconds=60) is not None
        run_id = run.id
    delete(rt, user_id, cid)
    result = execute_run(rt, run_id)
    assert (result.ok, result.error_code) == (False, ConnectionDeleted.code)
    assert fake_sheets.count(spreadsheet_id=spreadsheet_id) == 0


def test_connection_deleted_is_final() -> None:
    assert ConnectionDeleted.code == "connection_deleted"
    assert ConnectionDeleted.retryable is False
    assert ConnectionDeleted.pauses is False


# --- a database hiccup after the write -------------------------------------------------


class Hiccup:
    """After ``arm()``, the next transaction of the arming thread fails as it does in
    production: on SQLite another process holds the write lock past the busy timeout;
    on PostgreSQL the server ends the connection under it."""

    BUSY_TIMEOUT_MS = 50

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fired = 0
        self._thread: int | None = None
        self._holder: sqlite3.Connection | None = None
        self.sqlite = engine.dialect.name == "sqlite"
        if self.sqlite:
            event.listen(engine, "connect", self._short_busy_timeout)
            event.listen(engine, "handle_error", self._release)
            engine.dispose()  # pooled connections wait the full timeout
        else:
            event.listen(engine, "before_cursor_execute", self._terminate)

    def _short_busy_timeout(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")

    def arm(self) -> None:
        self._thread = threading.get_ident()
        if self.sqlite:
            self._holder = sqlite3.connect(self.engine.url.database, isolation_level=None)
            self._holder.execute("BEGIN IMMEDIATE")

    def _release(self, context: Any) -> None:
        if self._holder is not None and "locked" in str(context.original_exception):
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None
            self.fired += 1

    def _terminate(self, _conn: Any, cursor: Any, *_rest: Any) -> None:
        if self._thread != threading.get_ident():
            return
        self._thread = None
        admin = create_engine(postgres_admin_url(), poolclass=NullPool)
        try:
            with admin.connect() as c:
                # Waits (up to 10 s) until the backend is gone, so the statement meets a
                # closed connection rather than racing the signal.
                assert c.execute(
                    text("SELECT pg_terminate_backend(:pid, 10000)"),
                    {"pid": cursor.connection.info.backend_pid},
                ).scalar_one()
        finally:
            admin.dispose()
        self.fired += 1


def test_a_success_whose_recording_hits_a_database_hiccup_is_recorded_once(
    rt, stored, monkeypatch, fake_sheets, spreadsheet_id
) -> None:
    _, cid = stored
    hiccup = Hiccup(rt.engine)
    when_called(monkeypatch, rt, "sheets", "batch_update", hiccup.arm, after=True)
    result: RunResult = run_connection_now(rt, cid)
    assert hiccup.fired == 1
    assert result.ok
    [run] = runs_of(rt, cid)
    assert run.status == "succeeded"
    assert run.rows_written == result.rows_written == 3
    assert fake_sheets.count("batchUpdate", spreadsheet_id) == 1
    assert connection(rt, cid).sheet_id == tab_id(fake_sheets, spreadsheet_id, TAB)


def test_a_failure_whose_recording_hits_a_database_hiccup_is_recorded(
    rt, stored, monkeypatch
) -> None:
    _, cid = stored
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        c = s.get(store.Connection, cid)
        c.instantly_api_key_encrypted = crypto.encrypt(rt.fernet, "revoked-key-0000")
        # After a failed refresh the first call goes alone, on the sync's own thread,
        # which is the thread the hiccup is armed for.
        c.consecutive_failures = 1
    hiccup = Hiccup(rt.engine)
    when_called(monkeypatch, rt, "instantly", "step_analytics", hiccup.arm, after=True)
    result = run_connection_now(rt, cid)
    assert hiccup.fired == 1
    assert result.error_code == "instantly_key_rejected"
    [run] = runs_of(rt, cid)
    assert (run.status, run.error_code) == ("failed", "instantly_key_rejected")
    assert connection(rt, cid).consecutive_failures == 2


def _wrapped(orig: BaseException, **kw: Any) -> DBAPIError:
    return DBAPIError.instance("UPDATE sync_runs …", {}, orig, sqlite3.Error, **kw)


def test_which_database_errors_are_worth_another_attempt() -> None:
    assert is_transient_error(_wrapped(sqlite3.OperationalError("database is locked")))
    assert not is_transient_error(_wrapped(sqlite3.OperationalError("no such table: x")))
    assert not is_transient_error(_wrapped(sqlite3.IntegrityError("UNIQUE failed")))
    assert is_transient_error(
        _wrapped(sqlite3.IntegrityError("closed"), connection_invalidated=True)
    )
    assert isinstance(_wrapped(sqlite3.OperationalError("x")), OperationalError)
    assert isinstance(_wrapped(sqlite3.IntegrityError("x")), IntegrityError)
    assert not is_transient_error(ValueError("database is locked"))

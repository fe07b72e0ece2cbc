"""Failure handling: one e-mail when failures start, none for the next ones, one on
recovery; permanent errors pause the schedule after 3 failures, transient ones do not.
Real SMTP: aiosmtpd's Controller on 127.0.0.1."""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync import store
from sheets_sync.jobs.alerts import parse_smtp_url
from sheets_sync.jobs.runtime import build_runtime
from sheets_sync.jobs.scheduler import enqueue_due
from sheets_sync.jobs.worker import Worker
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.migrate import upgrade
from sheets_sync.store.models import User
from tests.smtp_helpers import free_port
from tests.worker_helpers import add_connections, connection, make_user, queue_run, runs_of

KEY = "alert-test-instantly-key-SECRET-9f3c"


@pytest.fixture
def alert_rt(settings, fast_retry, inbox):
    _handler, controller = inbox
    s = settings.model_copy(update={
        "smtp_url": f"smtp://127.0.0.1:{controller.port}",
        "public_url": "https://sync.example.com",
    })
    upgrade(s.resolved_database_url)
    rt = build_runtime(s, retry=fast_retry)
    yield rt
    rt.engine.dispose()


def run_scheduled(rt, cid: int) -> None:
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        c = s.get(type(connection(rt, cid)), cid)
        store.enqueue_run(s, c, "schedule")
    assert Worker(rt).drain() == 1


@pytest.fixture
def conn(alert_rt, spreadsheet_id):
    user_id = make_user(alert_rt, "owner@example.com")
    [cid] = add_connections(alert_rt, user_id, [spreadsheet_id], api_key=KEY, name="Q1")
    return cid


def test_one_mail_on_first_failure_none_after_one_on_recovery(
    alert_rt, conn, inbox, fake_instantly
) -> None:
    handler, _ = inbox
    # The workspace does not know the key: 401, a permanent error.
    run_scheduled(alert_rt, conn)
    assert len(handler.messages) == 1
    mail = handler.messages[0]
    assert mail["To"] == "owner@example.com"
    assert "failed" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()
    assert "Instantly API key was rejected" in body
    assert KEY not in body and KEY not in mail.as_string()
    assert connection(alert_rt, conn).failure_notified_at is not None

    run_scheduled(alert_rt, conn)
    assert len(handler.messages) == 1, "no second e-mail for consecutive failures"
    assert connection(alert_rt, conn).paused_reason is None
    run_scheduled(alert_rt, conn)
    assert len(handler.messages) == 1
    c = connection(alert_rt, conn)
    assert c.consecutive_failures == 3
    assert c.paused_reason and "3 refreshes in a row failed" in c.paused_reason
    assert KEY not in c.paused_reason

    # Paused: a due slot queues nothing.
    with alert_rt.session_factory() as s, s.begin():
        s.get(type(c), conn).next_run_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert enqueue_due(alert_rt) == 0

    # The owner fixes the key's workspace and resumes.
    fake_instantly.add_workspace(KEY)
    with alert_rt.session_factory() as s, s.begin():
        take_write_lock(s)
        store.resume_connection(s, s.get(User, c.user_id), conn)
    c = connection(alert_rt, conn)
    assert c.paused_reason is None and c.consecutive_failures == 0
    assert c.next_run_at is not None and c.next_run_at > dt.datetime.now(dt.UTC)

    run_scheduled(alert_rt, conn)
    assert [r.status for r in runs_of(alert_rt, conn)][-1] == "succeeded"
    assert len(handler.messages) == 2
    assert "refreshing again" in handler.messages[1]["Subject"]
    assert "https://sync.example.com/" in handler.messages[1].get_payload(decode=True).decode()
    assert connection(alert_rt, conn).failure_notified_at is None
    run_scheduled(alert_rt, conn)
    assert len(handler.messages) == 2, "nothing to say when all is well"


def test_a_manual_refresh_that_works_ends_the_pause_and_the_streak(
    alert_rt, conn, inbox, fake_instantly
) -> None:
    handler, _ = inbox
    for _ in range(3):  # the key is unknown: a permanent error, paused after 3
        run_scheduled(alert_rt, conn)
    assert connection(alert_rt, conn).paused_reason
    fake_instantly.add_workspace(KEY)  # fixed in Instantly; the owner clicks Refresh
    queue_run(alert_rt, conn)
    assert Worker(alert_rt).drain() == 1
    c = connection(alert_rt, conn)
    assert c.paused_reason is None and c.consecutive_failures == 0
    assert c.failure_notified_at is None
    # Scheduled again from its next slot, and the tab it wrote is remembered.
    assert c.next_run_at is not None and c.next_run_at > dt.datetime.now(dt.UTC)
    assert c.sheet_id is not None and c.last_table
    assert [m["Subject"] for m in handler.messages][-1].endswith("refreshing again")


def test_transient_failures_keep_the_schedule(alert_rt, conn, inbox, fake_instantly) -> None:
    handler, _ = inbox
    fake_instantly.add_workspace(KEY)
    fake_instantly.fail_next(503, count=1000)
    for _ in range(4):
        run_scheduled(alert_rt, conn)
    c = connection(alert_rt, conn)
    assert c.consecutive_failures == 4 and c.paused_reason is None
    assert [r.error_code for r in runs_of(alert_rt, conn)] == ["instantly_unavailable"] * 4
    assert len(handler.messages) == 1
    fake_instantly.clear_faults()
    run_scheduled(alert_rt, conn)
    assert len(handler.messages) == 2


def test_smtp_down_never_breaks_a_sync(settings, fast_retry, spreadsheet_id) -> None:
    s = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{free_port()}"})
    upgrade(s.resolved_database_url)
    rt = build_runtime(s, retry=fast_retry)
    try:
        user_id = make_user(rt)
        [cid] = add_connections(rt, user_id, [spreadsheet_id], api_key=KEY)
        run_scheduled(rt, cid)
        c = connection(rt, cid)
        # Not told yet: the next failure tries the e-mail again.
        assert c.consecutive_failures == 1 and c.failure_notified_at is None
    finally:
        rt.engine.dispose()


def test_smtp_urls() -> None:
    t = parse_smtp_url("smtps://ann%40x.com:p%40ss@mail.example.com")
    assert (t.host, t.port, t.tls, t.username, t.password) == (
        "mail.example.com", 465, True, "ann@x.com", "p@ss")
    t = parse_smtp_url("smtp://127.0.0.1:8025?starttls=true")
    assert (t.port, t.tls, t.starttls, t.username) == (8025, False, True, None)
    with pytest.raises(Exception, match="SMTP_URL"):
        parse_smtp_url("http://x")


def test_dashboard_shows_the_pause_and_resumes(client, auth, runtime, spreadsheet_id) -> None:
    import re

    from sheets_sync.store.models import Connection

    auth.signup()
    with runtime.session_factory() as s:
        user_id = store.get_user_by_email(s, "ann@example.com").id
    [cid] = add_connections(runtime, user_id, [spreadsheet_id], api_key=KEY)
    with runtime.session_factory() as s, s.begin():
        c = s.get(Connection, cid)
        c.consecutive_failures, c.failure_notified_at = 1, dt.datetime.now(dt.UTC)
    page = client.get("/").get_data(as_text=True)
    assert "The last 1 refresh failed" in page and "We e-mailed you" in page
    with runtime.session_factory() as s, s.begin():
        c = s.get(Connection, cid)
        c.consecutive_failures = 3
        c.paused_reason = store.pause_reason_for("sheet_not_shared", "Share the sheet.", 3)
    page = client.get("/").get_data(as_text=True)
    assert "Scheduled refreshes are paused: 3 refreshes in a row failed" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(f"/connections/{cid}/resume", data={"csrf_token": token})
    assert response.status_code == 302
    c = connection(runtime, cid)
    assert c.paused_reason is None and c.consecutive_failures == 0 and c.next_run_at
    assert "data-paused" not in client.get("/").get_data(as_text=True)

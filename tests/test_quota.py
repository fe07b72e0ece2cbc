"""The shared call budgets: rolling-window permits, cooldowns after a 429, refunds, and
the clients' hooks. Runs on SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import threading

import pytest

from sheets_sync.jobs.quota import (
    SHEETS_WRITE,
    QuotaBudget,
    QuotaWaitTooLong,
    instantly_budget_name,
)

ADD_TAB = [{"addSheet": {"properties": {"title": "One"}}}]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def budget(session_factory, clock: Clock, window: float = 60.0) -> QuotaBudget:
    return QuotaBudget(session_factory, window=window, clock=clock, sleep=lambda s: None)


def test_permits_follow_a_rolling_window(session_factory, clock) -> None:
    b = budget(session_factory, clock)
    granted = [b.try_acquire(SHEETS_WRITE, 3) for _ in range(3)]
    assert all(g.granted for g in granted)
    refused = b.try_acquire(SHEETS_WRITE, 3)
    assert not refused.granted
    assert refused.wait == pytest.approx(61.0)  # window + margin (1 s per minute)
    clock.now += 30
    assert not b.try_acquire(SHEETS_WRITE, 3).granted  # still inside the rolling window
    clock.now += 31.01
    assert b.try_acquire(SHEETS_WRITE, 3).granted
    # Another budget is independent.
    assert b.try_acquire("sheets:read", 1).granted


def test_two_budget_objects_share_the_database(session_factory, clock) -> None:
    a, b = budget(session_factory, clock), budget(session_factory, clock)
    assert a.try_acquire(SHEETS_WRITE, 2).granted
    assert b.try_acquire(SHEETS_WRITE, 2).granted
    assert not a.try_acquire(SHEETS_WRITE, 2).granted
    assert not b.try_acquire(SHEETS_WRITE, 2).granted


def test_refund_gives_the_permit_back(session_factory, clock) -> None:
    b = budget(session_factory, clock)
    grant = b.try_acquire(SHEETS_WRITE, 1)
    assert grant.id is not None and not b.try_acquire(SHEETS_WRITE, 1).granted
    b.refund(grant.id)
    assert b.try_acquire(SHEETS_WRITE, 1).granted


def test_a_429_cools_down_every_worker(session_factory, clock) -> None:
    seen_by_one, other = budget(session_factory, clock), budget(session_factory, clock)
    seen_by_one.cooldown(SHEETS_WRITE, 5.0)
    refused = other.try_acquire(SHEETS_WRITE, 1000)
    assert not refused.granted and refused.wait == pytest.approx(5.0)
    assert other.wait_hint(SHEETS_WRITE, 1000) == pytest.approx(5.0)
    clock.now += 5.01
    assert other.try_acquire(SHEETS_WRITE, 1000).granted


def test_acquire_waits_or_gives_up(session_factory, clock) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    b = QuotaBudget(session_factory, window=60, clock=clock, sleep=sleep)
    b.acquire(SHEETS_WRITE, 1)
    with pytest.raises(QuotaWaitTooLong):
        b.acquire(SHEETS_WRITE, 1, max_wait=10)
    assert slept == []
    b.acquire(SHEETS_WRITE, 1, max_wait=120)
    assert slept == [pytest.approx(61.0)]


def test_concurrent_acquires_never_exceed_the_limit(session_factory, clock) -> None:
    b = budget(session_factory, clock)
    results: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(5):
            ok = b.try_acquire(SHEETS_WRITE, 12).granted
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 12


def test_claim_job_runs_once_per_period(session_factory, clock) -> None:
    a, b = budget(session_factory, clock), budget(session_factory, clock)
    assert a.claim_job("housekeeping:x", 3600)
    assert not b.claim_job("housekeeping:x", 3600)
    clock.now += 3600
    assert b.claim_job("housekeeping:x", 3600)


def test_instantly_budget_names_do_not_reveal_the_key() -> None:
    name = instantly_budget_name("secret-instantly-key-abcd")
    assert "secret" not in name and "abcd" not in name
    assert name == instantly_budget_name(" secret-instantly-key-abcd ")


def test_a_sheets_429_from_google_is_shared_as_a_cooldown(
    runtime, fake_sheets, spreadsheet_id
) -> None:
    import time

    from sheets_sync.store.models import RateLimit

    fake_sheets.fail_next("write", 429, headers={"Retry-After": "1"})
    started = time.time()
    runtime.sheets().batch_update(spreadsheet_id, ADD_TAB)  # retried after the cooldown
    assert fake_sheets.count("batchUpdate", status=429) == 1
    assert fake_sheets.count("batchUpdate", status=200) == 1
    with runtime.session_factory() as s:
        row = s.get(RateLimit, SHEETS_WRITE)
        # Recorded for every worker: no write anywhere until Google's Retry-After passed.
        assert row is not None and row.blocked_until == pytest.approx(started + 1, abs=0.5)
    write_times = [c.at for c in fake_sheets.calls if c.kind == "batchUpdate"]
    assert write_times[1] - write_times[0] >= 0.9


def test_clients_take_permits_per_call(runtime, fake_sheets, spreadsheet_id) -> None:
    b = runtime.quota
    client = runtime.sheets()
    client.sheet_properties(spreadsheet_id)
    client.batch_update(spreadsheet_id, ADD_TAB)
    with runtime.session_factory() as s:
        from sqlalchemy import func, select

        from sheets_sync.store.models import RateLimitGrant

        names = dict(
            s.execute(
                select(RateLimitGrant.name, func.count()).group_by(RateLimitGrant.name)
            ).all()
        )
    assert names == {"sheets:read": 1, "sheets:write": 1}
    # A permit taken before claiming (the worker's) is used instead of a new one.
    grant = b.try_acquire(SHEETS_WRITE, 60)
    b.prepay(SHEETS_WRITE, grant.id)
    client.batch_update(spreadsheet_id, [{"addSheet": {"properties": {"title": "Two"}}}])
    assert b.take_prepaid(SHEETS_WRITE) is None
    with runtime.session_factory() as s:
        from sqlalchemy import func, select

        from sheets_sync.store.models import RateLimitGrant

        assert s.scalar(
            select(func.count()).select_from(RateLimitGrant)
            .where(RateLimitGrant.name == SHEETS_WRITE)
        ) == 2

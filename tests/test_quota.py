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
    sheets_budgets,
)
from tests.plugin_fakes import SERVICE_ACCOUNT_EMAIL

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


ACCOUNT_WRITE = f"sheets:write:{SERVICE_ACCOUNT_EMAIL}"


def test_a_sheets_429_from_google_is_shared_as_a_cooldown(
    runtime, fake_sheets, spreadsheet_id, clock
) -> None:
    from sheets_sync.pipeline.retry import RetryPolicy
    from sheets_sync.store.models import RateLimit

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    # The budget's clock and both waits (the budget's, the retry's) are injected: what
    # is asserted is the grant log and the cooldown row, not how long anything took.
    runtime.quota = QuotaBudget(runtime.session_factory, window=60, clock=clock, sleep=sleep)
    runtime.retry = RetryPolicy(attempts=3, max_total_wait=5.0, sleep=lambda s: None)
    fake_sheets.fail_next("write", 429, headers={"Retry-After": "1"})
    first = clock.now
    runtime.sheets().batch_update(spreadsheet_id, ADD_TAB)  # retried after the cooldown
    assert fake_sheets.count("batchUpdate", status=429) == 1
    assert fake_sheets.count("batchUpdate", status=200) == 1
    with runtime.session_factory() as s:
        row = s.get(RateLimit, ACCOUNT_WRITE)
        # Recorded for every worker: no write anywhere until Google's Retry-After passed.
        assert row is not None and row.blocked_until == pytest.approx(first + 1)
    # The retry waited for the cooldown (on the budget's clock), then took a new permit.
    assert grant_times(runtime, ACCOUNT_WRITE) == [first, pytest.approx(first + 1)]
    assert slept == [pytest.approx(1.0)]


def grant_times(runtime, name: str) -> list[float]:
    from sqlalchemy import select

    from sheets_sync.store.models import RateLimitGrant

    with runtime.session_factory() as s:
        return list(
            s.scalars(
                select(RateLimitGrant.granted_at)
                .where(RateLimitGrant.name == name)
                .order_by(RateLimitGrant.granted_at)
            )
        )


def grant_counts(session_factory) -> dict[str, int]:
    from sqlalchemy import func, select

    from sheets_sync.store.models import RateLimitGrant

    with session_factory() as s:
        return dict(
            s.execute(
                select(RateLimitGrant.name, func.count()).group_by(RateLimitGrant.name)
            ).all()
        )


def test_clients_take_permits_per_call(runtime, fake_sheets, spreadsheet_id) -> None:
    b = runtime.quota
    client = runtime.sheets()
    client.sheet_properties(spreadsheet_id)
    client.batch_update(spreadsheet_id, ADD_TAB)
    # Each call spends from its account's budget and from its project's.
    assert grant_counts(runtime.session_factory) == {
        f"sheets:read:{SERVICE_ACCOUNT_EMAIL}": 1,
        "sheets:project:read:test-project": 1,
        ACCOUNT_WRITE: 1,
        "sheets:project:write:test-project": 1,
    }
    # Permits taken before claiming (the worker's) are used instead of new ones.
    grant = b.try_acquire_all(
        sheets_budgets("write", SERVICE_ACCOUNT_EMAIL, "test-project",
                       per_account=60, per_project=300)
    )
    b.prepay(ACCOUNT_WRITE, grant.ids)
    client.batch_update(spreadsheet_id, [{"addSheet": {"properties": {"title": "Two"}}}])
    assert b.take_prepaid(ACCOUNT_WRITE) is None
    counts = grant_counts(runtime.session_factory)
    assert counts[ACCOUNT_WRITE] == 2 and counts["sheets:project:write:test-project"] == 2


def test_an_account_and_its_project_grant_together_or_not_at_all(
    session_factory, clock
) -> None:
    b = budget(session_factory, clock)
    project = ("sheets:project:write:p", 2)
    a, c, d = ("sheets:write:a@p", 1), ("sheets:write:c@p", 5), ("sheets:write:d@p", 5)
    assert b.try_acquire_all((a, project)).granted
    # The account is full: refused, and the project's permit is not taken either.
    refused = b.try_acquire_all((a, project))
    assert not refused.granted and refused.wait == pytest.approx(61.0)
    assert grant_counts(session_factory) == {a[0]: 1, project[0]: 1}
    assert b.try_acquire_all((c, project)).granted
    # Now the project is full: another account of it gets nothing, and leaks nothing.
    assert not b.try_acquire_all((d, project)).granted
    assert grant_counts(session_factory) == {a[0]: 1, c[0]: 1, project[0]: 2}
    # A refund returns both permits of a grant.
    clock.now += 61.01
    grant = b.try_acquire_all((d, project))
    assert grant.granted and len(grant.ids) == 2
    b.refund(grant.ids)
    assert d[0] not in grant_counts(session_factory)


def test_three_accounts_share_their_project_budget(session_factory, clock) -> None:
    """Counted from the grant log on the injected clock: per window, no account passes
    its limit and the project never passes its own, however the takes interleave."""
    b = budget(session_factory, clock, window=6.0)
    start = clock.now
    accounts = [f"acct{n}@p.iam.gserviceaccount.com" for n in range(3)]
    granted: list[tuple[float, str]] = []
    for _tick in range(40):
        for email in accounts:
            grant = b.try_acquire_all(
                sheets_budgets("write", email, "p", per_account=4, per_project=10)
            )
            if grant.granted:
                granted.append((clock.now, email))
        clock.now += 0.5
    span = 6.0 + 6.0 / 60
    for end, _ in granted:
        window = [email for at, email in granted if end - span < at <= end]
        assert len(window) <= 10
        assert all(window.count(email) <= 4 for email in accounts)
    # And the budgets were used, not just refused: each window of the steady state is full.
    assert len([1 for at, _ in granted if at < start + span]) == 10


def test_concurrent_takes_of_two_budgets_never_exceed_either(session_factory, clock) -> None:
    b = budget(session_factory, clock)
    results: list[str] = []
    lock = threading.Lock()
    project = ("sheets:project:write:p", 7)

    def take(account: str) -> None:
        for _ in range(5):
            if b.try_acquire_all(((account, 5), project)).granted:
                with lock:
                    results.append(account)

    threads = [threading.Thread(target=take, args=(f"sheets:write:{n % 2}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 7
    assert max(results.count("sheets:write:0"), results.count("sheets:write:1")) <= 5
    assert grant_counts(session_factory)[project[0]] == 7


def most_in_a_window(times: list[float], span: float) -> int:
    times = sorted(times)
    start = most = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - span:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_permits_taken_ahead_and_dated_at_their_call_never_crowd_a_window(
    session_factory, clock
) -> None:
    """The worker's way: a permit taken before claiming (dated ahead), then re-dated when
    its call is made, or refunded. Whatever the interleaving (a seeded random one, on the
    injected clock), the calls' times never put more than the limit in one window."""
    import random

    b = budget(session_factory, clock, window=6.0)
    rng = random.Random(12)
    pending: list[tuple[int, ...]] = []
    calls: list[float] = []
    for _ in range(400):
        roll = rng.random()
        if roll < 0.5:
            grant = b.try_acquire("sheets:write:x", 5, pending_for=30.0)
            if grant.granted:
                pending.append(grant.ids)
        elif pending and roll < 0.85:
            b.touch(pending.pop(rng.randrange(len(pending))))
            calls.append(clock.now)
        elif pending:
            b.refund(pending.pop(rng.randrange(len(pending))))
        clock.now += rng.uniform(0.0, 0.4)
    assert most_in_a_window(calls, 6.0 + 6.0 / 60) <= 5
    assert len(calls) >= 40  # and the budget was used, not just refused
    # The grant log agrees: every permit dated in the past carries its call's time (the
    # rest are still pending; older ones may have been pruned once they stopped counting).
    logged = [t for t in grant_times_of(session_factory, "sheets:write:x") if t <= clock.now]
    assert logged and set(logged) <= set(calls)


def grant_times_of(session_factory, name: str) -> list[float]:
    from sqlalchemy import select

    from sheets_sync.store.models import RateLimitGrant

    with session_factory() as s:
        return list(s.scalars(select(RateLimitGrant.granted_at).where(
            RateLimitGrant.name == name)))

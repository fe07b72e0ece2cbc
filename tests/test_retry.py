"""The retry policy: honours Retry-After, backs off with jitter, stops within budget."""

from __future__ import annotations

import pytest

from sheets_sync.errors import InstantlyKeyRejected, InstantlyRateLimited
from sheets_sync.pipeline.retry import RetryPolicy, call_with_retry, parse_retry_after


def test_retry_after_is_honoured_then_success():
    sleeps: list[float] = []
    outcomes = [InstantlyRateLimited("slow down", retry_after=2.0), "ok"]

    def fn():
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert call_with_retry(fn, RetryPolicy(sleep=sleeps.append)) == "ok"
    assert sleeps == [2.0]


def test_permanent_errors_are_not_retried():
    calls = []

    def fn():
        calls.append(1)
        raise InstantlyKeyRejected("no")

    with pytest.raises(InstantlyKeyRejected):
        call_with_retry(fn, RetryPolicy(sleep=lambda s: None))
    assert len(calls) == 1


def test_gives_up_when_the_wait_would_exceed_the_budget():
    sleeps: list[float] = []

    def fn():
        raise InstantlyRateLimited("slow down", retry_after=3600)

    with pytest.raises(InstantlyRateLimited):
        call_with_retry(fn, RetryPolicy(sleep=sleeps.append, max_total_wait=60))
    assert sleeps == []


def test_backoff_without_hint_is_jittered_and_bounded():
    sleeps: list[float] = []

    def fn():
        raise InstantlyRateLimited("slow down")

    with pytest.raises(InstantlyRateLimited):
        call_with_retry(fn, RetryPolicy(attempts=5, sleep=sleeps.append, max_backoff=4))
    assert len(sleeps) == 4
    assert all(0 <= s <= 4 for s in sleeps)


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None

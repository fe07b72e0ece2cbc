"""One retry policy for every outbound call.

Both APIs rate-limit and both have bad minutes. The policy: retry only errors marked
``retryable`` (429, 5xx, connection errors, timeouts), wait what the server asked for in
``Retry-After`` when it said, otherwise exponential backoff with full jitter, and give up
after a bounded number of attempts *and* a bounded total wait, so a sync never hangs a
worker. gspread's own BackOffHTTPClient retries forever and ignores Retry-After, which is
why it is not used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from sheets_sync.errors import SyncError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    # Backoff without Retry-After: random in [0, min(max_backoff, base * 2**n)].
    base_backoff: float = 0.5
    max_backoff: float = 8.0
    # Total seconds of sleeping across all attempts; a longer Retry-After ends the retries
    # and the error goes back to the caller (the worker then tries at the next slot).
    max_total_wait: float = 60.0
    sleep: Callable[[float], None] = time.sleep


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, SyncError) and exc.retryable


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Run ``fn`` under ``policy``; re-raise the last SyncError when retries run out."""
    backoff = wait_random_exponential(multiplier=policy.base_backoff, max=policy.max_backoff)
    waited = 0.0

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        return float(hinted) if hinted is not None else float(backoff(state))

    def stop(state: RetryCallState) -> bool:
        if stop_after_attempt(policy.attempts)(state):
            return True
        # tenacity computes the wait before asking stop: refuse to sleep past the budget.
        return waited + state.upcoming_sleep > policy.max_total_wait

    def sleep(seconds: float) -> None:
        nonlocal waited
        waited += seconds
        policy.sleep(seconds)

    retrying = Retrying(
        retry=retry_if_exception(_is_retryable),
        stop=stop,
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)

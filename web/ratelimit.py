"""Sign-in throttling: at most N failed attempts per (email, IP) in a sliding window.

In memory and per process: enough to make password guessing against one account slow
(5 guesses per 5 minutes), with no new infrastructure. Several processes each keep their
own count, which multiplies the allowance by the process count but keeps it bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class LoginRateLimiter:
    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, email: str, ip: str) -> float:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        key = (email.strip().lower(), ip)
        with self._lock:
            now = self._clock()
            times = self._recent(key, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(times[0] + self.window - now, 0.0)

    def record_failure(self, email: str, ip: str) -> None:
        key = (email.strip().lower(), ip)
        with self._lock:
            now = self._clock()
            if key not in self._failures and len(self._failures) >= self._max_keys:
                self._prune(now)
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)

    def reset(self, email: str, ip: str) -> None:
        with self._lock:
            self._failures.pop((email.strip().lower(), ip), None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        # Still full (an attack from very many addresses): forget the oldest entries
        # rather than grow without bound.
        while len(self._failures) >= self._max_keys:
            del self._failures[next(iter(self._failures))]


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))

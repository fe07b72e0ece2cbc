"""A refresh's independent Instantly calls, sent side by side.

Most of a refresh's calls to Instantly do not depend on each other (the step analytics,
the campaign overview, each history day, each subsequence list). Each one mostly waits
on the network, so one after another their waits add up; side by side the refresh waits
about as long as the slowest.

Side by side must not make a refresh less predictable than one after another was:

* results come back in the order the calls were listed, and the failure raised is the
  first one in that order, whichever finished first;
* calls start in the order listed, at most ``max_in_flight`` at a time, and none starts
  once one has failed (as one after another would not have sent it); every call listed
  before a failed one has started by then, so a failure earlier in the list is never
  hidden by a later one;
* every started call has finished before this returns or raises, so no call of a
  refresh is still in flight when its outcome is recorded.

The calls run on one pool of threads shared by every refresh of the process: a worker's
threads refresh all the time, and starting threads for each refresh cost more CPU than
the overlap saved on a busy machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Calls of one refresh in flight at once. The workers keep as many connections open to
# Instantly per thread (``jobs.runtime.INSTANTLY_CONNECTIONS``), so none is opened anew.
MAX_IN_FLIGHT = 8
# Threads of the shared pool, for every refresh of the process together: calls beyond
# it wait for a free thread (they are slower, never lost).
POOL_THREADS = 64

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    # A forked process (gunicorn's workers) has none of the parent's threads.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="refresh-call")
        return _pool


class _Window(Generic[T]):
    """Calls started in order, ``limit`` at a time, until one fails."""

    def __init__(self, calls: Sequence[Callable[[], T]], limit: int) -> None:
        self.calls = calls
        self.limit = limit
        # Re-entrant: a call that is done already runs its callback at once, inside.
        self.lock = threading.RLock()
        self.settled = threading.Event()
        self.futures: list[Future[T]] = []
        self.running = 0
        self.failed = False

    def run(self) -> list[T]:
        with self.lock:
            self._start_more()
        self.settled.wait()
        # Only calls before the first failure in order were all started: ``result()``
        # raises at the first failed one, before any gap.
        return [future.result() for future in self.futures]

    def _start_more(self) -> None:
        while not self.failed and self.running < self.limit and len(self.futures) < len(
            self.calls
        ):
            future = _shared_pool().submit(self.calls[len(self.futures)])
            self.futures.append(future)
            self.running += 1
            future.add_done_callback(self._done)
        if self.running == 0:
            self.settled.set()

    def _done(self, future: Future[Any]) -> None:
        with self.lock:
            self.running -= 1
            if future.exception() is not None:
                self.failed = True
            self._start_more()


def side_by_side(
    calls: Sequence[Callable[[], T]], *, max_in_flight: int = MAX_IN_FLIGHT
) -> list[T]:
    """Run ``calls`` concurrently; their results in order, or the first failure in order."""
    if len(calls) <= 1:
        return [call() for call in calls]
    return _Window(calls, max(1, max_in_flight)).run()

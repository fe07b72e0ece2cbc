"""A refresh's independent Instantly calls, sent side by side.

Most of a refresh's calls to Instantly do not depend on each other (the step analytics,
the campaign overview, each history day, each subsequence list). Each one mostly waits
on the network, so one after another their waits add up; side by side the refresh waits
about as long as the slowest.

Side by side must not make a refresh less predictable than one after another was:

* results come back in the order the calls were listed, and the failure raised is the
  first one in that order, whichever finished first;
* once a call has failed, the calls listed after it that have not started yet are not
  sent (as one after another would not have sent them); the ones listed before it
  always run, so that a failure earlier in the list is never hidden by a later one;
* every call has finished (or was never sent) before this returns or raises, so no call
  of a refresh is still in flight when its outcome is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Calls of one refresh in flight at once. The workers keep as many connections open to
# Instantly per thread (``jobs.runtime.INSTANTLY_CONNECTIONS``), so none is opened anew.
MAX_IN_FLIGHT = 8


def side_by_side(
    calls: Sequence[Callable[[], T]], *, max_in_flight: int = MAX_IN_FLIGHT
) -> list[T]:
    """Run ``calls`` concurrently; their results in order, or the first failure in order."""
    if len(calls) <= 1:
        return [call() for call in calls]
    futures: list[Future[T]] = []
    # Re-entrant: a call that is already done runs its callback in this thread, inside.
    lock = threading.RLock()

    def stop_after(index: int) -> Callable[[Future[T]], None]:
        def on_done(future: Future[T]) -> None:
            if future.cancelled() or future.exception() is None:
                return
            with lock:
                for later in futures[index + 1:]:
                    later.cancel()  # only those not started yet; running ones finish

        return on_done

    with ThreadPoolExecutor(
        max_workers=min(max_in_flight, len(calls)), thread_name_prefix="refresh-call"
    ) as pool:
        with lock:  # callbacks see every future before they cancel any
            for call in calls:
                futures.append(pool.submit(call))
            for index, future in enumerate(futures):
                future.add_done_callback(stop_after(index))
    # The pool has been shut down and waited for: every call has settled.
    # A call is cancelled only after an earlier one failed, whose failure comes first.
    return [future.result() for future in futures]

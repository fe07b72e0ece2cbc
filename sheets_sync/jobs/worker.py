"""Workers: claim queued runs and carry them out.

A run is claimed in the database (conditional UPDATE, ``SKIP LOCKED`` on PostgreSQL), so
any number of threads and processes can work the same queue and none runs a connection
twice (the partial unique index allows one queued-or-running run per connection). A
claim is a lease: the heartbeat renews it while the sync runs, and a worker that dies
leaves a lease that expires, after which ``store.expire_leases`` records the run as
interrupted and queues it again for another worker.

Before claiming, a worker thread takes a Sheets write permit from the budget shared by
all processes (``sheets_sync.quota``): when the budget is spent, the backlog waits as
*queued* runs, not as claimed runs holding leases, and the scheduler logs how long it will
take (``scheduler.backlog``). The permit is handed to the sync's one write; an unused one
is refunded.

Housekeeping (once per poll interval per process): expire leases, queue due connections
(``before_claim``); at most once an hour across all workers: delete run history older than
``SHEETS_SYNC_RUN_HISTORY_DAYS``.

An idle worker looks at the queue every ``idle_poll`` seconds, and sooner when woken:
in-process by ``Runtime.notify_enqueued`` (the embedded worker of ``serve``) and, on
PostgreSQL, by a ``NOTIFY`` from whichever process queued the run (``sheets_sync.wakeup``;
the started worker keeps one ``LISTEN`` connection for it).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sheets_sync import store
from sheets_sync.jobs.quota import sheets_budgets, write_budget_name
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.jobs.sync import RunResult, execute_run
from sheets_sync.jobs.wakeup import QueueListener

log = logging.getLogger("sheets_sync.worker")

PRUNE_JOB = "housekeeping:prune_runs"
PRUNE_EVERY_SECONDS = 3600.0
PRUNE_CHECK_SECONDS = 60.0


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int = 1,
        lease_seconds: float | None = None,
        idle_poll: float = 5.0,
        worker_id: str | None = None,
        before_claim: Callable[[], object] | None = None,
        listen: bool = True,
    ) -> None:
        self.rt = runtime
        self.concurrency = max(1, concurrency)
        self.lease_seconds = float(lease_seconds or runtime.settings.lease_seconds)
        self.idle_poll = idle_poll
        self.worker_id = worker_id or make_worker_id()
        # Hook for the scheduler: queue due connections before looking for work (what it
        # returns, such as how many it queued, is not used).
        self.before_claim = before_claim
        # PostgreSQL: woken by NOTIFY from other processes once started (None elsewhere).
        self.listener: QueueListener | None = None
        if listen and runtime.engine.dialect.name == "postgresql":
            self.listener = QueueListener(runtime.engine, self.wake)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._quota_wait = threading.local()
        self._last_prune = 0.0
        self._empty_until: dict[str, float] = {}
        # Counts wake-ups: an emptiness found by a claim that started before the latest
        # one is stale (the run that woke us may be just what that claim did not see).
        self._wakes = 0
        self._last_housekeeping = -float("inf")
        self.outcomes: collections.Counter[str] = collections.Counter()

    # -- control --

    def wake(self) -> None:
        with self._lock:
            self._wakes += 1
            self._empty_until.clear()
        self._wake.set()

    def start(self) -> None:
        self.rt.on_enqueue.append(self.wake)
        if self.listener is not None:
            self.listener.start()
        for i in range(self.concurrency):
            t = threading.Thread(target=self._loop, name=f"sync-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        hb = threading.Thread(target=self._heartbeat, name="sync-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight syncs (up to ``timeout``), then return. A sync still running
        after that keeps its lease until the process exits; the lease then expires and
        another worker retries it (recorded as interrupted), so nothing is lost and no
        two workers ever write the same tab at once."""
        self._stop.set()
        self._wake.set()
        if self.wake in self.rt.on_enqueue:
            self.rt.on_enqueue.remove(self.wake)
        if self.listener is not None:
            self.listener.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- work --

    def claim_one(self) -> int | None:
        """Take a Sheets write permit (when the runtime has a budget), then claim the
        oldest queued run that permit may write for; a permit with no run to spend it on
        is given back. So a run is claimed only when it may write now: a backlog over
        budget waits as queued runs.

        With a pool of service accounts the permit is an account's (and its project's),
        and only a run of a connection pinned to that account is claimed. Each thread
        starts at another account, so busy accounts do not starve the others."""
        self._quota_wait.seconds = 0.0
        with self._lock:
            wakes = self._wakes
        quota = self.rt.quota
        emails = self.rt.service_account_emails if quota is not None else []
        if quota is None or not emails:
            # No budget, or no usable key at all: the sync fails with a setup message
            # before any write.
            return self._claim(None, emails, None, wakes)
        limits = self.rt.sheets_limits
        start = self._rotation()
        waits: list[float] = []
        for offset in range(len(emails)):
            email = emails[(start + offset) % len(emails)]
            if self._known_empty(email):
                continue
            account = self.rt.pool.get(email)
            if account is None:  # the key file changed on disk meanwhile
                continue
            grant = quota.try_acquire_all(
                sheets_budgets(
                    "write", email, account.project_id,
                    per_account=limits.writes_per_minute,
                    per_project=limits.project_writes_per_minute,
                ),
                pending_for=self.lease_seconds,
            )
            if not grant.granted:
                waits.append(grant.wait)
                continue
            run_id = self._claim(email, emails, grant.ids, wakes)
            if run_id is not None:
                return run_id
        if waits:
            self._quota_wait.seconds = min(waits)
        return None

    def _rotation(self) -> int:
        turn = int(getattr(self._quota_wait, "turn", 0))
        self._quota_wait.turn = turn + 1
        return turn

    def _claim(
        self,
        email: str | None,
        pool: list[str],
        grant_ids: tuple[int, ...] | None,
        wakes: int,
    ) -> int | None:
        quota = self.rt.quota
        try:
            # One statement (autocommit on PostgreSQL): the hot path of every thread.
            with self.rt.autocommit() as s, s.begin():
                # No ``now`` from here: stamped inside the transaction, after the lock.
                claimed = store.claim_next_run_id(
                    s, self.worker_id, self.lease_seconds, account=email, pool=pool
                )
        except BaseException:
            if quota is not None and grant_ids:
                quota.refund(grant_ids)
            raise
        run_id = claimed.id if claimed is not None else None
        if quota is not None and grant_ids and email is not None:
            if run_id is None:
                quota.refund(grant_ids)
            else:
                quota.prepay(write_budget_name(email), grant_ids)
        if email is not None and (claimed is None or not claimed.more_queued):
            # Taking the last run empties the queue as surely as finding none.
            self._note_empty(email, wakes)
        return run_id

    # Without this, every idle thread of every process took a permit, found the queue
    # empty and refunded the permit each poll: three statements on the busiest budget
    # rows, per thread, and once more after every run. One thread's finding that an
    # account has nothing queued (no run, or the claim took the last one) now holds for
    # the whole process until a run is queued (``wake``) or the poll interval passes,
    # whichever comes first.

    def _known_empty(self, email: str) -> bool:
        with self._lock:
            until = self._empty_until.get(email)
        return until is not None and time.monotonic() < until

    def _note_empty(self, email: str, wakes: int) -> None:
        with self._lock:
            if self._wakes == wakes:  # else a run was queued since the claim began
                self._empty_until[email] = time.monotonic() + self.idle_poll

    def work_one(self) -> bool:
        """Claim and carry out one run; False when the queue is empty or the Sheets
        budget has no permit now (``quota_wait`` then says for how long)."""
        run_id = self.claim_one()
        if run_id is None:
            return False
        with self._lock:
            self._in_flight.add(run_id)
        try:
            result = execute_run(self.rt, run_id)
            self._count(result)
        finally:
            if self.rt.quota is not None:
                self.rt.quota.refund_prepaid()
            with self._lock:
                self._in_flight.discard(run_id)
        return True

    @property
    def quota_wait(self) -> float:
        """Seconds this thread's last ``work_one`` was told to wait for a Sheets permit."""
        return float(getattr(self._quota_wait, "seconds", 0.0))

    def _count(self, result: RunResult) -> None:
        with self._lock:
            self.outcomes[result.status] += 1

    def drain(self, deadline: float | None = None) -> int:
        """Queue what is due and work the queue with ``concurrency`` threads until it is
        empty (waiting for Sheets permits when the budget says so) or, with a
        ``deadline`` (``time.monotonic()``), until no new sync should start."""
        self._housekeeping()
        before = sum(self.outcomes.values())
        self._start_heartbeat()

        def loop() -> None:
            while not self.stopping:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                try:
                    if self.work_one():
                        continue
                except Exception:
                    log.exception("worker %s drain error", self.worker_id)
                    return
                wait = self.quota_wait
                if wait <= 0:
                    return  # queue empty
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                if self._stop.wait(wait):
                    return

        threads = [
            threading.Thread(target=loop, name=f"sync-drain-{i}", daemon=True)
            for i in range(self.concurrency - 1)
        ]
        for t in threads:
            t.start()
        loop()
        for t in threads:
            t.join()
        # Let the heartbeat thread end (it exits once stopping and nothing is in flight).
        self._stop.set()
        for t in self._threads:
            t.join(5.0)
        self._threads.clear()
        self._stop.clear()
        return sum(self.outcomes.values()) - before

    def _housekeeping_due(self) -> bool:
        """At most one thread of the process does housekeeping per poll interval: 16
        threads each expiring leases and queueing due connections on every idle turn were
        most of an idle worker's database load, and they contended for the same rows. A
        wake-up (a run was queued) does not make it due: queueing a run neither expires a
        lease nor brings a schedule's slot closer, and every process listening would
        otherwise run it for every run queued anywhere."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_housekeeping < self.idle_poll:
                return False
            self._last_housekeeping = now
            return True

    def _housekeeping(self) -> None:
        with self.rt.session_factory() as s, s.begin():
            store.expire_leases(s, self.rt.clock())
        if self.before_claim is not None:
            self.before_claim()
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        quota = self.rt.quota
        # Ask the database (shared by all processes) at most once a minute per process.
        every = PRUNE_EVERY_SECONDS if quota is None else PRUNE_CHECK_SECONDS
        with self._lock:
            if self._last_prune and time.monotonic() - self._last_prune < every:
                return
            self._last_prune = time.monotonic()
        if quota is not None and not quota.claim_job(PRUNE_JOB, PRUNE_EVERY_SECONDS):
            return
        cutoff = self.rt.clock() - timedelta(days=self.rt.settings.run_history_days)
        with self.rt.session_factory() as s, s.begin():
            deleted = store.prune_runs(s, cutoff)
        log.info("pruned run history deleted=%s older_than=%s", deleted, cutoff.isoformat())

    def _loop(self) -> None:
        while not self.stopping:
            wait = self.idle_poll
            # Clear before looking at the queue, never after: a run queued while we look
            # then leaves the event set and the wait below returns at once.
            due = self._housekeeping_due()
            self._wake.clear()
            try:
                if due:
                    self._housekeeping()
                while not self.stopping and self.work_one():
                    pass
                if self.quota_wait > 0:
                    wait = min(self.quota_wait, self.idle_poll)
            except Exception:
                # A database hiccup must not kill the thread; try again after a pause.
                log.exception("worker %s loop error", self.worker_id)
            if self.quota_wait > 0:
                # Waiting for the budget: a new run in the queue does not change that.
                self._stop.wait(wait)
            else:
                self._wake.wait(wait)

    def _heartbeat(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while True:
            stopping = self._stop.wait(interval)
            with self._lock:
                running = list(self._in_flight)
            if stopping and not running:
                return
            for run_id in running:
                try:
                    with self.rt.session_factory() as s, s.begin():
                        store.renew_lease(
                            s, run_id, self.worker_id, self.lease_seconds, now=self.rt.clock()
                        )
                except Exception:
                    log.exception("lease renewal failed for run %s", run_id)
            if stopping:
                # Keep renewing until the in-flight syncs finish, without spinning.
                time.sleep(min(interval, 1.0))


class EmbeddedWorker(Worker):
    """The worker thread inside ``sheets-sync serve``: woken at once by a Refresh click."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        kwargs.setdefault("concurrency", 2)
        super().__init__(runtime, **kwargs)


def run_due(rt: Runtime, *, max_seconds: float, concurrency: int = 4) -> dict[str, Any]:
    """One bounded round for platforms without long-running workers (the cron endpoint):
    queue what is due, run syncs until the queue is empty or ``max_seconds`` have passed
    (no new sync starts after that), and say what happened."""
    from sheets_sync.jobs.scheduler import backlog, enqueue_due

    started = time.monotonic()
    with rt.session_factory() as s, s.begin():
        expired = store.expire_leases(s, rt.clock())
    queued = enqueue_due(rt)
    worker = Worker(
        rt, concurrency=concurrency, idle_poll=0.5, worker_id=f"cron:{make_worker_id()}"
    )
    ran = worker.drain(deadline=started + max_seconds)
    report = backlog(rt)
    return {
        "queued": queued,
        "expired_leases": expired,
        "ran": ran,
        "succeeded": worker.outcomes.get("succeeded", 0),
        "failed": worker.outcomes.get("failed", 0),
        "seconds": round(time.monotonic() - started, 3),
        "backlog": report.as_dict(),
    }

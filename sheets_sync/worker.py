"""Workers: claim queued runs and carry them out.

A run is claimed in the database (conditional UPDATE, ``SKIP LOCKED`` on PostgreSQL), so
any number of threads and processes can work the same queue and none runs a connection
twice. A claim is a lease: the heartbeat renews it while the sync runs, and a worker
that dies leaves a lease that expires, after which ``store.expire_leases`` records the
run as interrupted and queues it again for another worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from . import store
from .runtime import Runtime
from .sync import execute_run

log = logging.getLogger("sheets_sync.worker")


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int = 1,
        lease_seconds: int = 120,
        idle_poll: float = 5.0,
        worker_id: str | None = None,
        before_claim: Callable[[], None] | None = None,
    ) -> None:
        self.rt = runtime
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.idle_poll = idle_poll
        self.worker_id = worker_id or make_worker_id()
        # Hook for the scheduler: queue due connections before looking for work.
        self.before_claim = before_claim
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()

    # -- control --

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self.rt.on_enqueue.append(self.wake)
        for i in range(self.concurrency):
            t = threading.Thread(target=self._loop, name=f"sync-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="sync-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight syncs (up to ``timeout``), then return."""
        self._stop.set()
        self._wake.set()
        if self.wake in self.rt.on_enqueue:
            self.rt.on_enqueue.remove(self.wake)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- work --

    def claim_one(self) -> int | None:
        with self.rt.session_factory() as s, s.begin():
            run = store.claim_next_run(s, self.worker_id, self.lease_seconds)
            return run.id if run is not None else None

    def work_one(self) -> bool:
        """Claim and carry out one run; False when the queue is empty."""
        run_id = self.claim_one()
        if run_id is None:
            return False
        with self._lock:
            self._in_flight.add(run_id)
        try:
            execute_run(self.rt, run_id)
        finally:
            with self._lock:
                self._in_flight.discard(run_id)
        return True

    def run_once(self) -> int:
        """Queue what is due, then drain the queue in the foreground; how many ran."""
        self._housekeeping()
        done = 0
        while not self.stopping and self.work_one():
            done += 1
        return done

    def _housekeeping(self) -> None:
        with self.rt.session_factory() as s, s.begin():
            store.expire_leases(s, self.rt.clock())
        if self.before_claim is not None:
            self.before_claim()

    def _loop(self) -> None:
        while not self.stopping:
            try:
                self._housekeeping()
                while not self.stopping and self.work_one():
                    pass
            except Exception:
                # A database hiccup must not kill the thread; try again after a pause.
                log.exception("worker %s loop error", self.worker_id)
            self._wake.wait(self.idle_poll)
            self._wake.clear()

    def _heartbeat(self) -> None:
        interval = max(1.0, self.lease_seconds / 3)
        while True:
            stopping = self._stop.wait(interval)
            with self._lock:
                running = list(self._in_flight)
            if stopping and not running:
                return
            for run_id in running:
                try:
                    with self.rt.session_factory() as s, s.begin():
                        store.renew_lease(s, run_id, self.worker_id, self.lease_seconds)
                except Exception:
                    log.exception("lease renewal failed for run %s", run_id)
            if stopping:
                # Keep renewing until the in-flight syncs finish, without spinning.
                time.sleep(min(interval, 1.0))


class EmbeddedWorker(Worker):
    """The worker thread inside ``sheets-sync serve``: woken at once by a Refresh click."""

    def __init__(self, runtime: Runtime, **kwargs: object) -> None:
        kwargs.setdefault("concurrency", 2)
        super().__init__(runtime, **kwargs)  # type: ignore[arg-type]

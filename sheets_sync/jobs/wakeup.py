"""Wake workers the moment a run is queued, through PostgreSQL ``LISTEN``/``NOTIFY``.

Workers poll the queue (``sheets-sync worker --poll``, 5 s by default). On PostgreSQL
queueing a run also sends ``NOTIFY sheets_sync_runs`` in the queueing transaction
(``notify_run_queued``, called by ``store``): the server delivers it when that
transaction commits, so a woken worker always finds the run, and a rolled-back run wakes
nobody. Each worker process keeps one dedicated connection listening on that channel
(``QueueListener``) and wakes the worker's threads on every notification.

Polling stays the fallback, and the listener never takes a worker down: a lost
connection (server restart, ``pg_terminate_backend``, network) is logged, retried with
backoff, and after it reconnects the worker looks at the queue once, since
notifications sent while nobody listened are gone. SQLite has no ``LISTEN``: there the
embedded worker of ``sheets-sync serve`` is woken in-process (``Runtime.on_enqueue``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from sheets_sync.store.db import POSTGRES_CONNECT_DEFAULTS
from sheets_sync.store.runs import RUNS_CHANNEL

log = logging.getLogger("sheets_sync.wakeup")


class QueueListener:
    """A thread holding one ``LISTEN`` connection that calls ``on_notify`` for each
    notification on ``channel``, and once after every (re)connect."""

    def __init__(
        self,
        engine: Engine,
        on_notify: Callable[[], None],
        *,
        channel: str = RUNS_CHANNEL,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        check_stop_every: float = 1.0,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self.engine = engine
        self.on_notify = on_notify
        self.channel = channel
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.check_stop_every = check_stop_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._connections = 0
        self._backend_pid: int | None = None

    # -- control --

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="queue-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            # notifies() returns at least every check_stop_every seconds to look at _stop.
            self._thread.join(timeout)
            self._thread = None

    @property
    def backend_pid(self) -> int | None:
        """The server process of the current listen connection; None while disconnected."""
        return self._backend_pid

    def wait_listening(self, *, after: int = 0, timeout: float) -> int | None:
        """Block until the listener has begun listening more than ``after`` times (so
        ``after=1`` waits for the first reconnect); that count, or None on timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._connections > after, timeout):
                return None
            return self._connections

    # -- the thread --

    def _run(self) -> None:
        delay = self.min_backoff
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                row = conn.execute("SELECT current_schema()").fetchone()
                schema = row[0] if row else None
                conn.execute(f"LISTEN {self.channel}")
                with self._changed:
                    self._connections += 1
                    self._backend_pid = conn.info.backend_pid
                    again = self._connections > 1
                    self._changed.notify_all()
                if again:
                    log.info("listening for queued runs again channel=%s", self.channel)
                delay = self.min_backoff
                self._wake()  # runs queued while nobody listened sent no notification
                while not self._stop.is_set():
                    for notify in conn.notifies(timeout=self.check_stop_every):
                        if notify.payload == schema:  # another schema's queue otherwise
                            self._wake()
            except Exception as exc:  # any driver or network error: poll, retry later
                if self._stop.is_set():
                    break
                reason = (str(exc).strip().splitlines() or [""])[0]
                log.warning(
                    "listen connection for queued runs lost (%s: %s); workers poll until it "
                    "is back, next attempt in %.1fs",
                    type(exc).__name__,
                    reason,
                    delay,
                )
            finally:
                self._backend_pid = None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: S110 - a broken connection may fail to close
                        pass
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_backoff)

    def _connect(self) -> Any:
        import psycopg  # the postgres extra; only a PostgreSQL worker gets here

        # The pool's own connect arguments (host, credentials, search_path options...),
        # for a connection of its own outside the pool: it stays in LISTEN for good.
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        # The pool's connect_args are not among them: the same libpq defaults (give up on
        # an unreachable server, notice a silently dead peer: an idle LISTEN connection
        # sends nothing that would reveal it otherwise), unless the URL sets its own.
        params = {**POSTGRES_CONNECT_DEFAULTS, **cparams, "autocommit": True}
        return psycopg.connect(*cargs, **params)

    def _wake(self) -> None:
        try:
            self.on_notify()
        except Exception:
            log.exception("waking the worker after a notification failed")

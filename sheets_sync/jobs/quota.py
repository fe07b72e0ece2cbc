"""Rate budgets shared by every worker process through the database.

Google gives each service account 60 Sheets writes (and 60 reads) a minute for every
customer together, and each Google Cloud project 300 of each for all its accounts;
Instantly limits each workspace. Each worker process has its own threads and clients, so
the only place they can agree on "how many calls went out in the last minute" is the
database:

* ``rate_limits`` has one row per budget (``sheets:write:<account>``,
  ``sheets:read:<account>``, ``sheets:project:write:<project>``, …,
  ``instantly:<key digest>``), holding the cooldown after a 429.
* ``rate_limit_grants`` logs each permit's time: the grant log. A permit is granted only
  while fewer than ``limit`` permits lie in the last ``window + margin`` seconds: a
  *rolling* window, which is how Google counts (fixed per-minute buckets would allow
  twice the budget across a minute boundary). The margin absorbs the delay between the
  permit and the call reaching Google.
* A Sheets call spends from two budgets, its account's and its project's: both permits
  are taken in one unit, all or none, so a refusal by one leaks nothing from the other.
  On PostgreSQL that unit is one autocommit statement (``sheets_sync_take_permits``,
  migration 0006) holding per-budget advisory locks, taken in name order, for
  microseconds inside the server; on SQLite it is one transaction under the database's
  write lock (``db.take_write_lock``). Times come from one clock: the database server's
  (or an injected one in tests), for granting and for re-dating alike.
* A 429 sets ``blocked_until`` on the row: every worker waits out the cooldown, not only
  the one that saw it.

Workers take the Sheets write permit *before* claiming a run (``Worker`` does this), so a
backlog waits as queued runs, not as claimed runs sleeping on a lease; the sync's one
write then uses the prepaid permit (``prepay``), and any further write (a retry) takes a
new one. Unused prepaid permits are refunded.

Nothing here stores or logs an Instantly key: budgets are named by a digest of it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import DEFAULT_POOLSIZE
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from sheets_sync.errors import InstantlyRateLimited, SheetsQuotaExhausted
from sheets_sync.pipeline.retry import parse_retry_after
from sheets_sync.pipeline.tcp_keepalive import KeepAliveAdapter
from sheets_sync.store.db import (
    autocommit_statement,
    insert_skipping_conflicts,
    rowcount,
    take_write_lock,
)
from sheets_sync.store.models import RateLimit, RateLimitGrant

log = logging.getLogger("sheets_sync.quota")

# Prefixes: a budget is per service account, ``sheets:write:<client_email>``, beside its
# project's ``sheets:project:write:<project_id>`` (see ``sheets_budgets``).
SHEETS_WRITE = "sheets:write"
SHEETS_READ = "sheets:read"
# Cooldown after a 429 that did not say how long to wait: long enough for a rolling
# per-minute window to make room, short enough not to idle the pool for long.
DEFAULT_COOLDOWN_FRACTION = 1 / 12  # 5 s of a 60 s window


def instantly_budget_name(api_key: str) -> str:
    """A stable budget name per Instantly workspace key that reveals nothing about it."""
    return "instantly:" + hashlib.sha256(api_key.strip().encode()).hexdigest()[:24]


Budget = tuple[str, int]  # (name, permits per window)
GrantIds = tuple[int, ...]


def sheets_budgets(
    kind: str, account: str, project: str, *, per_account: int, per_project: int
) -> tuple[Budget, Budget]:
    """The two budgets a Sheets call of ``kind`` ("write"/"read") spends from: its
    service account's (60 a minute) and its Google Cloud project's (300 a minute, shared
    by every account of the project)."""
    return (
        (f"sheets:{kind}:{account}", per_account),  # == write_budget_name for "write"
        (f"sheets:project:{kind}:{project}", per_project),
    )


def write_budget_name(account: str) -> str:
    """The account's write budget: the name its prepaid permits are filed under."""
    return f"{SHEETS_WRITE}:{account}"


@dataclass(frozen=True)
class Grant:
    """Permits, one per budget asked for: ``ids`` to refund them, or empty with ``wait``
    seconds until all may be granted."""

    ids: GrantIds
    wait: float

    @property
    def granted(self) -> bool:
        return bool(self.ids)

    @property
    def id(self) -> int | None:
        return self.ids[0] if self.ids else None


class QuotaWaitTooLong(Exception):
    pass


class QuotaBudget:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.session_factory = session_factory
        self.window = float(window)
        # Any ``limit`` permits are spread over at least window + margin seconds.
        self.margin = self.window / 60
        self.clock = clock
        self.sleep = sleep
        self._local = threading.local()

    # -- permits ------------------------------------------------------------------------

    def try_acquire(self, name: str, limit: int, *, pending_for: float = 0.0) -> Grant:
        """One budget's permit now if it allows; otherwise how long to wait."""
        return self.try_acquire_all(((name, limit),), pending_for=pending_for)

    def try_acquire_all(self, budgets: Sequence[Budget], *, pending_for: float = 0.0) -> Grant:
        """A permit from every budget, or from none (an account's and its project's: a
        refusal by either leaks nothing from the other); otherwise how long to wait.

        ``pending_for``: the permit is for a call made later (the worker takes it before
        claiming a run). It is dated that far ahead, so it keeps counting until ``touch``
        dates it to the real call (or ``refund`` returns it); a worker that dies holding
        one only loses it for that long plus a window."""
        budgets = tuple(budgets)
        if not budgets:
            return Grant((), 0.0)
        if self._on_postgresql:
            # One autocommit statement (migration 0006's function): the budgets' locks are
            # held inside the server only.
            row = self._quick_statement(
                "SELECT * FROM sheets_sync_take_permits(%(names)s, %(limits)s, %(span)s, %(now)s, "
                "%(ahead)s)",
                {
                    "names": [name for name, _ in budgets],
                    "limits": [int(limit) for _, limit in budgets],
                    "span": self.window + self.margin,
                    "now": self._injected_now(),
                    "ahead": float(pending_for),
                },
            )
            assert row is not None  # noqa: S101 - the function always returns one row
            return Grant(tuple(int(i) for i in (row[0] or ())), float(row[1]))
        with self.session_factory() as s, s.begin():
            return self._try_acquire_all(s, budgets, pending_for)

    def _try_acquire_all(
        self, s: Session, budgets: tuple[Budget, ...], pending_for: float
    ) -> Grant:
        # Names in order: the same locking order as PostgreSQL's function (on SQLite the
        # first lock is the database's write lock anyway).
        blocked = {name: self._lock_row(s, name) for name, _ in sorted(budgets)}
        now = self.clock()
        span = self.window + self.margin
        wait = 0.0
        for name, limit in budgets:
            if blocked[name] > now:
                wait = max(wait, blocked[name] - now)
                continue
            # The limit-th newest permit: while it still counts, the budget is full, and
            # it is the one that must age out before the next fits.
            edge = s.scalar(
                select(RateLimitGrant.granted_at)
                .where(RateLimitGrant.name == name, RateLimitGrant.granted_at > now - span)
                .order_by(RateLimitGrant.granted_at.desc())
                .offset(limit - 1)
                .limit(1)
            )
            if edge is not None:
                wait = max(wait, min(max(edge + span - now, 0.005), span))
        if wait > 0:
            return Grant((), wait)
        ids: list[int] = []
        for name, _limit in budgets:
            grant_id = int(
                s.execute(
                    insert(RateLimitGrant)
                    .values(name=name, granted_at=now + pending_for)
                    .returning(RateLimitGrant.id)
                ).scalar_one()
            )
            ids.append(grant_id)
            if grant_id % 64 == 0:
                s.execute(
                    delete(RateLimitGrant).where(
                        RateLimitGrant.name == name, RateLimitGrant.granted_at <= now - span
                    )
                )
        return Grant(tuple(ids), 0.0)

    def acquire(
        self,
        name: str,
        limit: int,
        *,
        max_wait: float = 60.0,
        stop: threading.Event | None = None,
    ) -> int:
        """Block until a permit is granted; ``QuotaWaitTooLong`` beyond ``max_wait``."""
        return self.acquire_all(((name, limit),), max_wait=max_wait, stop=stop)[0]

    def acquire_all(
        self,
        budgets: Sequence[Budget],
        *,
        max_wait: float = 60.0,
        stop: threading.Event | None = None,
    ) -> GrantIds:
        """Block until every budget grants a permit at once; ``QuotaWaitTooLong`` beyond
        ``max_wait``."""
        deadline = time.monotonic() + max_wait
        label = "+".join(name for name, _ in budgets)
        while True:
            grant = self.try_acquire_all(budgets)
            if grant.granted:
                return grant.ids
            remaining = deadline - time.monotonic()
            if grant.wait > remaining:
                raise QuotaWaitTooLong(f"{label}: next permit in {grant.wait:.1f}s")
            if stop is not None:
                if stop.wait(grant.wait):
                    raise QuotaWaitTooLong(f"{label}: stopping")
            else:
                self.sleep(grant.wait)

    def wait_hint(self, name: str, limit: int) -> float:
        """Seconds until a permit could be granted (0 = now), without taking one."""
        with self.session_factory() as s:
            row = s.get(RateLimit, name)
            now = self.clock()
            blocked = max(0.0, row.blocked_until - now) if row is not None else 0.0
            span = self.window + self.margin
            used = s.scalar(
                select(func.count())
                .select_from(RateLimitGrant)
                .where(RateLimitGrant.name == name, RateLimitGrant.granted_at > now - span)
            ) or 0
            if used < limit:
                return blocked
            pivot = s.scalar(
                select(RateLimitGrant.granted_at)
                .where(RateLimitGrant.name == name, RateLimitGrant.granted_at > now - span)
                .order_by(RateLimitGrant.granted_at)
                .offset(used - limit)
                .limit(1)
            )
            return max(blocked, min((pivot or now) + span - now, span))

    def touch(self, grant_ids: int | GrantIds) -> None:
        """Date permits taken earlier (before claiming a run) to now, when their call is
        made: the rolling window must count the call when Google sees it, however long
        the sync took to get there."""
        ids = list(_ids(grant_ids))
        if self._on_postgresql:
            # One autocommit statement on the permits' clock (the server's, unless a test
            # injected one), right before the call. Its commit does not wait for the WAL
            # flush: a re-dating lost in a server crash leaves the permit dated later,
            # which only makes the budget stricter.
            self._quick_statement(
                "UPDATE rate_limit_grants SET granted_at = coalesce(CAST(%(now)s AS double "
                "precision), extract(epoch from clock_timestamp())) FROM (SELECT set_config("
                "'synchronous_commit', 'off', true)) AS quick WHERE id = ANY(%(ids)s)",
                {"now": self._injected_now(), "ids": ids},
            )
            return
        with self.session_factory() as s, s.begin():
            take_write_lock(s)
            s.execute(
                update(RateLimitGrant)
                .where(RateLimitGrant.id.in_(ids))
                .values(granted_at=self.clock())
                .execution_options(synchronize_session=False)
            )

    def refund(self, grant_ids: int | GrantIds) -> None:
        """Give back permits that were not used for a call."""
        ids = list(_ids(grant_ids))
        if self._on_postgresql:
            # One autocommit statement; a refund lost in a server crash wastes a permit.
            self._quick_statement(
                "DELETE FROM rate_limit_grants USING (SELECT set_config("
                "'synchronous_commit', 'off', true)) AS quick WHERE id = ANY(%(ids)s)",
                {"ids": ids},
            )
            return
        with self.session_factory() as s, s.begin():
            take_write_lock(s)
            s.execute(
                delete(RateLimitGrant)
                .where(RateLimitGrant.id.in_(ids))
                .execution_options(synchronize_session=False)
            )

    def cooldown(self, name: str, seconds: float) -> None:
        """Make every worker wait ``seconds`` before the next permit (after a 429)."""
        if seconds <= 0:
            return
        with self.session_factory() as s, s.begin():
            self._lock_row(s, name)
            s.execute(
                update(RateLimit)
                .where(RateLimit.name == name, RateLimit.blocked_until < self.clock() + seconds)
                .values(blocked_until=self.clock() + seconds)
            )
        log.warning("rate limit hit budget=%s cooldown_seconds=%.1f", name, seconds)

    def default_cooldown(self) -> float:
        return self.window * DEFAULT_COOLDOWN_FRACTION

    # -- the permit a worker took before claiming a run ---------------------------------

    def prepay(self, name: str, grant_ids: int | GrantIds | None) -> None:
        """Hand this thread's next call under ``name`` permits taken earlier."""
        prepaid: dict[str, GrantIds] = self._local.__dict__.setdefault("prepaid", {})
        if grant_ids is None or grant_ids == ():
            prepaid.pop(name, None)
        else:
            prepaid[name] = _ids(grant_ids)

    def take_prepaid(self, name: str) -> GrantIds | None:
        prepaid: dict[str, GrantIds] = self._local.__dict__.setdefault("prepaid", {})
        return prepaid.pop(name, None)

    def refund_prepaid(self, name: str | None = None) -> None:
        """Give back this thread's unused prepaid permits (under ``name``, or all)."""
        prepaid: dict[str, GrantIds] = self._local.__dict__.setdefault("prepaid", {})
        names = list(prepaid) if name is None else [name]
        for each in names:
            grant_ids = prepaid.pop(each, None)
            if grant_ids is not None:
                try:
                    self.refund(grant_ids)
                except Exception:  # a lost refund only wastes one permit
                    log.exception("refunding a permit of %s failed", each)

    # -- plumbing -----------------------------------------------------------------------

    @property
    def _on_postgresql(self) -> bool:
        return bool(self.session_factory.kw["bind"].dialect.name == "postgresql")

    def _injected_now(self) -> float | None:
        # None: the database server's clock, the one every process shares.
        return None if self.clock is time.time else self.clock()

    def _quick_statement(self, sql: str, params: dict[str, Any]) -> Any:
        """One autocommit statement on PostgreSQL (no BEGIN/COMMIT round trips); its
        first row, if it returns any. Locks it takes are held inside the server only."""
        return autocommit_statement(self.session_factory.kw["bind"], sql, params)

    def _lock_row(self, s: Session, name: str) -> float:
        """Lock the budget's row for this transaction (creating it once); its
        ``blocked_until``. On SQLite that is the database's write lock: the count that
        follows and the permit it grants must not interleave with another worker's."""
        take_write_lock(s)
        query = (
            select(RateLimit.blocked_until).where(RateLimit.name == name).with_for_update()
        )
        blocked_until = s.scalar(query)
        if blocked_until is None:
            s.execute(
                insert_skipping_conflicts(s, RateLimit, index_elements=["name"])
                .values(name=name, blocked_until=0.0)
            )
            blocked_until = s.scalar(query)
        return float(blocked_until or 0.0)

    def claim_job(self, name: str, every: float) -> bool:
        """True for exactly one caller per ``every`` seconds across all processes (for
        housekeeping such as pruning run history). One conditional UPDATE (or the INSERT
        that creates the row), no lock held across round trips."""
        now = self.clock()
        with self.session_factory() as s, s.begin():
            take_write_lock(s)
            result = s.execute(
                update(RateLimit)
                .where(RateLimit.name == name, RateLimit.blocked_until <= now)
                .values(blocked_until=now + every)
                .execution_options(synchronize_session=False)
            )
            if rowcount(result) == 1:
                return True
            created = s.execute(
                insert_skipping_conflicts(s, RateLimit, index_elements=["name"])
                .values(name=name, blocked_until=now + every)
                .returning(RateLimit.name)
            ).first()
            return created is not None


def _ids(grant_ids: int | GrantIds) -> GrantIds:
    return (grant_ids,) if isinstance(grant_ids, int) else tuple(grant_ids)


# --- backlog -----------------------------------------------------------------------------


def backlog_eta(pending: int, limit: int, window: float, *, wait_now: float = 0.0) -> float:
    """Seconds until ``pending`` syncs (one write each) have gone out at ``limit`` writes
    per ``window`` seconds: the first ``limit`` may go at once (after ``wait_now``), then
    one window per further ``limit``."""
    if pending <= 0:
        return 0.0
    span = window + window / 60
    full_windows = (pending - 1) // max(1, limit)
    return wait_now + full_windows * span


# --- hooking the HTTP clients ------------------------------------------------------------


class BudgetAdapter(KeepAliveAdapter):
    """A requests transport that takes permits before each call (from every budget the
    call spends from, all at once) and turns a 429 into a cooldown for every worker; its
    connections are probed while idle like every other of ours (``tcp_keepalive``)."""

    def __init__(
        self,
        budget: QuotaBudget,
        classify: Callable[[requests.PreparedRequest], Sequence[Budget] | None],
        *,
        max_wait: float,
        on_exhausted: Callable[[str], Exception],
        pool_maxsize: int = DEFAULT_POOLSIZE,
    ) -> None:
        # pool_maxsize: connections kept per host. Fewer than the calls in flight at once
        # and urllib3 closes the extras after use, to open new ones on the next refresh.
        super().__init__(pool_maxsize=pool_maxsize)
        self.budget = budget
        self.classify = classify
        self.max_wait = max_wait
        self.on_exhausted = on_exhausted

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        budgets = self.classify(request)
        if budgets:
            # Prepaid permits are filed under the first budget's name (the account's).
            prepaid = self.budget.take_prepaid(budgets[0][0])
            if prepaid is not None:
                self.budget.touch(prepaid)
            else:
                try:
                    self.budget.acquire_all(budgets, max_wait=self.max_wait)
                except QuotaWaitTooLong:
                    raise self.on_exhausted(budgets[0][0]) from None
        response = super().send(request, *args, **kwargs)
        if budgets and response.status_code == 429:
            hinted = parse_retry_after(response.headers.get("Retry-After"))
            # Google says which quota (per user or per project) only in prose: cool down
            # the account, the budget this connection's calls are sure to share.
            self.budget.cooldown(
                budgets[0][0], hinted if hinted is not None else self.budget.default_cooldown()
            )
        return response


def _sheets_exhausted(name: str) -> Exception:
    return SheetsQuotaExhausted(
        "The Google Sheets budget of sheets-sync is used up for now "
        f"({'writes' if name.startswith(SHEETS_WRITE) else 'reads'} per minute). The refresh "
        "will be tried again; the sheet was not changed."
    )


def _instantly_exhausted(_name: str) -> Exception:
    return InstantlyRateLimited(
        "Too many Instantly requests for this workspace right now. The refresh will be tried "
        "again shortly."
    )


@dataclass(frozen=True)
class SheetsLimits:
    writes_per_minute: int = 60
    reads_per_minute: int = 60
    project_writes_per_minute: int = 300
    project_reads_per_minute: int = 300


def sheets_adapter(
    budget: QuotaBudget,
    *,
    account: str,
    project: str,
    limits: SheetsLimits,
    max_wait: float,
) -> BudgetAdapter:
    writes = sheets_budgets(
        "write", account, project,
        per_account=limits.writes_per_minute, per_project=limits.project_writes_per_minute,
    )
    reads = sheets_budgets(
        "read", account, project,
        per_account=limits.reads_per_minute, per_project=limits.project_reads_per_minute,
    )

    def classify(request: requests.PreparedRequest) -> Sequence[Budget]:
        return reads if request.method == "GET" else writes

    return BudgetAdapter(budget, classify, max_wait=max_wait, on_exhausted=_sheets_exhausted)


def instantly_adapter(
    budget: QuotaBudget, *, requests_per_minute: int, max_wait: float, pool_maxsize: int
) -> BudgetAdapter:
    """A transport for Instantly calls of any workspace: each call spends from the budget
    of the key it carries, so one session (and its kept-alive connections) can serve
    every workspace."""

    def classify(request: requests.PreparedRequest) -> Sequence[Budget] | None:
        key = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        return ((instantly_budget_name(key), requests_per_minute),) if key.strip() else None

    return BudgetAdapter(
        budget, classify, max_wait=max_wait, on_exhausted=_instantly_exhausted,
        pool_maxsize=pool_maxsize,
    )


def attach_to_sheets_client(client: Any, adapter: BudgetAdapter) -> Any:
    """Route a ``SheetsClient``'s API calls (not the token exchange) through ``adapter``."""
    session = getattr(client, "_session", None)
    if isinstance(session, requests.Session):
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    else:  # pragma: no cover - SheetsClient changed shape; fail loudly in tests
        raise RuntimeError("SheetsClient has no requests session to attach the budget to")
    return client

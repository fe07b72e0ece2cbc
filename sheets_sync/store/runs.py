"""The run queue: queue, claim, lease, finish, expire and prune runs, and read them back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.util import AliasedClass

from sheets_sync.errors import scrub
from sheets_sync.store.connections import get_connection
from sheets_sync.store.db import (
    insert_skipping_conflicts,
    rowcount,
    take_write_lock,
    update_by_id,
)
from sheets_sync.store.ids import NotFound, _now, _valid_id
from sheets_sync.store.models import (
    ACTIVE_RUN_STATUSES,
    ACTIVE_RUN_WHERE,
    FINISHED_RUN_STATUSES,
    RUN_TRIGGERS,
    Connection,
    SyncRun,
    User,
)

# --- runs ------------------------------------------------------------------------------
#
# Every run function takes an optional aware ``now``: the worker passes its runtime clock,
# so leases, queue times and expiry are all measured on the same clock (a test with a
# fake clock cannot get a lease stamped in real time and expired in fake time).

DEFAULT_MAX_ATTEMPTS = 3
_MAX_ERROR_MESSAGE = 4000
WORKER_LOST = "worker_lost"


def enqueue_run(
    s: Session, connection: Connection, trigger: str, *, now: datetime | None = None
) -> tuple[SyncRun, bool]:
    """Queue a sync: ``(new run, True)``, or ``(the queued/running run, False)`` if any.

    Race-safe without locks: the partial unique index allows one active run per
    connection, so of two concurrent inserts one fails; it is caught inside a SAVEPOINT
    (the caller's transaction survives) and the winner's run is returned.

    On PostgreSQL a new run also sends a ``NOTIFY`` that wakes the workers when the
    caller's transaction commits (``sheets_sync.wakeup``).
    """
    if trigger not in RUN_TRIGGERS:
        raise ValueError(f"trigger must be one of {RUN_TRIGGERS}")
    take_write_lock(s)
    return _enqueue(s, connection.id, trigger, attempt=1, now=now or _now())


def enqueue_runs(
    s: Session, connection_ids: Sequence[int], trigger: str, *, now: datetime | None = None
) -> int:
    """Queue a run for each of ``connection_ids`` that has none queued or running; how
    many were queued. The scheduler's path: a slot's hundreds of due connections cost a
    few statements in all, not six each.

    Race-safe like ``enqueue_run``: the insert skips a connection whose active run another
    transaction inserted meanwhile (the partial unique index again), and that run stands.
    """
    if trigger not in RUN_TRIGGERS:
        raise ValueError(f"trigger must be one of {RUN_TRIGGERS}")
    if not connection_ids:
        return 0
    take_write_lock(s)
    now = now or _now()
    active = _with_active_runs(s, connection_ids)
    todo = [cid for cid in dict.fromkeys(connection_ids) if cid not in active]
    if not todo:
        return 0
    # Numbered after each connection's newest run, as enqueue_run numbers them.
    last_numbers: dict[int, int | None] = {
        cid: number
        for cid, number in s.execute(
            select(SyncRun.connection_id, func.max(SyncRun.number))
            .where(SyncRun.connection_id.in_(todo))
            .group_by(SyncRun.connection_id)
        )
    }
    inserted = s.scalars(
        insert_skipping_conflicts(
            s, SyncRun, index_elements=["connection_id"], index_where=ACTIVE_RUN_WHERE
        ).returning(SyncRun.connection_id),
        [
            {
                "connection_id": cid,
                "status": "queued",
                "trigger": trigger,
                "queued_at": now,
                "attempt": 1,
                "number": (last_numbers.get(cid) or 0) + 1,
            }
            for cid in todo
        ],
    ).all()
    if inserted:
        notify_run_queued(s)
    return len(inserted)


def _with_active_runs(s: Session, connection_ids: Sequence[int]) -> set[int]:
    """Which of ``connection_ids`` have a run queued or running."""
    return set(
        s.scalars(
            select(SyncRun.connection_id).where(
                SyncRun.connection_id.in_(connection_ids),
                SyncRun.status.in_(ACTIVE_RUN_STATUSES),
            )
        )
    )


def _find_active_run(s: Session, connection_id: int) -> SyncRun | None:
    return s.scalar(
        select(SyncRun)
        .where(SyncRun.connection_id == connection_id, SyncRun.status.in_(ACTIVE_RUN_STATUSES))
        .execution_options(populate_existing=True)
    )


def _enqueue(
    s: Session, connection_id: int, trigger: str, *, attempt: int, now: datetime
) -> tuple[SyncRun, bool]:
    existing = _find_active_run(s, connection_id)
    if existing is not None:
        return existing, False
    # Numbered after the connection's newest run: runs of one connection are queued one
    # at a time (the unique index above), so two never take the same number.
    last_number = s.scalar(
        select(func.max(SyncRun.number)).where(SyncRun.connection_id == connection_id)
    )
    run = SyncRun(
        connection_id=connection_id,
        status="queued",
        trigger=trigger,
        queued_at=now,
        attempt=attempt,
        number=(last_number or 0) + 1,
    )
    try:
        with s.begin_nested():
            s.add(run)
    except IntegrityError:
        # Someone else's run won the unique index between our SELECT and INSERT
        # (PostgreSQL: our INSERT waited for their commit). Return theirs.
        existing = _find_active_run(s, connection_id)
        if existing is None:
            raise  # a different integrity problem, e.g. the connection was just deleted
        return existing, False
    notify_run_queued(s)
    return run, True


def claim_next_run(
    s: Session,
    worker_id: str,
    lease_seconds: float,
    *,
    now: datetime | None = None,
    account: str | None = None,
    pool: Sequence[str] = (),
) -> SyncRun | None:
    """Take the oldest queued run for this worker (status running + lease), or None.

    ``account``: only a run whose connection that service account serves (the worker
    holds a write permit of that account). The pool's primary account (``pool[0]``) also
    serves unpinned connections, and takes the runs of connections pinned to an account
    no longer in ``pool``: those fail without writing, and must not wait forever.

    Correct under any concurrency: the conditional UPDATE only succeeds while the run is
    still queued, so of two workers exactly one sees rowcount 1. On PostgreSQL the
    candidate is selected ``FOR UPDATE SKIP LOCKED`` so concurrent workers pick different
    runs instead of queueing on the same row; on SQLite the transaction takes the write
    lock first (``db.take_write_lock``), so the SELECT and the UPDATE see the same queue.
    """
    take_write_lock(s)
    query = (
        _queued_for(select(SyncRun.id), SyncRun, account, pool)
        .order_by(SyncRun.queued_at, SyncRun.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=SyncRun)
    )
    for _ in range(5):
        candidate = s.scalar(query)
        if candidate is None:
            return None
        run = claim_run(s, candidate, worker_id, lease_seconds, now=now)
        if run is not None:
            return run
        # Lost the race for this one (only possible without row locks); try the next.
    return None


@dataclass(frozen=True)
class ClaimedRun:
    """A run ``claim_next_run_id`` took, and whether the queue it came from (the same
    account's) still held another run when it was taken."""

    id: int
    more_queued: bool


def claim_next_run_id(
    s: Session,
    worker_id: str,
    lease_seconds: float,
    *,
    account: str | None = None,
    pool: Sequence[str] = (),
) -> ClaimedRun | None:
    """``claim_next_run`` in one statement (the workers' hot path): the conditional
    UPDATE picks its row with ``FOR UPDATE SKIP LOCKED`` in a subquery, so on PostgreSQL
    a claim is one round trip (run it in autocommit) and two workers never pick the same
    run. The claimed run, or None.

    The same statement says whether another run was queued for the account, as of the
    statement's start: a worker that took the last one need not ask again (a permit, a
    claim and a refund) until a run is queued. A run queued after that start is not
    counted, and its NOTIFY (or ``Runtime.notify_enqueued``) arrives after it."""
    if not worker_id:
        raise ValueError("worker_id is required")
    take_write_lock(s)
    now = _now()  # after the lock (SQLite), like claim_run
    if s.get_bind().dialect.name == "postgresql":
        row = s.connection().exec_driver_sql(
            _pg_claim_sql(account, pool),
            {
                "worker_id": worker_id,
                "now": now,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
                "account": account,
                "pool": list(pool),
            },
        ).first()
        return None if row is None else ClaimedRun(int(row[0]), bool(row[1]))
    candidate = (
        _queued_for(select(SyncRun.id), SyncRun, account, pool)
        .order_by(SyncRun.queued_at, SyncRun.id)
        .limit(1)
    )
    claimed = s.execute(
        update(SyncRun)
        .where(SyncRun.id == candidate.scalar_subquery(), SyncRun.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(SyncRun.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if claimed is None:
        return None
    # SQLite has no UPDATE in a CTE; the write lock taken above keeps the queue still
    # between the two statements.
    other = aliased(SyncRun)
    more = exists(
        _queued_for(select(other.id), other, account, pool).where(other.id != claimed)
    )
    return ClaimedRun(int(claimed), bool(s.scalar(select(more))))


# PostgreSQL's claim, written out: built from SQLAlchemy's expressions on every claim (the
# path every run takes), with the account's filter twice, it cost 3.5 ms of CPU; as text
# through the session's connection, 0.47 ms (measured).
_PG_CLAIM = """
WITH claimed AS (
    UPDATE sync_runs SET status = 'running', worker_id = %(worker_id)s, started_at = %(now)s,
        lease_expires_at = %(lease_expires_at)s
    WHERE sync_runs.status = 'queued' AND sync_runs.id = (
        SELECT r.id FROM sync_runs r{join}
        WHERE r.status = 'queued'{served}
        ORDER BY r.queued_at, r.id LIMIT 1 FOR UPDATE OF r SKIP LOCKED)
    RETURNING sync_runs.id)
-- The sibling subquery reads the statement's snapshot, in which the claimed run still
-- counts as queued.
SELECT claimed.id, EXISTS (
    SELECT 1 FROM sync_runs r{join}
    WHERE r.status = 'queued'{served} AND r.id <> claimed.id)
FROM claimed
"""
_PG_JOIN = " JOIN connections c ON c.id = r.connection_id"
# As ``_served_by``: NULL <> ALL(pool) is not true, hence the IS NULL.
_PG_SERVED_BY_PRIMARY = (
    " AND (c.service_account_email = %(account)s OR c.service_account_email IS NULL"
    " OR c.service_account_email <> ALL(%(pool)s))"
)
_PG_SERVED_BY_OTHER = " AND c.service_account_email = %(account)s"


_PG_CLAIMS = {
    shape: _PG_CLAIM.format(join=join, served=served)
    for shape, join, served in (
        ("any", "", ""),
        ("primary", _PG_JOIN, _PG_SERVED_BY_PRIMARY),
        ("other", _PG_JOIN, _PG_SERVED_BY_OTHER),
    )
}


def _pg_claim_sql(account: str | None, pool: Sequence[str]) -> str:
    if account is None:
        return _PG_CLAIMS["any"]
    return _PG_CLAIMS["primary" if pool and account == pool[0] else "other"]


def _queued_for(
    query: Select[int], runs: type[SyncRun] | AliasedClass[SyncRun],
    account: str | None, pool: Sequence[str],
) -> Select[int]:
    """``query`` narrowed to the queued runs of ``runs`` that ``account`` may write."""
    query = query.where(runs.status == "queued")
    if account is None:
        return query
    return query.join(Connection, Connection.id == runs.connection_id).where(
        _served_by(account, pool)
    )


def _served_by(account: str, pool: Sequence[str]) -> ColumnElement[bool]:
    pinned = Connection.service_account_email
    if pool and account == pool[0]:
        return or_(pinned == account, pinned.is_(None), pinned.not_in(list(pool)))
    return pinned == account


def claim_run(
    s: Session,
    run_id: int,
    worker_id: str,
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> SyncRun | None:
    """Claim a specific queued run (e.g. the CLI's foreground sync); None if not queued."""
    if not worker_id:
        raise ValueError("worker_id is required")
    take_write_lock(s)
    now = now or _now()
    result = s.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return None
    return s.get(SyncRun, run_id, populate_existing=True)


def renew_lease(
    s: Session,
    run_id: int,
    worker_id: str,
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> bool:
    """Extend the lease of a run this worker holds; False if it no longer holds it."""
    take_write_lock(s)
    result = s.execute(
        update(SyncRun)
        .where(
            SyncRun.id == run_id,
            SyncRun.worker_id == worker_id,
            SyncRun.status == "running",
        )
        .values(lease_expires_at=(now or _now()) + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


# Built once: every run ends here.
_FINISH = (
    update_by_id(SyncRun, ("status", "finished_at", "rows_written", "http_calls",
                           "error_code", "error_message", "sheet_url", "drift"))
    .where(SyncRun.status == "running")
    .values(lease_expires_at=None)
)
# Only while this worker still holds the run.
_FINISH_OWN = _FINISH.where(SyncRun.worker_id == bindparam("holder"))


def finish_run(
    s: Session,
    run_id: int,
    *,
    status: str,
    rows_written: int | None = None,
    http_calls: int | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    sheet_url: str | None = None,
    drift: str | None = None,
    worker_id: str | None = None,
    now: datetime | None = None,
    redact: Iterable[str] = (),
) -> bool:
    """Record a running run's outcome. False (nothing written) if it is not running any
    more, e.g. its lease expired and it was already marked interrupted and re-queued;
    pass ``worker_id`` to also require that this worker still holds it.

    ``error_message`` is scrubbed of ``redact`` (the connection's Instantly key) and of
    anything credential-like before it is stored: the last line of defence for text that
    came from an upstream answer."""
    if status not in FINISHED_RUN_STATUSES:
        raise ValueError(f"status must be one of {FINISHED_RUN_STATUSES}")
    if error_message is not None:
        error_message = scrub(error_message, redact)
    if error_message is not None and len(error_message) > _MAX_ERROR_MESSAGE:
        error_message = error_message[: _MAX_ERROR_MESSAGE - 1] + "…"
    take_write_lock(s)
    result = s.connection().execute(
        _FINISH if worker_id is None else _FINISH_OWN,
        {
            "row_id": run_id,
            "holder": worker_id,
            "new_status": status,
            "new_finished_at": now or _now(),
            "new_rows_written": rows_written,
            "new_http_calls": http_calls,
            "new_error_code": error_code,
            "new_error_message": error_message,
            "new_sheet_url": sheet_url,
            "new_drift": drift,
        },
    )
    if rowcount(result) != 1:
        return False
    # A copy the caller holds is refreshed; none held costs no SELECT (a worker's case).
    held = s.identity_map.get(s.identity_key(SyncRun, run_id))
    if held is not None:
        s.refresh(held)
    return True


def expire_leases(
    s: Session, now: datetime | None = None, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> int:
    """Mark running runs whose lease has passed as ``interrupted`` ("worker_lost") and
    queue a fresh run (attempt + 1) for the same connection; returns how many expired.

    The interrupted run stays in the history. After ``max_attempts`` nothing is re-queued:
    a run that keeps killing its worker (out of memory, say) must not loop forever.
    """
    take_write_lock(s)
    now = now or _now()
    expired = list(
        s.execute(
            select(SyncRun.id, SyncRun.connection_id, SyncRun.trigger, SyncRun.attempt)
            .where(SyncRun.status == "running", SyncRun.lease_expires_at < now)
            .order_by(SyncRun.id)
            .with_for_update(skip_locked=True)
        )
    )
    count = 0
    for run_id, connection_id, trigger, attempt in expired:
        requeue = attempt < max_attempts
        message = "The worker running this sync stopped responding before it finished."
        message += (
            " The sync was queued again."
            if requeue
            else f" Gave up after {attempt} attempts; start it again with Refresh."
        )
        result = s.execute(
            update(SyncRun)
            .where(
                SyncRun.id == run_id,
                SyncRun.status == "running",
                SyncRun.lease_expires_at < now,
            )
            .values(
                status="interrupted",
                finished_at=now,
                error_code=WORKER_LOST,
                error_message=message,
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            continue  # renewed or finished in the meantime
        count += 1
        s.get(SyncRun, run_id, populate_existing=True)
        if requeue:
            _enqueue(s, connection_id, trigger, attempt=attempt + 1, now=now)
    return count


def list_runs(s: Session, user: User, connection_id: int, limit: int = 50) -> list[SyncRun]:
    """The user's connection's runs, newest first (``NotFound`` if not theirs)."""
    connection = get_connection(s, user, connection_id)
    limit = max(1, min(int(limit), 1000))
    return list(
        s.scalars(
            select(SyncRun)
            .where(SyncRun.connection_id == connection.id)
            .order_by(SyncRun.queued_at.desc(), SyncRun.id.desc())
            .limit(limit)
        )
    )


def get_run(s: Session, user: User, run_id: int) -> SyncRun:
    """A run of one of the user's connections, else ``NotFound``."""
    number = _valid_id(run_id)
    run = None
    if number is not None:
        run = s.scalar(
            select(SyncRun)
            .join(Connection, Connection.id == SyncRun.connection_id)
            .where(SyncRun.id == number, Connection.user_id == user.id)
        )
    if run is None:
        raise NotFound("run")
    return run


def last_run(s: Session, connection: Connection) -> SyncRun | None:
    return s.scalar(
        select(SyncRun)
        .where(SyncRun.connection_id == connection.id)
        .order_by(SyncRun.queued_at.desc(), SyncRun.id.desc())
        .limit(1)
    )


def last_runs(s: Session, connections: Iterable[Connection]) -> dict[int, SyncRun]:
    """The newest run of each connection in one query (the dashboard lists many)."""
    ids = [c.id for c in connections]
    if not ids:
        return {}
    newest = (
        select(SyncRun.connection_id, func.max(SyncRun.id).label("run_id"))
        .where(SyncRun.connection_id.in_(ids))
        .group_by(SyncRun.connection_id)
        .subquery()
    )
    runs = s.scalars(select(SyncRun).join(newest, SyncRun.id == newest.c.run_id))
    return {run.connection_id: run for run in runs}



RUNS_CHANNEL = "sheets_sync_runs"


def notify_run_queued(s: Session) -> None:
    """Tell listening workers a run was queued, when ``s``'s transaction commits.

    Channels are database-wide, so the payload names the schema the run was queued in and
    a worker listens only for its own (two deployments, or test runs, in one database
    never wake each other). PostgreSQL folds identical notifications of one transaction
    into one, so queueing 500 due connections still wakes each worker once.
    """
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_notify(:channel, current_schema())"), {"channel": RUNS_CHANNEL})


def prune_runs(s: Session, older_than: datetime) -> int:
    """Delete finished runs that finished before ``older_than``, keeping each connection's
    newest run (the page shows it as the last result however old it is)."""
    take_write_lock(s)
    newest = (
        select(func.max(SyncRun.id)).group_by(SyncRun.connection_id).scalar_subquery()
    )
    result = s.execute(
        delete(SyncRun)
        .where(
            SyncRun.status.in_(FINISHED_RUN_STATUSES),
            SyncRun.finished_at < older_than,
            SyncRun.id.not_in(newest),
        )
        .execution_options(synchronize_session=False)
    )
    return int(rowcount(result) or 0)

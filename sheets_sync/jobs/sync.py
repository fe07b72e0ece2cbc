"""Run the engine for one stored connection and record the outcome on its run.

The run row is written (queued, then claimed as running) before any outbound call, so a
crash mid-sync leaves a trace. Database sessions are never held open across network
calls: load what the sync needs, close, call out, then record in a fresh session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from sheets_sync import store
from sheets_sync.connection_rules import features_of
from sheets_sync.errors import ConnectionDeleted, InternalError, SyncError
from sheets_sync.jobs import alerts
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.pipeline.instantly_models import Campaign
from sheets_sync.pipeline.refresh import Features, SyncOutcome, SyncSpec, run_sync
from sheets_sync.store import schedule_next
from sheets_sync.store.db import (
    autocommit_statement,
    is_transient_error,
    take_write_lock,
    update_by_id,
)
from sheets_sync.store.models import Connection, SyncRun

T = TypeVar("T")

log = logging.getLogger("sheets_sync.sync")

# Campaign names and sequences change rarely; re-reading them once a day keeps the
# steady-state refresh at one Instantly call per campaign.
CAMPAIGN_CACHE_TTL = timedelta(hours=24)
INTERNAL_ERROR = (
    "Something went wrong inside sheets-sync while refreshing. The sheet was not changed. "
    "Try again; if it keeps failing, contact support with the run number."
)
CONNECTION_DELETED = (
    "The connection was deleted during the refresh, so nothing was written to the sheet."
)
# Where the tabs of the settings a sync started from are. After a person's edit they
# describe the old target (another tab title, another spreadsheet), not the current one.
TARGET_OPTIONS = frozenset({"tab_titles", "history_sheet_id", "history_day"})
# A locked SQLite file or a dropped PostgreSQL connection usually clears within seconds.
# Giving up on recording a run that already wrote the sheet leaves it "running" until its
# lease expires, and the retry after that writes the sheet a second time.
BOOKKEEPING_ATTEMPTS = 5
BOOKKEEPING_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class RunResult:
    run_id: int
    ok: bool
    status: str
    rows_written: int | None
    error_code: str | None
    error_message: str | None
    sheet_url: str | None

    @property
    def summary(self) -> str:
        if self.ok:
            return (
                f"Run {self.run_id} succeeded: wrote {self.rows_written} rows to {self.sheet_url}"
            )
        return f"Run {self.run_id} failed ({self.error_code}): {self.error_message}"


def _known_campaigns(connection: Connection, now: datetime) -> dict[str, Campaign]:
    cache = (connection.options or {}).get("campaign_cache") or {}
    known: dict[str, Campaign] = {}
    for campaign_id, entry in cache.items():
        try:
            fetched = datetime.fromisoformat(entry["fetched_at"])
            if now - fetched < CAMPAIGN_CACHE_TTL:
                known[campaign_id] = Campaign.model_validate(entry["campaign"])
        except (KeyError, TypeError, ValueError):
            continue
    return known


def spec_for(connection: Connection, now: datetime) -> SyncSpec:
    options = connection.options or {}
    history_id = options.get("history_sheet_id")
    titles = options.get("tab_titles")
    return SyncSpec(
        spreadsheet_id=connection.spreadsheet_id,
        worksheet_title=connection.worksheet_title,
        sheet_id=connection.sheet_id,
        campaign_ids=tuple(connection.campaign_ids or ()),
        date_range=dict(connection.date_range or {}),
        include_opportunities=bool(connection.include_opportunities),
        known_campaigns=_known_campaigns(connection, now),
        features=Features(**features_of(options)),
        # A new target tab (sheet_id reset) starts its own history tab too.
        history_sheet_id=(
            history_id
            if isinstance(history_id, int) and connection.sheet_id is not None
            else None
        ),
        tab_titles=dict(titles) if isinstance(titles, dict) else {},
        last_sent=dict(options.get("last_sent") or {}),
        history_last_day=_history_day(options) if connection.sheet_id is not None else None,
        # Its key was checked when saved; after a failed refresh (a revoked key, an
        # outage) the next one probes with one call before spending the rest.
        first_call_alone=bool(connection.consecutive_failures),
    )


def _history_day(options: dict[str, Any]) -> date | None:
    try:
        return date.fromisoformat(str(options["history_day"]))
    except (KeyError, ValueError):
        return None


def _cache_campaigns(
    options: dict[str, Any], campaigns: dict[str, Campaign], now: datetime
) -> dict[str, Any]:
    cache = dict(options.get("campaign_cache") or {})
    for campaign_id, campaign in campaigns.items():
        entry = cache.get(campaign_id)
        if entry and entry.get("campaign") == campaign.model_dump(mode="json"):
            continue
        cache[campaign_id] = {
            "fetched_at": now.isoformat(),
            "campaign": campaign.model_dump(mode="json"),
        }
    return {**options, "campaign_cache": cache}


def execute_run(rt: Runtime, run_id: int) -> RunResult:
    """Carry out a run already claimed as ``running``; record success or failure."""
    started = time.monotonic()
    with rt.autocommit() as s:
        # One statement: the run with its connection, as they are now.
        run = s.get(SyncRun, run_id, options=[joinedload(SyncRun.connection)])
        if run is None:
            # Claimed, then gone: its connection was deleted and took its runs along.
            log.info("run %s is gone (connection deleted); nothing written", run_id)
            return RunResult(
                run_id, False, "failed", None, ConnectionDeleted.code, CONNECTION_DELETED, None
            )
        connection = connection_row = run.connection
        connection_id = connection.id
        # The settings this sync works from; an edit during the sync moves it on.
        version = connection.version
        now = rt.clock()
        spec = spec_for(connection, now)
        key_error: SyncError | None = None
        try:
            api_key = store.decrypted_api_key(rt.fernet, connection)
        except SyncError as exc:
            api_key, key_error = "", exc

    instantly = sheets = None
    try:
        if key_error is not None:
            raise key_error
        # The account the sheet is shared with; one whose key left the pool fails here,
        # before any call (never a silent switch to another account).
        account = rt.service_account_for(connection_row)
        instantly = rt.instantly(api_key)
        sheets = rt.sheets(account.email)
        outcome = run_sync(
            spec,
            instantly=instantly,
            sheets=sheets,
            now=now,
            before_write=lambda: _refuse_if_deleted(rt, connection_id),
        )
    except SyncError as exc:
        return _record_failure(
            rt, run_id, connection_id, exc, instantly, sheets, started, secrets=(api_key,)
        )
    except Exception:
        log.exception("run %s of connection %s crashed", run_id, connection_id)
        return _record_failure(
            rt,
            run_id,
            connection_id,
            InternalError(INTERNAL_ERROR),
            instantly,
            sheets,
            started,
            secrets=(api_key,),
        )

    calls = outcome.instantly_calls + outcome.sheets_calls
    # The sheet is written: from here on, giving up would get it written again.
    recovered = _retry_transient(
        f"recording run {run_id}",
        lambda: _record_success(
            rt, run_id, connection_id, version, outcome, calls, now, account=account.email
        ),
    )
    log.info(
        "run finished connection_id=%s run_id=%s outcome=succeeded rows=%s http_calls=%s "
        "instantly_calls=%s sheets_calls=%s seconds=%.3f",
        connection_id,
        run_id,
        outcome.rows_written,
        calls,
        outcome.instantly_calls,
        outcome.sheets_calls,
        time.monotonic() - started,
    )
    if recovered is not None:
        alerts.send(recovered, rt.settings, redact=(api_key,))
    return RunResult(run_id, True, "succeeded", outcome.rows_written, None, None, outcome.sheet_url)


def _retry_transient(what: str, transaction: Callable[[], T]) -> T:
    """Run ``transaction`` (which opens its own session) until it gets past transient
    database errors, a bounded number of times; the last error is raised."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        # The driver's message only: SQLAlchemy's own carries the statement's parameters.
        reason = str(getattr(exc, "orig", None) or exc).strip().partition("\n")[0]
        log.warning(
            "%s: database error on attempt %s of %s, trying again: %s",
            what,
            state.attempt_number,
            BOOKKEEPING_ATTEMPTS,
            reason or type(exc).__name__,
        )

    retrying = Retrying(
        retry=retry_if_exception(is_transient_error),
        stop=stop_after_attempt(BOOKKEEPING_ATTEMPTS) | stop_after_delay(BOOKKEEPING_MAX_SECONDS),
        # Jitter: several workers that met the same lock should not come back together.
        wait=wait_exponential(multiplier=0.2, max=8.0) + wait_random(0, 0.5),
        before_sleep=note,
        reraise=True,
    )
    return retrying(transaction)


def _refuse_if_deleted(rt: Runtime, connection_id: int) -> None:
    """Called right before the write: a connection deleted during the refresh no longer
    owns its tab, so nothing may be written for it."""

    def exists() -> bool:
        if rt.engine.dialect.name == "postgresql":
            # Through the driver, like the budgets' permits: every refresh makes this
            # check, and through a Session it cost several times the driver's own CPU.
            row = autocommit_statement(
                rt.engine, "SELECT 1 FROM connections WHERE id = %(id)s", {"id": connection_id}
            )
            return row is not None
        with rt.autocommit() as s:
            found = s.scalar(select(Connection.id).where(Connection.id == connection_id))
            return found is not None

    if not _retry_transient(f"checking connection {connection_id}", exists):
        raise ConnectionDeleted(CONNECTION_DELETED)


def _locked_connection(s: Session, connection_id: int) -> Connection | None:
    """The connection, for a read-modify-write that a person's edit may race.

    PostgreSQL: the row stays locked until commit, and a person's edit locks it the same
    way (``store.get_connection(for_update=True)``), so each starts from what the other
    stored (FOR NO KEY UPDATE: queueing a run, which only references the row, is not held
    up). SQLite serialises writers: a transaction that read before another one committed
    fails as "locked" when it writes, and is tried again. Take it before the run row, in
    the order a delete's cascade takes them, so the two never deadlock.
    """
    take_write_lock(s)
    return s.get(Connection, connection_id, with_for_update={"key_share": True})


# What recording a success reads of its connection (locked, as ``_locked_connection``
# explains) and writes back, as statements built once. Loading the row as an ORM object
# and writing it back through the unit of work took most of the CPU recording cost; the
# whole row is loaded only when the owner is told it works again or a pause ends.
_KEPT = ("options", "sheet_id", "service_account_email", "consecutive_failures",
         "failure_notified_at")
_RESULT_READ = (
    select(Connection.version, Connection.paused_reason,
           *(getattr(Connection, name) for name in _KEPT))
    .where(Connection.id == bindparam("connection_id"))
    .with_for_update(key_share=True)
)
_KEEP = update_by_id(Connection, _KEPT)
_KEEP_WITH_TABLE = update_by_id(Connection, (*_KEPT, "last_table"))


def _record_success(
    rt: Runtime,
    run_id: int,
    connection_id: int,
    version: int,
    outcome: SyncOutcome,
    calls: int,
    now: datetime,
    *,
    account: str | None = None,
) -> alerts.Alert | None:
    """Record the run as succeeded and what the connection keeps from it, in one
    transaction; the recovery e-mail to send, if any. A connection stored before the
    pool is pinned to the ``account`` that just wrote its sheet."""
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        current = s.connection().execute(
            _RESULT_READ, {"connection_id": connection_id}
        ).first()
        recorded = store.finish_run(
            s,
            run_id,
            status="succeeded",
            rows_written=outcome.rows_written,
            http_calls=calls,
            sheet_url=outcome.sheet_url,
            drift=outcome.totals.text if outcome.totals else None,
        )
        if current is None:
            return None
        # Tab ids/titles for the next read, merged into the options as they are now, so
        # switches a person saved meanwhile stay.
        saved = dict(outcome.saved_options)
        sheet_id = current.sheet_id
        if current.version == version:
            # The tab was written either way: remember where it is.
            sheet_id = outcome.sheet_id
        else:
            # Edited during the sync: where the old settings' tabs are says nothing about
            # the new ones (the edit reset sheet_id when the target changed).
            saved = {k: v for k, v in saved.items() if k not in TARGET_OPTIONS}
        options = {**(current.options or {}), **saved}
        if outcome.campaigns:
            options = _cache_campaigns(options, dict(outcome.campaigns), now)
        kept: dict[str, Any] = {
            "options": options,
            "sheet_id": sheet_id,
            "service_account_email": current.service_account_email or account,
            # Not recorded: the lease ran out and another worker owns the run now.
            "consecutive_failures": 0 if recorded else current.consecutive_failures,
            "failure_notified_at": None if recorded else current.failure_notified_at,
        }
        if outcome.last_table is not None:
            kept["last_table"] = dict(outcome.last_table)
        if not recorded or (current.failure_notified_at is None and current.paused_reason is None):
            s.connection().execute(
                _KEEP_WITH_TABLE if "last_table" in kept else _KEEP,
                {"row_id": connection_id, **{f"new_{k}": v for k, v in kept.items()}},
            )
            return None
        # The streak ends: the owner who was told of it hears it works again, and a
        # manual Refresh that works ends the pause too.
        connection = s.get(Connection, connection_id)  # locked above
        assert connection is not None  # noqa: S101 - the row is locked in this transaction
        recovered = None
        if connection.failure_notified_at is not None:
            recovered = _alert(connection, run_id, None)
        for name, value in kept.items():
            setattr(connection, name, value)
        if connection.paused_reason is not None:
            connection.paused_reason = None
            schedule_next(connection, rt.clock())
        return recovered


def _alert(connection: Connection, run_id: int, error_message: str | None) -> alerts.Alert:
    return alerts.Alert(
        to=connection.user.contact_email,
        connection_id=connection.id,
        connection_name=connection.name,
        spreadsheet_url=connection.spreadsheet_url,
        run_id=run_id,
        error_message=error_message,
    )


def _failure_bookkeeping(
    rt: Runtime,
    run_id: int,
    connection_id: int,
    exc: SyncError,
    calls: int,
    secrets: tuple[str, ...],
) -> tuple[alerts.Alert | None, bool]:
    """Record a failed run and the connection's failure streak; the e-mail to send and
    whether the schedule was paused.

    Transient errors (``exc.retryable``: 429, 5xx, timeouts) were already retried within
    the run; the schedule simply tries again at its next slot. A streak of
    ``store.PAUSE_AFTER_FAILURES`` ending in an error only the owner can fix
    (``exc.pauses``: key revoked, sheet unshared or deleted) pauses the schedule with the
    reason; outages, our bugs and sheets-sync's own setup never do. The owner is e-mailed
    once per streak (``failure_notified_at``), never per failed run.
    """
    code, message = exc.code, exc.message
    notify: alerts.Alert | None = None
    paused = False
    with rt.session_factory() as s, s.begin():
        connection = _locked_connection(s, connection_id)
        recorded = store.finish_run(
            s,
            run_id,
            status="failed",
            http_calls=calls,
            error_code=code,
            error_message=message,
            redact=secrets,
        )
        # Not recorded: the lease ran out and another worker owns the retry; the streak
        # and the e-mail are its business.
        if connection is not None and recorded:
            failures = (connection.consecutive_failures or 0) + 1
            connection.consecutive_failures = failures
            if (
                failures >= store.PAUSE_AFTER_FAILURES
                and exc.pauses
                and connection.schedule != "off"
                and connection.paused_reason is None
            ):
                connection.paused_reason = store.pause_reason_for(
                    code, message, failures, redact=secrets
                )
                paused = True
            if connection.failure_notified_at is None and rt.settings.smtp_url:
                notify = _alert(connection, run_id, message)
    return notify, paused


def _record_failure(
    rt: Runtime,
    run_id: int,
    connection_id: int,
    exc: SyncError,
    instantly: Any,
    sheets: Any,
    started: float,
    *,
    secrets: tuple[str, ...] = (),
) -> RunResult:
    """Record a failed run (``_failure_bookkeeping``), log it and tell the owner."""
    code, message = exc.code, exc.message
    calls = (getattr(instantly, "calls", 0) or 0) + (getattr(sheets, "calls", 0) or 0)
    notify, paused = _retry_transient(
        f"recording run {run_id}",
        lambda: _failure_bookkeeping(rt, run_id, connection_id, exc, calls, secrets),
    )
    log.info(
        "run finished connection_id=%s run_id=%s outcome=failed error_code=%s retryable=%s "
        "pauses=%s paused=%s http_calls=%s seconds=%.3f",
        connection_id,
        run_id,
        code,
        exc.retryable,
        exc.pauses,
        paused,
        calls,
        time.monotonic() - started,
    )
    if notify is not None and alerts.send(notify, rt.settings, redact=secrets):
        _retry_transient(
            f"noting the e-mail of run {run_id}",
            lambda: _mark_notified(rt, connection_id),
        )
    return RunResult(run_id, False, "failed", None, code, message, None)


def _mark_notified(rt: Runtime, connection_id: int) -> None:
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        connection = s.get(Connection, connection_id)
        if connection is not None and connection.consecutive_failures:
            connection.failure_notified_at = rt.clock()


def run_connection_now(
    rt: Runtime, connection_id: int, *, trigger: str = "cli", worker_id: str = "cli"
) -> RunResult:
    """Queue, claim and carry out one run in the foreground (``sheets-sync sync ID``)."""
    with rt.session_factory() as s, s.begin():
        take_write_lock(s)
        connection = s.get(Connection, connection_id)
        if connection is None:
            raise SyncError(f"There is no connection {connection_id}.")
        run, created = store.enqueue_run(s, connection, trigger)
        run_id = run.id
    if not created:
        raise SyncError(
            f"Connection {connection_id} already has run {run_id} queued or running; "
            "wait for it to finish."
        )
    with rt.session_factory() as s, s.begin():
        claimed = store.claim_run(s, run_id, worker_id, lease_seconds=600)
    if claimed is None:
        raise SyncError(f"Run {run_id} was taken by a worker; see its result on the page.")
    return execute_run(rt, run_id)

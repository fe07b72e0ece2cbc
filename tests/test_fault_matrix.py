"""Every fault on both APIs, through a stored connection: what the owner ends up with.

For each fault the matrix says the run's status and error code, whether three runs in a
row pause the schedule (only faults the owner can fix may), and what the sheet holds
afterwards: exactly what it held (the failure changed nothing), or exactly the new
table. In every case the history rows of earlier days are all still there, once.

Real parts throughout: the stored connection and run queue on SQLite, real requests,
gspread and google-auth, the Instantly fake and the Sheets fake (which can fail a call
before applying it, or apply it and then lose the answer).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.jobs import sync
from sheets_sync.jobs.quota import write_budget_name
from sheets_sync.pipeline.render import FIRST_DATA_ROW
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import Connection, RateLimitGrant, User
from tests.plugin_fakes import INSTANTLY_KEY
from tests.worker_helpers import SERVICE_ACCOUNT_EMAIL, make_user

DAY1 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
FAULT_DAY = DAY1 + dt.timedelta(days=3)
TAB = "Instantly steps"
HISTORY = f"{TAB} history"
READ_TIMEOUT = 0.5  # a "hang" is an answer later than this
HANG = 1.2
MANY = 50  # a fault that outlasts every retry of three runs


@dataclass(frozen=True)
class Fault:
    id: str
    inject: Any  # (ctx) -> None, called right before the faulty run(s)
    status: str
    code: str | None
    pauses: bool = False
    sheet: str = "unchanged"  # or "new": exactly the new table
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ctx:
    fake_sheets: Any
    fake_instantly: Any
    ssid: str
    settings: Settings
    rt: Any
    campaign_id: str


def _instantly(status, **kw):
    return lambda ctx: ctx.fake_instantly.fail_next(status, count=MANY, **kw)


def _sheets(kind, status, **kw):
    return lambda ctx: ctx.fake_sheets.fail_next(kind, status, count=kw.pop("count", MANY), **kw)


def _unshare(ctx):
    ctx.fake_sheets.unshare(ctx.ssid, SERVICE_ACCOUNT_EMAIL)


def _delete_spreadsheet(ctx):
    ctx.fake_sheets.delete_spreadsheet(ctx.ssid)


def _fresh_credentials(ctx):
    """A key file the process has no token for yet: the next call goes to the token endpoint."""
    info = json.loads(Path(ctx.settings.google_application_credentials).read_text())
    path = Path(ctx.settings.data_dir).parent / f"sa-{id(ctx)}.json"
    path.write_text(json.dumps(info))
    ctx.rt.settings = ctx.settings.model_copy(update={"google_application_credentials": path})


def _token_fails(status):
    def inject(ctx):
        _fresh_credentials(ctx)
        ctx.fake_sheets.fail_next("token", status, count=MANY)

    return inject


def _reads_fail_after_the_write(ctx):
    """The write applies but its answer is lost, and Google stays down for reads."""
    ctx.fake_sheets.fail_next("write", 503, when="after")
    ctx.fake_sheets.fail_next("read", 503, count=MANY, skip=1)  # after the refresh's read


FAULTS = [
    # --- Instantly ---------------------------------------------------------------------
    Fault("instantly-401", _instantly(401), "failed", "instantly_key_rejected", pauses=True),
    Fault("instantly-402", _instantly(402), "failed", "instantly_payment_required",
          pauses=True),
    Fault("instantly-403", _instantly(403), "failed", "instantly_key_rejected", pauses=True),
    Fault("instantly-404", _instantly(404, path_contains="/campaigns/"), "failed",
          "instantly_campaign_not_found", pauses=True),
    Fault("instantly-429-retry-after-once",
          lambda ctx: ctx.fake_instantly.fail_next(429, headers={"Retry-After": "0"}),
          "succeeded", None, sheet="new"),
    Fault("instantly-429-retry-after", _instantly(429, headers={"Retry-After": "0"}),
          "failed", "instantly_rate_limited"),
    Fault("instantly-429-no-retry-after", _instantly(429), "failed", "instantly_rate_limited"),
    Fault("instantly-500", _instantly(500), "failed", "instantly_unavailable"),
    Fault("instantly-503-once", lambda ctx: ctx.fake_instantly.fail_next(503), "succeeded",
          None, sheet="new"),
    Fault("instantly-hang", lambda ctx: ctx.fake_instantly.delay_next(HANG, count=MANY),
          "failed", "instantly_unavailable"),
    Fault("instantly-malformed",
          lambda ctx: ctx.fake_instantly.malform_next([{"step": "0", "sent": "lots"}],
                                                      count=MANY),
          "failed", "instantly_malformed_response"),
    Fault("instantly-empty",
          lambda ctx: ctx.fake_instantly.malform_next([], count=MANY,
                                                      path_contains="/analytics/steps"),
          "failed", "instantly_empty_answer"),
    # --- Google ------------------------------------------------------------------------
    Fault("google-token-500", _token_fails(500), "failed", "google_auth_unavailable"),
    Fault("google-token-500-once",
          lambda ctx: (_fresh_credentials(ctx), ctx.fake_sheets.fail_next("token", 500)),
          "succeeded", None, sheet="new"),
    Fault("google-403-unshared", _unshare, "failed", "sheet_not_shared", pauses=True),
    Fault("google-404-deleted", _delete_spreadsheet, "failed", "spreadsheet_not_found",
          pauses=True, sheet="gone"),
    Fault("google-429", _sheets("any", 429), "failed", "sheets_quota_exhausted"),
    Fault("google-500-read", _sheets("read", 500), "failed", "sheets_unavailable"),
    Fault("google-500-write-before-apply", _sheets("write", 500, count=1), "succeeded",
          None, sheet="new"),
    Fault("google-500-write-after-apply", _sheets("write", 500, count=1, when="after"),
          "succeeded", None, sheet="new"),
    Fault("google-hang-before-apply", _sheets("write", 503, count=1, delay=HANG),
          "succeeded", None, sheet="new"),
    Fault("google-hang-after-apply", _sheets("write", 0, count=1, when="after", delay=HANG),
          "succeeded", None, sheet="new"),
    Fault("google-write-lost-and-google-down", _reads_fail_after_the_write, "failed",
          "sheets_write_unconfirmed", sheet="new"),
]


@pytest.fixture
def ctx(tmp_path, fake_sheets, fake_instantly, service_account_file, workspace,
        spreadsheet_id, fast_retry):
    from sheets_sync.jobs.runtime import build_runtime
    from sheets_sync.store.migrate import upgrade

    settings = Settings(
        data_dir=tmp_path / "instance",
        instantly_api_url=fake_instantly.url,
        sheets_api_url=fake_sheets.url,
        google_application_credentials=service_account_file,
        http_connect_timeout=2.0,
        http_read_timeout=READ_TIMEOUT,
        retry_max_wait=2.0,
    )
    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings, retry=fast_retry)
    cid = workspace.add_campaign("Q4 outbound", steps=[[{"subject": "Hi", "body": "a"},
                                                        {"subject": "Yo", "body": "b"}]])
    workspace.record(cid, DAY1.date(), 0, 0, sent=100, unique_replies=10)
    workspace.record(cid, DAY1.date(), 0, 1, sent=100, unique_replies=4)
    yield Ctx(fake_sheets, fake_instantly, spreadsheet_id, settings, rt, cid)
    rt.engine.dispose()


def _connection(ctx: Ctx) -> int:
    user_id = make_user(ctx.rt)
    with ctx.rt.session_factory() as s, s.begin():
        take_write_lock(s)
        user = s.get(User, user_id)
        connection = store.create_connection(
            s, user, fernet=ctx.rt.fernet, name="Outbound", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{ctx.ssid}/edit",
            campaign_ids=[ctx.campaign_id], schedule="hourly",
        )
        return connection.id


def _run(ctx: Ctx, connection_id: int, when: dt.datetime) -> sync.RunResult:
    ctx.rt.clock = lambda: when
    return sync.run_connection_now(ctx.rt, connection_id, trigger="manual")


def _history(ctx: Ctx) -> list[tuple[Any, Any]]:
    return [(r[0], r[1]) for r in ctx.fake_sheets.values(ctx.ssid, HISTORY)[1:]]


def _sent_column(ctx: Ctx) -> list[Any]:
    grid = ctx.fake_sheets.values(ctx.ssid, TAB)
    sent = grid[FIRST_DATA_ROW - 1].index("Sent")
    return [row[sent] for row in grid[FIRST_DATA_ROW:] if row[0] in ("Step 1", "Total")]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_matrix(ctx: Ctx, fault: Fault) -> None:
    connection_id = _connection(ctx)
    for day in range(3):  # three earlier days in the history tab
        assert _run(ctx, connection_id, DAY1 + dt.timedelta(days=day)).ok
    history_before = _history(ctx)
    assert len(history_before) == 6  # 3 days × variants A and B
    # New numbers since: a refresh that works shows 150 sent for variant A.
    ctx.fake_instantly.workspace(INSTANTLY_KEY).record(
        ctx.campaign_id, FAULT_DAY.date(), 0, 0, sent=50, unique_replies=1
    )
    fault.inject(ctx)
    before = ctx.fake_sheets.snapshot(ctx.ssid) if fault.sheet != "gone" else None
    runs = 1 if fault.status == "succeeded" else store.PAUSE_AFTER_FAILURES
    results = [
        _run(ctx, connection_id, FAULT_DAY + dt.timedelta(minutes=attempt))
        for attempt in range(runs)
    ]
    ctx.fake_sheets.clear_faults()
    ctx.fake_instantly.clear_faults()

    ctx.fake_sheets.wait_idle()  # a held call is logged once it has been answered
    with ctx.rt.session_factory() as s:
        write_permits = s.scalar(
            select(func.count()).select_from(RateLimitGrant)
            .where(RateLimitGrant.name == write_budget_name(SERVICE_ACCOUNT_EMAIL))
        )
    # Every send of a write took a permit of the shared budget, resent or not.
    assert write_permits == ctx.fake_sheets.count("batchUpdate")

    first = results[0]
    assert first.status == fault.status, first.summary
    assert first.error_code == fault.code
    if first.error_message:
        assert INSTANTLY_KEY not in first.error_message
    with ctx.rt.session_factory() as s:
        connection = s.get(Connection, connection_id)
        assert (connection.paused_reason is not None) == fault.pauses, connection.paused_reason

    if fault.sheet == "gone":
        return
    if fault.sheet == "unchanged":
        assert ctx.fake_sheets.snapshot(ctx.ssid) == before
    else:
        assert _sent_column(ctx) == [150, 100, 250]
    history = _history(ctx)
    assert history[: len(history_before)] == history_before  # earlier days all kept
    assert len(history) == len(set(history))  # and nothing doubled
    if fault.sheet == "new":
        assert len(history) == len(history_before) + 2  # the fault day, once per variant

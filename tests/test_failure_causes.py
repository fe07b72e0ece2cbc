"""What a failure's cause does to the schedule, through the real clients (requests,
gspread, google-auth) and the local fakes, run by the worker: only an error the
connection's owner can fix pauses the schedule after 3 in a row; outages, our own bugs
and problems with how sheets-sync itself is set up never do."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import google.oauth2._client
import pytest
from google.auth import _exponential_backoff

from sheets_sync import store
from sheets_sync.errors import SyncError
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.jobs.worker import Worker
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.sheets_writer import make_sheets_client
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import Connection, SyncRun
from tests.fakes.instantly_api import FakeInstantlyServer
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info
from tests.plugin_fakes import SERVICE_ACCOUNT_EMAIL
from tests.worker_helpers import add_connections, connection, make_user, runs_of

KEY = "causes-test-instantly-key-7c1e"
TRIES_AGAIN = ("will be tried again", "retry by themselves")
SETUP_PROBLEM = "problem with how sheets-sync is set up, not with this connection"
MEET_SECONDS = 10.0  # how long a call waits for its partner before the test fails


@pytest.fixture
def settings(settings, tmp_path: Path, service_account_info: dict):
    """A credentials file of this test's own: credentials (and their access token) are
    cached per file, so the first Google call of the test really fetches a token."""
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account_info))
    return settings.model_copy(update={"google_application_credentials": path})


@pytest.fixture(autouse=True)
def one_token_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth retries a failed token request itself (3 tries, 1-2 s of real sleep
    between them). One try per refresh keeps these tests fast and makes every retry that
    is counted here one of ours."""
    backoff = SimpleNamespace(
        ExponentialBackoff=lambda: _exponential_backoff.ExponentialBackoff(total_attempts=1)
    )
    monkeypatch.setattr(google.oauth2._client, "_exponential_backoff", backoff)


@pytest.fixture(autouse=True)
def no_leftover_faults(fake_sheets: FakeSheetsServer):
    # The Sheets fake lives for the whole session; a fault queued here must not leak.
    yield
    fake_sheets.clear_faults()


@dataclass
class World:
    rt: Runtime
    cid: int
    spreadsheet_id: str
    instantly: FakeInstantlyServer
    sheets: FakeSheetsServer
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    def edit(self, **fields: object) -> None:
        with self.rt.session_factory() as s, s.begin():
            take_write_lock(s)
            c = s.get(Connection, self.cid)
            for name, value in fields.items():
                setattr(c, name, value)

    def use_credentials(self, path: Path) -> None:
        self.rt.settings = self.rt.settings.model_copy(
            update={"google_application_credentials": path}
        )


@pytest.fixture
def world(runtime, fake_instantly, fake_sheets, tmp_path, monkeypatch) -> World:
    ssid = fake_sheets.create_spreadsheet("Causes", shared_with=(SERVICE_ACCOUNT_EMAIL,))
    [cid] = add_connections(runtime, make_user(runtime), [ssid], api_key=KEY)
    return World(runtime, cid, ssid, fake_instantly, fake_sheets, tmp_path, monkeypatch)


def run_scheduled(w: World) -> SyncRun:
    with w.rt.session_factory() as s, s.begin():
        take_write_lock(s)
        store.enqueue_run(s, s.get(Connection, w.cid), "schedule")
    assert Worker(w.rt).drain() == 1
    return runs_of(w.rt, w.cid)[-1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the causes ------------------------------------------------------------------------
# Each sets up one cause on top of a working connection (workspace known, sheet shared).


def paying_workspace(w: World) -> None:
    w.instantly.add_workspace(KEY)


def instantly_500(w: World) -> None:
    paying_workspace(w)
    w.instantly.fail_next(500, count=1000)


def instantly_400(w: World) -> None:
    paying_workspace(w)
    w.instantly.fail_next(400, {"message": "querystring/x must be string"}, count=1000)


def instantly_malformed(w: World) -> None:
    paying_workspace(w)
    w.instantly.malform_next({"unexpected": "shape"}, count=1000)


def token_500(w: World) -> None:
    paying_workspace(w)
    w.sheets.fail_next("token", 500, count=1000)


def token_unreachable(w: World) -> None:
    paying_workspace(w)
    info = make_service_account_info(f"http://127.0.0.1:{closed_port()}/token")
    path = w.tmp_path / "unreachable-token-endpoint.json"
    path.write_text(json.dumps(info))
    w.use_credentials(path)


def token_invalid_grant(w: World) -> None:
    # What Google answers once the service account's key is deleted or disabled.
    paying_workspace(w)
    w.sheets.fail_next("token", 400, "Invalid grant: account not found", count=1000)


def credentials_file_missing(w: World) -> None:
    paying_workspace(w)
    w.use_credentials(w.tmp_path / "no-such-key.json")


def sheets_500(w: World) -> None:
    paying_workspace(w)
    w.sheets.fail_next("any", 500, count=1000)


def sheets_api_disabled(w: World) -> None:
    paying_workspace(w)
    w.sheets.fail_next(
        "any",
        403,
        "Google Sheets API has not been used in project 123456 before or it is disabled. "
        "Enable it by visiting https://console.developers.google.com/apis/api/"
        "sheets.googleapis.com/overview?project=123456 then retry.",
        count=1000,
    )


def sheets_400(w: World) -> None:
    paying_workspace(w)
    w.sheets.fail_next("any", 400, "Invalid requests[0].updateCells: bad field", count=1000)


def internal_bug(w: World) -> None:
    paying_workspace(w)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    w.monkeypatch.setattr("sheets_sync.jobs.sync.run_sync", crash)


def key_unknown(w: World) -> None:
    """No workspace has the key: Instantly answers 401."""


def workspace_unpaid(w: World) -> None:
    w.instantly.add_workspace(KEY, paid=False)


def key_without_scope(w: World) -> None:
    w.instantly.add_workspace(KEY, scopes_ok=False)


def campaign_deleted(w: World) -> None:
    paying_workspace(w)
    w.edit(campaign_ids=["5b6f0d4e-0000-4000-8000-000000000000"])


def sheet_unshared(w: World) -> None:
    paying_workspace(w)
    w.sheets.unshare(w.spreadsheet_id, SERVICE_ACCOUNT_EMAIL)


def spreadsheet_deleted(w: World) -> None:
    paying_workspace(w)
    w.edit(spreadsheet_id="1NoSuchSpreadsheetAnywhere0000000000000000000")


def spreadsheet_full(w: World) -> None:
    paying_workspace(w)
    w.sheets.fail_next(
        "write",
        400,
        "Invalid requests[0].addSheet: This action would increase the number of cells in "
        "the workbook above the limit of 10000000 cells.",
        count=1000,
    )


def bad_date_range(w: World) -> None:
    paying_workspace(w)
    w.edit(date_range={"preset": "fortnight"})


NEVER_PAUSE: list[tuple[Callable[[World], None], str, tuple[str, ...]]] = [
    (instantly_500, "instantly_unavailable", TRIES_AGAIN),
    (instantly_400, "instantly_request_rejected", ()),
    (instantly_malformed, "instantly_malformed_response", TRIES_AGAIN),
    (token_500, "google_auth_unavailable", TRIES_AGAIN),
    (token_unreachable, "google_auth_unavailable", TRIES_AGAIN),
    (token_invalid_grant, "google_credentials_rejected", (SETUP_PROBLEM,)),
    (credentials_file_missing, "google_credentials_missing", (SETUP_PROBLEM,)),
    (sheets_500, "sheets_unavailable", TRIES_AGAIN),
    (sheets_api_disabled, "google_api_disabled", (SETUP_PROBLEM,)),
    (sheets_400, "sheets_request_rejected", ()),
    (internal_bug, "internal_error", ()),
]

PAUSE: list[tuple[Callable[[World], None], str]] = [
    (key_unknown, "instantly_key_rejected"),
    (workspace_unpaid, "instantly_payment_required"),
    (key_without_scope, "instantly_key_rejected"),
    (campaign_deleted, "instantly_campaign_not_found"),
    (sheet_unshared, "sheet_not_shared"),
    (spreadsheet_deleted, "spreadsheet_not_found"),
    (spreadsheet_full, "spreadsheet_full"),
    (bad_date_range, "invalid_input"),
]


@pytest.mark.parametrize(
    ("cause", "code", "says"), NEVER_PAUSE, ids=[c.__name__ for c, _, _ in NEVER_PAUSE]
)
def test_three_failures_in_a_row_that_the_owner_cannot_fix_never_pause(
    world: World, cause: Callable[[World], None], code: str, says: tuple[str, ...]
) -> None:
    cause(world)
    runs = [run_scheduled(world) for _ in range(3)]
    assert [(r.status, r.error_code) for r in runs] == [("failed", code)] * 3
    c = connection(world.rt, world.cid)
    assert c.consecutive_failures == 3
    assert c.paused_reason is None
    assert c.next_run_at is not None
    message = runs[-1].error_message or ""
    assert not says or any(phrase in message for phrase in says), message


@pytest.mark.parametrize(("cause", "code"), PAUSE, ids=[c.__name__ for c, _ in PAUSE])
def test_three_failures_in_a_row_that_only_the_owner_can_fix_pause(
    world: World, cause: Callable[[World], None], code: str
) -> None:
    cause(world)
    for n in (1, 2):
        assert run_scheduled(world).error_code == code
        assert connection(world.rt, world.cid).paused_reason is None, f"paused after {n}"
    last = run_scheduled(world)
    assert last.error_code == code
    c = connection(world.rt, world.cid)
    assert c.paused_reason is not None
    assert c.paused_reason.startswith("3 refreshes in a row failed. Last error: ")
    assert last.error_message in c.paused_reason


def test_a_connection_that_worked_sends_its_first_instantly_calls_together(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    paying_workspace(world)
    overview_sent = threading.Event()
    first_waited: list[bool] = []
    # The step analytics of the range and of the history day run side by side: only the
    # first to arrive waits, the other finds it counted.
    first_arrival = threading.Lock()
    real_overview, real_steps = InstantlyClient.campaign_overview, InstantlyClient.step_analytics

    def overview(self: InstantlyClient, *args: Any, **kwargs: Any) -> Any:
        overview_sent.set()
        return real_overview(self, *args, **kwargs)

    def steps(self: InstantlyClient, *args: Any, **kwargs: Any) -> Any:
        with first_arrival:
            if not first_waited:
                # The refresh's first call: sent alone, the overview would not be in
                # flight.
                first_waited.append(overview_sent.wait(MEET_SECONDS))
        return real_steps(self, *args, **kwargs)

    monkeypatch.setattr(InstantlyClient, "campaign_overview", overview)
    monkeypatch.setattr(InstantlyClient, "step_analytics", steps)
    assert run_scheduled(world).status == "succeeded"
    assert first_waited == [True]


def test_after_a_failed_refresh_the_next_asks_instantly_one_call_before_the_rest(
    world: World,
) -> None:
    key_unknown(world)
    assert run_scheduled(world).error_code == "instantly_key_rejected"
    before = world.instantly.count()
    second = run_scheduled(world)
    assert second.error_code == "instantly_key_rejected"
    assert world.instantly.count() - before == second.http_calls == 1

    paying_workspace(world)  # the owner fixes it: the probe works, the rest follow
    assert run_scheduled(world).status == "succeeded"
    assert connection(world.rt, world.cid).consecutive_failures == 0


def test_a_token_endpoint_500_is_retried_within_the_run(world: World) -> None:
    paying_workspace(world)
    world.sheets.fail_next("token", 500)
    run = run_scheduled(world)
    assert (run.status, run.error_code) == ("succeeded", None)
    assert world.sheets.count("token", status=500) == 1
    assert world.sheets.count("token", status=200) == 1


def test_token_endpoint_outages_are_retried_then_recorded_as_google_outages(
    world: World, fast_retry
) -> None:
    token_500(world)
    runs = [run_scheduled(world) for _ in range(3)]
    assert {r.error_code for r in runs} == {"google_auth_unavailable"}
    # Every run tried as often as the retry policy allows; no Sheets request was sent.
    assert world.sheets.count("token", status=500) == 3 * fast_retry.attempts
    assert world.sheets.count("get") == world.sheets.count("batchUpdate") == 0
    assert connection(world.rt, world.cid).paused_reason is None

    world.sheets.clear_faults()
    assert run_scheduled(world).status == "succeeded"
    assert connection(world.rt, world.cid).consecutive_failures == 0


def test_a_rejected_service_account_key_is_not_retried_within_the_run(world: World) -> None:
    token_invalid_grant(world)
    run = run_scheduled(world)
    assert run.error_code == "google_credentials_rejected"
    assert world.sheets.count("token", status=400) == 1
    assert SETUP_PROBLEM in (run.error_message or "")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in (run.error_message or "")


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (500, {"error": "internal_failure"}, "google_auth_unavailable"),
        (503, {"error": "temporarily_unavailable"}, "google_auth_unavailable"),
        (429, {"error": "rate_limit_exceeded"}, "google_auth_unavailable"),
        # A front end's page, not an OAuth answer: google-auth does not call it retryable.
        (502, "<html><body>502 Bad Gateway</body></html>", "google_auth_unavailable"),
        (200, {"expires_in": 3600}, "google_auth_unavailable"),  # no token in the answer
        (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
         "google_credentials_rejected"),
        (401, {"error": "unauthorized_client"}, "google_credentials_rejected"),
    ],
)
def test_token_endpoint_answers_are_sorted_by_cause(
    tmp_path, fake_sheets, fast_retry, requests_mock, status, body, code
) -> None:
    token_uri = "https://oauth2.example.test/token"
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(make_service_account_info(token_uri)))
    answer = {"json": body} if isinstance(body, dict) else {"text": body}
    requests_mock.post(token_uri, status_code=status, **answer)
    client = make_sheets_client(path, api_url=fake_sheets.url, retry=fast_retry)
    with pytest.raises(SyncError) as err:
        client.check_access("1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789")
    assert err.value.code == code
    assert not err.value.pauses
    # Outages are tried as often as the policy allows; a refused key once.
    assert requests_mock.call_count == (fast_retry.attempts if err.value.retryable else 1)

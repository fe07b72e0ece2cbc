"""Fixtures: the local Instantly and Google Sheets fakes, and a runtime wired to them.

Real clients (requests, gspread, google-auth) talk HTTP to these fakes on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sheets_sync.config import Settings
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.retry import RetryPolicy
from sheets_sync.pipeline.sheets_writer import SheetsClient, make_sheets_client
from tests.fakes.instantly_api import FakeInstantlyServer
from tests.fakes.sheets_api import FakeSheetsServer, make_service_account_info

SERVICE_ACCOUNT_EMAIL = "sheets-sync@test-project.iam.gserviceaccount.com"
INSTANTLY_KEY = "test-instantly-key-3f9a"


@pytest.fixture(scope="session")
def fake_sheets_server() -> Iterator[FakeSheetsServer]:
    server = FakeSheetsServer(
        reads_per_minute=100_000,
        writes_per_minute=100_000,
        project_reads_per_minute=100_000,
        project_writes_per_minute=100_000,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_account_info(fake_sheets_server: FakeSheetsServer) -> dict:
    info = make_service_account_info(fake_sheets_server.token_uri, SERVICE_ACCOUNT_EMAIL)
    fake_sheets_server.register_service_account(info)
    return info


@pytest.fixture(scope="session")
def service_account_file(
    tmp_path_factory: pytest.TempPathFactory, service_account_info: dict
) -> Path:
    path = tmp_path_factory.mktemp("google") / "service-account.json"
    path.write_text(json.dumps(service_account_info))
    return path


@pytest.fixture
def fake_sheets(fake_sheets_server: FakeSheetsServer, service_account_file: Path):
    """The shared Sheets fake with a clean call log and no pending faults."""
    fake_sheets_server.reset_calls()
    fake_sheets_server.clear_faults()
    fake_sheets_server.latency = 0.0
    yield fake_sheets_server
    fake_sheets_server.wait_idle()
    fake_sheets_server.clear_faults()
    fake_sheets_server.reset_calls()


@pytest.fixture
def fake_instantly() -> Iterator[FakeInstantlyServer]:
    with FakeInstantlyServer() as server:
        yield server


@pytest.fixture
def spreadsheet_id(fake_sheets: FakeSheetsServer) -> str:
    """A new spreadsheet shared with the service account."""
    return fake_sheets.create_spreadsheet(
        "Team metrics", sheets=("Sheet1",), shared_with=(SERVICE_ACCOUNT_EMAIL,)
    )


@pytest.fixture
def fast_retry() -> RetryPolicy:
    return RetryPolicy(attempts=3, base_backoff=0.01, max_backoff=0.05, max_total_wait=2.0)


@pytest.fixture
def workspace(fake_instantly: FakeInstantlyServer):
    """The fake Instantly workspace behind ``INSTANTLY_KEY``."""
    try:
        return fake_instantly.workspace(INSTANTLY_KEY)
    except KeyError:  # the web app fixture may have made it already
        return fake_instantly.add_workspace(INSTANTLY_KEY)


@pytest.fixture
def instantly(fake_instantly: FakeInstantlyServer, fast_retry: RetryPolicy) -> InstantlyClient:
    """The real Instantly client, pointed at the fake."""
    return InstantlyClient(
        INSTANTLY_KEY, base_url=fake_instantly.url, timeout=(2, 5), retry=fast_retry
    )


@pytest.fixture
def sheets(
    fake_sheets: FakeSheetsServer, service_account_file: Path, fast_retry: RetryPolicy
) -> SheetsClient:
    """The real Sheets writer (gspread + google-auth), pointed at the fake."""
    return make_sheets_client(
        service_account_file, api_url=fake_sheets.url, timeout=(2, 5), retry=fast_retry
    )


@pytest.fixture
def settings(
    tmp_path: Path,
    fake_sheets: FakeSheetsServer,
    fake_instantly: FakeInstantlyServer,
    service_account_file: Path,
) -> Settings:
    return Settings(
        data_dir=tmp_path / "instance",
        instantly_api_url=fake_instantly.url,
        sheets_api_url=fake_sheets.url,
        google_application_credentials=service_account_file,
        http_connect_timeout=2.0,
        http_read_timeout=5.0,
        retry_max_wait=2.0,
    )


@pytest.fixture
def runtime(settings: Settings, fast_retry: RetryPolicy):
    from sheets_sync.jobs.runtime import build_runtime
    from sheets_sync.store.migrate import upgrade

    upgrade(settings.resolved_database_url)
    rt = build_runtime(settings, retry=fast_retry)
    yield rt
    rt.engine.dispose()

"""Fixtures for the Sheets add-on: Google's token signer and certs, the Drive fake, and
an app with the add-on switched on, wired to all the local fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.addon_helpers import ADDON_ACCOUNT, CLIENT_ID, PUBLIC_URL, Person, Sidebar
from tests.fakes.drive_api import FakeDriveServer
from tests.fakes.google_signer import GoogleSigner
from web import create_app


@pytest.fixture(scope="session")
def google_signer() -> Iterator[GoogleSigner]:
    signer = GoogleSigner().start()
    yield signer
    signer.stop()


@pytest.fixture
def fake_drive(fake_sheets) -> Iterator[FakeDriveServer]:
    server = FakeDriveServer(fake_sheets).start()
    yield server
    server.stop()


@pytest.fixture
def addon_settings(settings, google_signer, fake_drive):
    return settings.model_copy(update={
        "public_url": PUBLIC_URL,
        "addon_service_account": ADDON_ACCOUNT,
        "addon_oauth_client_id": CLIENT_ID,
        "google_certs_url": google_signer.certs_url,
        "drive_api_url": fake_drive.url,
    })


@pytest.fixture
def addon_app(addon_settings, runtime):
    runtime.settings = addon_settings
    return create_app({"TESTING": True, "SETTINGS": addon_settings, "RUNTIME": runtime})


@pytest.fixture
def addon_client(addon_app):
    return addon_app.test_client()


@pytest.fixture
def sidebar(addon_client, google_signer) -> Callable[..., Sidebar]:
    """``sidebar(spreadsheet_id, sub="ann")``: that person's sidebar in that spreadsheet."""

    def open_sidebar(spreadsheet_id: str, sub: str = "ann", **kwargs: object) -> Sidebar:
        person = Person(sub=f"sub-{sub}", email=f"{sub}@example.com",
                        oauth_token=f"ya29.token-of-{sub}")
        return Sidebar(addon_client, google_signer, person, spreadsheet_id, **kwargs)

    return open_sidebar

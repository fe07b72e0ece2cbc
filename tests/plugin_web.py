"""Flask fixtures in the style of the Flask tutorial: ``app``, ``client``, ``auth``."""

from __future__ import annotations

import re

import pytest

from web import create_app


@pytest.fixture
def app(settings, runtime, workspace):
    # Saving a connection asks Instantly about its key: the tests' key is a workspace's.
    app = create_app({"TESTING": True, "SETTINGS": settings, "RUNTIME": runtime})
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def signup(self, email: str = "ann@example.com", password: str = "correct horse battery"):
        page = self._client.get("/signup")
        return self._client.post(
            "/signup",
            data={
                "email": email,
                "password": password,
                "confirm": password,
                "csrf_token": csrf_token(page.get_data(as_text=True)),
            },
        )

    def login(self, email: str = "ann@example.com", password: str = "correct horse battery"):
        page = self._client.get("/login")
        return self._client.post(
            "/login",
            data={
                "email": email,
                "password": password,
                "csrf_token": csrf_token(page.get_data(as_text=True)),
            },
        )

    def logout(self):
        page = self._client.get("/")
        token = csrf_token(page.get_data(as_text=True))
        return self._client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return AuthActions(client)

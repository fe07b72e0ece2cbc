"""Every error a person can meet is our page (templates/error.html), JSON for the API
and for the page's fetch() calls; never Werkzeug's default page or a traceback."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import abort

from tests.web_helpers import FETCH
from web import create_app

OURS = "· sheets-sync</title>"


def is_our_page(response) -> bool:
    html = response.get_data(as_text=True)
    return OURS in html and "Back to your connections" in html and "Traceback" not in html


@pytest.fixture
def raising_app(settings, runtime):
    app = create_app({"SETTINGS": settings, "RUNTIME": runtime})

    @app.get("/raise/<int:code>")
    def _raise(code: int):
        if code == 500:
            raise RuntimeError("a bug with a secret-looking detail key=abc123")
        abort(code)

    return app


@pytest.mark.parametrize("code,title", [
    (400, "Bad request"), (404, "Not found"), (405, "Not allowed here"),
    (413, "Too large"), (429, "Too many requests"), (500, "Something went wrong"),
])
def test_each_error_status_is_our_page_or_json(raising_app, code, title):
    client = raising_app.test_client()
    page = client.get(f"/raise/{code}")
    assert page.status_code == code
    assert is_our_page(page)
    assert f"<h1>{title}</h1>" in page.get_data(as_text=True)
    assert "abc123" not in page.get_data(as_text=True)
    fetched = client.get(f"/raise/{code}", headers=FETCH)
    assert fetched.status_code == code
    assert fetched.is_json and fetched.get_json()["error"]["code"]


def test_real_errors_are_our_pages(app, client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and is_our_page(missing)
    wrong_method = client.get("/logout")
    assert wrong_method.status_code == 405 and is_our_page(wrong_method)
    assert "POST" in wrong_method.headers["Allow"]
    too_large = client.post("/login", data={"email": "x" * 300_000})
    assert too_large.status_code == 413 and is_our_page(too_large)
    no_token = client.post("/login", data={"email": "a@example.com", "password": "x"})
    assert no_token.status_code == 400 and is_our_page(no_token)
    api = client.get("/api/v1/nope")
    assert api.status_code == 404 and api.is_json


def test_hsts_only_when_cookies_are_secure(settings, runtime, client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    secure = settings.model_copy(update={"secure_cookies": True})
    app = create_app({"TESTING": True, "SETTINGS": secure, "RUNTIME": runtime})
    for path in ("/login", "/healthz", "/api/v1/openapi.json", "/no-such-page"):
        header = app.test_client().get(path).headers.get("Strict-Transport-Security", "")
        assert header.startswith("max-age=31536000"), path

"""Security properties of the pages: CSRF, cookies, headers, ownership, secrets, escaping."""

from __future__ import annotations

import logging
import re

import pytest

from sheets_sync import store
from tests.plugin_fakes import INSTANTLY_KEY, SERVICE_ACCOUNT_EMAIL
from tests.plugin_web import AuthActions
from tests.web_helpers import (
    FETCH,
    connection_form,
    create_connection,
    run_queued,
    runs_of,
    sheet_url,
    token,
    workspace_for,
    workspace_with_campaign,
)
from web import create_app

XSS = "<script>alert(1)</script>"


def text(response) -> str:
    return response.get_data(as_text=True)


def page_rules(app, methods: set[str]) -> list:
    return [
        rule for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in ("auth", "pages") and rule.methods & methods
    ]


def user_ids(runtime, email: str) -> dict[str, int]:
    with runtime.session_factory() as s:
        user = store.get_user_by_email(s, email)
        connection = store.list_connections(s, user)[0]
        run = store.last_run(s, connection)
        keys = store.list_api_keys(s, user)
        return {
            "connection_id": connection.id,
            "run_id": run.id if run else 0,
            "key_id": keys[0].id if keys else 0,
        }


@pytest.fixture
def two_users(app, runtime, spreadsheet_id):
    """Ann has a connection with a run and an API key; Bob has a connection of his own."""
    ann = app.test_client()
    AuthActions(ann).signup("ann@example.com")
    create_connection(ann, spreadsheet_url=sheet_url(spreadsheet_id))
    ids = user_ids(runtime, "ann@example.com")
    ann.post(f"/connections/{ids['connection_id']}/refresh", data={"csrf_token": token(ann)})
    ann.post("/api-keys", data={"name": "Ann's", "csrf_token": token(ann)})
    bob = app.test_client()
    AuthActions(bob).signup("bob@example.com")
    create_connection(bob, name="Bob's", spreadsheet_url=sheet_url(spreadsheet_id))
    return ann, user_ids(runtime, "ann@example.com"), bob, user_ids(runtime, "bob@example.com")


# --- CSRF ----------------------------------------------------------------------------------


@pytest.fixture
def csrf_app(settings, runtime, workspace):
    """An app built without any test switch: CSRF protection as in production."""
    app = create_app({"SETTINGS": settings, "RUNTIME": runtime})
    assert app.config.get("WTF_CSRF_ENABLED", True) is True
    return app


def test_every_state_changing_form_refuses_a_missing_or_wrong_token(csrf_app, runtime,
                                                                   spreadsheet_id):
    ann = csrf_app.test_client()
    AuthActions(ann).signup("ann@example.com")
    create_connection(ann, spreadsheet_url=sheet_url(spreadsheet_id))
    ann.post("/api-keys", data={"name": "k", "csrf_token": token(ann)})
    ids = user_ids(runtime, "ann@example.com")
    form = connection_form(name="Changed")

    posts = {
        "auth.signup": ("/signup", {"email": "eve@example.com", "password": "x" * 12,
                                    "confirm": "x" * 12}),
        "auth.login": ("/login", {"email": "ann@example.com", "password": "correct horse battery"}),
        "auth.logout": ("/logout", {}),
        "auth.change_password": ("/account/password", {
            "current": "correct horse battery", "password": "y" * 12, "confirm": "y" * 12}),
        "auth.forgot_password": ("/forgot-password", {"email": "ann@example.com"}),
        "auth.reset_password": ("/reset-password/" + "t" * 43, {
            "password": "y" * 12, "confirm": "y" * 12}),
        "pages.new_connection": ("/connections/new", form),
        "pages.edit_connection": (f"/connections/{ids['connection_id']}/edit", form),
        "pages.refresh": (f"/connections/{ids['connection_id']}/refresh", {}),
        "pages.resume": (f"/connections/{ids['connection_id']}/resume", {}),
        "pages.delete_connection": (f"/connections/{ids['connection_id']}/delete", {}),
        "pages.check_access": (f"/connections/{ids['connection_id']}/check-access", {}),
        "pages.check_access_typed": ("/connections/check-access",
                                     {"spreadsheet_url": sheet_url(spreadsheet_id)}),
        "pages.test_key": ("/connections/test-key", {"instantly_api_key": INSTANTLY_KEY}),
        "pages.api_keys": ("/api-keys", {"name": "sneaky"}),
        "pages.revoke_api_key": (f"/api-keys/{ids['key_id']}/revoke", {}),
    }
    # Every POST route of the pages is in the list above.
    assert {r.endpoint for r in page_rules(csrf_app, {"POST"})} == set(posts)

    anonymous = csrf_app.test_client()
    for endpoint, (path, data) in posts.items():
        public = ("auth.signup", "auth.login", "auth.forgot_password", "auth.reset_password")
        client = anonymous if endpoint in public else ann
        for bad in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data={**data, **bad})
            assert response.status_code == 400, (endpoint, bad)
            assert "did not come from this site" in text(response)
        response = client.post(path, data=data, headers={**FETCH, "X-CSRFToken": "forged"})
        assert response.status_code == 400, endpoint
        assert response.get_json()["error"]["code"] == "csrf_failed"

    # Nothing changed: still signed in, one connection, no run, key not revoked, no user.
    assert ann.get("/").status_code == 200
    with runtime.session_factory() as s:
        ann_user = store.get_user_by_email(s, "ann@example.com")
        connections = store.list_connections(s, ann_user)
        assert [c.name for c in connections] == ["Q1 outbound"]
        assert store.list_runs(s, ann_user, connections[0].id) == []
        keys = store.list_api_keys(s, ann_user)
        assert len(keys) == 1 and keys[0].revoked_at is None
        assert store.get_user_by_email(s, "eve@example.com") is None

    # The token from the page (form field or meta tag) is accepted.
    page = text(ann.get("/"))
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    response = ann.post(
        f"/connections/{ids['connection_id']}/refresh",
        headers={**FETCH, "X-CSRFToken": meta},
    )
    assert response.status_code == 202


# --- cookies and headers ---------------------------------------------------------------------


def _session_set_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_is_httponly_and_samesite_lax(client, auth):
    cookie = _session_set_cookie(auth.signup())
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_when_configured(settings, runtime):
    secure = settings.model_copy(update={"secure_cookies": True})
    app = create_app({"TESTING": True, "SETTINGS": secure, "RUNTIME": runtime})
    client = app.test_client()
    cookie = _session_set_cookie(AuthActions(client).signup())
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


PAGES = ["/", "/connections/new", "/api-keys"]


def test_pages_are_not_cached_and_have_a_strict_csp(client, auth):
    for path in ("/login", "/signup"):
        assert client.get(path).headers["Cache-Control"] == "no-store"
    auth.signup()
    create_connection(client)
    for path in [*PAGES, "/connections/1/edit", "/connections/1/runs", "/connections/1/delete"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store", path
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        html = text(response)
        # Nothing the CSP would block: no inline script, style or event handler.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"<style\b", html), path
        assert not re.search(r"\sstyle\s*=", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert '<meta name="csrf-token"' in html


def test_every_page_needs_a_signed_in_user(app, client, auth):
    auth.signup()
    create_connection(client)
    client.post("/connections/1/refresh", data={"csrf_token": token(client)})
    anonymous = app.test_client()
    values = {"connection_id": 1, "run_id": 1, "key_id": 1}
    landing = anonymous.get("/")
    assert landing.status_code == 200
    assert "Sign up" in text(landing) and "Q1 outbound" not in text(landing)
    for rule in page_rules(app, {"GET"}):
        if rule.endpoint.startswith("auth.") or rule.endpoint == "pages.dashboard":
            continue
        path = rule.build(values, append_unknown=False)[1]
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login"), path
        response = anonymous.get(path, headers=FETCH)
        assert response.status_code == 401, path


# --- ownership ---------------------------------------------------------------------------------


def test_another_users_connection_run_and_key_are_404_everywhere(app, runtime, two_users):
    ann, a, bob, b = two_users
    assert a["run_id"] and a["key_id"]
    form = connection_form(name="Bob was here")
    actions = {
        ("GET", "pages.edit_connection"): (f"/connections/{a['connection_id']}/edit", None),
        ("POST", "pages.edit_connection"): (f"/connections/{a['connection_id']}/edit", form),
        ("POST", "pages.refresh"): (f"/connections/{a['connection_id']}/refresh", {}),
        ("POST", "pages.resume"): (f"/connections/{a['connection_id']}/resume", {}),
        ("GET", "pages.runs"): (f"/connections/{a['connection_id']}/runs", None),
        ("GET", "pages.run_status"): (
            f"/connections/{a['connection_id']}/runs/{a['run_id']}.json", None),
        ("GET", "pages.delete_connection"): (f"/connections/{a['connection_id']}/delete", None),
        ("POST", "pages.delete_connection"): (f"/connections/{a['connection_id']}/delete", {}),
        ("POST", "pages.check_access"): (f"/connections/{a['connection_id']}/check-access", {}),
        ("POST", "pages.revoke_api_key"): (f"/api-keys/{a['key_id']}/revoke", {}),
        ("POST", "pages.test_key"): (
            "/connections/test-key", {"connection_id": str(a["connection_id"])}),
    }
    # Every page route that takes an id is covered.
    with_ids = {
        (method, rule.endpoint)
        for rule in page_rules(app, {"GET", "POST"})
        # A reset link's token is not an object of an account (tests/test_password_reset.py).
        if rule.arguments and rule.endpoint != "auth.reset_password"
        for method in rule.methods & {"GET", "POST"}
    }
    assert with_ids <= set(actions), with_ids - set(actions)

    extra = [
        # Bob's own connection with Ann's run id.
        ("GET", f"/connections/{b['connection_id']}/runs/{a['run_id']}.json", None),
        ("GET", f"/connections/{a['connection_id'] + 1000}/edit", None),
    ]
    csrf = token(bob)
    for headers in ({}, FETCH):
        for method, path, data in [(m, p, d) for (m, _), (p, d) in actions.items()] + extra:
            if method == "GET":
                response = bob.get(path, headers=headers)
            else:
                response = bob.post(path, data={**data, "csrf_token": csrf}, headers=headers)
            assert response.status_code == 404, (method, path, headers)
            if headers:
                assert response.get_json()["error"]["code"] == "not_found"
            else:
                assert "belongs to another account" in text(response)
                assert "Q1 outbound" not in text(response)

    # Ann's things are untouched.
    with runtime.session_factory() as s:
        user = store.get_user_by_email(s, "ann@example.com")
        connection = store.get_connection(s, user, a["connection_id"])
        assert connection.name == "Q1 outbound"
        assert store.list_api_keys(s, user)[0].revoked_at is None
    assert len(runs_of(runtime, a["connection_id"])) == 1
    assert ann.get(f"/connections/{a['connection_id']}/edit").status_code == 200


# --- secrets -----------------------------------------------------------------------------------


def test_stored_instantly_key_never_leaves_the_server(app, client, auth, runtime, settings,
                                                      fake_instantly, spreadsheet_id, caplog):
    caplog.set_level(logging.DEBUG)
    workspace_with_campaign(fake_instantly)
    responses = []

    def keep(response):
        responses.append(response)
        return response

    keep(auth.signup())
    keep(create_connection(client, spreadsheet_url=sheet_url(spreadsheet_id)))
    cid = user_ids(runtime, "ann@example.com")["connection_id"]
    csrf = token(client)
    for path in ["/", f"/connections/{cid}/edit", f"/connections/{cid}/runs",
                 f"/connections/{cid}/delete", "/api-keys", "/connections/new"]:
        keep(client.get(path))
    for headers in ({}, FETCH):
        keep(client.post("/connections/test-key",
                         data={"connection_id": str(cid), "csrf_token": csrf}, headers=headers))
        keep(client.post(f"/connections/{cid}/check-access", data={"csrf_token": csrf},
                         headers=headers))
    run = keep(client.post(f"/connections/{cid}/refresh", data={"csrf_token": csrf},
                           headers=FETCH)).get_json()["run"]
    assert run_queued(runtime, run["id"]).ok
    keep(client.get(run["status_url"]))
    # Edit without retyping the key; then a failed save (the typed key must not echo).
    form = connection_form(instantly_api_key="")
    keep(client.post(f"/connections/{cid}/edit", data={**form, "csrf_token": csrf}))
    bad = connection_form(spreadsheet_url="https://example.com/")
    keep(client.post(f"/connections/{cid}/edit", data={**bad, "csrf_token": csrf}))
    keep(client.post("/connections/new", data={**bad, "csrf_token": csrf}))
    for path in ["/", f"/connections/{cid}/edit", f"/connections/{cid}/runs"]:
        keep(client.get(path))

    assert len(responses) > 15
    for response in responses:
        body = response.get_data()
        assert INSTANTLY_KEY.encode() not in body, response.request.path
        assert INSTANTLY_KEY not in str(response.headers)
    assert "…3f9a" in text(client.get(f"/connections/{cid}/edit"))

    assert caplog.records, "expected some log records to check"
    for record in caplog.records:
        assert INSTANTLY_KEY not in record.getMessage()
    assert INSTANTLY_KEY not in caplog.text

    database = settings.data_dir / "sheets-sync.sqlite3"
    runtime.engine.dispose()
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    assert database in files
    for path in files:
        assert INSTANTLY_KEY.encode() not in path.read_bytes(), path
    with runtime.session_factory() as s:
        connection = store.get_connection(s, store.get_user_by_email(s, "ann@example.com"), cid)
        assert store.decrypted_api_key(runtime.fernet, connection) == INSTANTLY_KEY


# --- escaping ---------------------------------------------------------------------------------


def test_campaign_and_connection_names_are_escaped(client, auth, runtime, fake_instantly,
                                                   spreadsheet_id):
    workspace = workspace_for(fake_instantly)
    campaign_id = workspace.add_campaign(XSS)
    auth.signup()

    # Test key without JavaScript: the picker lists the name as text.
    page = client.post(
        "/connections/test-key",
        data={**connection_form(), "csrf_token": token(client)},
    )
    html = text(page)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # With JavaScript: JSON (app.js sets it with textContent).
    response = client.post(
        "/connections/test-key",
        data={"instantly_api_key": INSTANTLY_KEY, "csrf_token": token(client)}, headers=FETCH,
    )
    assert response.mimetype == "application/json"
    assert response.get_json()["campaigns"] == [{"id": campaign_id, "name": XSS}]

    create_connection(client, name=XSS, campaign_ids=campaign_id,
                      spreadsheet_url=sheet_url(spreadsheet_id))
    cid = user_ids(runtime, "ann@example.com")["connection_id"]
    run = client.post(f"/connections/{cid}/refresh", data={"csrf_token": token(client)},
                      headers=FETCH).get_json()["run"]
    run_queued(runtime, run["id"])
    for path in ["/", f"/connections/{cid}/edit", f"/connections/{cid}/runs",
                 f"/connections/{cid}/delete"]:
        html = text(client.get(path))
        assert XSS not in html, path
        assert "&lt;script&gt;" in html, path
    assert SERVICE_ACCOUNT_EMAIL in text(client.get("/"))


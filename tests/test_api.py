"""The JSON API under /api/v1: auth, ownership, validation, shapes, and its OpenAPI document.

Users and API keys are created through the store (as ``sheets-sync api-keys create``
would); everything else goes through HTTP. No sync is executed (the sync route only
queues), so neither Instantly nor Google is contacted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sheets_sync import store
from sheets_sync.config import Settings
from sheets_sync.connection_rules import ConnectionCreate, ConnectionFields
from sheets_sync.store.db import session_scope
from sheets_sync.store.models import Connection
from web.openapi import CREATE_EXAMPLE, PATCH_EXAMPLE

SECRET = "inst-secret-abcdefgh-1234WXYZ"
SHEET = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit#gid=0"
OTHER_SHEET = "https://docs.google.com/spreadsheets/d/9ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210/edit"
C1 = "5b6f0d4e-1c2a-4d3b-9e8f-0a1b2c3d4e5f"
C2 = "0f1e2d3c-4b5a-4968-8776-655443322110"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Overrides the plugin's fixture: the API never calls Instantly or Google in these
    # tests, so the network fakes are not needed; both URLs point at a closed local port.
    return Settings(
        data_dir=tmp_path / "instance",
        instantly_api_url="http://127.0.0.1:9",
        sheets_api_url="http://127.0.0.1:9",
    )


@dataclass
class ApiUser:
    user_id: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_user(runtime) -> Callable[[str], ApiUser]:
    def make(email: str) -> ApiUser:
        with session_scope(runtime.session_factory) as s:
            user = store.create_user(s, email, "correct horse battery")
            s.flush()
            _, key = store.create_api_key(s, user, "tests")
            return ApiUser(user.id, key)

    return make


@pytest.fixture
def ann(make_user) -> ApiUser:
    return make_user("ann@example.com")


@pytest.fixture
def bob(make_user) -> ApiUser:
    return make_user("bob@example.com")


def new_connection(client, user: ApiUser, **fields: Any) -> dict[str, Any]:
    body = {"name": "Outbound", "instantly_api_key": SECRET, "spreadsheet_url": SHEET, **fields}
    response = client.post("/api/v1/connections", json=body, headers=user.headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --- connections -----------------------------------------------------------------------


def test_crud_round_trip(client, ann):
    created = new_connection(
        client,
        ann,
        campaign_ids=[C1, C2],
        date_range={"start": "2026-01-01", "end": "2026-01-31"},
        schedule="weekly",
        timezone="Europe/Berlin",
    )
    assert created["name"] == "Outbound"
    assert created["spreadsheet_id"] == "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert created["spreadsheet_url"].startswith("https://docs.google.com/spreadsheets/d/")
    assert created["worksheet_title"] == "Instantly steps"
    assert created["campaign_ids"] == [C1, C2]
    assert created["date_range"] == {"start": "2026-01-01", "end": "2026-01-31"}
    # A weekly schedule without a time or day gets the documented defaults.
    assert (created["schedule"], created["schedule_time"], created["schedule_weekday"]) == (
        "weekly", "09:00", 0,
    )
    assert created["timezone"] == "Europe/Berlin"
    assert created["last_run"] is None and created["sheet_url"] is None
    cid = created["id"]

    listed = client.get("/api/v1/connections", headers=ann.headers)
    assert listed.status_code == 200
    assert listed.get_json() == {"connections": [created]}

    fetched = client.get(f"/api/v1/connections/{cid}", headers=ann.headers)
    assert fetched.status_code == 200 and fetched.get_json() == created

    patched = client.patch(
        f"/api/v1/connections/{cid}",
        json={"name": "Renamed", "schedule": "off", "date_range": {"preset": "last_7_days"}},
        headers=ann.headers,
    )
    assert patched.status_code == 200
    body = patched.get_json()
    assert body["name"] == "Renamed" and body["schedule"] == "off"
    assert body["date_range"] == {"preset": "last_7_days"}
    assert body["campaign_ids"] == [C1, C2]  # fields not sent are kept

    deleted = client.delete(f"/api/v1/connections/{cid}", headers=ann.headers)
    assert deleted.status_code == 204 and deleted.data == b""
    assert_error(client.get(f"/api/v1/connections/{cid}", headers=ann.headers), 404, "not_found")
    assert client.get("/api/v1/connections", headers=ann.headers).get_json() == {
        "connections": []
    }


def test_post_answers_201_with_location(client, ann):
    response = client.post(
        "/api/v1/connections",
        json={"name": "A", "instantly_api_key": SECRET, "spreadsheet_url": SHEET},
        headers=ann.headers,
    )
    assert response.status_code == 201
    assert response.headers["Location"].endswith(f"/api/v1/connections/{response.get_json()['id']}")
    assert client.get(response.headers["Location"], headers=ann.headers).status_code == 200


def test_the_instantly_key_is_never_returned(client, ann, runtime):
    created = new_connection(client, ann)
    cid = created["id"]
    assert "instantly_api_key" not in created
    assert created["instantly_api_key_hint"] == "…WXYZ"
    responses = [
        client.get("/api/v1/connections", headers=ann.headers),
        client.get(f"/api/v1/connections/{cid}", headers=ann.headers),
        client.patch(f"/api/v1/connections/{cid}", json={"name": "x"}, headers=ann.headers),
    ]
    for response in responses:
        assert SECRET not in response.get_data(as_text=True)
        assert SECRET[-12:] not in response.get_data(as_text=True)

    new_key = "inst-another-key-5678QRST"
    patched = client.patch(
        f"/api/v1/connections/{cid}", json={"instantly_api_key": new_key}, headers=ann.headers
    )
    assert patched.status_code == 200
    assert patched.get_json()["instantly_api_key_hint"] == "…QRST"
    assert new_key not in patched.get_data(as_text=True)
    with session_scope(runtime.session_factory) as s:
        stored = s.get(Connection, cid)
        assert store.decrypted_api_key(runtime.fernet, stored) == new_key

    # A validation error about the key does not echo it back either.
    rejected = client.patch(
        f"/api/v1/connections/{cid}", json={"instantly_api_key": "k" * 501}, headers=ann.headers
    )
    error = assert_error(rejected, 422, "invalid_request")
    assert "instantly_api_key" in error["message"] and "k" * 20 not in error["message"]


def test_patch_to_a_non_google_link_is_422_and_changes_nothing(client, ann):
    created = new_connection(client, ann)
    cid = created["id"]
    response = client.patch(
        f"/api/v1/connections/{cid}",
        json={"name": "Should not stick", "spreadsheet_url": "https://example.com/sheet/abc"},
        headers=ann.headers,
    )
    error = assert_error(response, 422, "invalid_request")
    assert error["message"].startswith("spreadsheet_url:")
    assert "Google Sheets link" in error["message"]
    after = client.get(f"/api/v1/connections/{cid}", headers=ann.headers).get_json()
    assert after == created


def test_store_level_invalid_input_is_422(client, ann):
    cid = new_connection(client, ann)["id"]
    # null is allowed by the PATCH model (all fields optional) but a connection must keep
    # a name: the store refuses it, the API answers 422 instead of 500.
    error = assert_error(
        client.patch(f"/api/v1/connections/{cid}", json={"name": None}, headers=ann.headers),
        422,
        "invalid_request",
    )
    assert "name" in error["message"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"name": "n" * 121}, "name"),
        ({"name": "n" * 200}, "name"),
        # Refused by the store until the rules were shared; the API let them through.
        ({"instantly_api_key": "has spaces in the middle"}, "instantly_api_key"),
        ({"worksheet_title": "two\nlines"}, "worksheet_title"),
        ({"campaign_ids": [f"c{i}" for i in range(201)]}, "campaign_ids"),
        ({"date_range": {"start": "20260101", "end": "2026-01-31"}}, "date_range"),
    ],
)
def test_api_applies_the_connection_rules(client, ann, bad, field):
    body = {"name": "Outbound", "instantly_api_key": SECRET, "spreadsheet_url": SHEET, **bad}
    created = client.post("/api/v1/connections", json=body, headers=ann.headers)
    assert assert_error(created, 422, "invalid_request")["message"].startswith(f"{field}:")
    cid = new_connection(client, ann)["id"]
    patched = client.patch(f"/api/v1/connections/{cid}", json=bad, headers=ann.headers)
    assert assert_error(patched, 422, "invalid_request")["message"].startswith(f"{field}:")


def test_api_takes_a_name_of_120_characters(client, ann):
    created = new_connection(client, ann, name="n" * 120)
    patched = client.patch(f"/api/v1/connections/{created['id']}", json={"name": "m" * 120},
                           headers=ann.headers)
    assert patched.status_code == 200 and patched.get_json()["name"] == "m" * 120


def test_a_new_sheet_link_resets_the_tab_and_sheet_url(client, ann, runtime):
    cid = new_connection(client, ann)["id"]
    with session_scope(runtime.session_factory) as s:
        s.get(Connection, cid).sheet_id = 123
    fetched = client.get(f"/api/v1/connections/{cid}", headers=ann.headers).get_json()
    assert fetched["sheet_url"].endswith("/edit#gid=123")
    patched = client.patch(
        f"/api/v1/connections/{cid}", json={"spreadsheet_url": OTHER_SHEET}, headers=ann.headers
    ).get_json()
    assert patched["spreadsheet_id"] == "9ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210"
    assert patched["sheet_url"] is None


# --- ownership -------------------------------------------------------------------------


def test_another_users_objects_are_404_like_missing_ones(client, ann, bob):
    created = new_connection(client, ann)
    cid = created["id"]
    run = client.post(f"/api/v1/connections/{cid}/sync", headers=ann.headers).get_json()

    def requests_for(connection_id: int, run_id: int) -> list[Any]:
        base = f"/api/v1/connections/{connection_id}"
        return [
            lambda: client.get(base, headers=bob.headers),
            lambda: client.patch(base, json={"name": "mine now"}, headers=bob.headers),
            lambda: client.delete(base, headers=bob.headers),
            lambda: client.post(f"{base}/sync", headers=bob.headers),
            lambda: client.get(f"{base}/runs", headers=bob.headers),
            lambda: client.get(f"/api/v1/runs/{run_id}", headers=bob.headers),
        ]

    missing = 987654
    for theirs, absent in zip(
        requests_for(cid, run["id"]), requests_for(missing, missing), strict=True
    ):
        a, b = theirs(), absent()
        assert_error(a, 404, "not_found")
        # Byte for byte the same answer: ids of other users cannot be told from free ids.
        assert (a.status_code, a.get_data()) == (b.status_code, b.get_data())

    assert client.get("/api/v1/connections", headers=bob.headers).get_json() == {
        "connections": []
    }
    # Ann's connection is untouched and still has exactly the one run she queued.
    assert client.get(f"/api/v1/connections/{cid}", headers=ann.headers).get_json()["name"] == (
        "Outbound"
    )
    runs = client.get(f"/api/v1/connections/{cid}/runs", headers=ann.headers).get_json()["runs"]
    assert [r["id"] for r in runs] == [run["id"]]


# --- runs ------------------------------------------------------------------------------


def test_sync_queues_one_run_and_a_second_sync_returns_it(client, ann, runtime):
    woken: list[int] = []
    runtime.on_enqueue.append(lambda: woken.append(1))
    cid = new_connection(client, ann)["id"]

    first = client.post(f"/api/v1/connections/{cid}/sync", headers=ann.headers)
    assert first.status_code == 202
    run = first.get_json()
    assert run["status"] == "queued" and run["trigger"] == "api"
    assert run["connection_id"] == cid and run["error"] is None
    assert run["started_at"] is None and run["finished_at"] is None
    assert first.headers["Location"].endswith(f"/api/v1/runs/{run['id']}")

    second = client.post(f"/api/v1/connections/{cid}/sync", headers=ann.headers)
    assert second.status_code == 202 and second.get_json()["id"] == run["id"]
    assert woken == [1]  # the worker is woken for the new run only

    assert client.get(f"/api/v1/runs/{run['id']}", headers=ann.headers).get_json() == run
    runs = client.get(f"/api/v1/connections/{cid}/runs", headers=ann.headers).get_json()
    assert runs == {"runs": [run]}
    connection = client.get(f"/api/v1/connections/{cid}", headers=ann.headers).get_json()
    assert connection["last_run"] == run


def test_a_failed_run_shows_its_error(client, ann, runtime):
    cid = new_connection(client, ann)["id"]
    run_id = client.post(f"/api/v1/connections/{cid}/sync", headers=ann.headers).get_json()["id"]
    with session_scope(runtime.session_factory) as s:
        assert store.claim_run(s, run_id, "test-worker", 60) is not None
        store.finish_run(
            s, run_id, status="failed", error_code="sheet_not_shared",
            error_message="Share the sheet with the service account.", http_calls=2,
        )
    run = client.get(f"/api/v1/runs/{run_id}", headers=ann.headers).get_json()
    assert run["status"] == "failed" and run["http_calls"] == 2
    assert run["started_at"] and run["finished_at"]
    assert run["error"] == {
        "code": "sheet_not_shared", "message": "Share the sheet with the service account."
    }
    # With the old run finished, the next sync is a new run.
    again = client.post(f"/api/v1/connections/{cid}/sync", headers=ann.headers).get_json()
    assert again["id"] != run_id and again["status"] == "queued"
    limited = client.get(f"/api/v1/connections/{cid}/runs?limit=1", headers=ann.headers)
    assert [r["id"] for r in limited.get_json()["runs"]] == [again["id"]]
    error = assert_error(
        client.get(f"/api/v1/connections/{cid}/runs?limt=1", headers=ann.headers),
        400, "invalid_request",
    )
    assert "limt" in error["message"]
    assert_error(
        client.get(f"/api/v1/connections/{cid}?verbose=1", headers=ann.headers),
        400, "invalid_request",
    )
    for bad in ("0", "201", "x", "-1", "1.5"):
        response = client.get(f"/api/v1/connections/{cid}/runs?limit={bad}", headers=ann.headers)
        assert "limit" in assert_error(response, 400, "invalid_request")["message"]


# --- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "Bearer ssk_wrong"],
)
def test_missing_or_invalid_key_is_401(client, ann, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("get", "/api/v1/connections"),
        ("post", "/api/v1/connections"),
        ("get", "/api/v1/connections/1"),
        ("post", "/api/v1/connections/1/sync"),
        ("get", "/api/v1/runs/1"),
    ]:
        response = getattr(client, method)(path, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_401_and_scheme_is_case_insensitive(client, ann, runtime):
    assert client.get(
        "/api/v1/connections", headers={"Authorization": f"bearer {ann.key}"}
    ).status_code == 200
    with session_scope(runtime.session_factory, write=True) as s:
        user = store.get_user(s, ann.user_id)
        (key,) = store.list_api_keys(s, user)
        store.revoke_api_key(s, user, key.id)
    response = client.get("/api/v1/connections", headers=ann.headers)
    assert_error(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# --- malformed requests: always JSON, never 500 ----------------------------------------


def test_malformed_requests_get_json_errors(client, ann, app):
    url = "/api/v1/connections"
    h = ann.headers
    assert_error(client.post(url, data="{not json", content_type="application/json", headers=h),
                 400, "invalid_request")
    assert_error(client.post(url, data="[" * 50_000, content_type="application/json", headers=h),
                 400, "invalid_request")
    assert_error(client.post(url, data="name=x", content_type="application/x-www-form-urlencoded",
                             headers=h), 400, "invalid_request")
    assert_error(client.post(url, data=b"\xff\xfe\x00", content_type="application/json",
                             headers=h), 400, "invalid_request")

    error = assert_error(client.post(url, json=[1, 2], headers=h), 422, "invalid_request")
    assert "JSON object" in error["message"]
    error = assert_error(client.post(url, json={"name": "x"}, headers=h), 422, "invalid_request")
    assert "instantly_api_key: this field is required" in error["message"]
    assert "spreadsheet_url: this field is required" in error["message"]
    error = assert_error(
        client.post(url, json={"name": "x", "instantly_api_key": SECRET, "spreadsheet_url": SHEET,
                               "colour": "red"}, headers=h),
        422, "invalid_request",
    )
    assert error["message"].startswith("colour: unknown field")
    error = assert_error(
        client.post(url, json={"name": "x", "instantly_api_key": SECRET, "spreadsheet_url": SHEET,
                               "include_opportunities": "yes", "timezone": "Mars/Olympus"},
                    headers=h),
        422, "invalid_request",
    )
    assert "include_opportunities:" in error["message"] and "timezone:" in error["message"]
    error = assert_error(
        client.post(url, json={"name": "x", "instantly_api_key": SECRET, "spreadsheet_url": SHEET,
                               "date_range": {"start": "2026-02-01", "end": "2026-01-01"}},
                    headers=h),
        422, "invalid_request",
    )
    assert error["message"].startswith("date_range:")

    too_big = json.dumps({"name": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)})
    assert_error(client.post(url, data=too_big, content_type="application/json", headers=h),
                 413, "payload_too_large")


def test_unknown_routes_and_methods_answer_json(client, ann):
    assert_error(client.get("/api/v1/nope", headers=ann.headers), 404, "not_found")
    assert_error(client.get("/api/v1/connections/abc", headers=ann.headers), 404, "not_found")
    assert_error(client.get("/api/v1/connections/-1", headers=ann.headers), 404, "not_found")
    assert_error(client.get("/api/v1", headers=ann.headers), 404, "not_found")
    response = client.put("/api/v1/connections", json={}, headers=ann.headers)
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert_error(client.delete("/api/v1/runs/1", headers=ann.headers), 405, "method_not_allowed")
    # Huge ids are just "not found", never an integer overflow in the database.
    assert_error(client.get(f"/api/v1/runs/{2**70}", headers=ann.headers), 404, "not_found")


# --- the OpenAPI document --------------------------------------------------------------


def _flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = rule.rule.removeprefix("/api/v1").replace("<int:", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def test_openapi_document_is_valid_and_documents_every_route(client, app):
    response = client.get("/api/v1/openapi.json")  # no key needed
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()

    try:
        # schemathesis ships the official OpenAPI 3.1 meta-schema (openapi_spec_validator
        # is not installed here).
        from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
    except ImportError:  # pragma: no cover - depends on the schemathesis version
        OPENAPI_31_VALIDATOR = None
    if OPENAPI_31_VALIDATOR is not None:
        errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
        assert errors == []
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": "/api/v1"}]

    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == _flask_routes(app)

    schemas = doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A sheets-sync API key (starts with ssk_).",
    }
    assert "instantly_api_key" not in schemas["ConnectionOut"]["properties"]
    assert set(schemas["RunOut"]["properties"]["status"]["enum"]) == {
        "queued", "running", "succeeded", "failed", "interrupted",
    }
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if path == "/openapi.json":
                assert operation["security"] == []
                continue
            assert "401" in responses, (path, method)
            for status, spec in responses.items():
                if status.startswith(("4", "5")):
                    assert spec["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorOut"
                    }
            if "{connection_id}" in path or "{run_id}" in path:
                assert "404" in responses, (path, method)
    # Every $ref resolves.
    for ref in _refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_documented_examples_are_valid_requests(client, ann):
    ConnectionCreate.model_validate(CREATE_EXAMPLE, strict=True)
    ConnectionFields.model_validate(PATCH_EXAMPLE, strict=True)
    created = client.post("/api/v1/connections", json=CREATE_EXAMPLE, headers=ann.headers)
    assert created.status_code == 201
    patched = client.patch(
        f"/api/v1/connections/{created.get_json()['id']}", json=PATCH_EXAMPLE, headers=ann.headers
    )
    assert patched.status_code == 200

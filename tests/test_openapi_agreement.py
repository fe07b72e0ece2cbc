"""The OpenAPI document refuses what the server refuses: a body the document says is
invalid is answered 422 naming the field, and the bodies the document allows on create
are accepted."""

from __future__ import annotations

import jsonschema_rs  # schemathesis's own validator, already a test dependency
import pytest

from sheets_sync import store
from sheets_sync.store.db import take_write_lock
from tests.plugin_fakes import INSTANTLY_KEY
from web.openapi import build_openapi

SHEET = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"


def document_allows(model: str, body: dict) -> bool:
    document = build_openapi()
    schema = {"$ref": f"#/components/schemas/{model}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema).is_valid(body)


@pytest.fixture
def api(app, runtime):
    with runtime.session_factory() as s, s.begin():
        take_write_lock(s)
        user = store.create_user(s, "ann@example.com", "correct horse battery")
        s.flush()
        _, key = store.create_api_key(s, user, "test")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    created = client.post("/api/v1/connections", headers=headers, json={
        "name": "Q1", "instantly_api_key": INSTANTLY_KEY, "spreadsheet_url": SHEET})
    assert created.status_code == 201
    return client, headers, created.get_json()["id"]


@pytest.mark.parametrize("body,field", [
    ({"name": None}, "name"),
    ({"spreadsheet_url": None}, "spreadsheet_url"),
    ({"spreadsheet_url": ""}, "spreadsheet_url"),
    ({"spreadsheet_url": "https://example.com/spreadsheets/d/abc"}, "spreadsheet_url"),
    ({"schedule": None}, "schedule"),
    ({"include_opportunities": None}, "include_opportunities"),
])
def test_patch_bodies_the_document_refuses_are_refused(api, body, field):
    client, headers, cid = api
    assert not document_allows("ConnectionFields", body)
    response = client.patch(f"/api/v1/connections/{cid}", json=body, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith(f"{field}:")
    unchanged = client.get(f"/api/v1/connections/{cid}", headers=headers).get_json()
    assert unchanged["name"] == "Q1" and unchanged["spreadsheet_url"] == SHEET


def test_nulls_the_document_allows_are_accepted(api):
    client, headers, cid = api
    patch = {"worksheet_title": None, "campaign_ids": None, "timezone": None,
             "instantly_api_key": None, "date_range": None}
    assert document_allows("ConnectionFields", patch)
    assert client.patch(f"/api/v1/connections/{cid}", json=patch,
                        headers=headers).status_code == 200
    create = {"name": "Q2", "instantly_api_key": INSTANTLY_KEY, "spreadsheet_url": SHEET,
              "schedule": None, "include_opportunities": None}
    assert document_allows("ConnectionCreate", create)
    created = client.post("/api/v1/connections", json=create, headers=headers)
    assert created.status_code == 201
    assert created.get_json()["schedule"] == "off"
    assert not document_allows("ConnectionCreate", {**create, "spreadsheet_url": ""})

"""The OpenAPI 3.1 document of ``/api/v1``, generated from the models the views use.

Schemas come from pydantic (``models_json_schema``): request bodies from
``sheets_sync.connection_rules`` (validation mode: what we accept), responses from
``web.api_models`` (serialization mode: what we send). Only the paths, parameters and
status codes are written by hand here, and ``tests/test_api.py`` checks that every
route of the blueprint appears in them, so the document cannot silently fall behind.

OpenAPI 3.1 because its schema dialect is JSON Schema 2020-12, which is what pydantic 2
emits (``anyOf`` with ``null``, ``examples`` arrays): no lossy translation to 3.0's
``nullable``.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from sheets_sync.connection_rules import ConnectionCreate, ConnectionFields

from .api_models import ConnectionList, ConnectionOut, ErrorOut, RunList, RunOut

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
JSON = "application/json"

# Request examples are real, valid inputs (tests validate them against the models), so
# a reader can copy them and fuzzers start from a request that succeeds.
CREATE_EXAMPLE: dict[str, Any] = {
    "name": "Outbound Q3",
    "instantly_api_key": "your-instantly-api-key",
    "spreadsheet_url": (
        "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit#gid=0"
    ),
    "worksheet_title": "Instantly steps",
    "campaign_ids": [],
    "date_range": {"preset": "last_30_days"},
    "include_opportunities": True,
    "schedule": "daily",
    "schedule_time": "09:00",
    "timezone": "Europe/Berlin",
}
PATCH_EXAMPLE: dict[str, Any] = {"schedule": "hourly", "date_range": {"preset": "last_7_days"}}

# Where a path parameter's id must point at a real object, e.g. for a first try in a docs
# viewer; 1 is the first object a fresh installation creates.
_ID_EXAMPLE = 1


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json_content(schema_name: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _ref(schema_name)}
    if example is not None:
        media["example"] = example
    return {JSON: media}


def _ok(description: str, schema_name: str) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema_name)}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json_content("ErrorOut")}


_UNAUTHORIZED = {
    **_error("Missing, invalid or revoked API key."),
    "headers": {
        "WWW-Authenticate": {
            "description": 'Always "Bearer …" (RFC 6750).',
            "schema": {"type": "string"},
        }
    },
}
_NOT_FOUND = _error(
    "No such object, or it belongs to another user (the answer is the same either way)."
)
_BAD_REQUEST = _error(
    "The body is not JSON or was not sent with Content-Type: application/json, or the "
    "URL has a query parameter this route does not take."
)
_UNKNOWN_QUERY = _error("The URL has a query parameter this route does not take.")
_UNPROCESSABLE = _error(
    "The JSON is well-formed but a field is missing, unknown or has a bad value; "
    "the message names the field."
)
_TOO_LARGE = _error("The request body is larger than the server accepts.")
_UNAVAILABLE = _error("The database is busy; try again in a moment.")


def _with_common(responses: dict[str, Any]) -> dict[str, Any]:
    # Every authenticated operation can answer 400 (unknown query parameter), 401, and
    # 503 when the store is locked.
    return {"400": _UNKNOWN_QUERY, **responses, "401": _UNAUTHORIZED, "503": _UNAVAILABLE}


def _id_param(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "minimum": 1},
        "example": _ID_EXAMPLE,
    }


def _location_header(what: str) -> dict[str, Any]:
    return {"Location": {"description": f"URL of the {what}.", "schema": {"type": "string"}}}


def _paths() -> dict[str, Any]:
    connection_id = _id_param("connection_id", "connection")
    run_id = _id_param("run_id", "run")
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "How many runs to return, newest first.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    }
    return {
        "/connections": {
            "get": {
                "operationId": "listConnections",
                "tags": ["connections"],
                "summary": "List your connections",
                "responses": _with_common(
                    {"200": _ok("Your connections.", "ConnectionList")}
                ),
            },
            "post": {
                "operationId": "createConnection",
                "tags": ["connections"],
                "summary": "Create a connection",
                "description": (
                    "`instantly_api_key` is write-only: it is stored encrypted and responses "
                    "show only `instantly_api_key_hint`."
                ),
                "requestBody": {
                    "required": True,
                    "content": _json_content("ConnectionCreate", CREATE_EXAMPLE),
                },
                "responses": _with_common(
                    {
                        "201": {
                            "description": "Created.",
                            "headers": _location_header("new connection"),
                            "content": _json_content("ConnectionOut"),
                        },
                        "400": _BAD_REQUEST,
                        "413": _TOO_LARGE,
                        "422": _UNPROCESSABLE,
                    }
                ),
            },
        },
        "/connections/{connection_id}": {
            "parameters": [connection_id],
            "get": {
                "operationId": "getConnection",
                "tags": ["connections"],
                "summary": "Get one connection",
                "responses": _with_common(
                    {
                        "200": _ok("The connection.", "ConnectionOut"),
                        "404": _NOT_FOUND,
                    }
                ),
            },
            "patch": {
                "operationId": "updateConnection",
                "tags": ["connections"],
                "summary": "Change some fields of a connection",
                "description": (
                    "Send only the fields to change. A new `instantly_api_key` replaces the "
                    "stored one (the hint changes); an empty or null key keeps it."
                ),
                "requestBody": {
                    "required": True,
                    "content": _json_content("ConnectionFields", PATCH_EXAMPLE),
                },
                "responses": _with_common(
                    {
                        "200": _ok("The updated connection.", "ConnectionOut"),
                        "400": _BAD_REQUEST,
                        "404": _NOT_FOUND,
                        "413": _TOO_LARGE,
                        "422": _UNPROCESSABLE,
                    }
                ),
            },
            "delete": {
                "operationId": "deleteConnection",
                "tags": ["connections"],
                "summary": "Delete a connection and its run history",
                "description": "The Google Sheet itself is not touched.",
                "responses": _with_common(
                    {"204": {"description": "Deleted."}, "404": _NOT_FOUND}
                ),
            },
        },
        "/connections/{connection_id}/sync": {
            "parameters": [connection_id],
            "post": {
                "operationId": "syncConnection",
                "tags": ["runs"],
                "summary": "Queue a sync now",
                "description": (
                    "Answers 202 with the queued run. If a run of this connection is already "
                    "queued or running, that run is returned instead of a second one."
                ),
                "responses": _with_common(
                    {
                        "202": {
                            "description": "The queued (or already active) run.",
                            "headers": _location_header("run"),
                            "content": _json_content("RunOut"),
                        },
                        "404": _NOT_FOUND,
                    }
                ),
            },
        },
        "/connections/{connection_id}/runs": {
            "parameters": [connection_id],
            "get": {
                "operationId": "listRuns",
                "tags": ["runs"],
                "summary": "Recent runs of a connection",
                "parameters": [limit],
                "responses": _with_common(
                    {
                        "200": _ok("Runs, newest first.", "RunList"),
                        "400": _error(
                            "The limit is not a whole number from 1 to 200, or the URL has "
                            "another query parameter."
                        ),
                        "404": _NOT_FOUND,
                    }
                ),
            },
        },
        "/runs/{run_id}": {
            "parameters": [run_id],
            "get": {
                "operationId": "getRun",
                "tags": ["runs"],
                "summary": "One run (poll this after a sync)",
                "responses": _with_common(
                    {
                        "200": _ok("The run.", "RunOut"),
                        "404": _NOT_FOUND,
                    }
                ),
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "tags": ["meta"],
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            },
        },
    }


@cache
def _document() -> dict[str, Any]:
    _, top = models_json_schema(
        [
            (ConnectionCreate, "validation"),
            (ConnectionFields, "validation"),
            (ConnectionOut, "serialization"),
            (ConnectionList, "serialization"),
            (RunOut, "serialization"),
            (RunList, "serialization"),
            (ErrorOut, "serialization"),
        ],
        ref_template=REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sheets-sync API",
            "version": API_VERSION,
            "description": (
                "Manage connections (an Instantly API key plus a Google Sheet) and their "
                "syncs. Authenticate with `Authorization: Bearer <api key>` (create keys on "
                "the web page or with `sheets-sync api-keys create EMAIL`). Every error has "
                'the body `{"error": {"code": "...", "message": "..."}}`. Lists are wrapped: '
                '`{"connections": [...]}` and `{"runs": [...]}`.'
            ),
        },
        "servers": [{"url": API_PREFIX}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "connections", "description": "What to sync where, and when."},
            {"name": "runs", "description": "Syncs: queue one, follow its progress."},
            {"name": "meta"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": top["$defs"],
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A sheets-sync API key (starts with ssk_).",
                }
            },
        },
    }


def build_openapi(server_url: str = API_PREFIX) -> dict[str, Any]:
    """The document, with ``servers`` pointing at where this app serves the API."""
    document = copy.deepcopy(_document())
    document["servers"] = [{"url": server_url}]
    return document

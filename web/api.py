"""The JSON API under ``/api/v1``: bearer-key auth, pydantic in, pydantic out.

Rules every route follows:

* Authentication is ``Authorization: Bearer <api key>`` on every route but the OpenAPI
  document; a missing, unknown or revoked key is a 401 with ``WWW-Authenticate``.
* Every object is fetched through ``sheets_sync.store`` whose ``get_connection``/``get_run``
  raise ``NotFound`` for a missing id and for another user's id alike, and both answer
  the same 404 body, so ids of other users cannot be probed.
* The API never answers HTML: errors inside the blueprint go through its JSON handlers,
  and routing errors under ``/api/v1`` (unknown path, wrong method), which Flask does not
  attribute to any blueprint, are answered as JSON before dispatch.
* No input can cause a 500: bodies are parsed and validated before the store sees them,
  and the store's own ``InvalidInput`` becomes a 422.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, Response, current_app, g, request, url_for
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from sheets_sync import store
from sheets_sync.connection_rules import ConnectionCreate, ConnectionFields, with_features
from sheets_sync.errors import InvalidInput, SyncError
from sheets_sync.jobs import save_checks
from sheets_sync.jobs.save_checks import SaveChecks
from sheets_sync.links import parse_spreadsheet_url
from sheets_sync.store.models import Connection, SyncRun, User

from .api_models import (
    ConnectionList,
    ConnectionOut,
    ErrorDetail,
    ErrorOut,
    RunList,
    connection_out,
    run_out,
)
from .openapi import API_PREFIX, build_openapi
from .users import db_session, runtime, write_session

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

bp = Blueprint("api", __name__, url_prefix=API_PREFIX)

JSON_MIMETYPE = "application/json"
REALM = 'Bearer realm="sheets-sync"'
RUNS_LIMIT_DEFAULT = 50
RUNS_LIMIT_MAX = 200
# Flask answers OPTIONS itself with an empty text/html 200; this API has no CORS and
# answers only JSON, so OPTIONS gets the JSON 405 like any other unsupported method.
_NO_AUTO_OPTIONS: dict[str, Any] = {"provide_automatic_options": False}
# Routes that need no key: the document describing the API (and how to authenticate).
PUBLIC_ENDPOINTS = frozenset({"api.openapi_document"})
# The query parameters each route understands; any other is a 400.
QUERY_PARAMETERS: dict[str, frozenset[str]] = {"api.list_runs": frozenset({"limit"})}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


# --- helpers ---------------------------------------------------------------------------


def _user() -> User:
    return g.api_user


def json_response(model: BaseModel, status: int = 200) -> Response:
    # model_dump_json keeps the declared field order and the exact types of the models
    # the OpenAPI document was generated from.
    return current_app.response_class(
        model.model_dump_json(), status=status, mimetype=JSON_MIMETYPE
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    response = json_response(ErrorOut(error=ErrorDetail(code=code, message=message)), status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _invalid(message: str, status: int = 422) -> NoReturn:
    raise ApiError(status, "invalid_request", message)


def _is_api_path() -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


# --- request bodies --------------------------------------------------------------------


def _describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One readable sentence per problem, each starting with the field it concerns.

    Only pydantic's message is used, never the input, so a rejected Instantly key is not
    echoed back.
    """
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if not field:
            parts.append("The request body must be a JSON object.")
            continue
        if kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            message = f"unknown field (the fields are: {allowed})"
        elif kind == "missing":
            message = "this field is required"
        else:
            # Our validators raise ValueError with a message written for people; pydantic
            # prefixes it with "Value error, ", which only adds noise.
            message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


def parse_body(model: type[M]) -> M:
    """The JSON body validated as ``model``: 400 if it is not JSON, 422 if a field is wrong."""
    if not request.is_json:
        _invalid(
            "Send the request body as JSON with the header Content-Type: application/json.",
            400,
        )
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad syntax and undecodable bytes; RecursionError a body of
        # thousands of nested brackets, which must be a 400 and not a crash.
        _invalid("The request body is not valid JSON.", 400)
    try:
        # strict: JSON types must match the documented schema ("true" is not a boolean,
        # 1.5 not a weekday), so what the OpenAPI document says is exactly what is accepted.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            # Valid for Python's json but not for pydantic's stricter parser (NaN, …).
            _invalid("The request body is not valid JSON.", 400)
        _invalid(_describe_validation_error(exc, model))


def _runs_limit() -> int:
    value = request.args.get("limit")
    if value is None:
        return RUNS_LIMIT_DEFAULT
    if not (value.isascii() and value.isdigit() and len(value) <= 4):
        _invalid(f"limit: give a whole number from 1 to {RUNS_LIMIT_MAX}.", 400)
    number = int(value)
    if not 1 <= number <= RUNS_LIMIT_MAX:
        _invalid(f"limit: give a whole number from 1 to {RUNS_LIMIT_MAX}.", 400)
    return number


# --- authentication and error handling -------------------------------------------------


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = _bearer_token()
    if token is None:
        return error_response(
            401,
            "unauthorized",
            "Send an API key in the header Authorization: Bearer <api key>.",
            {"WWW-Authenticate": REALM},
        )
    with db_session() as s:
        key = store.find_api_key(s, token)
        user = store.get_user(s, key.user_id) if key is not None else None
        stamp_due = key is not None and store.api_key_use_due(key)
    if key is not None and stamp_due:
        # Its own short write, once a minute per key: the lookup above takes no lock, so
        # API reads do not queue behind writers.
        with write_session() as s:
            store.record_api_key_use(s, key.id)
    if user is None:
        return error_response(
            401,
            "unauthorized",
            "The API key is not valid or has been revoked. Create a new one on the web page.",
            {"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
        )
    g.api_user = user
    return None


@bp.before_request
def _reject_unknown_query_parameters() -> None:
    # Same rule as for bodies: a misspelt parameter (?limt=5) is an error the client
    # hears about, not a silent no-op.
    allowed = QUERY_PARAMETERS.get(request.endpoint or "", frozenset())
    unknown = sorted(set(request.args) - allowed)
    if unknown and request.endpoint not in PUBLIC_ENDPOINTS:
        known = ", ".join(sorted(allowed)) or "none"
        _invalid(
            f"Unknown query parameter {', '.join(unknown)} (this route takes: {known}).", 400
        )


@bp.before_app_request
def _api_routing_errors() -> Response | None:
    # Flask attributes a request to a blueprint only once a rule matched, so an unknown
    # path or a wrong method under /api/v1 would reach the app's HTML error pages. Answer
    # those here, before dispatch, without touching the app's own error handlers.
    exc = request.routing_exception
    if exc is None or not _is_api_path():
        return None
    if isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(sorted(exc.valid_methods or []))
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; use {allowed}.",
            {"Allow": allowed},
        )
    if isinstance(exc, NotFound):
        return error_response(
            404, "not_found", f"No API route {request.path}; see {API_PREFIX}/openapi.json."
        )
    return None  # redirects (e.g. a missing trailing slash) keep Flask's behaviour


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


@bp.errorhandler(store.NotFound)
def _not_found(exc: store.NotFound) -> Response:
    # The store's message is the same for a missing id and another user's id.
    return error_response(404, "not_found", str(exc))


@bp.errorhandler(InvalidInput)
def _invalid_input(exc: InvalidInput) -> Response:
    return error_response(422, "invalid_request", exc.message)


@bp.errorhandler(OperationalError)
def _database_busy(exc: OperationalError) -> Response:
    # "database is locked" on SQLite or a dropped PostgreSQL connection: temporary, and
    # the transaction was rolled back, so the client can simply try again.
    log.warning("API request failed on the database: %s", type(exc.orig).__name__)
    return error_response(
        503, "unavailable", "The service is busy; try again in a moment.", {"Retry-After": "2"}
    )


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    codes = {
        400: "invalid_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }
    messages = {
        413: "The request body is too large.",
    }
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(
        status,
        codes.get(status, "http_error"),
        messages.get(status, exc.description or exc.name),
        headers,
    )


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    # A bug, not an input problem: log it with the traceback, answer JSON all the same.
    log.exception("unhandled error in the JSON API")
    return error_response(500, "internal_error", "Something went wrong on our side.")


def _out(connection: Connection, last_run: SyncRun | None) -> ConnectionOut:
    return connection_out(
        connection,
        last_run,
        service_account_email=runtime().service_account_email_for(connection),
    )


# --- routes ----------------------------------------------------------------------------


@bp.get("/openapi.json", **_NO_AUTO_OPTIONS)
def openapi_document() -> Response:
    document = build_openapi(request.script_root + API_PREFIX)
    return current_app.response_class(json.dumps(document), mimetype=JSON_MIMETYPE)


@bp.get("/connections", **_NO_AUTO_OPTIONS)
def list_connections() -> Response:
    with db_session() as s:
        items = [
            _out(c, store.last_run(s, c)) for c in store.list_connections(s, _user())
        ]
    return json_response(ConnectionList(connections=items))


def _refuse_checks(checks: SaveChecks) -> None:
    """422 naming every field a save-time check refused (the same rules as the form)."""
    if checks.ok:
        return
    parts = [
        f"{name}: {message}"
        for name, messages in checks.field_errors.items()
        for message in messages
    ]
    _invalid(" ".join(parts))


@bp.post("/connections", **_NO_AUTO_OPTIONS)
def create_connection() -> Response:
    data = parse_body(ConnectionCreate)
    kwargs = data.as_store_kwargs()
    checks = save_checks.check_instantly(
        runtime(), kwargs["instantly_api_key"], kwargs.get("campaign_ids") or []
    )
    _refuse_checks(checks)
    spreadsheet_id = parse_spreadsheet_url(kwargs["spreadsheet_url"])[0]
    checks.merge(
        save_checks.check_sheet(
            runtime(), spreadsheet_id, runtime().next_service_account_email()
        )
    )
    kwargs["options"] = save_checks.merged_options(kwargs.get("options"), checks.options)
    with write_session() as s:
        connection = store.create_connection(
            s,
            _user(),
            fernet=runtime().fernet,
            service_accounts=runtime().service_account_emails,
            **kwargs,
        )
        out = connection_out(connection, None)
    response = json_response(out, 201)
    response.headers["Location"] = url_for("api.get_connection", connection_id=out.id)
    return response


@bp.get("/connections/<int:connection_id>", **_NO_AUTO_OPTIONS)
def get_connection(connection_id: int) -> Response:
    with db_session() as s:
        connection = store.get_connection(s, _user(), connection_id)
        out = _out(connection, store.last_run(s, connection))
    return json_response(out)


@bp.patch("/connections/<int:connection_id>", **_NO_AUTO_OPTIONS)
def update_connection(connection_id: int) -> Response:
    changes = parse_body(ConnectionFields).changes()
    features = changes.pop("features", None)
    checks = _patch_checks(connection_id, changes)
    with write_session() as s:
        if features is not None or checks.options:
            # Feature switches and what the checks found live in the connection's
            # options: merge, keep the rest.
            current = store.get_connection(s, _user(), connection_id, for_update=True)
            options = dict(current.options or {})
            if features is not None:
                options = with_features(options, features)
            changes["options"] = save_checks.merged_options(options, checks.options)
        # InvalidInput from the store rolls the whole transaction back: a rejected PATCH
        # changes nothing, not even the fields that were valid.
        connection = store.update_connection(
            s, _user(), connection_id, fernet=runtime().fernet, **changes
        )
        out = _out(connection, store.last_run(s, connection))
    return json_response(out)


def _patch_checks(connection_id: int, changes: dict[str, Any]) -> SaveChecks:
    """A new key, campaigns new to the connection (with the saved key), a new sheet."""
    with db_session() as s:
        connection = store.get_connection(s, _user(), connection_id)
        known = set(connection.campaign_ids or [])
        spreadsheet_id = connection.spreadsheet_id
        saved_key = None
        if not changes.get("instantly_api_key"):
            try:
                saved_key = store.decrypted_api_key(runtime().fernet, connection)
            except SyncError:
                saved_key = None  # the next refresh says so; nothing to check with
    key = changes.get("instantly_api_key")
    ids = changes.get("campaign_ids")
    checks = SaveChecks()
    if key:
        wanted = ids if ids is not None else sorted(known)
        checks.merge(save_checks.check_instantly(runtime(), key, wanted))
    elif ids and not set(ids) <= known and saved_key:
        checks.merge(save_checks.check_instantly(runtime(), saved_key, ids, saved_key=True))
    _refuse_checks(checks)
    if changes.get("spreadsheet_url"):
        new_id = parse_spreadsheet_url(changes["spreadsheet_url"])[0]
        if new_id != spreadsheet_id:
            checks.merge(save_checks.check_sheet(runtime(), new_id))
    return checks


@bp.delete("/connections/<int:connection_id>", **_NO_AUTO_OPTIONS)
def delete_connection(connection_id: int) -> Response:
    with write_session() as s:
        store.delete_connection(s, _user(), connection_id)
    response = current_app.response_class(status=204)
    # 204 has no body, so it has no media type either.
    del response.headers["Content-Type"]
    return response


@bp.post("/connections/<int:connection_id>/sync", **_NO_AUTO_OPTIONS)
def sync_connection(connection_id: int) -> Response:
    with write_session() as s:
        connection = store.get_connection(s, _user(), connection_id)
        run, created = store.enqueue_run(s, connection, "api")
        out = run_out(run)
    if created:
        # After the commit, so the worker that wakes up can see the run.
        try:
            runtime().notify_enqueued()
        except Exception:
            # The run is stored; a worker polling the queue will still pick it up.
            log.exception("could not wake the worker after queueing run %s", out.id)
    response = json_response(out, 202)
    response.headers["Location"] = url_for("api.get_run", run_id=out.id)
    return response


@bp.get("/connections/<int:connection_id>/runs", **_NO_AUTO_OPTIONS)
def list_runs(connection_id: int) -> Response:
    limit = _runs_limit()
    with db_session() as s:
        runs = store.list_runs(s, _user(), connection_id, limit=limit)
        out = RunList(runs=[run_out(r) for r in runs])
    return json_response(out)


@bp.get("/runs/<int:run_id>", **_NO_AUTO_OPTIONS)
def get_run(run_id: int) -> Response:
    with db_session() as s:
        out = run_out(store.get_run(s, _user(), run_id))
    return json_response(out)


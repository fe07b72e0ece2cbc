"""A stateful fake of the Google Sheets API v4 (and Google's OAuth token endpoint) served
over real HTTP on 127.0.0.1, for tests that drive real gspread + google-auth.

Usage::

    with FakeSheetsServer() as server:
        info = make_service_account_info(server.token_uri)
        server.register_service_account(info)
        ssid = server.create_spreadsheet(shared_with=(info["client_email"],))
        # production code: rewrite https://sheets.googleapis.com -> server.url

What it models, beyond storing cells:

* the token exchange (RS256 JWT signed with the registered key) and bearer tokens;
* sharing as Editor or Viewer (``share``; 403 "The caller does not have permission" when
  not shared, and on any write by a Viewer), unknown ids (404);
* per-user and per-project read/write quotas over a rolling 60 s window (429);
* request validation against Google's discovery document (unknown fields, enums, types,
  unknown query parameters, ``fields`` masks), see :mod:`tests.fakes.discovery`;
* the methods the product and the benchmarks call: ``spreadsheets.get`` and
  ``spreadsheets.batchUpdate`` (semantics in :mod:`tests.fakes.sheets_state`), and
  ``values.update`` / ``values.clear``, which the plain-gspread baseline of
  ``benchmarks/engine_calls.py`` uses. Any other method is validated, then refused with
  a loud ``fake: method ... not implemented``;
* fault injection (``fail_next``, including ``DROP``: the connection closed with no
  answer), latency, and a call log for assertions.

Routes come from the discovery document too, matched against the raw request path so an
encoded ``%3A`` inside a range never collides with the ``:append`` / ``:clear`` verbs.
"""

from __future__ import annotations

import collections
import functools
import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.keep_alive import drop_connection, keeping_connections_open

from . import discovery
from .sheets_cells import (
    RENDERED_CELL_FIELDS,
    a1,
    effective_value,
    json_copy,
    parse_a1,
    python_value,
    render_cell,
)
from .sheets_state import (
    Json,
    Sheet,
    SheetsError,
    Spreadsheet,
    bad_request,
    batch_update,
    make_spreadsheet,
    new_sheet_id,
    new_spreadsheet_id,
    set_user_value,
    sheet_properties,
    spreadsheet_json,
    values_clear,
    values_write,
)

__all__ = [
    "DEFAULT_EMAIL",
    "SCOPE_SPREADSHEETS",
    "Call",
    "FakeSheetsServer",
    "make_service_account_info",
]

DEFAULT_EMAIL = "sheets-sync@test-project.iam.gserviceaccount.com"
SCOPE_SPREADSHEETS = "https://www.googleapis.com/auth/spreadsheets"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always signs for Google's endpoint, whatever token_uri says, so the fake
# accepts that audience as well as its own URL (Google also takes the legacy ones).
GOOGLE_TOKEN_AUDIENCES = (
    "https://oauth2.googleapis.com/token",
    "https://accounts.google.com/o/oauth2/token",
    "https://www.googleapis.com/oauth2/v4/token",
)
_READ_SCOPES = {
    SCOPE_SPREADSHEETS,
    "https://www.googleapis.com/auth/spreadsheets.readonly",
    "https://www.googleapis.com/auth/drive",
    "https://www.googleapis.com/auth/drive.readonly",
    "https://www.googleapis.com/auth/drive.file",
}
_WRITE_SCOPES = {
    SCOPE_SPREADSHEETS,
    "https://www.googleapis.com/auth/drive",
    "https://www.googleapis.com/auth/drive.file",
}
_MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: _INVALID_CREDENTIALS,
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    409: "The operation was aborted.",
    500: "Internal error encountered.",
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "The service is currently unavailable.",
}
_HTML_ERROR = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {code} ({name})!!1"
    "</title>\n  <p><b>{code}.</b> <ins>That\u2019s an error.</ins>\n  <p>{text}  <ins>That\u2019s "
    "all we know.</ins>\n"
)
# Which log kind each discovery method is recorded under.
_LOG_KINDS = {
    "spreadsheets.get": "get",
    "spreadsheets.batchUpdate": "batchUpdate",
    "spreadsheets.values.update": "values_write",
    "spreadsheets.values.clear": "values_write",
}
WINDOW_SECONDS = 60.0
# Drive's names for the roles the Share dialog calls Editor and Viewer.
SHARE_ROLES = ("writer", "reader")
PROJECT_NUMBER = 0  # the Cloud project the service account belongs to, in quota errors


# --- service accounts --------------------------------------------------------------------


@functools.cache
def _private_key_pem() -> str:
    """One RSA key per process: generating 2048-bit keys costs ~50-100 ms each."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def _public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def make_service_account_info(
    token_uri: str, email: str = DEFAULT_EMAIL, *, private_key_pem: str | None = None
) -> dict[str, str]:
    """A dict shaped exactly like a downloaded service-account JSON key file."""
    project_id = email.split("@", 1)[1].split(".", 1)[0] if "@" in email else "test-project"
    pem = private_key_pem or _private_key_pem()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(random.randint(10**20, 10**21 - 1)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }


# --- records -----------------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP call as the fake saw it (``body`` is the parsed JSON or form)."""

    method: str
    path: str
    kind: str  # token | get | batchUpdate | values_write | other
    spreadsheet_id: str | None
    status: int
    email: str | None
    body: Any
    at: float
    query: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Token:
    email: str
    scopes: frozenset[str]
    expires_at: float


# ``fail_next`` status: close the connection without answering, as a server that restarts
# or a load balancer that drops an idle connection does. The client sees the connection
# end with no response at all (RemoteDisconnected), before or after the call applied.
DROP = -1


class _Dropped(Exception):
    """Raised through the WSGI app to make the fake close the connection unanswered."""


@dataclass
class _Fault:
    kind: str
    status: int
    message: str | None
    headers: dict[str, str]
    remaining: int
    # "before": answer ``status`` without applying (after ``delay`` seconds);
    # "after": apply the request, then answer ``status`` (0 = its real reply) after
    # ``delay`` seconds: the response Google lost or sent after the client gave up.
    when: str = "before"
    delay: float = 0.0
    skip: int = 0  # let this many matching calls through first


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request drowns test output; errors still go to stderr


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                   ) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False),
        status=status,
        headers=headers or {},
        content_type="application/json; charset=UTF-8",
    )


def _bool_param(name: str, raw: str | None) -> bool:
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0", ""):
        return False
    raise bad_request(f"Invalid value at '{_snake(name)}' (TYPE_BOOL), \"{raw}\"")


def _snake(name: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name)


# --- the server --------------------------------------------------------------------------


class FakeSheetsServer:
    """Fake ``sheets.googleapis.com`` + ``oauth2.googleapis.com/token`` on 127.0.0.1."""

    def __init__(
        self,
        *,
        reads_per_minute: int = 60,
        writes_per_minute: int = 60,
        project_reads_per_minute: int = 300,
        project_writes_per_minute: int = 300,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        keep_alive: bool = False,
    ) -> None:
        # Connections left open between requests, as Google's are (``keep_alive.py``).
        self.keep_alive = keep_alive
        self.reads_per_minute = reads_per_minute
        self.writes_per_minute = writes_per_minute
        self.project_reads_per_minute = project_reads_per_minute
        self.project_writes_per_minute = project_writes_per_minute
        self.latency = latency
        self.clock = clock
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._spreadsheets: dict[str, Spreadsheet] = {}
        self._accounts: dict[str, str] = {}  # email -> public key PEM
        self._tokens: dict[str, _Token] = {}
        self._faults: list[_Fault] = []
        self._in_flight = 0
        self._idle = threading.Condition()
        self._windows: dict[tuple[str, str], collections.deque[float]] = (
            collections.defaultdict(collections.deque)
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._close_idle: Callable[[], int] = lambda: 0

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSheetsServer:
        if self._server is not None:
            return self
        discovery.methods()  # parse the discovery doc before the first request races it
        handler = (
            keeping_connections_open(_QuietHandler) if self.keep_alive else _QuietHandler
        )
        self._close_idle = getattr(handler, "close_idle", lambda: 0)
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=handler
        )
        # A short poll interval: shutdown() waits for the loop to notice, and the default
        # 0.5 s would be paid by every test that starts its own server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
            name="fake-sheets-api", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def close_idle_connections(self) -> int:
        """Close the connections kept open for a next request (with ``keep_alive``), as
        Google's front end does with idle ones: a client's pooled connection goes stale."""
        return int(self._close_idle())

    def __enter__(self) -> FakeSheetsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSheetsServer is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    # configuration ---------------------------------------------------------------------

    def register_service_account(self, info: dict[str, str]) -> None:
        """Accept JWTs signed by this service account's key."""
        with self._lock:
            self._accounts[info["client_email"]] = _public_key_pem(info["private_key"])

    def fail_next(
        self,
        kind: str,
        status: int,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
        *,
        when: str = "before",
        delay: float = 0.0,
        skip: int = 0,
    ) -> None:
        """Answer the next ``count`` matching calls with ``status``.

        ``kind``: "read" (GET), "write" (POST/PUT), "any" (read or write) or "token".
        A 502 is answered with Google's HTML error page, as Google's front end does.

        ``when="before"`` (default): the call is not applied; with ``delay`` the answer
        comes that many seconds late (a hang), and ``status=0`` then means "apply it
        after the delay and answer normally": Google applying a call the client already
        gave up on. ``when="after"``: the call is applied, then answered with ``status``
        (0 = its real reply) after ``delay`` seconds: a response lost on the way back.
        ``skip``: the first ``skip`` matching calls go through untouched.
        ``status=DROP``: the connection is closed with no answer (``when`` as above).
        """
        if kind not in ("read", "write", "any", "token"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if when not in ("before", "after"):
            raise ValueError(f"unknown fault timing {when!r}")
        if status == DROP and kind == "token":
            raise ValueError("DROP is for API calls; a token failure answers with a status")
        if status == 0 and not delay and when == "before":
            raise ValueError("status 0 (the real reply) needs a delay or when='after'")
        with self._lock:
            self._faults.append(_Fault(kind, status, message, dict(headers or {}), count,
                                       when, delay, skip))

    def clear_faults(self) -> None:
        """Drop faults queued by ``fail_next`` that no call has consumed yet."""
        with self._lock:
            self._faults.clear()

    # call log --------------------------------------------------------------------------

    def count(self, kind: str | None = None, spreadsheet_id: str | None = None,
              *, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for call in self.calls
                if (kind is None or call.kind == kind)
                and (spreadsheet_id is None or call.spreadsheet_id == spreadsheet_id)
                and (status is None or call.status == status)
            )

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def status_counts(self) -> dict[int, int]:
        with self._lock:
            return dict(collections.Counter(call.status for call in self.calls))

    # test-side state helpers (no HTTP, not logged) ---------------------------------------

    def create_spreadsheet(
        self,
        title: str = "Team metrics",
        sheets: Iterable[str] = ("Sheet1",),
        shared_with: Iterable[str] = (DEFAULT_EMAIL,),
    ) -> str:
        with self._lock:
            ssid = new_spreadsheet_id(self._rng)
            self._spreadsheets[ssid] = make_spreadsheet(
                ssid, title, list(sheets) or ["Sheet1"], shared_with, self._rng
            )
            return ssid

    def share(self, spreadsheet_id: str, email: str, role: str = "writer") -> None:
        """Share with ``email`` as Editor ("writer") or Viewer ("reader"), replacing any
        earlier role, as the Share dialog does."""
        if role not in SHARE_ROLES:
            raise ValueError(f"role must be one of {', '.join(SHARE_ROLES)}")
        with self._lock:
            self._book(spreadsheet_id).shared_with[email] = role

    def unshare(self, spreadsheet_id: str, email: str) -> None:
        with self._lock:
            self._book(spreadsheet_id).shared_with.pop(email, None)

    def delete_spreadsheet(self, spreadsheet_id: str) -> None:
        """The owner deleted the file: from now on its id answers 404."""
        with self._lock:
            self._spreadsheets.pop(spreadsheet_id, None)

    def sheet_properties(self, spreadsheet_id: str, title: str) -> dict[str, Any] | None:
        with self._lock:
            sheet = self._book(spreadsheet_id).sheet_by_title(title)
            return json_copy(sheet.properties) if sheet is not None else None

    def sheet_titles(self, spreadsheet_id: str) -> list[str]:
        with self._lock:
            return [sheet.title for sheet in self._book(spreadsheet_id).sheets]

    def values(self, spreadsheet_id: str, title_or_id: str | int) -> list[list[Any]]:
        """Dense grid of effective values (None for empty cells), trailing blanks trimmed.
        Formulas read as ``#FAKE_FORMULA``."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title_or_id)
            entered = {key: python_value(effective_value(cell))
                       for key, cell in sheet.cells.items()}
        present = [key for key, value in entered.items() if value is not None]
        height = max((r for r, _ in present), default=-1) + 1
        width = max((c for _, c in present), default=-1) + 1
        # An empty string still counts towards the extent, as in the values API's answer.
        return [[None if (v := entered.get((r, c))) == "" else v for c in range(width)]
                for r in range(height)]

    def cell(self, spreadsheet_id: str, title_or_id: str | int, a1_ref: str) -> dict[str, Any]:
        """One cell as a read returns it: what was written plus ``effectiveValue`` ({} when
        empty)."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title_or_id)
            ref = parse_a1(a1_ref)
            stored = sheet.cells.get((ref.r0, ref.c0))
            return json_copy(render_cell(stored)) if stored else {}

    def set_cell(self, spreadsheet_id: str, title_or_id: str | int, a1_ref: str,
                 value: Any) -> None:
        """A teammate typing into the sheet (USER_ENTERED: '=..' is a formula, '12' a
        number)."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title_or_id)
            ref = parse_a1(a1_ref)
            if ref.r0 >= sheet.row_count or ref.c0 >= sheet.column_count:
                raise ValueError(f"{a1_ref} is outside the grid of {sheet.title!r}")
            set_user_value(sheet, ref.r0, ref.c0, value, "USER_ENTERED")

    def rename_sheet(self, spreadsheet_id: str, old: str, new: str) -> None:
        with self._lock:
            self._sheet(spreadsheet_id, old).properties["title"] = new

    def delete_sheet(self, spreadsheet_id: str, title: str) -> None:
        with self._lock:
            book = self._book(spreadsheet_id)
            book.sheets.remove(self._sheet(spreadsheet_id, title))
            book.reindex()

    def add_sheet(self, spreadsheet_id: str, title: str, sheet_id: int | None = None,
                  rows: int = 1000, cols: int = 26) -> int:
        with self._lock:
            book = self._book(spreadsheet_id)
            if sheet_id is None:
                sheet_id = new_sheet_id(book, self._rng)
            elif book.sheet_by_id(sheet_id) is not None:
                raise ValueError(f"sheet id {sheet_id} already exists")
            book.sheets.append(Sheet(sheet_properties(sheet_id, title, len(book.sheets),
                                                      rows, cols)))
            return sheet_id

    def snapshot(self, spreadsheet_id: str) -> dict[str, Any]:
        """Everything the fake stores for one spreadsheet, as plain comparable data."""
        with self._lock:
            book = self._book(spreadsheet_id)
            return {
                "properties": json_copy(book.properties),
                "shared_with": dict(sorted(book.shared_with.items())),
                "sheets": [
                    {
                        "properties": json_copy(sheet.properties),
                        "cells": {a1(None, r, r + 1, c, c + 1): json_copy(cell)
                                  for (r, c), cell in sorted(sheet.cells.items())},
                        "row_meta": json_copy(sheet.row_meta),
                        "column_meta": json_copy(sheet.column_meta),
                        "charts": json_copy(sheet.charts),
                        "developer_metadata": json_copy(sheet.developer_metadata),
                    }
                    for sheet in book.sheets
                ],
            }

    def charts(self, spreadsheet_id: str, title_or_id: str | int) -> list[dict[str, Any]]:
        with self._lock:
            return json_copy(self._sheet(spreadsheet_id, title_or_id).charts)

    def _book(self, spreadsheet_id: str) -> Spreadsheet:
        try:
            return self._spreadsheets[spreadsheet_id]
        except KeyError:
            raise KeyError(f"no spreadsheet {spreadsheet_id!r} in the fake") from None

    def _sheet(self, spreadsheet_id: str, title_or_id: str | int) -> Sheet:
        book = self._book(spreadsheet_id)
        sheet = (book.sheet_by_id(title_or_id) if isinstance(title_or_id, int)
                 else book.sheet_by_title(title_or_id))
        if sheet is None:
            raise KeyError(f"no sheet {title_or_id!r} in spreadsheet {spreadsheet_id!r}")
        return sheet

    # HTTP ------------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no call is being answered: a held (hanging) call finishes and is
        logged after its client gave up, and must not land in the next test's log."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError("a call to the Sheets fake is still being answered")

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._idle:
            self._in_flight += 1
        try:
            return self._answer(environ, start_response)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if self.latency:
            time.sleep(self.latency)  # outside the lock: concurrent callers overlap
        raw_path = str(environ.get("RAW_URI") or request.path).split("?", 1)[0]
        if raw_path == "/token" and request.method == "POST":
            response = self._token(request)
        else:
            try:
                response = self._api(request, raw_path)
            except _Dropped:
                drop_connection(environ)
        return response(environ, start_response)

    def _log(self, request: Request, kind: str, ssid: str | None, status: int,
             email: str | None, body: Any) -> None:
        self.calls.append(Call(
            method=request.method, path=request.path, kind=kind, spreadsheet_id=ssid,
            status=status, email=email, body=body, at=self.clock(),
            query={key: request.args.getlist(key) for key in request.args},
        ))

    def _take_fault(self, kinds: tuple[str, ...]) -> _Fault | None:
        for fault in self._faults:
            if fault.kind in kinds:
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # token endpoint -----------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict()
        with self._lock:
            fault = self._take_fault(("token",))
            if fault is not None:
                error = "invalid_grant" if fault.status < 500 else "internal_failure"
                payload = {"error": error,
                           "error_description": fault.message or "Injected token failure."}
                response = _json_response(payload, fault.status, fault.headers)
                self._log(request, "token", None, fault.status, None, form)
                return response
            status, payload, email = self._grant(form)
            self._log(request, "token", None, status, email, form)
        return _json_response(payload, status)

    def _grant(self, form: dict[str, str]) -> tuple[int, Json, str | None]:
        def refuse(description: str, error: str = "invalid_grant", status: int = 400
                   ) -> tuple[int, Json, str | None]:
            return status, {"error": error, "error_description": description}, None

        if form.get("grant_type") != JWT_GRANT:
            return refuse(f"Invalid grant_type: {form.get('grant_type', '')}",
                          "unsupported_grant_type")
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, verify=False)
        except (ValueError, auth_exceptions.GoogleAuthError):
            return refuse("Invalid JWT: the assertion is not a well-formed JWT.")
        email = str(claims.get("iss", ""))
        public_pem = self._accounts.get(email)
        if public_pem is None:
            return refuse("Invalid grant: account not found")
        try:
            jwt.decode(assertion, certs=[public_pem], clock_skew_in_seconds=30)
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            if "signature" in str(exc).lower():
                return refuse("Invalid JWT Signature.")
            return refuse(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        if claims.get("aud") not in (*GOOGLE_TOKEN_AUDIENCES, self.token_uri):
            return refuse("Invalid JWT: Failed audience check.")
        if int(claims.get("exp", 0)) - int(claims.get("iat", 0)) > 3600:
            return refuse(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        if claims.get("sub") not in (None, email):
            return refuse(
                "Client is unauthorized to retrieve access tokens using this method, or "
                "client not authorized for any of the scopes requested.",
                "unauthorized_client", 401,
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            return refuse("Invalid OAuth scope or ID token audience provided.", "invalid_scope")
        token = "ya29.fake-" + secrets.token_urlsafe(48)
        self._tokens[token] = _Token(email, scopes, self.clock() + 3600)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}, email

    # API ----------------------------------------------------------------------------------

    def _api(self, request: Request, raw_path: str) -> Response:
        method, params = self._route(request.method, raw_path)
        ssid = params.get("spreadsheetId")
        if method is None:
            with self._lock:
                self._log(request, "other", ssid, 404, None, None)
            text = f"The requested URL <code>{request.path}</code> was not found on this server."
            return Response(_HTML_ERROR.format(code=404, name="Not Found", text=text),
                            status=404, content_type="text/html; charset=UTF-8")
        kind = _LOG_KINDS.get(method.id, "other")
        access = "read" if request.method == "GET" else "write"
        body: Any = None
        body_error: SheetsError | None = None
        if request.get_data():
            try:
                body = json.loads(request.get_data())
            except ValueError:
                body_error = bad_request("Invalid JSON payload received. Unexpected token.")
        with self._lock:
            fault = self._take_fault((access, "any"))
        if fault is not None and fault.when == "before" and fault.delay:
            time.sleep(fault.delay)  # outside the lock: other callers go on meanwhile
        with self._lock:
            email: str | None = None
            if fault is not None and fault.when == "before" and fault.status == DROP:
                response = Response(status=500)  # never sent: the connection is dropped
            elif fault is not None and fault.when == "before" and fault.status:
                response = self._fault_response(fault, access)
            else:
                try:
                    email = self._authenticate(request, access)
                    self._admit(email, access)
                    if body_error is not None:
                        raise body_error
                    payload = self._handle(method, params, request, body, email)
                    response = _json_response(payload)
                except SheetsError as error:
                    headers = {}
                    if error.code == 401:
                        headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
                    response = _json_response(error.body(), error.code, headers)
                if fault is not None and fault.when == "after" and fault.status not in (0, DROP):
                    response = self._fault_response(fault, access)
            dropped = fault is not None and fault.status == DROP
            self._log(request, kind, ssid, DROP if dropped else response.status_code, email,
                      body)
        if fault is not None and fault.when == "after" and fault.delay:
            time.sleep(fault.delay)
        if dropped:
            raise _Dropped
        return response

    def _route(self, verb: str, raw_path: str) -> tuple[discovery.Method | None, dict[str, str]]:
        for method in discovery.methods():
            if method.http_method != verb:
                continue
            match = method.pattern.match(raw_path)
            if match:
                return method, {k: unquote(v) for k, v in match.groupdict().items()}
        return None, {}

    def _fault_response(self, fault: _Fault, access: str) -> Response:
        if fault.status == 502:
            page = _HTML_ERROR.format(code=502, name="Server Error", text=(
                fault.message or "The server encountered a temporary error and could not "
                "complete your request.<p>Please try again in 30 seconds."))
            return Response(page, status=502, headers=fault.headers,
                            content_type="text/html; charset=UTF-8")
        if fault.status == 429:
            error = self._quota_error(access, per_user=True)
            if fault.message:
                error.message = fault.message
        else:
            message = fault.message or _DEFAULT_MESSAGES.get(fault.status, "Injected failure.")
            error = SheetsError(fault.status, message)
        return _json_response(error.body(), fault.status, fault.headers)

    def _authenticate(self, request: Request, access: str) -> str:
        header = request.headers.get("Authorization", "")
        if not header:
            raise SheetsError(401, _MISSING_CREDENTIALS, details=[self._error_info(
                "CREDENTIALS_MISSING")])
        scheme, _, token = header.partition(" ")
        record = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if record is None or record.expires_at <= self.clock():
            raise SheetsError(401, _INVALID_CREDENTIALS, details=[self._error_info(
                "ACCESS_TOKEN_TYPE_UNSUPPORTED" if record is None else "ACCESS_TOKEN_EXPIRED")])
        allowed = _READ_SCOPES if access == "read" else _WRITE_SCOPES
        if not record.scopes & allowed:
            raise SheetsError(403, "Request had insufficient authentication scopes.",
                              details=[self._error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT")])
        return record.email

    @staticmethod
    def _error_info(reason: str, metadata: dict[str, str] | None = None) -> Json:
        return {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": "sheets.googleapis.com", **(metadata or {})},
        }

    def _quota_error(self, access: str, *, per_user: bool) -> SheetsError:
        metric = "Read requests" if access == "read" else "Write requests"
        limit_name = f"{metric} per minute" + (" per user" if per_user else "")
        limit_value = (
            (self.reads_per_minute if per_user else self.project_reads_per_minute)
            if access == "read"
            else (self.writes_per_minute if per_user else self.project_writes_per_minute)
        )
        message = (
            f"Quota exceeded for quota metric '{metric}' and limit '{limit_name}' of service "
            f"'sheets.googleapis.com' for consumer 'project_number:{PROJECT_NUMBER}'."
        )
        info = self._error_info("RATE_LIMIT_EXCEEDED", {
            "quota_metric": f"sheets.googleapis.com/{access}_requests",
            "quota_limit": limit_name.title().replace(" ", ""),
            "quota_limit_value": str(limit_value),
            "quota_location": "global",
            "consumer": f"projects/{PROJECT_NUMBER}",
        })
        help_link = {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Request a higher quota limit.",
                       "url": "https://cloud.google.com/docs/quotas/help/request_increase"}],
        }
        return SheetsError(429, message, details=[info, help_link])

    def _admit(self, email: str, access: str) -> None:
        """Rolling 60 s window per user and per project; a refused call uses no quota."""
        now = self.clock()
        user = self._windows[(email, access)]
        project = self._windows[("*", access)]
        for window in (user, project):
            while window and now - window[0] >= WINDOW_SECONDS:
                window.popleft()
        user_limit = self.reads_per_minute if access == "read" else self.writes_per_minute
        project_limit = (self.project_reads_per_minute if access == "read"
                         else self.project_writes_per_minute)
        if len(user) >= user_limit:
            raise self._quota_error(access, per_user=True)
        if len(project) >= project_limit:
            raise self._quota_error(access, per_user=False)
        user.append(now)
        project.append(now)

    # method handlers ----------------------------------------------------------------------

    def _handle(self, method: discovery.Method, params: dict[str, str], request: Request,
                body: Any, email: str) -> Any:
        query = self._query(method, request)
        fields_tree = self._fields(method, query.get("fields"))
        if method.request is not None:
            root = "data" if method.id in ("spreadsheets.values.update",
                                           "spreadsheets.values.append") else ""
            violations, body = discovery.check(method.request, body or {}, root=root)
            if violations:
                raise SheetsError(400, "\n".join(v.description for v in violations), details=[{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": v.field, "description": v.description}
                                        for v in violations],
                }])
        handler = getattr(self, "_m_" + method.id.replace("spreadsheets", "").replace(".", "_"),
                          None)
        if handler is None:
            raise bad_request(f"fake: method {method.id} not implemented")
        book = self._spreadsheets.get(params["spreadsheetId"])
        if book is None:
            raise SheetsError(404, "Requested entity was not found.")
        role = book.shared_with.get(email)
        if role is None:
            raise SheetsError(403, "The caller does not have permission")
        if role != "writer" and method.http_method != "GET":
            # A Viewer reads; every change is refused with the same words as no share.
            raise SheetsError(403, "The caller does not have permission")
        result = handler(book, params, query, body or {}, fields_tree)
        return discovery.filter_fields(result, fields_tree)

    def _query(self, method: discovery.Method, request: Request) -> dict[str, Any]:
        """Check query parameters like Google's front end: unknown names and bad enum
        values are 400s. Returns name -> value (list for repeated parameters)."""
        specs = {name: spec for name, spec in method.parameters.items()
                 if spec.get("location") == "query"}
        specs.update(discovery.global_parameters())
        out: dict[str, Any] = {}
        for name in request.args:
            spec = specs.get(name)
            if spec is None:
                raise bad_request(
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                    f"parameter. Field '{name}' could not be found in request message."
                )
            values = request.args.getlist(name)
            for value in values:
                if "enum" in spec and value not in spec["enum"]:
                    raise bad_request(f"Invalid value at '{_snake(name)}' (TYPE_ENUM), \"{value}\"")
                if spec.get("type") == "boolean":
                    _bool_param(name, value)
            out[name] = values if spec.get("repeated") else values[-1]
        return out

    def _fields(self, method: discovery.Method, fields: str | None
                ) -> discovery.FieldTree | None:
        if not fields or method.response is None:
            return None
        try:
            tree = discovery.parse_field_mask(fields)
        except discovery.FieldMaskSyntaxError:
            raise self._fields_error(f"Invalid field selection {fields}", "fields") from None
        bad = discovery.unknown_field_paths(method.response, tree)
        if bad:
            raise self._fields_error(
                f"Error expanding 'fields' parameter. Cannot find matching fields for path "
                f"'{bad[0]}'.", bad[0])
        return tree

    @staticmethod
    def _fields_error(description: str, field_name: str) -> SheetsError:
        # Google hides the cause in the details and says only this in ``message``.
        return SheetsError(400, "Request contains an invalid argument.", details=[{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field_name, "description": description}],
        }])

    def _commit(self, book: Spreadsheet, work: Spreadsheet) -> None:
        self._spreadsheets[book.spreadsheet_id] = work

    def _m__get(self, book: Spreadsheet, params: dict[str, str], query: dict[str, Any],
                body: Json, fields_tree: discovery.FieldTree | None) -> Json:
        include_grid = _bool_param("includeGridData", query.get("includeGridData"))
        if fields_tree is not None:
            # "If a field mask is set, the includeGridData parameter is ignored": the mask
            # alone decides whether grid data comes back.
            sheets = fields_tree.get("sheets", {}) if "*" not in fields_tree else None
            include_grid = sheets is None or "data" in sheets or "*" in sheets
        if include_grid:
            unrendered = _unrendered_cell_field(fields_tree)
            if unrendered is not None:
                raise bad_request(f"fake: rendering CellData.{unrendered} not implemented")
        return spreadsheet_json(book, include_grid=include_grid, ranges=query.get("ranges"))

    def _m__batchUpdate(self, book: Spreadsheet, params: dict[str, str], query: dict[str, Any],
                        body: Json, fields_tree: discovery.FieldTree | None) -> Json:
        work, reply = batch_update(book, body, self._rng)
        self._commit(book, work)
        return reply

    @staticmethod
    def _input_option(value: str | None) -> str:
        if value not in ("RAW", "USER_ENTERED"):
            raise bad_request("Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED")
        return value

    def _m__values_update(self, book: Spreadsheet, params: dict[str, str],
                          query: dict[str, Any], body: Json,
                          fields_tree: discovery.FieldTree | None) -> Json:
        option = self._input_option(query.get("valueInputOption"))
        if _bool_param("includeValuesInResponse", query.get("includeValuesInResponse")):
            raise bad_request("fake: includeValuesInResponse not implemented")
        work = book.clone()
        reply = values_write(work, params["range"], body.get("values"), input_option=option,
                             major=_major(body.get("majorDimension")),
                             body_range=body.get("range"))
        self._commit(book, work)
        return reply

    def _m__values_clear(self, book: Spreadsheet, params: dict[str, str],
                         query: dict[str, Any], body: Json,
                         fields_tree: discovery.FieldTree | None) -> Json:
        work = book.clone()
        cleared = values_clear(work, params["range"])
        self._commit(book, work)
        return {"spreadsheetId": book.spreadsheet_id, "clearedRange": cleared}


def _unrendered_cell_field(tree: discovery.FieldTree | None) -> str | None:
    """A CellData field the read would return that the fake does not compute ("*" when the
    mask lets every field through), or None. Answering without it would look like Google
    leaving it out, so such reads are refused instead."""
    node = tree
    for name in ("sheets", "data", "rowData", "values"):
        if node is None or "*" in node:
            return "*"
        if name not in node:
            return None
        node = node[name]
    if node is None or "*" in node:
        return "*"
    return next((name for name in sorted(node) if name not in RENDERED_CELL_FIELDS), None)


def _major(value: str | None) -> str:
    return "COLUMNS" if value == "COLUMNS" else "ROWS"


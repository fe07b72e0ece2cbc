"""A fake of the one Drive call the add-on makes: ``POST /drive/v3/files/{id}/permissions``.

It enforces what Google does: the bearer token must be a person's token the test issued
(401 otherwise); only that person's editors role on the file lets them share (403
``insufficientFilePermissions`` for a reader or commenter); a file whose domain forbids
sharing outside answers 403 ``shareOutNotPermitted``; the body and query are checked
field by field (a typo is a 400). A successful share makes the Sheets fake let that
address write (``FakeSheetsServer.share``), and repeating it returns the same permission.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.sheets_api import FakeSheetsServer

_PATH = re.compile(r"^/drive/v3/files/(?P<file>[A-Za-z0-9_-]+)/permissions$")
_QUERY = {"sendNotificationEmail", "supportsAllDrives", "fields", "emailMessage",
          "transferOwnership", "moveToNewOwnersRoot", "useDomainAdminAccess"}
_BODY = {"role", "type", "emailAddress"}
_ROLES = {"owner", "organizer", "fileOrganizer", "writer", "commenter", "reader"}


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _error(status: int, reason: str, message: str) -> Response:
    body = {"error": {"code": status, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}
    return Response(json.dumps(body), status, content_type="application/json")


class FakeDriveServer:
    def __init__(self, sheets: FakeSheetsServer) -> None:
        self.sheets = sheets
        self.latency = 0.0
        self.calls: list[dict[str, Any]] = []
        self._roles: dict[tuple[str, str], str] = {}  # (file id, token) -> role
        self._locked_domains: set[str] = set()
        self._permissions: dict[tuple[str, str], str] = {}  # (file, email) -> id
        self._lock = threading.Lock()
        self._server: Any = None
        # Statuses to answer instead, after applying the share (the answer was lost).
        self._lost_answers: list[int] = []

    # -- test-side state --

    def person(self, token: str, file_id: str, role: str) -> None:
        """The person whose OAuth token this is has ``role`` on the file."""
        self._roles[(file_id, token)] = role

    def forbid_outside_sharing(self, file_id: str) -> None:
        self._locked_domains.add(file_id)

    def lose_next_answer(self, status: int = 503) -> None:
        """Apply the next share, then answer ``status`` as if the reply never arrived."""
        self._lost_answers.append(status)

    def shares(self, file_id: str) -> list[str]:
        return sorted(email for (f, email) in self._permissions if f == file_id)

    # -- HTTP --

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def _answer(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if match is None or request.method != "POST":
            return _error(404, "notFound", "fake: not implemented")
        file_id = match.group("file")
        unknown = set(request.args) - _QUERY
        if unknown:
            return _error(400, "invalidParameter", f"Unknown parameter: {sorted(unknown)[0]}")
        if request.args.get("sendNotificationEmail") != "false":
            # The product promises no e-mail to the service account: hold it to that.
            return _error(400, "fake", "fake: sendNotificationEmail=false expected")
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        known = {t for (_f, t) in self._roles}
        if token not in known:
            return _error(401, "authError", "Invalid Credentials")
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            return _error(400, "parseError", "Parse Error")
        if not isinstance(body, dict) or set(body) - _BODY:
            return _error(400, "invalid", "Invalid field in the permission")
        if body.get("role") not in _ROLES or body.get("type") != "user" or not isinstance(
            body.get("emailAddress"), str
        ):
            return _error(400, "invalid", "Invalid permission")
        role = self._roles.get((file_id, token))
        if role is None:
            return _error(404, "notFound", f"File not found: {file_id}.")
        if role not in ("owner", "writer", "organizer", "fileOrganizer"):
            return _error(403, "insufficientFilePermissions",
                          "The user does not have sufficient permissions for this file.")
        if file_id in self._locked_domains:
            return _error(403, "shareOutNotPermitted",
                          "Bad Request. User message: \"You cannot share this item outside "
                          "of your domain.\"")
        email = body["emailAddress"].lower()
        with self._lock:
            fresh = f"perm-{len(self._permissions) + 1}"
            permission_id = self._permissions.setdefault((file_id, email), fresh)
        self.sheets.share(file_id, email, body["role"])
        payload = {"kind": "drive#permission", "id": permission_id, "type": "user",
                   "role": body["role"], "emailAddress": email}
        if self._lost_answers:
            return _error(self._lost_answers.pop(0), "backendError", "Backend Error")
        fields = request.args.get("fields")
        if fields:
            wanted = {f.strip() for f in fields.split(",")}
            payload = {k: v for k, v in payload.items() if k in wanted}
        return Response(json.dumps(payload), 200, content_type="application/json")

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if self.latency:
            time.sleep(self.latency)
        response = self._answer(request)
        with self._lock:
            self.calls.append({"path": request.path, "status": response.status_code})
        return response(environ, start_response)

    def start(self) -> FakeDriveServer:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True,
                                   request_handler=_Quiet)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""The app's own error pages: every 4xx/5xx a person can meet (400, 404, 405, 413, 429,
500, a failed CSRF check) is ``templates/error.html``; under ``/api/`` and for the
page's fetch() calls it is the API's JSON error body. Never Werkzeug's default page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .users import wants_json

log = logging.getLogger(__name__)

_TITLES = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    401: ("Sign in", "Sign in to see this page."),
    403: ("Not allowed", "You are not allowed to do that."),
    404: ("Not found", "There is nothing here, or it belongs to another account."),
    405: ("Not allowed here", "This address does not take that kind of request."),
    413: ("Too large", "What was sent is larger than this server accepts."),
    429: ("Too many requests", "Too many requests in a short time; wait a little and retry."),
    500: ("Something went wrong", "Something went wrong on our side. Try again in a moment."),
}
_CODES = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited",
    500: "internal_error",
}


def error_answer(status: int, message: str | None = None, headers: Any = None) -> Any:
    title, default = _TITLES.get(status, ("Error", "That did not work."))
    text = message or default
    if request.path.startswith("/api/") or wants_json():
        body = {"error": {"code": _CODES.get(status, "http_error"), "message": text}}
        return jsonify(body), status, headers or {}
    return render_template("error.html", title=title, message=text), status, headers or {}


def install_error_pages(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        # Werkzeug's descriptions are written for developers; ours say what to do.
        return error_answer(status, None, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):  # pragma: no cover - handled above
            return _http(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_answer(InternalServerError.code)

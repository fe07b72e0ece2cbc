"""``/internal/cron/run-due``: run due syncs from a scheduler outside the app.

For platforms without long-running workers (App Engine standard): ``cron.yaml`` calls it
every minute. Authorized by ``Authorization: Bearer $SHEETS_SYNC_CRON_TOKEN`` (compared in
constant time), or by App Engine's ``X-Appengine-Cron: true`` header, which App Engine
strips from outside requests, so it is trusted only when the app runs on App Engine
(``GAE_ENV`` starts with ``standard``). With neither a token nor App Engine the endpoint
does not exist (404). App Engine cron sends GET, so GET is accepted there too; elsewhere
only POST (a GET must not start work).
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

from flask import Blueprint, abort, jsonify, request

from sheets_sync.jobs.worker import run_due

from .users import runtime

bp = Blueprint("cron", __name__, url_prefix="/internal/cron")
log = logging.getLogger("sheets_sync.cron")

CRON_CONCURRENCY = 4


def on_app_engine() -> bool:
    return os.environ.get("GAE_ENV", "").startswith("standard")


def _authorized(token: str | None) -> bool:
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    return on_app_engine() and request.headers.get("X-Appengine-Cron") == "true"


@bp.route("/run-due", methods=["GET", "POST"])
def run_due_endpoint() -> Any:
    rt = runtime()
    token = rt.settings.cron_token
    if not token and not on_app_engine():
        abort(404)
    if request.method == "GET" and not on_app_engine():
        abort(405)
    if not _authorized(token):
        return jsonify({"error": {"code": "unauthorized", "message": "Not allowed."}}), 401
    result = run_due(rt, max_seconds=rt.settings.cron_max_seconds, concurrency=CRON_CONCURRENCY)
    log.info(
        "cron run-due queued=%s ran=%s succeeded=%s failed=%s seconds=%s",
        result["queued"], result["ran"], result["succeeded"], result["failed"], result["seconds"],
    )
    return jsonify(result)

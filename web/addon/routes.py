"""The add-on's status side: the homepage, Refresh now, giving the service account
access, and the link to a web account (HTTP runtime: Google POSTs an event, we answer a
card).

The open spreadsheet scopes what is seen (every connection of it, whoever owns it); the
verified person what may change (``connect`` has the owner's actions). Refreshes go
through the same run queue as the web page's Refresh, with ``trigger`` "addon".
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from sheets_sync import store
from sheets_sync.errors import SyncError, scrub
from sheets_sync.pipeline.drive import DriveShareRefused
from sheets_sync.store import identities
from sheets_sync.store.models import Connection, User
from sheets_sync.store.sheet_connections import (
    connections_for_spreadsheet,
    get_spreadsheet_connection,
)

from .. import present
from ..users import db_session, runtime, write_session
from . import cards
from .form import form_card, form_defaults
from .guard import base_url, current_event, current_person, current_user_id, drive, protect, urls
from .link_codes import link_code
from .views import connection_view, share_address

bp = Blueprint("addon", __name__, url_prefix="/addon")
protect(bp)

NOT_IN_THIS_SPREADSHEET = "That connection is not in this spreadsheet (it may have been deleted)."


def views(spreadsheet_id: str, user_id: int,
           access: dict[int, tuple[bool, str]] | None = None) -> list[cards.ConnectionView]:
    rt = runtime()
    now = rt.clock()
    with db_session() as s:
        found = [
            connection_view(s, rt, c, user_id, now)
            for c in connections_for_spreadsheet(s, spreadsheet_id)
        ]
    for view in found:
        outcome = (access or {}).get(view.id)
        if outcome is not None:
            if outcome[0]:
                view.share_ok = outcome[1]
            else:
                view.share_problem = outcome[1]
    return found


def home_card(*, message: str | None = None,
               access: dict[int, tuple[bool, str]] | None = None) -> dict[str, Any]:
    event = current_event()
    user_id, sidebar_only = current_user_id()
    if event.spreadsheet_id is None:
        return cards.intro_card(urls(), has_file_access=False, message=message,
                                offer_link=sidebar_only)
    shown = views(event.spreadsheet_id, user_id, access)
    if not shown:
        return cards.intro_card(urls(), has_file_access=True, message=message,
                                offer_link=sidebar_only)
    return cards.status_card(urls(), shown, offer_link=sidebar_only, message=message)


@bp.post("/homepage")
def homepage() -> Any:
    return jsonify(cards.push(home_card()))


@bp.post("/connections/status")
def status() -> Any:
    return jsonify(cards.update(home_card()))


# --- giving the service account access --------------------------------------------------


def _give_access(connection_id: int) -> tuple[bool, str]:
    """Share the open spreadsheet with the connection's address, as the person."""
    rt = runtime()
    event = current_event()
    with db_session() as s:
        connection = get_spreadsheet_connection(s, event.spreadsheet_id or "", connection_id)
        address = share_address(rt, connection)
        spreadsheet_id = connection.spreadsheet_id
    if not address:
        return False, (
            "sheets-sync has no Google service account set up yet "
            "(GOOGLE_APPLICATION_CREDENTIALS): tell whoever runs it."
        )
    try:
        drive().add_writer(spreadsheet_id, address, event.user_oauth_token)
    except DriveShareRefused as exc:
        # Shared by hand already? Then nothing is missing.
        try:
            rt.sheets().check_access(spreadsheet_id)
        except SyncError:
            return False, (
                f"{exc.message} Ask an editor of this spreadsheet to open sheets-sync here "
                "and press Give access, or to share it with the address below."
            )
        return True, f"{address} already has access: refreshes work."
    except SyncError as exc:
        return False, scrub(exc.message, (event.user_oauth_token,))
    return True, (
        f"Shared with {address} as Editor: refreshes work, even when nobody has the "
        "spreadsheet open."
    )


def _queue(connection_id: int) -> bool:
    rt = runtime()
    with write_session() as s:
        spreadsheet_id = current_event().spreadsheet_id or ""
        connection = get_spreadsheet_connection(s, spreadsheet_id, connection_id)
        _run, created = store.enqueue_run(s, connection, "addon", now=rt.clock())
    rt.notify_enqueued()
    return created


def _first_refresh_due(connection_id: int) -> bool:
    with db_session() as s:
        connection = s.get(Connection, connection_id)
        return connection is not None and store.last_run(s, connection) is None


def share_and_start(connection_ids: list[int]) -> dict[int, tuple[bool, str]]:
    results: dict[int, tuple[bool, str]] = {}
    for cid in connection_ids:
        results[cid] = _give_access(cid)
        if results[cid][0] and _first_refresh_due(cid):
            _queue(cid)
            results[cid] = (True, results[cid][1] + " The first refresh has started.")
    return results


@bp.post("/file-scope-granted")
def file_scope_granted() -> Any:
    event = current_event()
    if event.spreadsheet_id is None:
        return jsonify(cards.update(home_card()))
    user_id, _ = current_user_id()
    with db_session() as s:
        mine = [
            c.id for c in connections_for_spreadsheet(s, event.spreadsheet_id)
            if c.user_id == user_id
        ]
        any_connection = bool(mine) or bool(connections_for_spreadsheet(s, event.spreadsheet_id))
    if not any_connection:
        return jsonify(cards.update(form_card(form_defaults())))
    return jsonify(cards.update(home_card(access=share_and_start(mine))))


@bp.post("/connections/share")
def share() -> Any:
    event = current_event()
    if not event.has_file_scope or not event.user_oauth_token:
        return jsonify(cards.request_file_scope())
    try:
        result = share_and_start([connection_param()])
    except store.NotFound:
        return jsonify(cards.update(home_card(), NOT_IN_THIS_SPREADSHEET))
    return jsonify(cards.update(home_card(access=result)))


# --- Refresh now ------------------------------------------------------------------------


def connection_param() -> int:
    raw = current_event().param("connection_id")
    if not raw.isdigit() or len(raw) > 10:
        raise store.NotFound("connection")
    return int(raw)


@bp.post("/connections/refresh")
def refresh() -> Any:
    try:
        created = _queue(connection_param())
    except store.NotFound:
        return jsonify(cards.update(home_card(), NOT_IN_THIS_SPREADSHEET))
    note = "Refresh queued." if created else "Already refreshing."
    return jsonify(cards.update(home_card(), note))


# --- the connect form -------------------------------------------------------------------


@bp.post("/link")
def link() -> Any:
    user_id, _ = current_user_id()
    with write_session() as s:
        user = s.get(User, user_id)
        assert user is not None
        token, expires = identities.create_link_token(s, user, now=runtime().clock())
    url = f"{base_url()}/link-google/{token}"
    expires_text = present.utc_text(expires)
    card = cards.link_card(urls(), url, link_code(token), current_person().email, expires_text)
    return jsonify(cards.update(card))

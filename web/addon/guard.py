"""What every add-on request goes through before its view runs.

1. the bearer system ID token is Google's, for this exact URL and the deployment's
   service account, else 401 (no body detail, nothing changed);
2. the event's ``userIdToken`` names the person (audience: the OAuth client id), else 401.

The add-on's blueprints are registered only when ``SHEETS_SYNC_ADDON_SERVICE_ACCOUNT`` is
set (``web.create_app``), and the guard checks it again. ``protect`` installs the guard,
the per-app verifier and Drive client, and the handler that turns our own failures into
a card. The view helpers (``current_event``, ``current_person``, ``current_user_id``,
``urls``) read what the guard verified.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from sheets_sync.pipeline.drive import DriveClient
from sheets_sync.store import identities

from ..users import db_session, runtime, write_session
from . import cards
from .cards import Urls
from .events import BadEvent, Event, parse_event
from .tokens import CertsUnavailable, Person, TokenRefused, TokenVerifier

log = logging.getLogger(__name__)

LOCAL_BASE_URL = "http://127.0.0.1:8000"


def protect(bp: Blueprint) -> None:
    bp.record_once(_setup)
    bp.before_request(_only_google)
    bp.register_error_handler(Exception, _our_bug)


def _setup(state: BlueprintSetupState) -> None:
    settings = state.app.extensions["sheets_sync"].settings
    state.app.extensions.setdefault("addon_tokens", TokenVerifier(settings.google_certs_url))
    state.app.extensions.setdefault(
        "addon_drive", DriveClient(settings.drive_api_url, timeout=settings.http_timeout)
    )


def verifier() -> TokenVerifier:
    return current_app.extensions["addon_tokens"]


def drive() -> DriveClient:
    return current_app.extensions["addon_drive"]


def base_url() -> str:
    return (runtime().settings.public_url or LOCAL_BASE_URL).rstrip("/")


def urls() -> Urls:
    return Urls(base_url())


def _refused() -> Any:
    body = {"error": {"code": "unauthorized", "message": "This endpoint answers Google only."}}
    return jsonify(body), 401


def _only_google() -> Any:
    settings = runtime().settings
    if not settings.addon_service_account:
        abort(404)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refused()
    try:
        verifier().system(
            token.strip(),
            audience=base_url() + request.path,
            service_account=settings.addon_service_account,
        )
    except TokenRefused as exc:
        log.info("add-on request refused path=%s reason=%s", request.path, exc)
        return _refused()
    except CertsUnavailable as exc:
        # Not the caller's fault, and nothing could be checked: refuse, but say it is us.
        log.warning("add-on: cannot fetch Google's certs from %s (%s)",
                    settings.google_certs_url, exc)
        body = {"error": {"code": "unavailable", "message": "Try again in a minute."}}
        return jsonify(body), 503
    try:
        event = parse_event(request.get_json(silent=True))
    except BadEvent as exc:
        return jsonify({"error": {"code": "bad_event", "message": str(exc)}}), 400
    client_id = settings.addon_oauth_client_id
    if not client_id:
        log.error("add-on: SHEETS_SYNC_ADDON_OAUTH_CLIENT_ID is not set; cannot tell who asks")
        return _refused()
    try:
        person = verifier().person(event.user_id_token, client_id=client_id)
    except (TokenRefused, CertsUnavailable) as exc:
        log.info("add-on userIdToken refused path=%s reason=%s", request.path, exc)
        return _refused()
    g.addon_event = event
    g.addon_person = person
    return None


def _our_bug(exc: Exception) -> Any:
    """A card that says so, instead of Google's "could not load": the details go to the
    log only (an HTTP error such as a 404 from ``abort`` passes through unchanged)."""
    if isinstance(exc, HTTPException):
        return exc
    log.exception("add-on request failed path=%s", request.path)
    card = cards.message_card(
        urls(), "Something went wrong on our side. Try again in a minute; if it keeps "
        "happening, tell whoever runs sheets-sync."
    )
    body = cards.push(card) if request.path.endswith("/homepage") else cards.update(card)
    return jsonify(body), 200


def current_event() -> Event:
    event: Event = g.addon_event
    return event


def current_person() -> Person:
    person: Person = g.addon_person
    return person


def current_user_id() -> tuple[int, bool]:
    """The person's account id (made on the first visit) and whether it is sidebar-only,
    looked up once per request."""
    if "addon_user" not in g:
        g.addon_user = _lookup_user(current_person())
    found: tuple[int, bool] = g.addon_user
    return found


def _lookup_user(person: Person) -> tuple[int, bool]:
    with db_session() as s:
        identity = identities.find_google_identity(s, person.sub)
        if identity is not None and identity.email == person.email:
            return identity.user_id, identities.is_sidebar_account(identity.user)
    # First visit (or Google's e-mail changed): a unit that writes.
    with write_session() as s:
        user = identities.google_user(s, person.sub, person.email)
        return user.id, identities.is_sidebar_account(user)


# --- the status card --------------------------------------------------------------------

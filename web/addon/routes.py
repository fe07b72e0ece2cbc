"""The Sheets add-on's endpoints (HTTP runtime): Google POSTs an event, we answer a card.

Order of business for every request, before anything else happens:

1. the add-on is on (``SHEETS_SYNC_ADDON_SERVICE_ACCOUNT``), else 404;
2. the bearer system ID token is Google's, for this exact URL and the deployment's
   service account, else 401 (no body detail, nothing changed);
3. the event's ``userIdToken`` names the person (audience: the OAuth client id), else 401.

Then the open spreadsheet scopes what is seen (every connection of it, whoever owns
it) and the verified person what may change (only their own connections). Refreshes go
through the same run queue as the web page's Refresh, with ``trigger`` "addon".
"""

from __future__ import annotations

import json
import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import InvalidToken
from flask import Blueprint, abort, current_app, g, jsonify, request
from flask.sansio.blueprints import BlueprintSetupState
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from sheets_sync import store
from sheets_sync.connection_rules import TIMED_SCHEDULES
from sheets_sync.errors import InvalidInput, SyncError, scrub
from sheets_sync.links import spreadsheet_link
from sheets_sync.pipeline.drive import DriveClient, DriveShareRefused
from sheets_sync.store import identities
from sheets_sync.store import secrets as crypto
from sheets_sync.store.models import Connection, User
from sheets_sync.store.sheet_connections import (
    connections_for_spreadsheet,
    get_spreadsheet_connection,
    pause_connection,
)

from .. import present
from ..users import db_session, runtime, write_session
from . import cards
from .cards import FormValues, Urls
from .events import BadEvent, Event, parse_event
from .link_codes import link_code
from .tokens import CertsUnavailable, Person, TokenRefused, TokenVerifier
from .views import connection_view, share_address

log = logging.getLogger(__name__)

bp = Blueprint("addon", __name__, url_prefix="/addon")

LOCAL_BASE_URL = "http://127.0.0.1:8000"
KEY_TOKEN_SECONDS = 3600
NOT_IN_THIS_SPREADSHEET = "That connection is not in this spreadsheet (it may have been deleted)."
OWNER_ONLY = "Only the person who set this connection up can change it."


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    settings = state.app.extensions["sheets_sync"].settings
    state.app.extensions.setdefault("addon_tokens", TokenVerifier(settings.google_certs_url))
    state.app.extensions.setdefault(
        "addon_drive", DriveClient(settings.drive_api_url, timeout=settings.http_timeout)
    )


def _verifier() -> TokenVerifier:
    return current_app.extensions["addon_tokens"]


def _drive() -> DriveClient:
    return current_app.extensions["addon_drive"]


def base_url() -> str:
    return (runtime().settings.public_url or LOCAL_BASE_URL).rstrip("/")


def _urls() -> Urls:
    return Urls(base_url())


def _refused() -> Any:
    body = {"error": {"code": "unauthorized", "message": "This endpoint answers Google only."}}
    return jsonify(body), 401


@bp.before_request
def _only_google() -> Any:
    settings = runtime().settings
    if not settings.addon_service_account:
        abort(404)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refused()
    try:
        _verifier().system(
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
        person = _verifier().person(event.user_id_token, client_id=client_id)
    except (TokenRefused, CertsUnavailable) as exc:
        log.info("add-on userIdToken refused path=%s reason=%s", request.path, exc)
        return _refused()
    g.addon_event = event
    g.addon_person = person
    return None


@bp.errorhandler(Exception)
def _our_bug(exc: Exception) -> Any:
    """A card that says so, instead of Google's "could not load": the details go to the
    log only (an HTTP error such as a 404 from ``abort`` passes through unchanged)."""
    if isinstance(exc, HTTPException):
        return exc
    log.exception("add-on request failed path=%s", request.path)
    card = cards.message_card(
        _urls(), "Something went wrong on our side. Try again in a minute; if it keeps "
        "happening, tell whoever runs sheets-sync."
    )
    body = cards.push(card) if request.path.endswith("/homepage") else cards.update(card)
    return jsonify(body), 200


def _event() -> Event:
    event: Event = g.addon_event
    return event


def _person() -> Person:
    person: Person = g.addon_person
    return person


def _user_id() -> tuple[int, bool]:
    """The person's account id (made on the first visit) and whether it is sidebar-only,
    looked up once per request."""
    if "addon_user" not in g:
        g.addon_user = _lookup_user(_person())
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


def _views(spreadsheet_id: str, user_id: int,
           access: dict[int, tuple[bool, str]] | None = None) -> list[cards.ConnectionView]:
    rt = runtime()
    now = rt.clock()
    with db_session() as s:
        views = [
            connection_view(s, rt, c, user_id, now)
            for c in connections_for_spreadsheet(s, spreadsheet_id)
        ]
    for view in views:
        outcome = (access or {}).get(view.id)
        if outcome is not None:
            if outcome[0]:
                view.share_ok = outcome[1]
            else:
                view.share_problem = outcome[1]
    return views


def _home_card(*, message: str | None = None,
               access: dict[int, tuple[bool, str]] | None = None) -> dict[str, Any]:
    event = _event()
    user_id, sidebar_only = _user_id()
    if event.spreadsheet_id is None:
        return cards.intro_card(_urls(), has_file_access=False, message=message,
                                offer_link=sidebar_only)
    views = _views(event.spreadsheet_id, user_id, access)
    if not views:
        return cards.intro_card(_urls(), has_file_access=True, message=message,
                                offer_link=sidebar_only)
    return cards.status_card(_urls(), views, offer_link=sidebar_only, message=message)


@bp.post("/homepage")
def homepage() -> Any:
    return jsonify(cards.push(_home_card()))


@bp.post("/connections/status")
def status() -> Any:
    return jsonify(cards.update(_home_card()))


# --- giving the service account access --------------------------------------------------


def _give_access(connection_id: int) -> tuple[bool, str]:
    """Share the open spreadsheet with the connection's address, as the person."""
    rt = runtime()
    event = _event()
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
        _drive().add_writer(spreadsheet_id, address, event.user_oauth_token)
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
        connection = get_spreadsheet_connection(s, _event().spreadsheet_id or "", connection_id)
        _run, created = store.enqueue_run(s, connection, "addon", now=rt.clock())
    rt.notify_enqueued()
    return created


def _first_refresh_due(connection_id: int) -> bool:
    with db_session() as s:
        connection = s.get(Connection, connection_id)
        return connection is not None and store.last_run(s, connection) is None


def _share_and_start(connection_ids: list[int]) -> dict[int, tuple[bool, str]]:
    results: dict[int, tuple[bool, str]] = {}
    for cid in connection_ids:
        results[cid] = _give_access(cid)
        if results[cid][0] and _first_refresh_due(cid):
            _queue(cid)
            results[cid] = (True, results[cid][1] + " The first refresh has started.")
    return results


@bp.post("/file-scope-granted")
def file_scope_granted() -> Any:
    event = _event()
    if event.spreadsheet_id is None:
        return jsonify(cards.update(_home_card()))
    user_id, _ = _user_id()
    with db_session() as s:
        mine = [
            c.id for c in connections_for_spreadsheet(s, event.spreadsheet_id)
            if c.user_id == user_id
        ]
        any_connection = bool(mine) or bool(connections_for_spreadsheet(s, event.spreadsheet_id))
    if not any_connection:
        return jsonify(cards.update(_form_card(_defaults())))
    return jsonify(cards.update(_home_card(access=_share_and_start(mine))))


@bp.post("/connections/share")
def share() -> Any:
    event = _event()
    if not event.has_file_scope or not event.user_oauth_token:
        return jsonify(cards.request_file_scope())
    try:
        result = _share_and_start([_connection_param()])
    except store.NotFound:
        return jsonify(cards.update(_home_card(), NOT_IN_THIS_SPREADSHEET))
    return jsonify(cards.update(_home_card(access=result)))


# --- Refresh now ------------------------------------------------------------------------


def _connection_param() -> int:
    raw = _event().param("connection_id")
    if not raw.isdigit() or len(raw) > 10:
        raise store.NotFound("connection")
    return int(raw)


@bp.post("/connections/refresh")
def refresh() -> Any:
    try:
        created = _queue(_connection_param())
    except store.NotFound:
        return jsonify(cards.update(_home_card(), NOT_IN_THIS_SPREADSHEET))
    note = "Refresh queued." if created else "Already refreshing."
    return jsonify(cards.update(_home_card(), note))


# --- the connect form -------------------------------------------------------------------


def _timezone() -> str:
    zone = _event().timezone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return zone


def _defaults() -> FormValues:
    title = _event().spreadsheet_title.strip()
    return FormValues(name=(title or "Instantly steps")[:120])


def _form_card(values: FormValues, **kwargs: Any) -> dict[str, Any]:
    return cards.connect_form_card(_urls(), values, timezone=_timezone(), **kwargs)


def _typed_values() -> FormValues:
    event = _event()
    defaults = _defaults()
    return FormValues(
        name=event.value("name") or defaults.name,
        worksheet_title=event.value("worksheet_title") or defaults.worksheet_title,
        campaign_ids=event.values("campaign_ids"),
        date_preset=event.value("date_preset") or defaults.date_preset,
        schedule=event.value("schedule") or defaults.schedule,
        schedule_time=event.value("schedule_time"),
        connection_id=event.param("connection_id"),
    )


def _seal_key(key: str) -> str:
    data = {"k": key, "u": _person().sub, "s": _event().spreadsheet_id or ""}
    return runtime().fernet.encrypt(json.dumps(data).encode()).decode()


def _unseal_key(token: str) -> str | None:
    if not token:
        return None
    try:
        data = json.loads(runtime().fernet.decrypt(token.encode(), ttl=KEY_TOKEN_SECONDS))
    except (InvalidToken, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("u") != _person().sub:
        return None
    if data.get("s") != (_event().spreadsheet_id or ""):
        return None
    key = data.get("k")
    return key if isinstance(key, str) else None


def _typed_key() -> str | None:
    return _event().value("instantly_api_key") or _unseal_key(_event().param("key_token"))


def _check_key(key: str, values: FormValues) -> tuple[list[tuple[str, str]] | None, Any]:
    """The workspace's campaigns, or the form again saying what to do (key dropped)."""
    try:
        found = runtime().instantly(key).list_campaigns()
    except SyncError as exc:
        values.key_token = values.key_hint = ""
        error = f"{scrub(exc.message, (key,))} Type the key again."
        return None, _form_card(values, error=error, campaigns=None)
    campaigns = sorted(((c.id, c.name) for c in found), key=lambda c: c[1].lower())
    values.key_token = _seal_key(key)
    values.key_hint = crypto.key_hint(key)
    return campaigns, None


@bp.post("/connect/start")
def connect_start() -> Any:
    event = _event()
    if not event.has_file_scope or event.spreadsheet_id is None:
        return jsonify(cards.request_file_scope())
    return jsonify(cards.update(_form_card(_defaults())))


@bp.post("/connect/form")
def connect_form() -> Any:
    return connect_start()


@bp.post("/connect/check-key")
def check_key() -> Any:
    values = _typed_values()
    key = _typed_key()
    if not key:
        return jsonify(cards.update(_form_card(values, error="Type the Instantly API key.")))
    campaigns, failed = _check_key(key, values)
    if failed is not None:
        return jsonify(cards.update(failed))
    count = len(campaigns or [])
    message = f"The key works: {count} campaign{'s' if count != 1 else ''} in this workspace."
    return jsonify(cards.update(_form_card(values, campaigns=campaigns, message=message)))


def _connection_fields(values: FormValues) -> dict[str, Any]:
    timed = values.schedule in TIMED_SCHEDULES
    fields: dict[str, Any] = {
        "name": values.name,
        "worksheet_title": values.worksheet_title,
        "campaign_ids": values.campaign_ids,
        "schedule": values.schedule,
        "schedule_time": (values.schedule_time or "08:00") if timed else None,
        "schedule_weekday": 0 if values.schedule == "weekly" else None,
        "timezone": _timezone(),
    }
    if values.date_preset != cards.CUSTOM_DATES:
        fields["date_range"] = {"preset": values.date_preset}
    return fields


def _tab_is_free(s: Session, spreadsheet_id: str, title: str) -> None:
    """Two connections writing one tab would overwrite each other (and a double press of
    Connect would make two): refuse, naming the one already there."""
    wanted = title.strip().casefold()
    for other in connections_for_spreadsheet(s, spreadsheet_id):
        if other.worksheet_title.strip().casefold() == wanted:
            raise InvalidInput(
                f"The tab “{other.worksheet_title}” is already written by the connection "
                f"“{other.name}”. Choose another tab name."
            )


@bp.post("/connect/save")
def connect_save() -> Any:
    event = _event()
    if event.spreadsheet_id is None:
        return jsonify(cards.request_file_scope())
    values = _typed_values()
    if values.connection_id:
        return _save_edit(values)
    key = _typed_key()
    if not key:
        return jsonify(cards.update(_form_card(values, error="Type the Instantly API key.")))
    campaigns, failed = _check_key(key, values)
    if failed is not None:
        return jsonify(cards.update(failed))
    user_id, _ = _user_id()
    try:
        with write_session() as s:
            _tab_is_free(s, event.spreadsheet_id, values.worksheet_title)
            user = s.get(User, user_id)
            assert user is not None
            created = store.create_connection(
                s, user, fernet=runtime().fernet, instantly_api_key=key,
                spreadsheet_url=spreadsheet_link(event.spreadsheet_id),
                **_connection_fields(values),
            )
            connection_id = created.id
    except InvalidInput as exc:
        return jsonify(cards.update(_form_card(values, campaigns=campaigns, error=exc.message)))
    if not event.has_file_scope or not event.user_oauth_token:
        # Google shows its access prompt; once granted it calls file-scope-granted, which
        # shares the spreadsheet and starts the first refresh.
        return jsonify(cards.request_file_scope())
    results = _share_and_start([connection_id])
    return jsonify(cards.update(_home_card(access=results), "Connected."))


# --- the owner's changes ----------------------------------------------------------------


def _owned(s: Session, user_id: int) -> Connection:
    """This spreadsheet's connection named in the action, if the person owns it."""
    connection = get_spreadsheet_connection(s, _event().spreadsheet_id or "", _connection_param())
    if connection.user_id != user_id:
        raise PermissionError(OWNER_ONLY)
    return connection


def _owner_action(change: Any) -> Any:
    user_id, _ = _user_id()
    try:
        with write_session() as s:
            connection = _owned(s, user_id)
            user = s.get(User, user_id)
            assert user is not None
            note = change(s, user, connection)
    except store.NotFound:
        return jsonify(cards.update(_home_card(), NOT_IN_THIS_SPREADSHEET))
    except PermissionError:
        return jsonify(cards.update(_home_card(), OWNER_ONLY))
    if isinstance(note, dict):
        return jsonify(note)
    return jsonify(cards.update(_home_card(), note))


@bp.post("/connections/edit")
def edit() -> Any:
    def form(s: Session, user: User, c: Connection) -> Any:
        values = FormValues(
            name=c.name, worksheet_title=c.worksheet_title,
            campaign_ids=list(c.campaign_ids or []),
            # Dates set on the web page (start to end) stay as they are unless changed.
            date_preset=(c.date_range or {}).get("preset", cards.CUSTOM_DATES),
            schedule=c.schedule, schedule_time=c.schedule_time or "08:00",
            connection_id=str(c.id),
        )
        return cards.update(_form_card(values, campaigns=_known_campaigns(c)))

    return _owner_action(form)


def _known_campaigns(connection: Connection) -> list[tuple[str, str]]:
    """The connection's campaigns with the names its last refresh saw (no Instantly call)."""
    cache = (connection.options or {}).get("campaign_cache") or {}
    out = []
    for campaign_id in connection.campaign_ids or []:
        entry = cache.get(campaign_id) if isinstance(cache, dict) else None
        name = ((entry or {}).get("campaign") or {}).get("name") if isinstance(
            entry, dict) else None
        out.append((campaign_id, str(name) if name else campaign_id))
    return out


def _save_edit(values: FormValues) -> Any:
    key = _typed_key()
    campaigns = None
    if key:
        campaigns, failed = _check_key(key, values)
        if failed is not None:
            return jsonify(cards.update(failed))
    fields = _connection_fields(values)
    if key:
        fields["instantly_api_key"] = key

    def save(s: Session, user: User, c: Connection) -> Any:
        # What the form does not show stays as it is: the time zone the schedule was set
        # in, a weekly schedule's day.
        fields.pop("timezone", None)
        if c.schedule == "weekly":
            fields.pop("schedule_weekday", None)
        try:
            store.update_connection(s, user, c.id, fernet=runtime().fernet, **fields)
        except InvalidInput as exc:
            return cards.update(_form_card(values, campaigns=campaigns, error=exc.message))
        return "Saved."

    return _owner_action(save)


@bp.post("/connections/pause")
def pause() -> Any:
    def do(s: Session, user: User, c: Connection) -> str:
        pause_connection(s, user, c.id)
        return "Scheduled refreshes paused."

    return _owner_action(do)


@bp.post("/connections/resume")
def resume() -> Any:
    def do(s: Session, user: User, c: Connection) -> str:
        store.resume_connection(s, user, c.id, now=runtime().clock())
        return "Scheduled refreshes resumed."

    return _owner_action(do)


@bp.post("/connections/delete")
def delete() -> Any:
    confirmed = _event().param("confirm") == "yes"

    def do(s: Session, user: User, c: Connection) -> Any:
        if not confirmed:
            return cards.update(cards.delete_card(_urls(), c.id, c.name))
        store.delete_connection(s, user, c.id)
        return "Deleted. The tab stays in the spreadsheet as it was."

    return _owner_action(do)


# --- linking a web account --------------------------------------------------------------


@bp.post("/link")
def link() -> Any:
    user_id, _ = _user_id()
    with write_session() as s:
        user = s.get(User, user_id)
        assert user is not None
        token, expires = identities.create_link_token(s, user, now=runtime().clock())
    url = f"{base_url()}/link-google/{token}"
    expires_text = present.utc_text(expires)
    card = cards.link_card(_urls(), url, link_code(token), _person().email, expires_text)
    return jsonify(cards.update(card))


"""The add-on's connect form and the owner's changes (settings, pause, resume, delete).

The Instantly key is checked on the spot and then carried to Save sealed (Fernet, bound
to the person and the spreadsheet, an hour), so no card ever holds it in the clear.
Every change names a connection of the open spreadsheet owned by the verified person;
anything else is refused with the same words whatever the parameters say.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import InvalidToken
from flask import Blueprint, jsonify
from sqlalchemy.orm import Session

from sheets_sync import store
from sheets_sync.connection_rules import TIMED_SCHEDULES
from sheets_sync.errors import InvalidInput, SyncError, scrub
from sheets_sync.links import spreadsheet_link
from sheets_sync.store import secrets as crypto
from sheets_sync.store.models import Connection, User
from sheets_sync.store.sheet_connections import (
    connections_for_spreadsheet,
    get_spreadsheet_connection,
    pause_connection,
)

from ..users import runtime, write_session
from . import cards
from .cards import FormValues
from .form import event_timezone, form_card, form_defaults
from .guard import current_event, current_person, current_user_id, protect, urls
from .routes import NOT_IN_THIS_SPREADSHEET, connection_param, home_card, share_and_start

bp = Blueprint("addon_connect", __name__, url_prefix="/addon")
protect(bp)

KEY_TOKEN_SECONDS = 3600
OWNER_ONLY = "Only the person who set this connection up can change it."


def _typed_values() -> FormValues:
    event = current_event()
    defaults = form_defaults()
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
    data = {"k": key, "u": current_person().sub, "s": current_event().spreadsheet_id or ""}
    return runtime().fernet.encrypt(json.dumps(data).encode()).decode()


def _unseal_key(token: str) -> str | None:
    if not token:
        return None
    try:
        data = json.loads(runtime().fernet.decrypt(token.encode(), ttl=KEY_TOKEN_SECONDS))
    except (InvalidToken, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("u") != current_person().sub:
        return None
    if data.get("s") != (current_event().spreadsheet_id or ""):
        return None
    key = data.get("k")
    return key if isinstance(key, str) else None


def _typed_key() -> str | None:
    event = current_event()
    return event.value("instantly_api_key") or _unseal_key(event.param("key_token"))


def _check_key(key: str, values: FormValues) -> tuple[list[tuple[str, str]] | None, Any]:
    """The workspace's campaigns, or the form again saying what to do (key dropped)."""
    try:
        found = runtime().instantly(key).list_campaigns()
    except SyncError as exc:
        values.key_token = values.key_hint = ""
        error = f"{scrub(exc.message, (key,))} Type the key again."
        return None, form_card(values, error=error, campaigns=None)
    campaigns = sorted(((c.id, c.name) for c in found), key=lambda c: c[1].lower())
    values.key_token = _seal_key(key)
    values.key_hint = crypto.key_hint(key)
    return campaigns, None


@bp.post("/connect/start")
def connect_start() -> Any:
    event = current_event()
    if not event.has_file_scope or event.spreadsheet_id is None:
        return jsonify(cards.request_file_scope())
    return jsonify(cards.update(form_card(form_defaults())))


@bp.post("/connect/form")
def connect_form() -> Any:
    return connect_start()


@bp.post("/connect/check-key")
def check_key() -> Any:
    values = _typed_values()
    key = _typed_key()
    if not key:
        return jsonify(cards.update(form_card(values, error="Type the Instantly API key.")))
    campaigns, failed = _check_key(key, values)
    if failed is not None:
        return jsonify(cards.update(failed))
    count = len(campaigns or [])
    message = f"The key works: {count} campaign{'s' if count != 1 else ''} in this workspace."
    return jsonify(cards.update(form_card(values, campaigns=campaigns, message=message)))


def _connection_fields(values: FormValues) -> dict[str, Any]:
    timed = values.schedule in TIMED_SCHEDULES
    fields: dict[str, Any] = {
        "name": values.name,
        "worksheet_title": values.worksheet_title,
        "campaign_ids": values.campaign_ids,
        "schedule": values.schedule,
        "schedule_time": (values.schedule_time or "08:00") if timed else None,
        "schedule_weekday": 0 if values.schedule == "weekly" else None,
        "timezone": event_timezone(),
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
    event = current_event()
    if event.spreadsheet_id is None:
        return jsonify(cards.request_file_scope())
    values = _typed_values()
    if values.connection_id:
        return _save_edit(values)
    key = _typed_key()
    if not key:
        return jsonify(cards.update(form_card(values, error="Type the Instantly API key.")))
    campaigns, failed = _check_key(key, values)
    if failed is not None:
        return jsonify(cards.update(failed))
    user_id, _ = current_user_id()
    try:
        with write_session() as s:
            _tab_is_free(s, event.spreadsheet_id, values.worksheet_title)
            user = s.get(User, user_id)
            assert user is not None
            created = store.create_connection(
                s, user, fernet=runtime().fernet, instantly_api_key=key,
                spreadsheet_url=spreadsheet_link(event.spreadsheet_id),
                service_accounts=runtime().service_account_emails,
                **_connection_fields(values),
            )
            connection_id = created.id
    except InvalidInput as exc:
        return jsonify(cards.update(form_card(values, campaigns=campaigns, error=exc.message)))
    if not event.has_file_scope or not event.user_oauth_token:
        # Google shows its access prompt; once granted it calls file-scope-granted, which
        # shares the spreadsheet and starts the first refresh.
        return jsonify(cards.request_file_scope())
    results = share_and_start([connection_id])
    return jsonify(cards.update(home_card(access=results), "Connected."))


# --- the owner's changes ----------------------------------------------------------------


def _owned(s: Session, user_id: int) -> Connection:
    """This spreadsheet's connection named in the action, if the person owns it."""
    spreadsheet_id = current_event().spreadsheet_id or ""
    connection = get_spreadsheet_connection(s, spreadsheet_id, connection_param())
    if connection.user_id != user_id:
        raise PermissionError(OWNER_ONLY)
    return connection


def _owner_action(change: Any) -> Any:
    user_id, _ = current_user_id()
    try:
        with write_session() as s:
            connection = _owned(s, user_id)
            user = s.get(User, user_id)
            assert user is not None
            note = change(s, user, connection)
    except store.NotFound:
        return jsonify(cards.update(home_card(), NOT_IN_THIS_SPREADSHEET))
    except PermissionError:
        return jsonify(cards.update(home_card(), OWNER_ONLY))
    if isinstance(note, dict):
        return jsonify(note)
    return jsonify(cards.update(home_card(), note))


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
        return cards.update(form_card(values, campaigns=_known_campaigns(c)))

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
            return cards.update(form_card(values, campaigns=campaigns, error=exc.message))
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
    confirmed = current_event().param("confirm") == "yes"

    def do(s: Session, user: User, c: Connection) -> Any:
        if not confirmed:
            return cards.update(cards.delete_card(urls(), c.id, c.name))
        store.delete_connection(s, user, c.id)
        return "Deleted. The tab stays in the spreadsheet as it was."

    return _owner_action(do)


# --- linking a web account --------------------------------------------------------------

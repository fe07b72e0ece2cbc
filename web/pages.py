"""The pages people use: connections with a Refresh button, their settings, run history,
API keys.

Every view that takes a connection or run id goes through ``_owned`` (which calls
``store.get_connection``/``store.get_run``): another user's id is a 404, the same as an
id that does not exist. Database sessions are short and never open during a call to
Instantly or Google.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from sheets_sync import store
from sheets_sync.connection_rules import ConnectionFields, with_features
from sheets_sync.errors import InvalidInput, SyncError, scrub
from sheets_sync.jobs import save_checks
from sheets_sync.jobs.save_checks import SaveChecks
from sheets_sync.links import parse_spreadsheet_url
from sheets_sync.pipeline.sheet_access import check_edit_access
from sheets_sync.store.models import Connection, SyncRun, User

from . import present
from .auth import csrf_error
from .forms import ApiKeyForm, ConnectionForm, CsrfForm, TestKeyForm
from .users import current_db_user, db_session, runtime, wants_json, write_session

bp = Blueprint("pages", __name__)
bp.register_error_handler(CSRFError, csrf_error)

for _name in ("utc_text", "relative", "iso"):
    bp.add_app_template_filter(getattr(present, _name), _name)


@bp.before_request
def _signed_in() -> Any:
    """Every page here is for signed-in people only, but the landing page at /."""
    if request.endpoint == "pages.dashboard" and not current_user.is_authenticated:
        return None
    return login_required(lambda: None)()


# --- ownership: the one place that turns ids into objects --------------------------------


def _owned(s: Session, user: User, connection_id: Any) -> Connection:
    try:
        return store.get_connection(s, user, connection_id)
    except store.NotFound:
        abort(404)


def _owned_run(s: Session, user: User, connection_id: Any, run_id: Any) -> SyncRun:
    connection = _owned(s, user, connection_id)
    try:
        run = store.get_run(s, user, run_id)
    except store.NotFound:
        abort(404)
    if run.connection_id != connection.id:
        abort(404)
    return run


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> Any:
    message = "There is nothing here, or it belongs to another account."
    if wants_json():
        return jsonify({"error": {"code": "not_found", "message": message}}), 404
    return render_template("error.html", title="Not found", message=message), 404


def _service_account_email() -> str | None:
    """The address for the page's share card: the one account when there is one; with a
    pool, each connection shows its own (None here, the card then says so)."""
    rt = runtime()
    return rt.service_account_email if len(rt.service_account_emails) <= 1 else None


def _next_account_email() -> str | None:
    return runtime().next_service_account_email()


class _Unknown(enum.Enum):
    # "Not looked up yet", apart from None ("no run"): an enum member, so the type
    # checker narrows it away after the ``is`` test.
    LAST_RUN = enum.auto()


def _connection_view(
    s: Session,
    connection: Connection,
    last: SyncRun | None | Literal[_Unknown.LAST_RUN] = _Unknown.LAST_RUN,
) -> dict[str, Any]:
    if last is _Unknown.LAST_RUN:
        last = store.last_run(s, connection)
    succeeded_at = last.finished_at if last is not None and last.status == "succeeded" else None
    return {
        "id": connection.id,
        "name": connection.name,
        "sheet_link": present.sheet_link(connection),
        "worksheet_title": connection.worksheet_title,
        "schedule": present.schedule_text(connection),
        "next_run_at": connection.next_run_at if connection.schedule != "off" else None,
        "date_range": present.date_range_text(connection),
        "campaigns": present.campaigns_text(connection),
        "key_hint": connection.instantly_api_key_hint,
        "service_account_email": runtime().service_account_email_for(connection),
        "paused_reason": connection.paused_reason,
        "consecutive_failures": connection.consecutive_failures or 0,
        "owner_emailed": connection.failure_notified_at is not None,
        "last_run": present.run_json(last) if last is not None else None,
        # No refresh has written this connection's tab yet (sheet_id is set by the first).
        "never_synced": connection.sheet_id is None,
        "sharing_notice": save_checks.sharing_notice(
            connection.options, connection.spreadsheet_id, _service_account_email(), succeeded_at
        ),
    }


# --- dashboard and refresh ---------------------------------------------------------------


@bp.get("/")
def dashboard() -> Any:
    if not current_user.is_authenticated:
        return render_template("landing.html")
    with db_session() as s:
        user = current_db_user(s)
        owned = store.list_connections(s, user)
        latest = store.last_runs(s, owned)
        connections = [_connection_view(s, c, latest.get(c.id)) for c in owned]
    return render_template(
        "dashboard.html",
        connections=connections,
        service_account_email=_service_account_email(),
        pool_size=len(runtime().service_account_emails),
    )


@bp.post("/connections/<int:connection_id>/refresh")
def refresh(connection_id: int) -> Any:
    with write_session() as s:
        user = current_db_user(s)
        connection = _owned(s, user, connection_id)
        run, created = store.enqueue_run(s, connection, "manual")
        s.flush()
        payload = present.run_json(run)
        name = connection.name
    runtime().notify_enqueued()
    if wants_json():
        return jsonify({"run": payload, "created": created}), 202
    if created:
        flash(f"Refresh of “{name}” started. Reload this page to see the result.", "info")
    else:
        flash(f"“{name}” is already being refreshed.", "info")
    return redirect(url_for("pages.dashboard"))


@bp.post("/connections/<int:connection_id>/resume")
def resume(connection_id: int) -> Any:
    """Un-pause scheduled refreshes after the owner fixed the problem."""
    with write_session() as s:
        user = current_db_user(s)
        connection = _owned(s, user, connection_id)
        store.resume_connection(s, user, connection.id)
        name = connection.name
    flash(f"Scheduled refreshes of “{name}” resumed.", "info")
    return redirect(url_for("pages.dashboard"))


@bp.get("/connections/<int:connection_id>/runs/<int:run_id>.json")
def run_status(connection_id: int, run_id: int) -> Any:
    with db_session() as s:
        user = current_db_user(s)
        payload = present.run_json(_owned_run(s, user, connection_id, run_id))
    return jsonify({"run": payload})


@bp.get("/connections/<int:connection_id>/runs")
def runs(connection_id: int) -> Any:
    with db_session() as s:
        user = current_db_user(s)
        connection = _owned(s, user, connection_id)
        view = _connection_view(s, connection)
        history = [present.run_json(r) for r in store.list_runs(s, user, connection.id, 100)]
        table = _last_table(connection)
    return render_template("runs.html", connection=view, runs=history, table=table)


def _last_table(connection: Connection) -> dict[str, Any] | None:
    """The table of the last successful refresh, formatted like the sheet, or None."""
    stored = connection.last_table
    if not isinstance(stored, dict):
        return None
    try:
        kinds = [kind for _, kind in stored["columns"]]

        def show(value: Any, kind: str) -> str:
            if value is None or value == "":
                return ""
            if kind == "percent":
                return f"{float(value):.1%}"
            if kind == "int":
                return f"{int(value):,}"
            return str(value)

        rows = [
            {
                "cells": [show(v, k) for v, k in zip(values, kinds, strict=True)],
                "highlight": highlight or "",
                "kind": kind,
            }
            for values, highlight, kind in stored["rows"]
        ]
        return {
            "headers": [header for header, _ in stored["columns"]],
            "numeric": [k in ("int", "percent") for k in kinds],
            "rows": rows,
            "title": stored.get("title", ""),
            "date_label": stored.get("date_label", ""),
            "synced_at": stored.get("synced_at", ""),
            "omitted_rows": int(stored.get("omitted_rows") or 0),
        }
    except (KeyError, TypeError, ValueError):
        return None


# --- create, edit, delete ------------------------------------------------------------------


def _form_page(
    form: ConnectionForm,
    connection: dict[str, Any] | None,
    *,
    test_result: dict[str, Any] | None = None,
    access_result: dict[str, Any] | None = None,
    status: int = 200,
) -> Any:
    return (
        render_template(
            "connection_form.html",
            form=form,
            connection=connection,
            test_result=test_result,
            access_result=access_result,
            service_account_email=(
                connection["service_account_email"] if connection else _next_account_email()
            ),
        ),
        status,
    )


KEY_NOT_KEPT = (
    "The API key you typed is not shown again (sheets-sync never sends a key back to the "
    "browser): paste it again before saving."
)


def _refuse_round(form: ConnectionForm, *, key_typed: bool) -> None:
    # A typed key is never rendered back, so a failed round must say it is gone.
    if key_typed and not form.instantly_api_key.errors:
        form.instantly_api_key.errors = [KEY_NOT_KEPT]


def _flash_saved(name: str, connection_id: int, checks: SaveChecks, *, first: bool) -> None:
    if first:
        # Until a refresh of this connection succeeds (app.js removes it then).
        flash(f"Saved “{name}”. Press Refresh to fill the sheet.", f"until-refresh:{connection_id}")
    else:
        flash(f"Saved “{name}”.", "success")
    for warning in checks.warnings:
        flash(warning, "warning")


@bp.route("/connections/new", methods=["GET", "POST"])
def new_connection() -> Any:
    form = ConnectionForm()
    if request.method == "GET":
        form.worksheet_title.data = form.worksheet_title.data or "Instantly steps"
    if not form.is_submitted():
        return _form_page(form, None)
    kwargs = form.validate_input(creating=True)
    key = form.typed_key()
    checks = SaveChecks()
    if key and not form.instantly_api_key.errors and not form.campaign_ids.errors:
        ids = kwargs["campaign_ids"] if kwargs else _typed_campaign_ids(form)
        checks.merge(save_checks.check_instantly(runtime(), key, ids or []))
        form.add_errors(checks.field_errors)
    if kwargs is not None and checks.ok:
        spreadsheet_id = parse_spreadsheet_url(kwargs["spreadsheet_url"])[0]
        checks.merge(
            save_checks.check_sheet(runtime(), spreadsheet_id, _next_account_email())
        )
        kwargs["options"] = save_checks.merged_options(kwargs.get("options"), checks.options)
        try:
            with write_session() as s:
                user = current_db_user(s)
                created = store.create_connection(
                    s,
                    user,
                    fernet=runtime().fernet,
                    service_accounts=runtime().service_account_emails,
                    **kwargs,
                )
                name, created_id = created.name, created.id
        except InvalidInput as exc:
            form.form_errors.append(exc.message)
        else:
            _flash_saved(name, created_id, checks, first=True)
            return redirect(url_for("pages.dashboard"))
    _refuse_round(form, key_typed=bool(key))
    return _form_page(form, None, status=400)


def _typed_campaign_ids(form: ConnectionForm) -> list[str] | None:
    """The ids of a form whose other fields failed, to check them in the same round."""
    try:
        checked = ConnectionFields.model_validate(
            {"campaign_ids": form.input_data(creating=False)["campaign_ids"]}
        )
    except ValidationError:
        return None
    return checked.campaign_ids


def _edit_checks(
    form: ConnectionForm,
    changes: dict[str, Any] | None,
    connection: Connection,
    saved_key: str | None,
) -> SaveChecks:
    """The checks an edit needs: a new key, campaigns new to the connection (with the
    saved key), a new sheet."""
    checks = SaveChecks()
    key = form.typed_key()
    ids = (changes or {}).get("campaign_ids")
    if ids is None and changes is None:
        ids = _typed_campaign_ids(form)
    known = set(connection.campaign_ids or [])
    if form.instantly_api_key.errors or form.campaign_ids.errors:
        pass
    elif key:
        checks.merge(save_checks.check_instantly(runtime(), key, ids or []))
    elif ids and not set(ids) <= known and saved_key:
        checks.merge(save_checks.check_instantly(runtime(), saved_key, ids, saved_key=True))
    form.add_errors(checks.field_errors)
    if changes is not None and checks.ok and "spreadsheet_url" in changes:
        spreadsheet_id = parse_spreadsheet_url(changes["spreadsheet_url"])[0]
        if spreadsheet_id != connection.spreadsheet_id:
            account = runtime().service_account_email_for(connection)
            checks.merge(save_checks.check_sheet(runtime(), spreadsheet_id, account))
    return checks


@bp.route("/connections/<int:connection_id>/edit", methods=["GET", "POST"])
def edit_connection(connection_id: int) -> Any:
    with db_session() as s:
        user = current_db_user(s)
        connection = _owned(s, user, connection_id)
        info = _connection_view(s, connection)
        initial = ConnectionForm.data_for(connection)
        s.expunge(connection)
    if request.method == "GET":
        form = ConnectionForm(data=initial)
        return _form_page(form, info)
    form = ConnectionForm()
    changes = form.validate_input(creating=False)
    saved_key = None
    if not form.typed_key():
        try:
            saved_key = store.decrypted_api_key(runtime().fernet, connection)
        except SyncError:
            saved_key = None  # the page says so at the next refresh; no check possible
    checks = _edit_checks(form, changes, connection, saved_key)
    if changes is not None and checks.ok:
        try:
            with write_session() as s:
                user = current_db_user(s)
                features = changes.pop("features", None)
                current = store.get_connection(s, user, connection_id, for_update=True)
                options = dict(current.options or {})
                if features is not None:
                    options = with_features(options, features)
                changes["options"] = save_checks.merged_options(options, checks.options)
                store.update_connection(
                    s, user, connection_id, fernet=runtime().fernet, **changes
                )
        except store.NotFound:
            abort(404)
        except InvalidInput as exc:
            form.form_errors.append(exc.message)
        else:
            _flash_saved(changes.get("name", info["name"]), connection_id, checks, first=False)
            return redirect(url_for("pages.dashboard"))
    _refuse_round(form, key_typed=bool(form.typed_key()))
    return _form_page(form, info, status=400)


@bp.route("/connections/<int:connection_id>/delete", methods=["GET", "POST"])
def delete_connection(connection_id: int) -> Any:
    with db_session() as s:
        user = current_db_user(s)
        connection = _owned(s, user, connection_id)
        info = _connection_view(s, connection)
    form = CsrfForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            with write_session() as s:
                store.delete_connection(s, current_db_user(s), connection_id)
        except store.NotFound:
            abort(404)
        flash(
            f"Deleted “{info['name']}”. The Google Sheet itself was not changed.", "success"
        )
        return redirect(url_for("pages.dashboard"))
    return render_template("delete.html", connection=info, form=form)


# --- Test key and Check access --------------------------------------------------------------


def _failed(exc: SyncError, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    # The reply is shown as is: scrub it like anything stored, whatever the client did.
    return {"ok": False, "error": {"code": exc.code, "message": scrub(exc.message, secrets)}}


def _campaigns_for_key(key: str) -> dict[str, Any]:
    try:
        campaigns = runtime().instantly(key).list_campaigns()
    except SyncError as exc:
        return _failed(exc, (key,))
    items = sorted(
        ({"id": c.id, "name": c.name} for c in campaigns), key=lambda c: c["name"].lower()
    )
    count = len(items)
    message = (
        f"The key works: {count} campaign{'s' if count != 1 else ''} in this workspace."
        if count
        else "The key works, but this workspace has no campaigns yet."
    )
    return {"ok": True, "message": message, "campaigns": items}


def _no_key() -> dict[str, Any]:
    message = "Type the Instantly API key first."
    return {"ok": False, "error": {"code": "invalid_input", "message": message}}


@bp.post("/connections/test-key")
def test_key() -> Any:
    """List the workspace's campaigns with the typed key, or with the saved key of the
    connection being edited when the key field is left empty."""
    form = TestKeyForm()
    key = (form.instantly_api_key.data or "").strip()
    connection_id = (form.connection_id.data or "").strip()
    info = None
    result: dict[str, Any] | None = None
    if connection_id:
        with db_session() as s:
            user = current_db_user(s)
            connection = _owned(s, user, connection_id)
            info = _connection_view(s, connection)
            if not key:
                try:
                    key = store.decrypted_api_key(runtime().fernet, connection)
                except SyncError as exc:
                    result = _failed(exc)
    if result is None:
        result = _campaigns_for_key(key) if key else _no_key()
    if wants_json():
        # The check itself worked; its outcome is in "ok" (a 4xx would read as a broken page).
        return jsonify(result)
    # Without JavaScript: the same form again, with the campaigns to pick from. The key
    # typed is not echoed back into the page.
    return _form_page(ConnectionForm(), info, test_result=result)


def _check_access(
    spreadsheet_id: str, account: str | None = None
) -> tuple[dict[str, Any], str | None]:
    """The reply for the page, and the sharing state found (None: not known). ``account``:
    the connection's; by default the one a new connection would get."""
    try:
        access = check_edit_access(
            runtime().sheets(account or _next_account_email(), retry=save_checks.WHILE_WAITING),
            spreadsheet_id,
        )
    except SyncError as exc:
        return _failed(exc), None
    if not access.ok:
        error = {"code": f"sheet_{access.status}", "message": access.message}
        return {"ok": False, "error": error}, access.status
    return {"ok": True, "tabs": access.tabs, "message": access.message}, access.status


def _typed_spreadsheet_id() -> str | None:
    typed = (request.form.get("spreadsheet_url") or "").strip()
    if not typed:
        return None
    return parse_spreadsheet_url(typed)[0]


def _access_response(result: dict[str, Any], info: dict[str, Any] | None) -> Any:
    if wants_json():
        # The check itself worked; its outcome is in "ok" (a 4xx would read as a broken page).
        return jsonify(result)
    return _form_page(ConnectionForm(), info, access_result=result)


@bp.post("/connections/check-access")
def check_access_typed() -> Any:
    """Check access to the link typed in the new-connection form, before saving."""
    try:
        spreadsheet_id = _typed_spreadsheet_id()
    except InvalidInput as exc:
        return _access_response({"ok": False, "error": exc.as_dict()}, None)
    if spreadsheet_id is None:
        message = "Paste the Google Sheet link first."
        return _access_response(
            {"ok": False, "error": {"code": "invalid_input", "message": message}}, None
        )
    return _access_response(_check_access(spreadsheet_id)[0], None)


@bp.post("/connections/<int:connection_id>/check-access")
def check_access(connection_id: int) -> Any:
    with db_session() as s:
        user = current_db_user(s)
        connection = _owned(s, user, connection_id)
        info = _connection_view(s, connection)
        spreadsheet_id = saved_id = connection.spreadsheet_id
    try:
        # The link being edited, if one was typed; else the saved one.
        spreadsheet_id = _typed_spreadsheet_id() or spreadsheet_id
    except InvalidInput as exc:
        return _access_response({"ok": False, "error": exc.as_dict()}, info)
    result, status = _check_access(spreadsheet_id, info["service_account_email"])
    if status is not None and spreadsheet_id == saved_id:
        # What the dashboard says about sharing follows the latest check.
        found = {
            save_checks.SHEET_ACCESS_OPTION: save_checks.access_record(
                status, spreadsheet_id, runtime()
            )
        }
        try:
            with write_session() as s:
                store.merge_connection_options(s, current_db_user(s), connection_id, found)
        except store.NotFound:
            abort(404)  # deleted while Google was being asked
    if not wants_json() and "spreadsheet_url" not in request.form:
        # A plain button (e.g. on the dashboard): report and go back.
        if result["ok"]:
            flash(f"{info['name']}: {result['message']}", "success")
        else:
            flash(f"{info['name']}: {result['error']['message']}", "error")
        return redirect(url_for("pages.dashboard"))
    return _access_response(result, info)


# --- API keys -------------------------------------------------------------------------------


@bp.route("/api-keys", methods=["GET", "POST"])
def api_keys() -> Any:
    form = ApiKeyForm()
    new_key = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                with write_session() as s:
                    user = current_db_user(s)
                    key, plaintext = store.create_api_key(s, user, form.name.data or "")
                    new_key = {"name": key.name, "plaintext": plaintext}
            except InvalidInput as exc:
                form.name.errors = [*form.name.errors, exc.message]
                status = 400
            else:
                status = 201
                form.name.data = ""
        else:
            status = 400
    with db_session() as s:
        user = current_db_user(s)
        keys = [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "created_at": k.created_at,
                "last_used_at": k.last_used_at,
                "revoked_at": k.revoked_at,
            }
            for k in store.list_api_keys(s, user)
        ]
    return (
        render_template(
            "api_keys.html", form=form, keys=keys, new_key=new_key
        ),
        status,
    )


@bp.post("/api-keys/<int:key_id>/revoke")
def revoke_api_key(key_id: int) -> Any:
    try:
        with write_session() as s:
            key = store.revoke_api_key(s, current_db_user(s), key_id)
            name = key.name
    except store.NotFound:
        abort(404)
    flash(f"Revoked the API key “{name}”. Programs using it can no longer sign in.", "success")
    return redirect(url_for("pages.api_keys"))

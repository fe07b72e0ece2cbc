"""Sign up, sign in, sign out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sansio.blueprints import BlueprintSetupState
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError

from sheets_sync import store
from sheets_sync.errors import InvalidInput

from .forms import CsrfForm, LoginForm, SignupForm
from .ratelimit import LoginRateLimiter, minutes
from .users import LoginUser, db_session, wants_json, write_session

bp = Blueprint("auth", __name__)


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    state.app.extensions.setdefault("login_rate_limiter", LoginRateLimiter())


def _limiter() -> LoginRateLimiter:
    return current_app.extensions["login_rate_limiter"]


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somebody else's page."""
    if target:
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and target.startswith("/")
            and not target.startswith("//")
            and "\\" not in target
        ):
            return target
    return url_for("pages.dashboard")


def _sign_in(user_id: int, email: str) -> None:
    # A fresh session: whatever was in the cookie before (a planted session, an old CSRF
    # token) is dropped, so a fixated cookie gains nothing from this sign-in.
    session.clear()
    login_user(LoginUser(user_id, email))


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("pages.dashboard"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            with write_session() as s:
                user = store.create_user(s, form.email.data or "", form.password.data or "")
                s.flush()
                user_id, email = user.id, user.email
        except InvalidInput as exc:
            form.email.errors = [*form.email.errors, exc.message]
        else:
            _sign_in(user_id, email)
            flash("Welcome! Add your first connection below.", "success")
            return redirect(url_for("pages.dashboard"))
    status = 400 if request.method == "POST" else 200
    return render_template("signup.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("pages.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data or ""
        ip = request.remote_addr or "?"
        wait = _limiter().retry_after(email, ip)
        if wait > 0:
            n = minutes(wait)
            form.form_errors.append(
                f"Too many sign-in attempts; try again in {n} minute{'s' if n != 1 else ''}."
            )
            return render_template("login.html", form=form), 429
        with db_session() as s:
            user = store.authenticate(s, email, form.password.data or "")
            found = (user.id, user.email) if user is not None else None
        if found is None:
            _limiter().record_failure(email, ip)
            form.form_errors.append("That email and password do not match an account.")
            return render_template("login.html", form=form), 401
        _limiter().reset(email, ip)
        _sign_in(*found)
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@bp.post("/logout")
@login_required
def logout() -> Any:
    form = CsrfForm()
    if not form.validate_on_submit():  # pragma: no cover - CSRFProtect answers first
        return redirect(url_for("pages.dashboard"))
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def csrf_error(exc: CSRFError) -> Any:
    message = (
        "This form has expired or did not come from this site. Reload the page and try again."
    )
    if wants_json():
        return {"error": {"code": "csrf_failed", "message": message}}, 400
    return render_template("error.html", title="Form expired", message=message), 400


bp.register_error_handler(CSRFError, csrf_error)

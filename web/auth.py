"""Sign up, sign in, sign out; forgotten and changed passwords.

Every sign-in, sign-up and reset request goes through ``web.throttle`` (limits shared by
all processes through the database); answers past a limit are 429 with ``Retry-After``.
Sign-out, a password change and a reset end every earlier session of the account
(``store.end_sessions``, checked on every request by ``web.users.load_user``).
"""

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

from .forms import (
    ChangePasswordForm,
    CsrfForm,
    ForgotPasswordForm,
    LoginForm,
    ResetPasswordForm,
    SignupForm,
)
from .password_reset import ResetMailer, reset_mail_enabled
from .throttle import Throttle, minutes_text, retry_after
from .users import LoginUser, current_db_user, db_session, runtime, wants_json, write_session

bp = Blueprint("auth", __name__)

FORGOT_SENT = (
    "If an account exists for that address, we have sent it a link to choose a new "
    "password. The link works once, for 1 hour."
)


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    rt = state.app.extensions["sheets_sync"]
    state.app.extensions.setdefault("throttle", Throttle(rt.settings, rt.session_factory))
    state.app.extensions.setdefault("reset_mailer", ResetMailer(rt.settings, rt.session_factory))


def _throttle() -> Throttle:
    return current_app.extensions["throttle"]


def _mailer() -> ResetMailer:
    return current_app.extensions["reset_mailer"]


def _client_address() -> str:
    # ProxyFix (create_app, SHEETS_SYNC_TRUSTED_PROXIES) has already put the client's
    # address here when proxies are trusted; otherwise X-Forwarded-For is ignored.
    return request.remote_addr or "?"


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
            and not any(ord(c) < 32 for c in target)
        ):
            return target
    return url_for("pages.dashboard")


def _sign_in(user: LoginUser) -> None:
    # A fresh session: whatever was in the cookie before (a planted session, an old CSRF
    # token) is dropped, so a fixated cookie gains nothing from this sign-in.
    session.clear()
    login_user(user)


def _too_many(template: str, form: Any, wait: float, what: str, **context: Any) -> Any:
    form.form_errors.append(f"Too many {what}; try again in {minutes_text(wait)}.")
    return render_template(template, form=form, **context), 429, retry_after(wait)


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("pages.dashboard"))
    form = SignupForm()
    if form.validate_on_submit():
        wait = _throttle().take("signup", _client_address())
        if wait > 0:
            return _too_many("signup.html", form, wait, "sign-ups from this address")
        try:
            with write_session() as s:
                user = store.create_user(s, form.email.data or "", form.password.data or "")
                s.flush()
                signed_in = LoginUser.from_user(user)
        except InvalidInput as exc:
            form.email.errors = [*form.email.errors, exc.message]
        else:
            _sign_in(signed_in)
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
        wait = _throttle().check_sign_in(_client_address(), email)
        if wait > 0:
            return _too_many("login.html", form, wait, "sign-in attempts")
        with db_session() as s:
            user = store.authenticate(s, email, form.password.data or "")
            found = LoginUser.from_user(user) if user is not None else None
        if found is None:
            _throttle().failed_sign_in(_client_address(), email)
            form.form_errors.append("That email and password do not match an account.")
            return render_template("login.html", form=form), 401
        _sign_in(found)
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@bp.post("/logout")
@login_required
def logout() -> Any:
    form = CsrfForm()
    if not form.validate_on_submit():  # pragma: no cover - CSRFProtect answers first
        return redirect(url_for("pages.dashboard"))
    # Ends this session and every other one of the account: a copy of the cookie
    # (another browser, a shared computer, a stolen cookie) is signed out too.
    with write_session() as s:
        store.end_sessions(s, current_db_user(s))
    logout_user()
    session.clear()
    flash("You are signed out (on every device).", "info")
    return redirect(url_for("auth.login"))


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password() -> Any:
    form = ForgotPasswordForm()
    enabled = reset_mail_enabled(runtime().settings)
    sent = False
    if enabled and form.validate_on_submit():
        wait = _throttle().take("reset", _client_address())
        if wait > 0:
            return _too_many(
                "forgot_password.html", form, wait, "reset requests from this address",
                enabled=enabled, sent=False,
            )
        # The same answer whether or not the address has an account.
        _mailer().request(form.email.data or "")
        sent = True
    status = 400 if request.method == "POST" and not sent else 200
    return render_template("forgot_password.html", form=form, enabled=enabled, sent=sent), status


def _link_unusable() -> Any:
    message = (
        "This reset link has expired or was already used. Ask for a new one on the "
        "“Forgot password?” page."
    )
    return render_template("error.html", title="Link expired", message=message), 404


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> Any:
    with db_session() as s:
        usable = store.reset_token_user(s, token) is not None
    if not usable:
        return _link_unusable()
    form = ResetPasswordForm()
    if form.validate_on_submit():
        with write_session() as s:
            user = store.reset_password(s, token, form.password.data or "")
        if user is None:  # used up meanwhile by another tab
            return _link_unusable()
        logout_user()
        session.clear()
        flash("Your password is changed, and every earlier session is signed out. "
              "Sign in with the new password.", "success")
        return redirect(url_for("auth.login"))
    status = 400 if request.method == "POST" else 200
    return render_template("reset_password.html", form=form), status


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Any:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        with db_session() as s:
            email = current_db_user(s).email
        # Guessing the current password from a signed-in session counts like sign-ins.
        wait = _throttle().check_sign_in(_client_address(), email)
        if wait > 0:
            return _too_many("change_password.html", form, wait, "password attempts")
        with db_session() as s:
            right = store.authenticate(s, email, form.current.data or "") is not None
        if not right:
            _throttle().failed_sign_in(_client_address(), email)
        else:
            with write_session() as s:
                user = current_db_user(s)
                store.set_password(s, user, form.password.data or "")
                staying = LoginUser.from_user(user)
            # Every other session ends; this one carries on with the new generation.
            _sign_in(staying)
            flash("Password changed. Every other session is signed out.", "success")
            return redirect(url_for("pages.dashboard"))
        form.current.errors = [*form.current.errors, "That is not your current password."]
    status = 400 if request.method == "POST" else 200
    return render_template("change_password.html", form=form), status


def csrf_error(exc: CSRFError) -> Any:
    message = (
        "This form has expired or did not come from this site. Reload the page and try again."
    )
    if wants_json():
        return {"error": {"code": "csrf_failed", "message": message}}, 400
    return render_template("error.html", title="Form expired", message=message), 400


bp.register_error_handler(CSRFError, csrf_error)

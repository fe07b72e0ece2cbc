"""The signed-in person as Flask-Login sees them, and the way back to the database row.

Only the id and the email live on ``current_user``: ORM objects are bound to a session
that ends with the request, so every view loads the row again in its own session with
``current_db_user``.

The session stores ``"<user id>.<session generation>"`` as Flask-Login's user id. The
loader, run on every request, accepts it only while the user's generation in the
database is the same: sign-out, a password change and a reset bump it, so every cookie
issued before (a copy kept by someone else, too) stops working at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import abort, current_app, flash, jsonify, redirect, request, url_for
from flask_login import UserMixin, current_user
from sqlalchemy.orm import Session

from sheets_sync import store
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.store.db import session_scope
from sheets_sync.store.models import User

from .extensions import login_manager


class LoginUser(UserMixin):
    def __init__(self, user_id: int, email: str, generation: int = 1) -> None:
        self.id = user_id
        self.email = email
        self.generation = generation

    def get_id(self) -> str:
        return f"{self.id}.{self.generation}"

    @classmethod
    def from_user(cls, user: User) -> LoginUser:
        return cls(user.id, user.email, user.session_generation)


def runtime() -> Runtime:
    return current_app.extensions["sheets_sync"]


@contextmanager
def db_session() -> Iterator[Session]:
    """One short transaction (commit on success) for a view that reads. On SQLite it
    takes no lock, so page views, API reads and the 700 ms status polls never queue
    behind a worker recording a run, nor hold one up. Never hold it across a network
    call."""
    with session_scope(runtime().session_factory) as s:
        yield s


@contextmanager
def write_session() -> Iterator[Session]:
    """``db_session`` for a view that writes: the write lock is taken before the view's
    first read (``sheets_sync.db.take_write_lock``), so "look up, then change" cannot
    fail halfway with "database is locked"."""
    with session_scope(runtime().session_factory, write=True) as s:
        yield s


@login_manager.user_loader
def load_user(session_id: str) -> LoginUser | None:
    user_id, dot, generation = str(session_id).partition(".")
    if not dot or not generation.isdigit():
        return None  # a cookie from before session generations, or forged: sign in again
    with db_session() as s:
        user = store.get_user(s, user_id)
        if user is None or user.session_generation != int(generation):
            return None
        return LoginUser.from_user(user)


def wants_json() -> bool:
    """A fetch() from app.js (or any client asking for JSON) rather than a form post."""
    if request.headers.get("X-Requested-With") == "fetch":
        return True
    return request.accept_mimetypes.best == "application/json"


@login_manager.unauthorized_handler
def unauthorized() -> Any:
    if wants_json():
        body = {"error": {"code": "unauthorized", "message": "Sign in again."}}
        return jsonify(body), 401
    flash(login_manager.login_message, "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def current_db_user(s: Session) -> User:
    """The signed-in user's row in session ``s`` (gone since sign-in: sign in again)."""
    user = store.get_user(s, current_user.id) if current_user.is_authenticated else None
    if user is None:
        abort(401)
    return user

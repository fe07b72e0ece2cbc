"""Users and their API keys: sign-up, sign-in, keys for the JSON API."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sheets_sync.connection_rules import has_control_character
from sheets_sync.errors import InvalidInput
from sheets_sync.store.db import rowcount, take_write_lock
from sheets_sync.store.ids import NotFound, _now, _valid_id
from sheets_sync.store.models import (
    ApiKey,
    PasswordResetToken,
    User,
)
from sheets_sync.store.passwords import check_password_hash, generate_password_hash

# --- users -----------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_DUMMY_HASH: str | None = None


def normalize_email(email: str) -> str:
    return email.strip().lower()


# NUL and the other control characters: never part of an e-mail address or a key's name,
# and PostgreSQL refuses NUL in text outright.
has_control_characters = has_control_character


def _check_password(password: str) -> None:
    if not password:
        raise InvalidInput("Enter a password.")
    if "\x00" in password:
        raise InvalidInput("The password cannot contain a NUL character.")


def create_user(s: Session, email: str, password: str) -> User:
    """Create a user; ``InvalidInput`` for a malformed or already registered email."""
    email = normalize_email(email)
    if len(email) > 320 or not _EMAIL_RE.match(email) or has_control_characters(email):
        raise InvalidInput("Enter an email address such as name@example.com.")
    _check_password(password)
    take_write_lock(s)
    user = User(email=email, password_hash=generate_password_hash(password))
    try:
        # SAVEPOINT: a duplicate must not roll back the caller's whole transaction.
        with s.begin_nested():
            s.add(user)
    except IntegrityError:
        raise InvalidInput(f"A user with the email {email} already exists.") from None
    return user


def get_user_by_email(s: Session, email: str) -> User | None:
    email = normalize_email(email)
    if has_control_characters(email) or len(email) > 320:
        return None  # no stored address has one (create_user), and PostgreSQL refuses NUL
    return s.scalar(select(User).where(User.email == email))


def get_user(s: Session, user_id: int | str) -> User | None:
    """For session loaders (Flask-Login) that stored the id themselves (as a string)."""
    number = _valid_id(user_id)
    return None if number is None else s.get(User, number)


def authenticate(s: Session, email: str, password: str) -> User | None:
    """The user if the password matches, else None, in the same time either way."""
    user = get_user_by_email(s, email)
    if user is None:
        # Hash anyway so "no such user" takes as long as "wrong password" and the
        # response time does not reveal which emails are registered.
        check_password_hash(_dummy_hash(), password)
        return None
    if check_password_hash(user.password_hash, password):
        return user
    return None


def set_password(s: Session, user: User, password: str) -> None:
    """A new password; ends every session of the user and voids open reset links."""
    _check_password(password)
    take_write_lock(s)
    user.password_hash = generate_password_hash(password)
    end_sessions(s, user)
    s.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=_now())
        .execution_options(synchronize_session=False)
    )
    s.flush()


def end_sessions(s: Session, user: User) -> int:
    """End every session signed in as ``user`` so far; the new generation, for a session
    that should carry on (the one that changed the password)."""
    take_write_lock(s)
    user.session_generation = (user.session_generation or 1) + 1
    s.flush()
    return user.session_generation


# --- password reset links ----------------------------------------------------------------

RESET_TOKEN_LIFETIME = timedelta(hours=1)


def create_reset_token(s: Session, user: User, *, now: datetime | None = None) -> str:
    """A new one-time reset token for ``user`` (plaintext, returned once)."""
    take_write_lock(s)
    now = now or _now()
    plaintext = secrets.token_urlsafe(32)
    s.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=_hash_api_key(plaintext),
            created_at=now,
            expires_at=now + RESET_TOKEN_LIFETIME,
        )
    )
    s.flush()
    return plaintext


def _usable_reset_token(
    s: Session, plaintext: str, now: datetime
) -> PasswordResetToken | None:
    if not isinstance(plaintext, str) or not 20 <= len(plaintext) <= 100:
        return None
    if not plaintext.isascii() or has_control_characters(plaintext):
        return None
    token = s.scalar(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == _hash_api_key(plaintext))
    )
    if token is None or token.used_at is not None or token.expires_at <= now:
        return None
    return token


def reset_token_user(s: Session, plaintext: str, *, now: datetime | None = None) -> User | None:
    """The user a still-usable token belongs to, else None. Reads only."""
    token = _usable_reset_token(s, plaintext, now or _now())
    return None if token is None else s.get(User, token.user_id)


def reset_password(
    s: Session, plaintext: str, password: str, *, now: datetime | None = None
) -> User | None:
    """Use a reset token: set the password (ending every session) and spend the token
    (and every other open one of the user). None if the token is unknown, used or
    expired; nothing changes then."""
    take_write_lock(s)
    now = now or _now()
    token = _usable_reset_token(s, plaintext, now)
    if token is None:
        return None
    user = s.get(User, token.user_id)
    if user is None:
        return None
    _check_password(password)
    token.used_at = now
    set_password(s, user, password)
    return user


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))
    return _DUMMY_HASH


# --- API keys --------------------------------------------------------------------------

API_KEY_PREFIX = "ssk_"
_API_KEY_SHOWN_CHARS = 8
# Writing last_used_at on every request would turn every API read into a write (and on
# SQLite, into a wait for the write lock); minute precision is what a person needs.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_api_key(s: Session, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for ``user``; the plaintext is returned here once and never stored."""
    name = (name or "").strip() or "API key"
    if len(name) > 200:
        raise InvalidInput("The key name is too long (200 characters at most).")
    if has_control_character(name):
        raise InvalidInput("The key name contains a control character (such as NUL).")
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    take_write_lock(s)
    key = ApiKey(
        user_id=user.id,
        name=name,
        prefix=plaintext[:_API_KEY_SHOWN_CHARS],
        key_hash=_hash_api_key(plaintext),
    )
    s.add(key)
    s.flush()
    return key, plaintext


def list_api_keys(s: Session, user: User) -> list[ApiKey]:
    return list(s.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)))


def revoke_api_key(s: Session, user: User, key_id: int) -> ApiKey:
    """Revoke one of the user's keys (idempotent); ``NotFound`` if it is not theirs."""
    take_write_lock(s)
    number = _valid_id(key_id)
    key = None
    if number is not None:
        key = s.scalar(select(ApiKey).where(ApiKey.id == number, ApiKey.user_id == user.id))
    if key is None:
        raise NotFound("API key")
    if key.revoked_at is None:
        key.revoked_at = _now()
        s.flush()
    return key


def find_api_key(s: Session, plaintext: str) -> ApiKey | None:
    """The valid, unrevoked key ``plaintext`` names, else None. Reads only.

    The lookup is by sha256 through a unique index rather than a constant-time compare:
    timing can at most reveal a prefix of the *hash*, which does not help find a key.
    """
    if not isinstance(plaintext, str) or not plaintext.startswith(API_KEY_PREFIX):
        return None
    if len(plaintext) > 200:
        return None
    return s.scalar(
        select(ApiKey).where(
            ApiKey.key_hash == _hash_api_key(plaintext), ApiKey.revoked_at.is_(None)
        )
    )


def user_for_api_key(s: Session, plaintext: str) -> User | None:
    """The owner of a valid, unrevoked key, else None. Reads only: the request's use of
    the key is recorded separately (``api_key_use_due``, ``record_api_key_use``)."""
    key = find_api_key(s, plaintext)
    return None if key is None else s.get(User, key.user_id)


def api_key_use_due(key: ApiKey, *, now: datetime | None = None) -> bool:
    """Whether ``last_used_at`` is stale enough to be written again (once a minute)."""
    last = key.last_used_at
    return last is None or (now or _now()) - last >= _LAST_USED_RESOLUTION


def record_api_key_use(s: Session, key_id: int, *, now: datetime | None = None) -> bool:
    """Stamp ``last_used_at`` unless another request did within the last minute; a
    unit of its own, so an API read takes the write lock only when a stamp is due."""
    take_write_lock(s)
    now = now or _now()
    result = s.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.last_used_at.is_(None))
            | (ApiKey.last_used_at <= now - _LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1

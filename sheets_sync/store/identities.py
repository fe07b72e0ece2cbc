"""Google identities (the Sheets add-on's people) and one-time links to web accounts.

A person in the sidebar is who Google's verified ``userIdToken`` says: ``sub`` (stable)
and an e-mail (which may change hands). The first time a ``sub`` is seen it gets an
account of its own. It joins an existing web account only through a link made in the
sidebar (proof of the Google side) and confirmed by someone signed in on the web page
(proof of the password side); never because two e-mail addresses match.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sheets_sync.errors import InvalidInput
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.ids import _now
from sheets_sync.store.models import (
    GOOGLE_ACCOUNT_EMAIL_DOMAIN,
    AccountLinkToken,
    Connection,
    GoogleIdentity,
    User,
)

LINK_TOKEN_LIFETIME = timedelta(minutes=30)
LINK_EXPIRED = (
    "This link has expired or was already used. Open the sheets-sync sidebar in your "
    "spreadsheet and choose Link to a web account again."
)
# Not a hash format check_password_hash accepts: nobody can sign in with a password.
NO_PASSWORD = "!google-sign-in-only"  # noqa: S105 - a marker, not a secret


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def find_google_identity(s: Session, sub: str) -> GoogleIdentity | None:
    """Read only: the identity bound to ``sub``, if any."""
    return s.scalar(select(GoogleIdentity).where(GoogleIdentity.sub == sub))


def google_user(s: Session, sub: str, email: str) -> User:
    """The account bound to Google's ``sub``; created on the first visit.

    The stored e-mail follows Google's (for display and alert e-mails); the binding is by
    ``sub`` only.
    """
    if not sub or len(sub) > 255:
        raise InvalidInput("Google did not say who you are; open the add-on again.")
    take_write_lock(s)
    identity = find_google_identity(s, sub)
    if identity is not None:
        if identity.email != email:
            identity.email = email
            s.flush()
        return identity.user
    user = User(
        email=f"{hashlib.sha256(sub.encode()).hexdigest()[:24]}{GOOGLE_ACCOUNT_EMAIL_DOMAIN}",
        password_hash=NO_PASSWORD,
    )
    s.add(user)
    s.flush()
    s.add(GoogleIdentity(user_id=user.id, sub=sub, email=email))
    s.flush()
    return user


def identity_of(s: Session, user: User) -> GoogleIdentity | None:
    return s.scalar(select(GoogleIdentity).where(GoogleIdentity.user_id == user.id))


def is_sidebar_account(user: User) -> bool:
    """An account the add-on made (no password, no web sign-in of its own)."""
    return user.email.endswith(GOOGLE_ACCOUNT_EMAIL_DOMAIN)


def create_link_token(
    s: Session, user: User, *, now: datetime | None = None
) -> tuple[str, datetime]:
    """A one-time token for linking ``user``'s Google identity to a web account."""
    identity = identity_of(s, user)
    if identity is None:
        raise InvalidInput("Only a Google account can be linked from the sidebar.")
    take_write_lock(s)
    plaintext = secrets.token_urlsafe(32)
    expires = (now or _now()) + LINK_TOKEN_LIFETIME
    s.add(
        AccountLinkToken(
            google_identity_id=identity.id, token_hash=_digest(plaintext), expires_at=expires
        )
    )
    s.flush()
    return plaintext, expires


@dataclass(frozen=True)
class LinkOffer:
    """What the web page shows before the signed-in person confirms a link."""

    google_email: str
    already_linked: bool


def _live_token(s: Session, token: str, now: datetime) -> AccountLinkToken | None:
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    row = s.scalar(select(AccountLinkToken).where(AccountLinkToken.token_hash == _digest(token)))
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    return row


def link_offer(s: Session, token: str, web_user: User, *, now: datetime | None = None
               ) -> LinkOffer:
    """Read a link without using it; ``InvalidInput`` if expired, used or unknown."""
    row = _live_token(s, token, now or _now())
    if row is None:
        raise InvalidInput(LINK_EXPIRED)
    identity = s.get(GoogleIdentity, row.google_identity_id)
    assert identity is not None  # the foreign key cascades
    return LinkOffer(identity.email, identity.user_id == web_user.id)


def void_link_token(s: Session, token: str, *, now: datetime | None = None) -> None:
    """Spend a link without using it (a wrong confirmation code was typed)."""
    take_write_lock(s)
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return
    s.execute(
        update(AccountLinkToken)
        .where(AccountLinkToken.token_hash == _digest(token), AccountLinkToken.used_at.is_(None))
        .values(used_at=now or _now())
        .execution_options(synchronize_session=False)
    )


def redeem_link_token(
    s: Session, token: str, web_user: User, *, now: datetime | None = None
) -> GoogleIdentity:
    """Bind the token's Google identity to ``web_user`` (signed in on the web page).

    Connections made in the sidebar under the identity's own account move to the web
    account, and that account (which nobody can sign in to) is removed. A web account
    already bound to another Google identity is refused: one Google account per person.
    """
    take_write_lock(s)
    now = now or _now()
    row = _live_token(s, token, now)
    if row is None:
        raise InvalidInput(LINK_EXPIRED)
    # Spent first, in the same transaction: a replay of the same link finds it used.
    spent = s.execute(
        update(AccountLinkToken)
        .where(AccountLinkToken.id == row.id, AccountLinkToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise InvalidInput(LINK_EXPIRED)
    identity = s.get(GoogleIdentity, row.google_identity_id)
    assert identity is not None
    if identity.user_id == web_user.id:
        return identity
    other = identity_of(s, web_user)
    if other is not None:
        raise InvalidInput(
            f"This web account is already linked to the Google account {other.email}."
        )
    old_user = s.get(User, identity.user_id)
    s.execute(
        update(Connection)
        .where(Connection.user_id == identity.user_id)
        .values(user_id=web_user.id)
        .execution_options(synchronize_session=False)
    )
    identity.user_id = web_user.id
    s.flush()
    # Reload what the old account holds now (no identity, no connections), so deleting
    # it cascades to nothing that moved.
    s.expire_all()
    old_user = s.get(User, old_user.id) if old_user is not None else None
    if old_user is not None and is_sidebar_account(old_user):
        s.delete(old_user)
        s.flush()
    found = s.get(GoogleIdentity, row.google_identity_id)
    assert found is not None
    return found

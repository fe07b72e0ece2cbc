"""Sign-in, sign-up and reset-request throttling, shared by every web process through
the database (``sheets_sync.store.attempts``), so two gunicorn workers or ten App Engine
instances allow what one would.

The policy (README, "Sign-in throttling"), for a window of ``login_window_seconds``:

* **Per client address, over all accounts**: ``login_address_max_failures`` failed
  sign-ins, then every sign-in from that address waits. Spraying many accounts from one
  address is limited like guessing one.
* **Per account and address**: ``login_max_failures`` failed sign-ins, then that account
  waits *from that address only*: a stranger's guesses never block the owner elsewhere.
* **Per account from everywhere (a slowdown, not a lockout)**: once an account has
  collected ``login_address_max_failures`` failures from all addresses together, each
  address gets one failed try at it per window instead of ``login_max_failures``. A
  correct password from an address that is not itself throttled still signs in.
* **Sign-ups and reset requests**: ``signups_per_hour`` per address.

An attempt is counted before its password is checked and forgotten if the password was
right, so concurrent guesses cannot slip past the count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from sheets_sync.config import Settings
from sheets_sync.store import attempts
from sheets_sync.store.db import session_scope
from sheets_sync.store.users import normalize_email

HOUR = 3600.0


@dataclass(frozen=True)
class SignIn:
    """The outcome of asking to check a password: go ahead (``attempt_id``) or wait."""

    attempt_id: int | None
    wait: float

    @property
    def allowed(self) -> bool:
        return self.attempt_id is not None


@dataclass
class Throttle:
    settings: Settings
    session_factory: sessionmaker[Session]
    clock: Callable[[], float] = field(default=time.time)

    @property
    def _window(self) -> float:
        return self.settings.login_window_seconds

    @property
    def _horizon(self) -> float:
        return max(self._window, HOUR)

    def _login_limits(self, s: Session, address: str, account: str, now: float) -> list[
        attempts.Limit
    ]:
        cfg, window = self.settings, self._window
        under_attack = (
            attempts.count_recent(
                s,
                attempts.Limit("login", cfg.login_address_max_failures, window, account_only=True),
                address, account, now,
            )
            >= cfg.login_address_max_failures
        )
        per_pair = 1 if under_attack else cfg.login_max_failures
        return [
            attempts.Limit("login", cfg.login_address_max_failures, window),
            attempts.Limit("login", per_pair, window, per_account=True),
        ]

    def begin_sign_in(self, address: str, email: str) -> SignIn:
        """Count a sign-in attempt about to check its password, if the limits allow one."""
        account = normalize_email(email)[:320]
        now = self.clock()
        with session_scope(self.session_factory, write=True) as s:
            attempts.begin(s, now, horizon=self._horizon)
            wait = attempts.wait_seconds(
                s, self._login_limits(s, address, account, now), address, account, now
            )
            if wait > 0:
                return SignIn(None, wait)
            return SignIn(attempts.record(s, "login", address, account, now), 0.0)

    def signed_in(self, attempt: SignIn) -> None:
        """The password was right: the attempt is not a failure."""
        if attempt.attempt_id is None:
            return
        with session_scope(self.session_factory, write=True) as s:
            attempts.release(s, attempt.attempt_id)

    def take(self, kind: str, address: str) -> float:
        """Count one sign-up or reset request from ``address``; seconds to wait (nothing
        counted) when the hourly allowance is spent, else 0."""
        now = self.clock()
        limit = attempts.Limit(kind, self.settings.signups_per_hour, HOUR)
        with session_scope(self.session_factory, write=True) as s:
            attempts.begin(s, now, horizon=self._horizon)
            wait = attempts.wait_seconds(s, [limit], address, None, now)
            if wait > 0:
                return wait
            attempts.record(s, kind, address, None, now)
            return 0.0


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def minutes_text(seconds: float) -> str:
    n = minutes(seconds)
    return f"{n} minute{'s' if n != 1 else ''}"


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}

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

A sign-in reads the counts before its password is checked and writes only when the
password was wrong, so the owner's sign-in never waits for a database writer. Guesses
sent in parallel are checked before any of them is counted, so a limit can be passed
by at most the number of sign-ins in flight at once (a handful of threads per process,
each ~0.1 s of scrypt), never more.
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

    def check_sign_in(self, address: str, email: str) -> float:
        """Seconds this sign-in must wait; 0 when its password may be checked now.

        Reads only: a sign-in with the right password never writes, so on SQLite it never
        queues behind a worker recording a run (tests/test_db_locking.py)."""
        account, address, now = _account_key(email), _address_key(address), self.clock()
        with session_scope(self.session_factory) as s:
            return attempts.wait_seconds(
                s, self._login_limits(s, address, account, now), address, account, now
            )

    def failed_sign_in(self, address: str, email: str) -> None:
        """Count a sign-in whose password was wrong."""
        account, address, now = _account_key(email), _address_key(address), self.clock()
        with session_scope(self.session_factory, write=True) as s:
            attempts.begin(s, now, horizon=self._horizon)
            attempts.record(s, "login", address, account, now)

    def take(self, kind: str, address: str) -> float:
        """Count one sign-up or reset request from ``address``; seconds to wait (nothing
        counted) when the hourly allowance is spent, else 0."""
        address = _address_key(address)
        now = self.clock()
        limit = attempts.Limit(kind, self.settings.signups_per_hour, HOUR)
        with session_scope(self.session_factory, write=True) as s:
            attempts.begin(s, now, horizon=self._horizon)
            wait = attempts.wait_seconds(s, [limit], address, None, now)
            if wait > 0:
                return wait
            attempts.record(s, kind, address, None, now)
            return 0.0


def _account_key(email: str) -> str:
    return normalize_email(email)[:320]


def _address_key(address: str) -> str:
    # What is stored and what is looked up must be the same text: a value from a
    # misconfigured proxy header could be long or odd, and must not escape the count.
    return "".join(c for c in address if c.isprintable())[:64] or "?"


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def minutes_text(seconds: float) -> str:
    n = minutes(seconds)
    return f"{n} minute{'s' if n != 1 else ''}"


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}

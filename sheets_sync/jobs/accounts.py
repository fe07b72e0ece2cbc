"""The pool of Google service accounts, and which one serves a connection.

Google gives each service account 60 Sheets writes a minute for every customer together,
so one account caps how many connections can be refreshed per hour. The pool
(``SHEETS_SYNC_SERVICE_ACCOUNT_FILES``) lifts that cap: each connection is pinned to one
account (``connections.service_account_email``), because its sheet is shared with that
address only. A connection never changes account by itself: ``sheets-sync connections
move`` does it, and says the sheet must be shared with the new address.

Connections stored before the pool existed (or while there was no key at all) have no
account yet: they belong to the primary account (the first key file, which is
``GOOGLE_APPLICATION_CREDENTIALS`` when no pool is set) and are pinned to it by their
first successful refresh, so a later change of the pool's order cannot move them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from sheets_sync.errors import ServiceAccountRemoved, SyncError
from sheets_sync.pipeline.sheets_writer import load_credentials

log = logging.getLogger("sheets_sync.accounts")


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    path: Path
    # The Google Cloud project the key belongs to: its 300 writes a minute are shared by
    # every account of the project.
    project_id: str


@dataclass(frozen=True)
class Pool:
    accounts: tuple[ServiceAccount, ...]
    # Key files that could not be read, with why (shown in logs; their connections fail
    # with ServiceAccountRemoved until the file is fixed).
    problems: tuple[tuple[Path, str], ...] = ()

    @property
    def emails(self) -> list[str]:
        return [a.email for a in self.accounts]

    @property
    def primary(self) -> ServiceAccount | None:
        return self.accounts[0] if self.accounts else None

    def get(self, email: str) -> ServiceAccount | None:
        for account in self.accounts:
            if account.email == email:
                return account
        return None


def load_pool(paths: list[Path]) -> Pool:
    """Read each key file once (credentials are cached per file by the Sheets client).
    A file listed twice, or two files of the same account, count once."""
    accounts: list[ServiceAccount] = []
    problems: list[tuple[Path, str]] = []
    for path in paths:
        try:
            creds = load_credentials(path)
        except SyncError as exc:
            problems.append((path, exc.message))
            log.error("service-account key file %s is not usable: %s", path, exc.message)
            continue
        email = str(creds.service_account_email)
        if any(a.email == email for a in accounts):
            continue
        project = str(getattr(creds, "project_id", None) or email.split("@")[-1].split(".")[0])
        accounts.append(ServiceAccount(email=email, path=path, project_id=project))
    return Pool(tuple(accounts), tuple(problems))


class PoolCache:
    """The pool for a set of paths, re-read when a key file changes on disk (a rotated
    key takes effect without a restart, like the single-file credentials do)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[tuple[str, float], ...] | None = None
        self._pool = Pool(())

    def get(self, paths: list[Path]) -> Pool:
        key = tuple((str(p), _mtime(p)) for p in paths)
        with self._lock:
            if key != self._key:
                self._pool = load_pool(paths)
                self._key = key
            return self._pool


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def removed_account_error(email: str, connection_id: int | None = None) -> ServiceAccountRemoved:
    what = f"connection {connection_id}" if connection_id is not None else "the connection"
    return ServiceAccountRemoved(
        f"This connection's sheet is shared with the service account {email}, but "
        "sheets-sync no longer has that account's key (it was removed from "
        "SHEETS_SYNC_SERVICE_ACCOUNT_FILES or cannot be read), so nothing was written and "
        "the connection was not moved to another account by itself. Whoever runs "
        "sheets-sync can put the key file back, or move it with "
        f"`sheets-sync connections move {connection_id if connection_id is not None else 'ID'} "
        f"--to EMAIL`; the sheet must then be shared with the new address as Editor "
        f"({what} keeps failing until then)."
    )

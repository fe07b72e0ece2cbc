"""Encryption keys for stored Instantly API keys, and the web session secret.

Instantly keys are stored as Fernet tokens (AES-128-CBC + HMAC-SHA256, authenticated),
never in plaintext. Keys come from ``SHEETS_SYNC_ENCRYPTION_KEYS`` (comma-separated; the
first encrypts, all decrypt, so a key can be rotated without downtime) or, for the
embedded default, from a key generated once into ``<data_dir>/encryption.key``.

No function here ever puts key material into an exception message or a log line.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sheets_sync.config import Settings
from sheets_sync.errors import ConfigurationError
from sheets_sync.store.db import take_write_lock
from sheets_sync.store.models import Connection

log = logging.getLogger(__name__)

ENCRYPTION_KEYS_VARIABLE = "SHEETS_SYNC_ENCRYPTION_KEYS"
ENCRYPTION_KEY_FILE = "encryption.key"
SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name, not a secret

UNDECRYPTABLE = (
    "A stored Instantly key cannot be decrypted with SHEETS_SYNC_ENCRYPTION_KEYS "
    "(or the data directory's encryption.key). Restore the encryption key that was in use "
    "when the connection was saved, or enter the Instantly API key again."
)


def load_or_create_keys(settings: Settings) -> MultiFernet:
    """The keys to encrypt (first) and decrypt (all) stored Instantly keys."""
    if settings.encryption_keys:
        return _parse_keys(settings.encryption_keys.split(","), ENCRYPTION_KEYS_VARIABLE)
    path = Path(settings.data_dir) / ENCRYPTION_KEY_FILE
    text = _read_or_create(path, lambda: Fernet.generate_key().decode("ascii"))
    # The file may hold several keys (one per line or comma-separated) so an operator
    # can rotate without moving to the environment variable.
    return _parse_keys(text.replace("\n", ",").split(","), str(path))


def load_or_create_secret_key(settings: Settings) -> str:
    """The Flask session signing key: the environment's, else one generated once."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    value = _read_or_create(path, lambda: secrets.token_hex(32)).strip()
    if not value:
        raise ConfigurationError(f"{path} is empty; delete it to generate a new one.")
    return value


def _parse_keys(items: list[str], source: str) -> MultiFernet:
    keys = [item.strip() for item in items if item.strip()]
    if not keys:
        raise ConfigurationError(f"{source}: no encryption key found.")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Name the place and the position, never the value.
            raise ConfigurationError(
                f"{source}: key number {position} is not a valid Fernet key "
                "(it must be 32 url-safe base64-encoded bytes; generate one with: "
                'python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None
    return MultiFernet(fernets)


def _read_or_create(path: Path, generate: Callable[[], str]) -> str:
    """Read a secret file, or create it atomically with mode 0600 if it does not exist.

    Several processes (web server, workers) may start at once on a fresh data dir: the
    file is written completely under a temporary name and then hard-linked into place,
    which fails if another process won, so every process ends up with the same secret.
    """
    try:
        return _read_private(path)
    except FileNotFoundError:
        pass
    _ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(generate() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            log.info("Generated %s (keep it: without it stored data cannot be read)", path)
        except FileExistsError:
            pass  # another process created it first; use theirs
    finally:
        tmp.unlink(missing_ok=True)
    return _read_private(path)


def _read_private(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Our own generated file was loosened (copied, restored from a backup...):
        # tighten it rather than keep a secret readable by other local users.
        try:
            os.chmod(path, 0o600)
            log.warning("Tightened permissions of %s to 0600 (were %o)", path, mode)
        except OSError:
            log.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    return path.read_text(encoding="ascii")


def _ensure_private_dir(directory: Path) -> None:
    if directory.exists():
        return
    # Created 0700: it holds the SQLite database and both generated secrets. An existing
    # directory is left as the operator set it up.
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def encrypt(fernet: MultiFernet, plaintext: str) -> str:
    return fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(fernet: MultiFernet, token: str) -> str:
    try:
        return fernet.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, AttributeError):
        raise ConfigurationError(UNDECRYPTABLE) from None


def key_hint(plaintext: str) -> str:
    """An ellipsis plus the last 4 characters, so a person can tell which key is stored.

    A very short value (a typo, a test) gets no characters at all: 4 characters of a
    10-character secret is too much of it.
    """
    value = plaintext.strip()
    if len(value) < 12:
        return "…"
    return "…" + value[-4:]


def rotate(session: Session, fernet: MultiFernet) -> int:
    """Re-encrypt every stored Instantly key with ``fernet``'s first key.

    Afterwards the old keys can be dropped from ``SHEETS_SYNC_ENCRYPTION_KEYS``. Raises
    ``ConfigurationError`` (and changes nothing, the caller rolls back) if a stored token
    cannot be decrypted with any of the keys.
    """
    take_write_lock(session)
    rows = session.execute(
        select(Connection.id, Connection.instantly_api_key_encrypted).order_by(Connection.id)
    ).all()
    for connection_id, token in rows:
        try:
            new_token = fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise ConfigurationError(UNDECRYPTABLE) from None
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            # Keep updated_at: re-encryption is not an edit the user made.
            .values(instantly_api_key_encrypted=new_token, updated_at=Connection.updated_at)
            .execution_options(synchronize_session=False)
        )
    # Objects already loaded in this session must not keep (and later write back) the
    # old token.
    session.expire_all()
    return len(rows)

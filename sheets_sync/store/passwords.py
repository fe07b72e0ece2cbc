"""Password hashes: scrypt from the standard library, in the ``scrypt:N:r:p$salt$hex``
format the store has always kept (so hashes made before keep verifying)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

# scrypt's cost (N, r, p): the store's long-standing default. Each hash records its own,
# so a change here (or a cheap one in tests) never breaks hashes already stored.
WORK = (32768, 8, 1)
_SALT_CHARS = string.ascii_letters + string.digits


def _derive(password: str, salt: str, n: int, r: int, p: int) -> str:
    memory = max(132 * n * r * p, 1 << 24)
    return hashlib.scrypt(
        password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=memory, dklen=64
    ).hex()


def generate_password_hash(password: str) -> str:
    n, r, p = WORK
    salt = "".join(secrets.choice(_SALT_CHARS) for _ in range(16))
    return f"scrypt:{n}:{r}:{p}${salt}${_derive(password, salt, n, r, p)}"


def check_password_hash(stored: str, password: str) -> bool:
    try:
        method, salt, digest = stored.split("$", 2)
        name, n, r, p = method.split(":")
        if name != "scrypt":
            return False
        return hmac.compare_digest(_derive(password, salt, int(n), int(r), int(p)), digest)
    except ValueError:
        return False

"""The code a person reads in the sidebar and types on the web page to link accounts.

The one-time link travels as a URL, and URLs end up in access logs and browser history.
The code is an HMAC of the link's token under the app's secret key, shown only in the
sidebar card: whoever holds just the URL cannot compute it, and one wrong code spends the
link, so it cannot be guessed either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

_ALPHABET_LENGTH = 8  # characters, base32: 40 bits, one try per link


def link_code(token: str) -> str:
    key = current_app.secret_key
    secret = key.encode() if isinstance(key, str) else bytes(key or b"")
    digest = hmac.new(secret, b"link-code:" + token.encode(), hashlib.sha256).digest()
    code = base64.b32encode(digest).decode()[:_ALPHABET_LENGTH]
    return f"{code[:4]}-{code[4:]}"


def code_matches(token: str, typed: str) -> bool:
    def normal(text: str) -> str:
        return "".join(c for c in text.upper() if c.isalnum())

    return hmac.compare_digest(normal(link_code(token)), normal(typed))

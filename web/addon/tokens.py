"""Google's ID tokens on add-on requests: who is calling (Google) and for whom (a person).

Every request must carry ``Authorization: Bearer <system ID token>`` minted for the
deployment's service account with the exact endpoint URL as audience; anything else is
not Google. The event's ``userIdToken`` (audience: the deployment's OAuth client id)
says who the person is. Both are verified with google-auth against the certs URL.

google-auth fetches the certs on every verification unless the transport caches them;
``CachingCertsRequest`` keeps them for as long as Google's ``Cache-Control`` allows.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.auth import transport
from google.oauth2 import id_token

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_MAX_AGE = re.compile(r"max-age=(\d+)")
# Google's certs carry max-age of several hours; without one, an hour, then re-fetch.
_DEFAULT_CACHE_SECONDS = 3600.0
# Tokens are minted by Google's clock; allow for a little drift between the two.
CLOCK_SKEW_SECONDS = 10


class TokenRefused(Exception):
    """The token is not what Google would send (the text is for the log, not the caller)."""


class CertsUnavailable(Exception):
    """Google's signing certs could not be fetched: nothing can be verified right now."""


class _CachedResponse(transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = dict(headers)
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class CachingCertsRequest(transport.Request):
    """A google-auth transport that answers repeated GETs of the certs from memory."""

    def __init__(self, session: requests.Session | None = None, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = google.auth.transport.requests.Request(session or requests.Session())
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, _CachedResponse]] = {}
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> transport.Response:
        if method != "GET" or body is not None:
            return self._inner(url, method=method, body=body, headers=headers,
                               timeout=timeout or self._timeout, **kwargs)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and hit[0] > now:
                return hit[1]
        response = self._inner(url, method="GET", headers=headers,
                               timeout=timeout or self._timeout, **kwargs)
        self.fetches += 1
        if response.status == 200:
            control = response.headers.get("Cache-Control", "") or ""
            match = _MAX_AGE.search(control)
            ttl = float(match.group(1)) if match else _DEFAULT_CACHE_SECONDS
            cached = _CachedResponse(response.status, response.headers, response.data)
            with self._lock:
                self._cache[url] = (now + ttl, cached)
            return cached
        return response

    def forget(self) -> None:
        """Drop the cache: a token signed by a key we do not know may be a new key."""
        with self._lock:
            self._cache.clear()


@dataclass(frozen=True)
class Person:
    sub: str
    email: str


class TokenVerifier:
    def __init__(self, certs_url: str, request: CachingCertsRequest | None = None) -> None:
        self.certs_url = certs_url
        self.request = request or CachingCertsRequest()

    def _claims(self, token: str, audience: str) -> dict[str, Any]:
        if not token or len(token) > 8192 or token.count(".") != 2:
            raise TokenRefused("not a JWT")
        for fresh in (False, True):
            try:
                claims = id_token.verify_token(
                    token, self.request, audience=audience, certs_url=self.certs_url,
                    clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
                )
            except google.auth.exceptions.TransportError as exc:
                raise CertsUnavailable(type(exc).__name__) from None
            except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
                text = str(exc)
                # An unknown key id may be a key Google rotated in since we cached.
                if not fresh and ("Certificate for key id" in text or "signature" in text):
                    self.request.forget()
                    continue
                raise TokenRefused(text.splitlines()[0][:200] if text else "invalid") from None
            break
        if not isinstance(claims, dict) or claims.get("iss") not in GOOGLE_ISSUERS:
            raise TokenRefused("issuer is not Google")
        return claims

    def system(self, token: str, *, audience: str, service_account: str) -> None:
        """The request comes from the deployment (Google), for this endpoint."""
        claims = self._claims(token, audience)
        if claims.get("email") != service_account or claims.get("email_verified") is not True:
            raise TokenRefused("not the add-on's service account")

    def person(self, token: str, *, client_id: str) -> Person:
        claims = self._claims(token, client_id)
        sub, email = claims.get("sub"), claims.get("email")
        if not isinstance(sub, str) or not sub or not isinstance(email, str):
            raise TokenRefused("no sub or e-mail")
        if claims.get("email_verified") is not True:
            raise TokenRefused("e-mail not verified")
        return Person(sub=sub, email=email.lower())

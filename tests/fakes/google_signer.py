"""A stand-in for Google's ID-token issuer: RS256 tokens signed with a local key, and the
signing certs served over HTTP in google-auth's v1 format (``{kid: PEM certificate}``).

Add-on tests verify real tokens with real google-auth against ``certs_url``; a forged
token is one signed by ``other_key`` (whose cert is not served).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

GOOGLE_ISSUER = "https://accounts.google.com"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.signer = crypt.RSASigner.from_string(pem, key_id=kid)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google-signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self._private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._private, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()


class GoogleSigner:
    def __init__(self) -> None:
        self.key = _Key("test-key-1")
        self.other_key = _Key("test-key-1")  # same kid, different key: a forgery
        self.cert_fetches = 0
        self.latency = 0.0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- tokens --

    def token(self, claims: dict[str, Any], *, key: _Key | None = None,
              expires_in: int = 3600) -> str:
        now = int(time.time())
        payload = {"iss": GOOGLE_ISSUER, "iat": now - 5, "exp": now + expires_in, **claims}
        return jwt.encode((key or self.key).signer, payload).decode()

    def system_token(self, audience: str, email: str, **kwargs: Any) -> str:
        """What Google puts in ``Authorization: Bearer`` for the deployment's account."""
        claims = {"aud": audience, "azp": "1234567890", "email": email,
                  "email_verified": True, "sub": "1111111111"}
        claims.update(kwargs.pop("extra", {}))
        return self.token(claims, **kwargs)

    def user_token(self, audience: str, sub: str, email: str, **kwargs: Any) -> str:
        claims = {"aud": audience, "azp": audience, "sub": sub, "email": email,
                  "email_verified": True}
        return self.token(claims, **kwargs)

    # -- the certs endpoint --

    @property
    def certs_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/oauth2/v1/certs"

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path != "/oauth2/v1/certs":
            return Response("not found", 404)(environ, start_response)
        if self.latency:
            time.sleep(self.latency)
        self.cert_fetches += 1
        body = json.dumps({self.key.kid: self.key.cert_pem})
        response = Response(body, 200, content_type="application/json")
        response.headers["Cache-Control"] = "public, max-age=19000, must-revalidate"
        return response(environ, start_response)

    def start(self) -> GoogleSigner:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True,
                                   request_handler=_Quiet)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""Read the environment's HTTP settings once per session, not on every request.

requests re-reads proxies (``HTTPS_PROXY``, ``NO_PROXY``), the CA bundle
(``REQUESTS_CA_BUNDLE``) and ``~/.netrc`` on every call of a session that trusts the
environment: about 0.4 ms of CPU per call, several per refresh. Each session of ours talks
to one API root, so the settings for that root are worked out once, when the client is
built, and the session then stops looking. (``.netrc`` is left out on purpose: its
Basic credentials would replace the Bearer header we send.)
"""

from __future__ import annotations

import http.cookiejar

import requests


def settle_environment(session: requests.Session, base_url: str) -> requests.Session:
    """Fix ``session``'s proxies, CA bundle and client certificate to what the
    environment says for ``base_url`` now, and stop it re-reading the environment."""
    if not session.trust_env:
        return session
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies = dict(found["proxies"])
    session.verify = found["verify"]
    session.cert = found["cert"]
    session.trust_env = False
    return session


def keep_no_cookies(session: requests.Session) -> requests.Session:
    """Refuse every cookie: a session shared by the clients of several workspaces must not
    carry what one workspace's answers set into another's requests (and neither API needs
    cookies)."""
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session

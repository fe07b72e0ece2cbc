"""The Sheets add-on's deployment resource (HTTP runtime), printed by
``sheets-sync addon deployment`` for ``gcloud workspace-add-ons deployments create``.

Pure: it only knows the base URL. Every trigger is an absolute URL of ours; Google calls
them with a system ID token whose audience is that exact URL (``web.addon.tokens``).
"""

from __future__ import annotations

from typing import Any

ADDON_NAME = "sheets-sync"
HOMEPAGE_PATH = "/addon/homepage"
FILE_SCOPE_GRANTED_PATH = "/addon/file-scope-granted"
LOGO_PATH = "/static/favicon.svg"

# Each scope and what it is for (the README repeats this list).
OAUTH_SCOPES: dict[str, str] = {
    # Google sends the person's userIdToken (sub, e-mail): who they are in sheets-sync.
    "https://www.googleapis.com/auth/userinfo.email": "who you are (your Google account's "
    "e-mail and id), so your connections are yours",
    # The open spreadsheet only, granted by the person when the sidebar asks: lets their
    # own token add the connection's service account as an editor of this one file.
    "https://www.googleapis.com/auth/drive.file": "only the spreadsheet you connect, when "
    "you allow it: to share it with the address that writes the tab",
    # The person's locale and time zone in each event: the schedule's default time zone.
    "https://www.googleapis.com/auth/script.locale": "your time zone, as the default for "
    "scheduled refreshes",
}


def base_url_of(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ValueError("the base URL must start with https://")
    return url


def deployment_resource(base_url: str) -> dict[str, Any]:
    """The JSON body of a ``Deployment`` (``oauthScopes`` and ``addOns``)."""
    base = base_url_of(base_url)
    homepage = {"runFunction": f"{base}{HOMEPAGE_PATH}", "enabled": True}
    return {
        "oauthScopes": list(OAUTH_SCOPES),
        "addOns": {
            "common": {
                "name": ADDON_NAME,
                "logoUrl": f"{base}{LOGO_PATH}",
                "useLocaleFromApp": True,
                "homepageTrigger": homepage,
            },
            "sheets": {
                "homepageTrigger": homepage,
                "onFileScopeGrantedTrigger": {
                    "runFunction": f"{base}{FILE_SCOPE_GRANTED_PATH}"
                },
            },
            "httpOptions": {"authorizationHeader": "SYSTEM_ID_TOKEN"},
        },
    }

"""Give the service account edit access to one file, with the person's own Google token.

One Drive call: ``POST /drive/v3/files/{id}/permissions?sendNotificationEmail=false``
``{"role": "writer", "type": "user", "emailAddress": ...}``, authorised by the
``userOAuthToken`` the Sheets add-on receives once the person granted access to the open
file (``drive.file``). Google answers a repeat of the same grant with the same permission,
so the call is safe to send twice: a send whose answer was lost (timeout, broken
connection, 5xx) is sent once more, and a 2xx means "the address can write", whether it
was just added or already there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from sheets_sync import USER_AGENT
from sheets_sync.errors import SyncError, scrub

log = logging.getLogger(__name__)

# Drive's reasons for a refused share that the person (or their admin) can act on.
_NOT_AN_EDITOR = {"insufficientFilePermissions", "forbidden", "insufficientPermissions"}
_DOMAIN_POLICY = {
    "invalidSharingRequest",
    "cannotShareTeamDriveWithNonGoogleAccounts",
    "shareOutNotPermitted",
    "shareInNotPermitted",
    "cannotShareTeamDriveTopFolderWithAnyoneOrDomains",
    "domainPolicy",
    "publishOutNotPermitted",
}


class DriveShareRefused(SyncError):
    """Google refused the person's share: ``reason`` is "not_editor" or "domain_policy"."""

    code = "drive_share_refused"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DriveTokenRejected(SyncError):
    """The person's token is no longer valid (expired or access withdrawn)."""

    code = "drive_token_rejected"


class DriveUnavailable(SyncError):
    code = "drive_unavailable"
    retryable = True


@dataclass(frozen=True)
class Permission:
    id: str
    role: str
    email: str


def _reason(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    reasons = [e.get("reason", "") for e in error.get("errors", []) if isinstance(e, dict)]
    return (reasons[0] if reasons else str(error.get("status", ""))), str(
        error.get("message", "")
    )


class DriveClient:
    """The one Drive call the add-on makes. ``session`` is for tests and benchmarks."""

    def __init__(
        self,
        api_url: str,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        session: requests.Session | None = None,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._session = session or requests.Session()

    def add_writer(self, file_id: str, email: str, user_token: str) -> Permission:
        """Make ``email`` a writer of ``file_id`` as the person whose token this is."""
        url = f"{self._api_url}/drive/v3/files/{quote(file_id, safe='')}/permissions"
        params = {
            "sendNotificationEmail": "false",
            "supportsAllDrives": "true",
            "fields": "id,role,emailAddress",
        }
        headers = {
            "Authorization": f"Bearer {user_token}",
            "User-Agent": USER_AGENT,
        }
        body = {"role": "writer", "type": "user", "emailAddress": email}
        response = None
        for attempt in (1, 2):
            try:
                response = self._session.post(
                    url, params=params, json=body, headers=headers, timeout=self._timeout
                )
            except requests.RequestException as exc:
                log.warning("drive share attempt=%d failed: %s", attempt, type(exc).__name__)
                response = None
                continue
            if response.status_code < 500:
                break
        if response is None or response.status_code >= 500:
            raise DriveUnavailable(
                "Google Drive did not answer. Press the button again in a minute."
            )
        if response.status_code in (200, 201):
            payload: Any = response.json()
            return Permission(
                id=str(payload.get("id", "")),
                role=str(payload.get("role", "writer")),
                email=str(payload.get("emailAddress", email)),
            )
        reason, message = _reason(response)
        safe_message = scrub(message, (user_token,))
        if response.status_code == 401:
            raise DriveTokenRejected(
                "Google did not accept your permission to change sharing. Close the "
                "sidebar, open it again and allow access when asked."
            )
        if reason in _DOMAIN_POLICY or (
            response.status_code in (400, 403) and "domain" in safe_message.lower()
        ):
            raise DriveShareRefused(
                "Your organisation does not allow sharing this spreadsheet with an "
                "address outside it.",
                "domain_policy",
            )
        if response.status_code == 403 or reason in _NOT_AN_EDITOR:
            raise DriveShareRefused(
                "You cannot share this spreadsheet: only its editors (with permission to "
                "share) can give access.",
                "not_editor",
            )
        if response.status_code == 404:
            raise DriveShareRefused(
                "Google does not let this add-on see the spreadsheet yet. Allow access to "
                "this file when asked.",
                "no_file_access",
            )
        raise DriveShareRefused(
            f"Google Drive refused the share ({response.status_code}): {safe_message}",
            "other",
        )

"""Errors a person can act on.

Every failure that can reach a user is one of these: a stable ``code`` for programs
(the JSON API, the run record), a ``message`` written for a non-engineer that says what
happened and what to do, and two independent judgements about its cause:

- ``retryable``: the cause is transient (a 5xx, a 429, a timeout), so trying the same
  call again within the same run can help. ``retry.call_with_retry`` acts on it.
- ``pauses``: only the connection's owner can fix it (their key was rejected, their
  sheet was unshared or deleted, their settings are wrong). Three of these in a row
  pause the connection's schedule. Outages, our own bugs and problems with how
  sheets-sync itself is set up never pause: they are not the owner's to fix, and one
  Google outage must not pause every customer.

Messages never contain a secret: they are built from fixed text plus identifiers we
chose or the user typed, and any text copied from an upstream answer goes through
``scrub`` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"


class SyncError(Exception):
    """Base class: something the user should see in the run record and on the page."""

    code: str = "sync_failed"
    retryable: bool = False
    # Unless a class says the owner can fix it, a failure is not held against the owner.
    pauses: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InternalError(SyncError):
    """A bug in sheets-sync, not the user's doing: never pauses; the next slot tries again
    (retrying within the run would only repeat the bug)."""

    code = "internal_error"


class ConfigurationError(SyncError):
    """sheets-sync itself is set up wrongly (environment, credentials, encryption keys).

    Whoever runs sheets-sync fixes it, not the connection's owner, and it hits every
    connection at once: it never pauses a schedule, which carries on by itself once the
    setup is fixed.
    """

    code = "configuration"


class InvalidInput(SyncError):
    """The connection's own settings are wrong (bad link, bad date range)."""

    code = "invalid_input"
    pauses = True


# --- Instantly -------------------------------------------------------------------------


class InstantlyKeyRejected(SyncError):
    """401, or 403 for a key without the analytics scope: the owner makes a new key."""

    code = "instantly_key_rejected"
    pauses = True


class InstantlyPaymentRequired(SyncError):
    code = "instantly_payment_required"
    pauses = True


class InstantlyRateLimited(SyncError):
    code = "instantly_rate_limited"
    retryable = True


class InstantlyUnavailable(SyncError):
    code = "instantly_unavailable"
    retryable = True


class InstantlyMalformedResponse(SyncError):
    code = "instantly_malformed_response"
    # A body cut short in transit reads the same as a schema change; trying again within
    # the run is cheap and fixes the first. Neither is the owner's to fix.
    retryable = True


class InstantlyEmptyAnswer(SyncError):
    """Instantly suddenly reported nothing for a campaign that had numbers: keep the sheet."""

    code = "instantly_empty_answer"
    retryable = False  # asking again within the run rarely helps; the next slot will


class InstantlyNotFound(SyncError):
    code = "instantly_campaign_not_found"
    pauses = True


class InstantlyRequestRejected(SyncError):
    """Any other 4xx. Dates and campaign ids are validated before they are sent, so this
    means Instantly and sheets-sync disagree about the request: not the owner's to fix."""

    code = "instantly_request_rejected"


# --- Google Sheets ---------------------------------------------------------------------


class SheetNotShared(SyncError):
    code = "sheet_not_shared"
    pauses = True


class SpreadsheetNotFound(SyncError):
    code = "spreadsheet_not_found"
    pauses = True


class SheetsQuotaExhausted(SyncError):
    code = "sheets_quota_exhausted"
    retryable = True


class SheetsUnavailable(SyncError):
    code = "sheets_unavailable"
    retryable = True


class SheetsWriteUnconfirmed(SyncError):
    """Google may or may not have applied a write: no answer, a timeout, or a 5xx after
    the body was sent. Never resent blind: the engine re-reads the sheet and plans again,
    and only this error's final form (the re-read failed too) reaches the run record."""

    code = "sheets_write_unconfirmed"
    # Not retried by the retry policy (that would resend the same batch); the next
    # refresh re-reads and reconciles.
    retryable = False


class GoogleAuthUnavailable(SyncError):
    """Google's token endpoint answered 5xx/429 or could not be reached.

    Raised before the Sheets request is sent, so trying again is always safe. Not a
    ``SheetsUnavailable``: that one may follow a write whose fate is unknown.
    """

    code = "google_auth_unavailable"
    retryable = True


class SheetsRequestRejected(SyncError):
    """Google refused a request sheets-sync built: ours to fix, not the owner's."""

    code = "sheets_request_rejected"


class SpreadsheetFull(SheetsRequestRejected):
    # A subclass so the write path's "is the tab still there?" check treats it like any
    # other refused batch.
    code = "spreadsheet_full"
    pauses = True


class ReportTooLarge(SyncError):
    code = "report_too_large"
    pauses = True


class GoogleCredentialsMissing(ConfigurationError):
    code = "google_credentials_missing"


class GoogleCredentialsRejected(ConfigurationError):
    """Google refused the service-account key (deleted, disabled, server clock wrong)."""

    code = "google_credentials_rejected"


class GoogleApiDisabled(ConfigurationError):
    """The Sheets API is off in the service account's project: a 403 that is not about
    sharing."""

    code = "google_api_disabled"


class ServiceAccountRemoved(ConfigurationError):
    """The connection is pinned to a service account whose key file is no longer in the
    pool. Never re-pinned silently (the sheet is shared with that address only), so the
    refresh fails until the key comes back or the operator moves the connection."""

    code = "service_account_removed"


# --- the store -------------------------------------------------------------------------


class ConnectionDeleted(SyncError):
    """The connection was deleted while its refresh ran; the refresh stopped unwritten.

    Nothing to fix and nobody to tell: never retried and never a reason to pause.
    """

    code = "connection_deleted"
    pauses = False


# --- scrubbing secrets out of text -----------------------------------------------------

_CREDENTIAL_CHARS = r"A-Za-z0-9._~+/-"
# A value ends at whitespace, quotes, brackets and separators, and never on a full stop,
# so the sentence around it survives (and "[redacted]" itself is never matched again).
_VALUE = r"[^\s&#\"'<>()\[\]{},;]*[^\s&#\"'<>()\[\]{},;.]"
# Text after "Bearer" is redacted only if it looks like a credential, so that prose such
# as "Bearer authentication failed" keeps its words.
_BEARER = re.compile(
    rf"(\bbearer\s+)([{_CREDENTIAL_CHARS}]*[A-Za-z0-9_~+/-]=*)", re.IGNORECASE
)
_AUTHORIZATION = re.compile(
    r"(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token|digest|apikey)\s+)?)"
    # Never the scheme word itself: "Bearer [redacted]" stays as it is.
    rf"(?!(?:bearer|basic|token|digest|apikey)\s)({_VALUE})",
    re.IGNORECASE,
)
_GOOGLE_ACCESS_TOKEN = re.compile(r"\bya29\.[A-Za-z0-9._-]*[A-Za-z0-9_-]")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_CREDENTIAL_NAMES = (
    r"api[_-]?key|x-api-key|key|access[_-]?token|refresh[_-]?token|token|"
    r"client[_-]?secret|secret|password"
)
_QUERY_VALUE = re.compile(
    rf"((?<![A-Za-z0-9_-])(?:{_CREDENTIAL_NAMES})=)({_VALUE})", re.IGNORECASE
)
_JSON_VALUE = re.compile(
    rf"([\"'](?:{_CREDENTIAL_NAMES})[\"']\s*:\s*[\"'])([^\"']+)", re.IGNORECASE
)
# A "secret" shorter than this is not a real key, and replacing it would eat ordinary text.
_MIN_SECRET_LENGTH = 6


def _looks_like_credential(token: str) -> bool:
    if len(token) >= 20:
        return True
    return len(token) >= 6 and any(not c.isalpha() for c in token)


def _redact_bearer(match: re.Match[str]) -> str:
    if _looks_like_credential(match.group(2)):
        return match.group(1) + REDACTED
    return match.group(0)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets (also URL-encoded) and without anything shaped
    like a credential: bearer tokens, ``Authorization`` values, Google access tokens,
    JWTs and ``key=``/``api_key=``/``token=`` values.

    Apply it to any text that came from outside (an upstream error message) before it is
    stored, logged or shown.
    """
    if not text:
        return text
    for secret in sorted({s.strip() for s in secrets if s}, key=len, reverse=True):
        if len(secret) < _MIN_SECRET_LENGTH:
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}:
            text = text.replace(form, REDACTED)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(_redact_bearer, text)
    text = _GOOGLE_ACCESS_TOKEN.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _QUERY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _JSON_VALUE.sub(lambda m: m.group(1) + REDACTED, text)

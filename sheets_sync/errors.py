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
chose or the user typed.
"""

from __future__ import annotations


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

"""Errors a person can act on.

Every failure that can reach a user is one of these: a stable ``code`` for programs
(the JSON API, the run record), a ``message`` written for a non-engineer that says what
happened and what to do, and ``retryable`` so the worker knows whether trying again at
the next slot can help or whether only the user can fix it. Messages never contain a
secret: they are built from fixed text plus identifiers we chose or the user typed.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class: something the user should see in the run record and on the page."""

    code: str = "sync_failed"
    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InternalError(SyncError):
    """A bug in sheets-sync, not the user's doing: retry at the next slot, never pause."""

    code = "internal_error"
    retryable = True


class ConfigurationError(SyncError):
    code = "configuration"


class InvalidInput(SyncError):
    """The connection's own settings are wrong (bad link, bad date range)."""

    code = "invalid_input"


# --- Instantly -------------------------------------------------------------------------


class InstantlyKeyRejected(SyncError):
    code = "instantly_key_rejected"


class InstantlyPaymentRequired(SyncError):
    code = "instantly_payment_required"


class InstantlyRateLimited(SyncError):
    code = "instantly_rate_limited"
    retryable = True


class InstantlyUnavailable(SyncError):
    code = "instantly_unavailable"
    retryable = True


class InstantlyMalformedResponse(SyncError):
    code = "instantly_malformed_response"
    # A schema change on Instantly's side will not fix itself in five minutes, but it is
    # not the user's fault either; retrying at the next slot is cheap and harmless.
    retryable = True


class InstantlyEmptyAnswer(SyncError):
    """Instantly suddenly reported nothing for a campaign that had numbers: keep the sheet."""

    code = "instantly_empty_answer"
    retryable = False  # asking again within the run rarely helps; the next slot will


class InstantlyNotFound(SyncError):
    code = "instantly_campaign_not_found"


# --- Google Sheets ---------------------------------------------------------------------


class SheetNotShared(SyncError):
    code = "sheet_not_shared"


class SpreadsheetNotFound(SyncError):
    code = "spreadsheet_not_found"


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


class SheetsRequestRejected(SyncError):
    code = "sheets_request_rejected"


class ReportTooLarge(SyncError):
    code = "report_too_large"


class GoogleCredentialsMissing(ConfigurationError):
    code = "google_credentials_missing"


# --- the store -------------------------------------------------------------------------


class ConnectionDeleted(SyncError):
    """The connection was deleted while its refresh ran; the refresh stopped unwritten.

    Nothing to fix and nobody to tell: never retried and never a reason to pause.
    """

    code = "connection_deleted"
    pauses = False

"""Every error class against the rule: ``retryable`` = worth trying again within the run,
``pauses`` = only the connection's owner can fix it."""

from __future__ import annotations

import inspect

import pytest

from sheets_sync import errors

# class, code, retryable, pauses
TABLE: list[tuple[type[errors.SyncError], str, bool, bool]] = [
    (errors.SyncError, "sync_failed", False, False),
    (errors.InternalError, "internal_error", False, False),
    (errors.ConfigurationError, "configuration", False, False),
    (errors.InvalidInput, "invalid_input", False, True),
    (errors.InstantlyKeyRejected, "instantly_key_rejected", False, True),
    (errors.InstantlyPaymentRequired, "instantly_payment_required", False, True),
    (errors.InstantlyRateLimited, "instantly_rate_limited", True, False),
    (errors.InstantlyUnavailable, "instantly_unavailable", True, False),
    (errors.InstantlyMalformedResponse, "instantly_malformed_response", True, False),
    (errors.InstantlyNotFound, "instantly_campaign_not_found", False, True),
    (errors.InstantlyRequestRejected, "instantly_request_rejected", False, False),
    (errors.SheetNotShared, "sheet_not_shared", False, True),
    (errors.SpreadsheetNotFound, "spreadsheet_not_found", False, True),
    (errors.SheetsQuotaExhausted, "sheets_quota_exhausted", True, False),
    (errors.SheetsUnavailable, "sheets_unavailable", True, False),
    (errors.GoogleAuthUnavailable, "google_auth_unavailable", True, False),
    (errors.SheetsRequestRejected, "sheets_request_rejected", False, False),
    (errors.SpreadsheetFull, "spreadsheet_full", False, True),
    (errors.ReportTooLarge, "report_too_large", False, True),
    (errors.GoogleCredentialsMissing, "google_credentials_missing", False, False),
    (errors.GoogleCredentialsRejected, "google_credentials_rejected", False, False),
    (errors.GoogleApiDisabled, "google_api_disabled", False, False),
]


@pytest.mark.parametrize(
    ("cls", "code", "retryable", "pauses"), TABLE, ids=[row[0].__name__ for row in TABLE]
)
def test_each_error_class_is_sorted_by_its_cause(
    cls: type[errors.SyncError], code: str, retryable: bool, pauses: bool
) -> None:
    exc = cls("message")
    assert (exc.code, exc.retryable, exc.pauses) == (code, retryable, pauses)


def test_the_table_covers_every_error_class() -> None:
    defined = {
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.SyncError) and obj.__module__ == errors.__name__
    }
    assert defined == {row[0] for row in TABLE}
    assert len({row[1] for row in TABLE}) == len(TABLE), "codes are unique"


def test_nothing_is_both_transient_and_the_owners_to_fix() -> None:
    assert not [cls for cls, _, retryable, pauses in TABLE if retryable and pauses]


def test_setup_problems_never_pause() -> None:
    assert not [cls for cls, *_ in TABLE if issubclass(cls, errors.ConfigurationError)
                and cls.pauses]

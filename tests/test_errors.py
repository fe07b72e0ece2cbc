"""Every error class against the rule: ``retryable`` = worth trying again within the run,
``pauses`` = only the connection's owner can fix it. And ``scrub``, which takes secrets
out of any text that came from outside."""

from __future__ import annotations

import inspect

import pytest

from sheets_sync import errors
from sheets_sync.errors import REDACTED, scrub

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
    (errors.InstantlyEmptyAnswer, "instantly_empty_answer", False, False),
    (errors.InstantlyNotFound, "instantly_campaign_not_found", False, True),
    (errors.InstantlyRequestRejected, "instantly_request_rejected", False, False),
    (errors.SheetNotShared, "sheet_not_shared", False, True),
    (errors.SpreadsheetNotFound, "spreadsheet_not_found", False, True),
    (errors.SheetsQuotaExhausted, "sheets_quota_exhausted", True, False),
    (errors.SheetsUnavailable, "sheets_unavailable", True, False),
    (errors.SheetsWriteUnconfirmed, "sheets_write_unconfirmed", False, False),
    (errors.GoogleAuthUnavailable, "google_auth_unavailable", True, False),
    (errors.SheetsRequestRejected, "sheets_request_rejected", False, False),
    (errors.SpreadsheetFull, "spreadsheet_full", False, True),
    (errors.ReportTooLarge, "report_too_large", False, True),
    (errors.GoogleCredentialsMissing, "google_credentials_missing", False, False),
    (errors.GoogleCredentialsRejected, "google_credentials_rejected", False, False),
    (errors.GoogleApiDisabled, "google_api_disabled", False, False),
    (errors.ServiceAccountRemoved, "service_account_removed", False, False),
    (errors.ConnectionDeleted, "connection_deleted", False, False),
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


# --- scrub -----------------------------------------------------------------------------

KEY = "NmY4ZDk3YjMtZmE0Yy00+/=c2VjcmV0"


@pytest.mark.parametrize(
    ("text", "secret_part"),
    [
        (f"Invalid API key {KEY} for workspace", KEY),
        ("key%3D" + "NmY4ZDk3YjMtZmE0Yy00%2B%2F%3Dc2VjcmV0", "NmY4ZDk3YjMtZmE0Yy00%2B%2F%3D"),
        ("bad key NmY4ZDk3YjMtZmE0Yy00%2B/%3Dc2VjcmV0 here", "NmY4ZDk3YjMtZmE0Yy00%2B/"),
        ("bad key NmY4ZDk3YjMtZmE0Yy00%2B%2F%3Dc2VjcmV0 here", "NmY4ZDk3YjMtZmE0Yy00%2B%2F"),
    ],
)
def test_scrub_removes_the_given_secret_plain_and_url_encoded(text: str, secret_part: str) -> None:
    out = scrub(text, secrets=(KEY,))
    assert secret_part not in out
    assert KEY not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("header was Bearer abc123def456ghi789", "abc123def456ghi789"),
        ("bearer Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4eHg=", "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4eHg"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('{"authorization": "Bearer s3cr3t-t0ken"}', "s3cr3t-t0ken"),
        ("Proxy-Authorization: Digest xyz987", "xyz987"),
        ("token ya29.a0AfH6SMBx-abc_def.ghi rejected", "ya29.a0AfH6SMBx-abc_def.ghi"),
        (
            "jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl was bad",
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl",
        ),
        ("GET /v1/x?api_key=live_123abc&limit=5", "live_123abc"),
        ("GET /v1/x?limit=5&key=AIzaSyD-abc123", "AIzaSyD-abc123"),
        ("see https://x.test/cb?access_token=tok_42#frag", "tok_42"),
        ('{"api_key": "k-777-secret", "ok": false}', "k-777-secret"),
        ("password=hunter2 and more", "hunter2"),
    ],
)
def test_scrub_removes_what_looks_like_a_credential(text: str, leak: str) -> None:
    out = scrub(text)
    assert leak not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "Campaign not found",
        "Bearer authentication failed",
        "The bearer of this message has no token",
        "Authorization failed for this workspace",
        "The API key does not have the required scope",
        "Use a key from Settings → Integrations → API Keys",
        "monkey=3 donkey=4 turkey=5",
        "keyboard layout, keystone, keyword",
        "querystring/limit must be <= 100",
        "Start Date must be earlier than End Date",
        "Invalid requests[0].updateCells: unknown field",
        "https://docs.google.com/spreadsheets/d/1AbCdEfGh/edit#gid=0",
        "eyJ alone is not a token, nor is eye.jay.dot",
        "",
    ],
)
def test_scrub_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub(text) == text
    assert scrub(text, secrets=(KEY,)) == text


def test_scrub_ignores_blank_and_too_short_secrets() -> None:
    text = "Instantly rejected the request (HTTP 400: bad date)."
    assert scrub(text, secrets=("", "   ", "bad", "the")) == text


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {KEY}",
        "Authorization: Bearer abc123def",
        "Authorization: abc123def",
        f"GET /x?api_key={KEY}&y=1 and ya29.abc-def",
        f"(HTTP 400: Invalid key {KEY}). Check the dates.",
    ],
)
def test_scrub_is_idempotent(text: str) -> None:
    once = scrub(text, secrets=(KEY,))
    assert scrub(once, secrets=(KEY,)) == once
    assert scrub(once) == once
    assert KEY not in once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(HTTP 400: ?api_key=abc123). Check it.", "(HTTP 400: ?api_key=[redacted]). Check it."),
        ("Sent Authorization: Bearer abc123def. Ok", "Sent Authorization: Bearer [redacted]. Ok"),
        ("Use Bearer abc123def.", "Use Bearer [redacted]."),
        ('{"token": "t-1", "n": 2}', '{"token": "[redacted]", "n": 2}'),
        ("id ya29.a0Af-x_y. Next", "id [redacted]. Next"),
    ],
)
def test_scrub_keeps_the_sentence_around_a_credential(text: str, expected: str) -> None:
    assert scrub(text) == expected

"""The checks made when a person saves a connection, shared by the form and the JSON API.

What will certainly fail is refused, field by field: a key Instantly rejects, campaign
ids its workspace does not have. What may be fixed later is saved and said: Instantly
could not be asked (a warning), the sheet is not shared yet or only as Viewer (kept in
the connection's options, so the dashboard says so before any refresh). No database
session is open here: these are network calls while a person waits, so they retry
little and time out sooner than a sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sheets_sync.errors import SyncError
from sheets_sync.jobs.runtime import Runtime
from sheets_sync.pipeline.instantly_check import (
    check_key_and_campaigns,
    unknown_campaigns_message,
)
from sheets_sync.pipeline.retry import RetryPolicy
from sheets_sync.pipeline.sheet_access import check_edit_access

# One quick second try for a blip; a longer outage is a warning, not a wait.
WHILE_WAITING = RetryPolicy(attempts=2, base_backoff=0.2, max_backoff=0.5, max_total_wait=1.0)
MAX_READ_SECONDS = 10.0
SHEET_ACCESS_OPTION = "sheet_access"
CAMPAIGN_NAMES_OPTION = "campaign_names"
# Sheet states worth a notice on the dashboard until a refresh succeeds.
NEEDS_SHARING = ("not_shared", "viewer", "not_found")


@dataclass
class SaveChecks:
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Merged into the connection's options when it is saved.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.field_errors

    def refuse(self, name: str, message: str) -> None:
        self.field_errors.setdefault(name, []).append(message)

    def merge(self, other: SaveChecks) -> SaveChecks:
        for name, messages in other.field_errors.items():
            for message in messages:
                self.refuse(name, message)
        self.warnings += other.warnings
        self.options.update(other.options)
        return self


def _timeout(rt: Runtime) -> tuple[float, float]:
    connect, read = rt.settings.http_timeout
    return (connect, min(read, MAX_READ_SECONDS))


def check_instantly(
    rt: Runtime, api_key: str, campaign_ids: Sequence[str], *, saved_key: bool = False
) -> SaveChecks:
    """Is ``api_key`` accepted, and are ``campaign_ids`` in its workspace? ``saved_key``:
    the key is the stored one, so a rejection asks for a new key."""
    out = SaveChecks()
    key = check_key_and_campaigns(
        rt.instantly(api_key, retry=WHILE_WAITING, timeout=_timeout(rt)), campaign_ids
    )
    if key.key_accepted is False:
        message = key.key_error or "Instantly rejected the key."
        if saved_key:
            message = "The saved key no longer works: " + message
        out.refuse("instantly_api_key", message)
    if key.unknown_ids:
        out.refuse("campaign_ids", unknown_campaigns_message(key.unknown_ids))
    if key.warning:
        out.warnings.append(key.warning)
    if key.names:
        out.options[CAMPAIGN_NAMES_OPTION] = dict(key.names)
    return out


def check_sheet(rt: Runtime, spreadsheet_id: str, account: str | None = None) -> SaveChecks:
    """How the sheet is shared with ``account`` (the connection's), to keep with the
    connection (never refuses a save: the person may share it right after)."""
    out = SaveChecks()
    try:
        access = check_edit_access(
            rt.sheets(account, retry=WHILE_WAITING, timeout=_timeout(rt)), spreadsheet_id
        )
    except SyncError as exc:
        out.warnings.append("Saved, but access to the sheet could not be checked: " + exc.message)
    else:
        out.options[SHEET_ACCESS_OPTION] = access_record(access.status, spreadsheet_id, rt)
    return out


def access_record(status: str, spreadsheet_id: str, rt: Runtime) -> dict[str, str]:
    checked_at = rt.clock().isoformat()
    return {"status": status, "spreadsheet_id": spreadsheet_id, "checked_at": checked_at}


def merged_options(options: dict[str, Any] | None, found: dict[str, Any]) -> dict[str, Any]:
    """``options`` with what the checks found: names are added to the known ones."""
    out = dict(options or {})
    for name, value in found.items():
        if name == CAMPAIGN_NAMES_OPTION and isinstance(out.get(name), dict):
            out[name] = {**out[name], **value}
        else:
            out[name] = value
    return out


def sharing_notice(
    options: dict[str, Any] | None,
    spreadsheet_id: str,
    service_account_email: str | None,
    last_success: datetime | None,
) -> str | None:
    """What the dashboard says about sharing before a refresh proved access, or None."""
    stored = (options or {}).get(SHEET_ACCESS_OPTION)
    if not isinstance(stored, dict) or stored.get("spreadsheet_id") != spreadsheet_id:
        return None
    status = stored.get("status")
    if status not in NEEDS_SHARING:
        return None
    try:
        checked = datetime.fromisoformat(str(stored.get("checked_at")))
    except ValueError:
        return None
    if last_success is not None and last_success >= checked:
        return None
    who = service_account_email or "the service account"
    if status == "viewer":
        return f"Shared as Viewer: change it to Editor for {who} in Google Sheets."
    if status == "not_found":
        return "Google Sheets has no spreadsheet at this link: paste the sheet's address again."
    return f"Not shared yet: share with {who} as Editor."

"""Can the service account edit a spreadsheet? Found out without changing it.

Reading the tabs proves only that the sheet is shared, perhaps as Viewer, and a Viewer
share fails at the first refresh. Edit rights are proven by a write that leaves nothing
behind: one ``batchUpdate`` that creates a throwaway developer-metadata entry and
deletes it again. ``batchUpdate`` is atomic, so either both happen or neither does, and
sending it twice (say, after a lost answer) does the same again: the sheet, its revision
history and its quota of edits for people are untouched. Cost: one read and one write
of the Sheets API quota.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from sheets_sync.errors import SheetNotShared, SpreadsheetNotFound
from sheets_sync.pipeline.sheets_writer import SheetsClient

AccessStatus = Literal["editor", "viewer", "not_shared", "not_found"]
PROBE_KEY = "sheets-sync-access-check"
_ID_SPACE = 2_000_000_000  # metadata ids are positive int32


@dataclass(frozen=True)
class SheetAccess:
    status: AccessStatus
    message: str
    tabs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "editor"


def viewer_message(email: str) -> str:
    return (
        f"The sheet is shared with {email} as Viewer: change it to Editor "
        "(Share button in Google Sheets), so sheets-sync can write its tab."
    )


def probe_requests(sheet_id: int, metadata_id: int) -> list[dict[str, Any]]:
    """Create and delete the same throwaway metadata entry: a net no-op that needs edit
    rights (a random id, so it never meets the revision guard's ids)."""
    return [
        {
            "createDeveloperMetadata": {
                "developerMetadata": {
                    "metadataId": metadata_id,
                    "metadataKey": PROBE_KEY,
                    "location": {"sheetId": sheet_id},
                    "visibility": "DOCUMENT",
                }
            }
        },
        {
            "deleteDeveloperMetadata": {
                "dataFilter": {"developerMetadataLookup": {"metadataId": metadata_id}}
            }
        },
    ]


def check_edit_access(sheets: SheetsClient, spreadsheet_id: str) -> SheetAccess:
    """Editor, Viewer, not shared or no such spreadsheet. Any other ``SyncError`` (Google
    unreachable, sheets-sync set up wrongly) is raised: the answer is not known."""
    email = sheets.service_account_email
    try:
        tabs = sheets.sheet_properties(spreadsheet_id)
    except SheetNotShared as exc:
        return SheetAccess("not_shared", exc.message)
    except SpreadsheetNotFound as exc:
        return SheetAccess("not_found", exc.message)
    titles = [str(t["title"]) for t in tabs]
    probe = probe_requests(int(tabs[0]["sheetId"]), 1 + secrets.randbelow(_ID_SPACE))
    try:
        sheets.batch_update(spreadsheet_id, probe, readable=True)
    except SheetNotShared:
        return SheetAccess("viewer", viewer_message(email), titles)
    return SheetAccess(
        "editor",
        f"Access OK: {email} can edit this spreadsheet. Tabs: " + ", ".join(titles),
        titles,
    )

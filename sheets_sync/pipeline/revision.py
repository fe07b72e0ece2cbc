"""The revision guard that makes a planned batch safe to send twice (pure).

A refresh planned from a read (notes, history, chart) edits rows by index: history rows
past the horizon are deleted, today's rows are upserted where the read found them. Sent
twice, or sent after someone else's batch, such a plan would delete rows that must stay.
So every planned batch carries a compare-and-set on the managed tab's revision, kept as
developer metadata on that tab (invisible to people, deleted with the tab):

* the read returns the tab's current revision ``n`` (none yet: 0);
* the batch creates the metadata of revision ``n + 1`` under an id derived from the tab
  and ``n + 1``, and deletes revision ``n``'s.

Metadata ids are unique per spreadsheet, so a second application of the same plan, or of
any plan made from the same read, fails as a whole (``batchUpdate`` is atomic) and
changes nothing. After an unconfirmed write, a re-read that finds revision ``n + 1``
proves the write applied.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REVISION_KEY = "sheets-sync-revision"
_ID_SPACE = 2_000_000_000  # metadata ids are positive int32


@dataclass(frozen=True)
class Revision:
    number: int
    metadata_id: int


def metadata_id(sheet_id: int, number: int) -> int:
    return 1 + zlib.crc32(f"{sheet_id}:{number}".encode()) % _ID_SPACE


def current(entries: Iterable[Mapping[str, Any]]) -> Revision | None:
    """The newest revision among a tab's developer metadata (None: never guarded)."""
    found: Revision | None = None
    for entry in entries:
        if entry.get("metadataKey") != REVISION_KEY:
            continue
        try:
            number = int(entry.get("metadataValue", ""))
            ident = int(entry["metadataId"])
        except (KeyError, TypeError, ValueError):
            continue
        if found is None or number > found.number:
            found = Revision(number, ident)
    return found


def next_revision(sheet_id: int, now: Revision | None) -> Revision:
    number = (now.number if now else 0) + 1
    return Revision(number, metadata_id(sheet_id, number))


def requests(sheet_id: int, now: Revision | None, new: Revision) -> list[dict[str, Any]]:
    """Create ``new`` (fails if it exists) and retire ``now``; goes last in the batch."""
    out: list[dict[str, Any]] = [
        {
            "createDeveloperMetadata": {
                "developerMetadata": {
                    "metadataId": new.metadata_id,
                    "metadataKey": REVISION_KEY,
                    "metadataValue": str(new.number),
                    "location": {"sheetId": sheet_id},
                    "visibility": "DOCUMENT",
                }
            }
        }
    ]
    if now is not None:
        out.append(
            {
                "deleteDeveloperMetadata": {
                    "dataFilter": {"developerMetadataLookup": {"metadataId": now.metadata_id}}
                }
            }
        )
    return out

"""Teammates' notes, matched to rows by key across refreshes (pure: no I/O).

The managed tab carries, right of its columns, a "Notes" column people type into and a
hidden "row key" column that sheets-sync writes with every refresh: the key of the row
(campaign id | step | variant) as it stood on the previous write. Reading both columns
back tells which note belonged to which row, so a refresh can put every note on the row
with the same key wherever that row moved. A note whose row is gone goes to the "Notes of
removed rows" area below the table, keyed ``removed:<key>``: if the row comes back, the
note moves back onto it. A note on a row without a key (typed below the table) is kept
in that area too. Nothing typed into the Notes column is ever dropped by a refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sheets_sync.pipeline.render import KEY_HEADER, NOTES_HEADER, REMOVED_PREFIX, REMOVED_TITLE
from sheets_sync.pipeline.report import Row

__all__ = ["KEY_HEADER", "NOTES_HEADER", "REMOVED_PREFIX", "REMOVED_TITLE"]
TOTAL_KEY = "total"
_UNKEYED_LABEL = "(note typed outside the table)"

Cell = Mapping[str, Any]
Value = dict[str, Any]  # a Sheets ExtendedValue: {"stringValue": ...} etc.


def row_key(row: Row) -> str:
    if row.kind == "total":
        return TOTAL_KEY
    campaign, step, variant = row.key
    return "|".join(("" if v is None else str(v)) for v in (campaign, step, variant))


@dataclass(frozen=True)
class RemovedNote:
    key: str  # the row key the note belonged to ("" if it never had one)
    label: str  # what the row was called, for people
    value: Value


@dataclass(frozen=True)
class SheetNotes:
    """What the tab held: notes by row key, plus notes already parked or unkeyed."""

    by_key: dict[str, tuple[str, Value]] = field(default_factory=dict)  # key → (label, value)
    loose: list[RemovedNote] = field(default_factory=list)


@dataclass(frozen=True)
class NotesPlan:
    by_key: dict[str, Value]
    removed: list[RemovedNote]


def _empty(value: Value | None) -> bool:
    if not value:
        return True
    string = value.get("stringValue")
    return string is not None and not string.strip()


def _string(cell: Cell | None) -> str:
    if not cell:
        return ""
    value = cell.get("userEnteredValue") or {}
    if "stringValue" in value:
        return str(value["stringValue"])
    if "numberValue" in value:
        return f"{value['numberValue']:g}"
    return ""


def _label(cells: Sequence[Cell], notes_col: int) -> str:
    parts = [_string(c) for c in cells[: min(3, notes_col)]]
    return " · ".join(p for p in parts if p) or _UNKEYED_LABEL


def read_notes(rows: Iterable[Sequence[Cell]]) -> SheetNotes:
    """Notes from the tab's grid (``rowData[i].values`` lists, from column A).

    The header row is the one holding :data:`KEY_HEADER`; the Notes column is found by its
    header, so it is found again after the layout changed (e.g. opportunities switched
    on). A tab without that header (first sync, or notes were off) has no notes.
    """
    grid = [list(r) for r in rows]
    header_at = key_col = notes_col = None
    for index, cells in enumerate(grid[:20]):
        texts = [_string(c) for c in cells]
        if KEY_HEADER in texts and NOTES_HEADER in texts:
            header_at, key_col, notes_col = index, texts.index(KEY_HEADER), texts.index(
                NOTES_HEADER
            )
            break
    found = SheetNotes()
    if header_at is None or key_col is None or notes_col is None:
        return found
    for cells in grid[header_at + 1 :]:
        note = cells[notes_col].get("userEnteredValue") if len(cells) > notes_col else None
        if _empty(note):
            continue
        assert note is not None
        key = _string(cells[key_col]) if len(cells) > key_col else ""
        label = _label(cells, notes_col)
        if key.startswith(REMOVED_PREFIX):
            found.loose.append(RemovedNote(key[len(REMOVED_PREFIX) :], label, dict(note)))
        elif key and key not in found.by_key:
            found.by_key[key] = (label, dict(note))
        else:
            # No key (typed below the table) or a duplicate key (a row copied by hand).
            found.loose.append(RemovedNote(key, label, dict(note)))
    return found


def plan_notes(previous: SheetNotes, current_keys: Iterable[str]) -> NotesPlan:
    """Each note onto the current row with its key; the rest into the removed area."""
    current = set(current_keys)
    by_key: dict[str, Value] = {}
    removed: list[RemovedNote] = []
    for key, (label, value) in previous.by_key.items():
        if key in current:
            by_key[key] = value
        else:
            removed.append(RemovedNote(key, label, value))
    for note in previous.loose:
        if note.key and note.key in current and note.key not in by_key:
            by_key[note.key] = note.value  # its row came back
        else:
            removed.append(note)
    return NotesPlan(by_key, removed)

"""In-memory spreadsheets and the semantics of the Sheets v4 write/read methods.

No HTTP and no locking here (``sheets_api`` owns both); everything is plain functions over
:class:`Spreadsheet` objects so the rules can be read in one place. The rules follow
Google's documented and observed behaviour:

* ``batchUpdate`` is atomic: requests apply in order to a clone, and the clone replaces
  the original only if every request succeeded.
* Only the request kinds the product and the tests send are modelled: addSheet,
  updateSheetProperties, updateCells, repeatCell, appendDimension, deleteDimension,
  updateDimensionProperties, addChart, updateChartSpec, deleteEmbeddedObject,
  createDeveloperMetadata and deleteDeveloperMetadata. Any other kind is a loud
  ``fake: ... not implemented`` 400, so a new one is modelled before it is relied on.
  A sheet therefore holds cells, row/column sizes, charts and developer metadata only
  (no merges, banding, conditional formats, filters or named ranges).
* Errors carry Google's wording (``Invalid requests[1].updateCells: No grid with id: 7``).
* GridRange without ``sheetId`` means sheet 0, as in the proto; a spreadsheet whose first
  sheet is not 0 therefore answers "No grid with id: 0", a classic production bug.
* Cells are stored sparsely as the client-writable part of ``CellData``; of the computed
  fields only ``effectiveValue`` is rendered on read (see ``sheets_cells``).

Stored cell dicts are never mutated in place (always replaced), so cloning a sheet only
copies the ``cells`` mapping, which keeps atomic batches cheap on big sheets.
"""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import discovery
from .sheets_cells import (
    DEFAULT_COLUMN_PIXELS,
    DEFAULT_FORMAT,
    DEFAULT_ROW_PIXELS,
    WRITABLE_CELL_FIELDS,
    A1Error,
    A1Ref,
    a1,
    column_letters,
    is_scalar,
    json_copy,
    parse_a1,
    parse_raw,
    parse_user_entered,
    proto_text,
    render_cell,
    value_length,
)

CELL_LIMIT = 10_000_000
MAX_CELL_CHARS = 50_000
DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

Json = dict[str, Any]


class SheetsError(Exception):
    """An error response: ``{"error": {"code", "message", "status", "details"?}}``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        details: list[Json] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details

    def body(self) -> Json:
        error: Json = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(message: str) -> SheetsError:
    return SheetsError(400, message)


# --- model -------------------------------------------------------------------------------


@dataclass
class Sheet:
    properties: Json
    cells: dict[tuple[int, int], Json] = field(default_factory=dict)
    row_meta: dict[int, Json] = field(default_factory=dict)
    column_meta: dict[int, Json] = field(default_factory=dict)
    charts: list[Json] = field(default_factory=list)
    developer_metadata: list[Json] = field(default_factory=list)

    @property
    def sheet_id(self) -> int:
        return int(self.properties["sheetId"])

    @property
    def title(self) -> str:
        return str(self.properties["title"])

    @property
    def grid(self) -> Json:
        grid: Json = self.properties.setdefault("gridProperties", {})
        return grid

    @property
    def row_count(self) -> int:
        return int(self.grid.get("rowCount", 0))

    @property
    def column_count(self) -> int:
        return int(self.grid.get("columnCount", 0))

    def count(self, dimension: str) -> int:
        return self.row_count if dimension == "ROWS" else self.column_count

    def frozen(self, dimension: str) -> int:
        key = "frozenRowCount" if dimension == "ROWS" else "frozenColumnCount"
        return int(self.grid.get(key, 0))

    def set_frozen(self, dimension: str, value: int) -> None:
        key = "frozenRowCount" if dimension == "ROWS" else "frozenColumnCount"
        if value:
            self.grid[key] = value
        else:
            self.grid.pop(key, None)

    def set_count(self, dimension: str, value: int) -> None:
        self.grid["rowCount" if dimension == "ROWS" else "columnCount"] = value

    def meta(self, dimension: str) -> dict[int, Json]:
        return self.row_meta if dimension == "ROWS" else self.column_meta

    def clone(self) -> Sheet:
        return Sheet(
            properties=json_copy(self.properties),
            cells=dict(self.cells),  # cell dicts are immutable values, see module doc
            row_meta={k: dict(v) for k, v in self.row_meta.items()},
            column_meta={k: dict(v) for k, v in self.column_meta.items()},
            charts=json_copy(self.charts),
            developer_metadata=json_copy(self.developer_metadata),
        )

    def cells_in(self, r0: int, r1: int, c0: int, c1: int) -> Iterator[tuple[int, int]]:
        """Stored cell keys inside a box (iterates whichever is smaller)."""
        if (r1 - r0) * (c1 - c0) < len(self.cells):
            for r in range(r0, r1):
                for c in range(c0, c1):
                    if (r, c) in self.cells:
                        yield r, c
        else:
            for r, c in list(self.cells):
                if r0 <= r < r1 and c0 <= c < c1:
                    yield r, c

    def put(self, r: int, c: int, cell: Json) -> None:
        if cell:
            self.cells[(r, c)] = cell
        else:
            self.cells.pop((r, c), None)


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    properties: Json
    sheets: list[Sheet]
    # email -> role: "writer" may change the spreadsheet, "reader" may only read it.
    shared_with: dict[str, str] = field(default_factory=dict)
    cell_limit: int = CELL_LIMIT

    def clone(self) -> Spreadsheet:
        return Spreadsheet(
            spreadsheet_id=self.spreadsheet_id,
            properties=json_copy(self.properties),
            sheets=[sheet.clone() for sheet in self.sheets],
            shared_with=dict(self.shared_with),
            cell_limit=self.cell_limit,
        )

    def sheet_by_id(self, sheet_id: int) -> Sheet | None:
        return next((s for s in self.sheets if s.sheet_id == sheet_id), None)

    def sheet_by_title(self, title: str) -> Sheet | None:
        exact = next((s for s in self.sheets if s.title == title), None)
        if exact is not None:
            return exact
        folded = title.casefold()
        return next((s for s in self.sheets if s.title.casefold() == folded), None)

    def reindex(self) -> None:
        for index, sheet in enumerate(self.sheets):
            sheet.properties["index"] = index

    def total_cells(self) -> int:
        return sum(s.row_count * s.column_count for s in self.sheets)

    def all_charts(self) -> Iterator[tuple[Sheet, Json]]:
        for sheet in self.sheets:
            for chart in sheet.charts:
                yield sheet, chart


def new_spreadsheet_id(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "1" + "".join(rng.choice(alphabet) for _ in range(43))


def new_sheet_id(ss: Spreadsheet, rng: random.Random) -> int:
    while True:
        candidate = rng.randint(1, 2**31 - 1)
        if ss.sheet_by_id(candidate) is None:
            return candidate


def sheet_properties(
    sheet_id: int, title: str, index: int, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLUMNS
) -> Json:
    return {
        "sheetId": sheet_id,
        "title": title,
        "index": index,
        "sheetType": "GRID",
        "gridProperties": {"rowCount": rows, "columnCount": cols},
    }


def make_spreadsheet(
    spreadsheet_id: str,
    title: str,
    sheet_titles: Iterable[str],
    shared_with: Iterable[str],
    rng: random.Random,
) -> Spreadsheet:
    ss = Spreadsheet(
        spreadsheet_id=spreadsheet_id,
        properties={
            "title": title,
            "locale": "en_US",
            "autoRecalc": "ON_CHANGE",
            "timeZone": "Etc/GMT",
            "defaultFormat": json_copy(DEFAULT_FORMAT),
        },
        sheets=[],
        shared_with=dict.fromkeys(shared_with, "writer"),
    )
    for index, sheet_title in enumerate(sheet_titles):
        # Like a spreadsheet made in the UI: the first tab is gid 0, later ones random.
        sheet_id = 0 if index == 0 else new_sheet_id(ss, rng)
        ss.sheets.append(Sheet(sheet_properties(sheet_id, sheet_title, index)))
    return ss


# --- masks -------------------------------------------------------------------------------


def apply_mask(target: Json, source: Json, tree: discovery.FieldTree) -> None:
    """Copy the masked paths from ``source`` into ``target``; masked paths absent from
    ``source`` are cleared (that is what a field mask means in Google's APIs)."""
    for name, sub in tree.items():
        if name == "*":
            target.clear()
            target.update(json_copy(source))
            continue
        if sub is None:
            if name in source:
                target[name] = json_copy(source[name])
            else:
                target.pop(name, None)
            continue
        child_source = source.get(name)
        child_target = target.get(name)
        child_target = json_copy(child_target) if isinstance(child_target, dict) else {}
        apply_mask(child_target, child_source if isinstance(child_source, dict) else {}, sub)
        if child_target:
            target[name] = child_target
        else:
            target.pop(name, None)


# --- batchUpdate -------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _checked_mask(fields: str, schema_name: str) -> tuple[discovery.FieldTree | None, str | None]:
    """The parsed mask, or what is wrong with it. Cached: a refresh sends the same few
    masks in every request, and the trees are only read, never changed."""
    try:
        tree = discovery.parse_field_mask(fields)
    except discovery.FieldMaskSyntaxError:
        return None, f"Invalid field mask: '{fields}'"
    bad = discovery.unknown_field_paths(schema_name, tree)
    if bad:
        return None, f"Invalid field mask path: '{bad[0]}'"
    return tree, None


@dataclass
class Context:
    """Where we are in a batch, so errors read ``Invalid requests[i].kind: ...``."""

    index: int
    kind: str
    rng: random.Random

    def error(self, message: str) -> SheetsError:
        return bad_request(f"Invalid requests[{self.index}].{self.kind}: {message}")

    def mask(self, fields: str | None, schema_name: str) -> discovery.FieldTree:
        if not fields:
            raise self.error(
                "At least one field must be listed in 'fields'. (Use '*' to indicate all fields.)"
            )
        tree, problem = _checked_mask(fields, schema_name)
        if problem is not None:
            raise self.error(problem)
        assert tree is not None  # noqa: S101 - no problem means a tree
        return tree

    def sheet(self, ss: Spreadsheet, sheet_id: int | None, word: str = "grid") -> Sheet:
        sid = int(sheet_id or 0)
        sheet = ss.sheet_by_id(sid)
        if sheet is None:
            raise self.error(f"No {word} with id: {sid}")
        return sheet

    def area(
        self, ss: Spreadsheet, rng: Json | None, *, check: bool = True
    ) -> tuple[Sheet, int, int, int, int]:
        """Resolve a GridRange to ``(sheet, r0, r1, c0, c1)``; open ends run to the edge."""
        rng = rng or {}
        sheet = self.sheet(ss, rng.get("sheetId"))
        r0 = int(rng.get("startRowIndex", 0))
        c0 = int(rng.get("startColumnIndex", 0))
        r1 = int(rng.get("endRowIndex", sheet.row_count))
        c1 = int(rng.get("endColumnIndex", sheet.column_count))
        if min(r0, r1, c0, c1) < 0 or r0 > r1 or c0 > c1:
            raise self.error(f"Invalid range: {a1(sheet.title, r0, r1, c0, c1)}")
        if check:
            self.within_grid(sheet, r0, r1, c0, c1)
        return sheet, r0, r1, c0, c1

    def within_grid(self, sheet: Sheet, r0: int, r1: int, c0: int, c1: int) -> None:
        if r1 > sheet.row_count or c1 > sheet.column_count:
            where = a1(sheet.title, r0, r1, c0, c1, always_quote=True)
            raise self.error(
                f"Range ({where}) exceeds grid limits. Max rows: {sheet.row_count}, "
                f"max columns: {sheet.column_count}"
            )

    def check_cell_limit(self, ss: Spreadsheet) -> None:
        if ss.total_cells() > ss.cell_limit:
            raise self.error(
                "This action would increase the number of cells in the workbook above the "
                f"limit of {ss.cell_limit} cells."
            )


Handler = Callable[[Spreadsheet, Json, Context], Json | None]
_HANDLERS: dict[str, Handler] = {}


def _handles(kind: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _HANDLERS[kind] = func
        return func

    return register


def batch_update(ss: Spreadsheet, body: Json, rng: random.Random) -> tuple[Spreadsheet, Json]:
    """Apply a validated ``BatchUpdateSpreadsheetRequest``; returns ``(new_state, reply)``.

    The input spreadsheet is never modified: on any error nothing changes (atomicity).
    """
    requests = body.get("requests") or []
    if not requests:
        raise bad_request("Must specify at least one request.")
    if body.get("includeSpreadsheetInResponse"):
        raise bad_request("fake: includeSpreadsheetInResponse not implemented")
    work = ss.clone()
    replies: list[Json] = []
    for index, request in enumerate(requests):
        kinds = list(request)
        if len(kinds) != 1:
            if not kinds:
                raise bad_request(f"Invalid requests[{index}]: No request set.")
            raise bad_request(
                f"Invalid JSON payload received. Oneof field 'kind' is already set. "
                f"Cannot set '{kinds[1]}'"
            )
        kind = kinds[0]
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise bad_request(f"fake: request kind {kind} not implemented")
        reply = handler(work, request[kind], Context(index, kind, rng))
        replies.append(reply or {})
    return work, {"spreadsheetId": ss.spreadsheet_id, "replies": replies}


# sheets ------------------------------------------------------------------------------------


def _check_title(ss: Spreadsheet, title: str, ctx: Context, *, ignore: Sheet | None = None) -> None:
    if not title:
        raise ctx.error("The sheet name cannot be empty.")
    for sheet in ss.sheets:
        if sheet is not ignore and sheet.title.casefold() == title.casefold():
            raise ctx.error(
                f'A sheet with the name "{title}" already exists. Please enter another name.'
            )


@_handles("addSheet")
def _add_sheet(ss: Spreadsheet, req: Json, ctx: Context) -> Json:
    props = json_copy(req.get("properties", {}))
    sheet_type = props.get("sheetType", "GRID")
    if sheet_type != "GRID":
        raise bad_request(f"fake: addSheet with sheetType {sheet_type} not implemented")
    if "sheetId" in props:
        sheet_id = int(props["sheetId"])
        if sheet_id < 0:
            raise ctx.error(f"The provided sheetId {sheet_id} is invalid.")
        if ss.sheet_by_id(sheet_id) is not None:
            raise ctx.error(f"A sheet with the id {sheet_id} already exists.")
    else:
        sheet_id = new_sheet_id(ss, ctx.rng)
    title = props.get("title")
    if not title:
        number = len(ss.sheets) + 1
        while ss.sheet_by_title(f"Sheet{number}") is not None:
            number += 1
        title = f"Sheet{number}"
    _check_title(ss, title, ctx)
    grid = props.get("gridProperties", {})
    index = min(int(props.get("index", len(ss.sheets))), len(ss.sheets))
    properties = sheet_properties(
        sheet_id, title, index, grid.get("rowCount", DEFAULT_ROWS),
        grid.get("columnCount", DEFAULT_COLUMNS),
    )
    for key in ("frozenRowCount", "frozenColumnCount", "hideGridlines",
                "rowGroupControlAfter", "columnGroupControlAfter"):
        if grid.get(key):
            properties["gridProperties"][key] = grid[key]
    for key in ("hidden", "tabColor", "tabColorStyle", "rightToLeft"):
        if key in props:
            properties[key] = props[key]
    sheet = Sheet(properties)
    _check_frozen(sheet, ctx)
    ss.sheets.insert(index, sheet)
    ss.reindex()
    ctx.check_cell_limit(ss)
    return {"addSheet": {"properties": json_copy(sheet.properties)}}


def _check_frozen(sheet: Sheet, ctx: Context) -> None:
    for dimension, noun in (("ROWS", "rows"), ("COLUMNS", "columns")):
        frozen = sheet.frozen(dimension)
        if frozen and frozen >= sheet.count(dimension):
            raise ctx.error(f"You can't freeze all visible {noun} on the sheet.")


@_handles("updateSheetProperties")
def _update_sheet_properties(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    tree = ctx.mask(req.get("fields"), "SheetProperties")
    props = req.get("properties", {})
    sheet = ctx.sheet(ss, props.get("sheetId"), "sheet")
    before = json_copy(sheet.properties)
    updated = json_copy(before)
    apply_mask(updated, props, tree)
    # Identity and shape survive a "*" mask that omits them; everything else is cleared.
    updated["sheetId"] = before["sheetId"]
    updated.setdefault("sheetType", before["sheetType"])
    updated.setdefault("index", before["index"])
    grid = updated.setdefault("gridProperties", {})
    for key in ("rowCount", "columnCount"):
        grid.setdefault(key, before["gridProperties"][key])
    for key in ("frozenRowCount", "frozenColumnCount"):
        if not grid.get(key):
            grid.pop(key, None)
    if updated.get("title") != before["title"]:
        _check_title(ss, str(updated.get("title") or ""), ctx, ignore=sheet)
    if updated.get("hidden") and all(
        s.properties.get("hidden") for s in ss.sheets if s is not sheet
    ):
        raise ctx.error("You can't hide all the sheets in a document.")
    new_index = int(updated.pop("index"))
    sheet.properties = updated
    sheet.properties["index"] = before["index"]
    for dimension in ("ROWS", "COLUMNS"):
        count_key = "rowCount" if dimension == "ROWS" else "columnCount"
        old_count = int(before["gridProperties"][count_key])
        new_count = sheet.count(dimension)
        if new_count < 1:
            raise ctx.error(f"Invalid {dimension.lower()[:-1]} count: {new_count}")
        if new_count < old_count:
            sheet.set_count(dimension, old_count)
            _delete(ss, sheet, _Deletion(dimension, new_count, old_count - new_count))
    _check_frozen(sheet, ctx)
    if new_index != before["index"]:
        _move_sheet(ss, sheet, new_index)
    ctx.check_cell_limit(ss)


def _move_sheet(ss: Spreadsheet, sheet: Sheet, index: int) -> None:
    # Indexes are "before the move": to put S1 after S2 in (S1, S2, S3) you ask for 2.
    old = ss.sheets.index(sheet)
    ss.sheets.pop(old)
    target = index - 1 if index > old else index
    ss.sheets.insert(max(0, min(target, len(ss.sheets))), sheet)
    ss.reindex()


# cells -------------------------------------------------------------------------------------


def _cell_tree(tree: discovery.FieldTree) -> discovery.FieldTree:
    """A CellData mask restricted to fields a client can write ('*' expanded)."""
    if "*" in tree:
        return {name: None for name in WRITABLE_CELL_FIELDS}
    return {name: sub for name, sub in tree.items() if name in WRITABLE_CELL_FIELDS}


def _write_cell(sheet: Sheet, r: int, c: int, source: Json, tree: discovery.FieldTree,
                ctx: Context) -> None:
    if value_length(source) > MAX_CELL_CHARS:
        raise ctx.error(
            f"Your input contains more than the maximum of {MAX_CELL_CHARS} characters in a "
            "single cell."
        )
    # Shallow: ``apply_mask`` copies each nested part before it changes it, so the stored
    # cell (which a clone of the spreadsheet may share) is never changed in place.
    cell = dict(sheet.cells.get((r, c), {}))
    apply_mask(cell, source, tree)
    sheet.put(r, c, cell)


@_handles("updateCells")
def _update_cells(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    tree = _cell_tree(ctx.mask(req.get("fields"), "CellData"))
    rows = req.get("rows", [])
    if "start" in req and "range" in req:
        raise bad_request(
            "Invalid JSON payload received. Oneof field 'area' is already set. Cannot set 'range'"
        )
    if "range" in req:
        sheet, r0, r1, c0, c1 = ctx.area(ss, req["range"])
        for i, row in enumerate(rows):
            if r0 + i >= r1:
                raise ctx.error(
                    f"Attempting to write row: {r0 + i}, beyond the last requested row of: {r1 - 1}"
                )
            width = len(row.get("values", []))
            if width and c0 + width > c1:
                raise ctx.error(
                    f"Attempting to write column: {c1}, beyond the last requested column "
                    f"of: {c1 - 1}"
                )
        given: dict[tuple[int, int], Json] = {}
        for i, row in enumerate(rows):
            for j, cell in enumerate(row.get("values", [])):
                given[(r0 + i, c0 + j)] = cell
        # Cells of the range not covered by ``rows`` are cleared for the masked fields.
        for key in list(sheet.cells_in(r0, r1, c0, c1)):
            given.setdefault(key, {})
        for (r, c), cell in given.items():
            _write_cell(sheet, r, c, cell, tree, ctx)
        return
    if "start" not in req:
        raise ctx.error("No start or range was specified.")
    start = req["start"]
    sheet = ctx.sheet(ss, start.get("sheetId"))
    r0, c0 = int(start.get("rowIndex", 0)), int(start.get("columnIndex", 0))
    width = max((len(row.get("values", [])) for row in rows), default=0)
    if rows and width:
        ctx.within_grid(sheet, r0, r0 + len(rows), c0, c0 + width)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row.get("values", [])):
            _write_cell(sheet, r0 + i, c0 + j, cell, tree, ctx)


@_handles("repeatCell")
def _repeat_cell(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    tree = _cell_tree(ctx.mask(req.get("fields"), "CellData"))
    sheet, r0, r1, c0, c1 = ctx.area(ss, req.get("range"))
    cell = req.get("cell", {})
    for r in range(r0, r1):
        for c in range(c0, c1):
            _write_cell(sheet, r, c, cell, tree, ctx)


# dimensions --------------------------------------------------------------------------------


def _keys(dimension: str) -> tuple[str, str]:
    return (("startRowIndex", "endRowIndex") if dimension == "ROWS"
            else ("startColumnIndex", "endColumnIndex"))


@dataclass(frozen=True)
class _Deletion:
    """``count`` rows/columns removed at ``start`` (deleteDimension, or a shrinking grid)."""

    dimension: str
    start: int
    count: int

    def point(self, index: int) -> int | None:
        if index >= self.start + self.count:
            return index - self.count
        return None if index >= self.start else index

    def interval(self, lo: int, hi: int | None) -> tuple[int, int | None] | None:
        end = self.start + self.count

        def move(i: int) -> int:
            return i - self.count if i >= end else (self.start if i > self.start else i)

        new_lo = move(lo)
        new_hi = None if hi is None else move(hi)
        if new_hi is not None and new_hi <= new_lo:
            return None
        return new_lo, new_hi


def _shift_range(rng: Json, sheet_id: int, cut: _Deletion) -> Json | None:
    if int(rng.get("sheetId", 0)) != sheet_id:
        return rng
    start_key, end_key = _keys(cut.dimension)
    moved = cut.interval(int(rng.get(start_key, 0)), rng.get(end_key))
    if moved is None:
        return None
    out = dict(rng)
    if start_key in rng or moved[0]:
        out[start_key] = moved[0]
    if moved[1] is not None:
        out[end_key] = moved[1]
    return out


def _shift_nested(value: Any, sheet_id: int, cut: _Deletion) -> Any:
    """Move every GridRange / GridCoordinate found inside a chart (sources, anchor)."""
    if isinstance(value, list):
        return [_shift_nested(item, sheet_id, cut) for item in value]
    if not isinstance(value, dict):
        return value
    start_key, end_key = _keys(cut.dimension)
    index_key = "rowIndex" if cut.dimension == "ROWS" else "columnIndex"
    out = {k: _shift_nested(v, sheet_id, cut) for k, v in value.items()}
    if start_key in value or end_key in value:
        moved = _shift_range(out, sheet_id, cut)
        return moved if moved is not None else out
    if index_key in value and int(value.get("sheetId", 0)) == sheet_id:
        point = cut.point(int(value[index_key]))
        out[index_key] = cut.start if point is None else point
    return out


def _delete(ss: Spreadsheet, sheet: Sheet, cut: _Deletion) -> None:
    """Delete rows or columns and move everything anchored below or right of them."""
    rows = cut.dimension == "ROWS"
    cells: dict[tuple[int, int], Json] = {}
    for (r, c), cell in sheet.cells.items():
        moved = cut.point(r if rows else c)
        if moved is not None:
            cells[(moved, c) if rows else (r, moved)] = cell
    sheet.cells = cells
    meta = sheet.meta(cut.dimension)
    shifted_meta = {}
    for index, item in meta.items():
        moved = cut.point(index)
        if moved is not None:
            shifted_meta[moved] = item
    meta.clear()
    meta.update(shifted_meta)
    for other in ss.sheets:
        other.charts = [_shift_nested(chart, sheet.sheet_id, cut) for chart in other.charts]
    frozen = sheet.frozen(cut.dimension)
    overlap = max(0, min(frozen, cut.start + cut.count) - cut.start)
    sheet.set_frozen(cut.dimension, frozen - overlap)
    sheet.set_count(cut.dimension, sheet.count(cut.dimension) - cut.count)


def _dimension_range(ss: Spreadsheet, req: Json, ctx: Context) -> tuple[Sheet, str, int, int]:
    rng = req.get("range") or req.get("dimensions") or {}
    if "dataSourceSheetRange" in req:
        raise bad_request(f"fake: {ctx.kind} on data source sheets not implemented")
    sheet = ctx.sheet(ss, rng.get("sheetId"))
    dimension = rng.get("dimension", "DIMENSION_UNSPECIFIED")
    if dimension not in ("ROWS", "COLUMNS"):
        raise ctx.error("Dimension must be specified.")
    start = int(rng.get("startIndex", 0))
    end = int(rng.get("endIndex", sheet.count(dimension)))
    if start < 0 or end < start:
        raise ctx.error(f"Invalid dimension range: startIndex {start}, endIndex {end}")
    return sheet, dimension, start, end


def _dimension_a1(sheet: Sheet, dimension: str, start: int, end: int) -> str:
    title = "'" + sheet.title.replace("'", "''") + "'"
    if dimension == "ROWS":
        return f"{title}!{start + 1}:{end}"
    return f"{title}!{column_letters(start)}:{column_letters(max(end - 1, start))}"


def _dimension_in_grid(sheet: Sheet, dimension: str, start: int, end: int, ctx: Context) -> None:
    if end > sheet.count(dimension):
        raise ctx.error(
            f"Range ({_dimension_a1(sheet, dimension, start, end)}) exceeds grid limits. "
            f"Max rows: {sheet.row_count}, max columns: {sheet.column_count}"
        )


@_handles("appendDimension")
def _append_dimension(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    sheet = ctx.sheet(ss, req.get("sheetId"))
    dimension = req.get("dimension", "DIMENSION_UNSPECIFIED")
    if dimension not in ("ROWS", "COLUMNS"):
        raise ctx.error("Dimension must be specified.")
    length = int(req.get("length", 0))
    if length <= 0:
        raise ctx.error("length must be greater than zero.")
    sheet.set_count(dimension, sheet.count(dimension) + length)
    ctx.check_cell_limit(ss)


@_handles("deleteDimension")
def _delete_dimension(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    sheet, dimension, start, end = _dimension_range(ss, req, ctx)
    _dimension_in_grid(sheet, dimension, start, end, ctx)
    if end == start:
        return
    frozen = sheet.frozen(dimension)
    remaining = sheet.count(dimension) - (end - start)
    frozen_after = frozen - max(0, min(frozen, end) - start)
    if remaining - frozen_after <= 0:
        noun = "rows" if dimension == "ROWS" else "columns"
        raise ctx.error(f"Sorry, it is not possible to delete all non-frozen {noun}.")
    _delete(ss, sheet, _Deletion(dimension, start, end - start))


@_handles("updateDimensionProperties")
def _update_dimension_properties(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    tree = ctx.mask(req.get("fields"), "DimensionProperties")
    sheet, dimension, start, end = _dimension_range(ss, req, ctx)
    _dimension_in_grid(sheet, dimension, start, end, ctx)
    meta = sheet.meta(dimension)
    for index in range(start, end):
        item = dict(meta.get(index, {}))
        apply_mask(item, req.get("properties", {}), tree)
        if item:
            meta[index] = item
        else:
            meta.pop(index, None)


def _new_int_id(existing: set[int], rng: random.Random) -> int:
    while True:
        candidate = rng.randint(1, 2**31 - 1)
        if candidate not in existing:
            return candidate


def _check_sources(ss: Spreadsheet, value: Any, ctx: Context) -> None:
    """Every GridRange a chart reads from must be on an existing sheet."""
    if isinstance(value, list):
        for item in value:
            _check_sources(ss, item, ctx)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "sources" and isinstance(item, list):
                for rng in item:
                    ctx.area(ss, rng)
            else:
                _check_sources(ss, item, ctx)


def _find_chart(ss: Spreadsheet, chart_id: int, ctx: Context, what: str = "chart") -> tuple[
        Sheet, Json]:
    for sheet, chart in ss.all_charts():
        if int(chart["chartId"]) == chart_id:
            return sheet, chart
    raise ctx.error(f"No {what} with id: {chart_id}")


@_handles("addChart")
def _add_chart(ss: Spreadsheet, req: Json, ctx: Context) -> Json:
    chart = json_copy(req.get("chart", {}))
    position = chart.setdefault("position", {})
    if "overlayPosition" not in position:
        raise bad_request("fake: addChart outside an overlayPosition not implemented")
    overlay = position["overlayPosition"]
    anchor = overlay.setdefault("anchorCell", {})
    sheet = ctx.sheet(ss, anchor.get("sheetId"))
    anchor["sheetId"] = sheet.sheet_id
    for key, default in (("offsetXPixels", 0), ("offsetYPixels", 0),
                         ("widthPixels", 600), ("heightPixels", 371)):
        overlay.setdefault(key, default)
    _check_sources(ss, chart.get("spec", {}), ctx)
    existing = {int(c["chartId"]) for _, c in ss.all_charts()}
    if "chartId" in chart:
        if int(chart["chartId"]) in existing:
            raise ctx.error(f"An embedded object with id {chart['chartId']} already exists.")
    else:
        chart["chartId"] = _new_int_id(existing, ctx.rng)
    sheet.charts.append(chart)
    return {"addChart": {"chart": json_copy(chart)}}


@_handles("updateChartSpec")
def _update_chart_spec(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    _, chart = _find_chart(ss, int(req.get("chartId", 0)), ctx)
    spec = json_copy(req.get("spec", {}))
    _check_sources(ss, spec, ctx)
    chart["spec"] = spec


@_handles("deleteEmbeddedObject")
def _delete_embedded_object(ss: Spreadsheet, req: Json, ctx: Context) -> None:
    sheet, chart = _find_chart(ss, int(req.get("objectId", 0)), ctx, "embedded object")
    sheet.charts.remove(chart)


# Developer metadata: only sheet-located entries, looked up by id (what the product uses).
# Ids are "spreadsheet-scoped unique" (reference), so creating an id that exists fails.


@_handles("createDeveloperMetadata")
def _create_developer_metadata(ss: Spreadsheet, req: Json, ctx: Context) -> Json:
    meta = json_copy(req.get("developerMetadata", {}))
    location = meta.get("location", {})
    if set(location) != {"sheetId"}:
        raise bad_request("fake: developer metadata outside a sheet location not implemented")
    if meta.get("visibility") not in ("DOCUMENT", "PROJECT"):
        raise ctx.error("Developer metadata must specify a visibility.")
    if not meta.get("metadataKey"):
        raise ctx.error("Developer metadata must specify a metadata key.")
    sheet = ctx.sheet(ss, location.get("sheetId"))
    existing = {int(m["metadataId"]) for s in ss.sheets for m in s.developer_metadata}
    if "metadataId" in meta:
        if int(meta["metadataId"]) <= 0:
            raise ctx.error("Developer metadata IDs must be positive.")
        if int(meta["metadataId"]) in existing:
            raise ctx.error(
                f"Developer metadata with ID {meta['metadataId']} already exists."
            )
    else:
        meta["metadataId"] = _new_int_id(existing, ctx.rng)
    meta["location"] = {"sheetId": sheet.sheet_id, "locationType": "SHEET"}
    sheet.developer_metadata.append(meta)
    return {"createDeveloperMetadata": {"developerMetadata": json_copy(meta)}}


@_handles("deleteDeveloperMetadata")
def _delete_developer_metadata(ss: Spreadsheet, req: Json, ctx: Context) -> Json:
    lookup = req.get("dataFilter", {}).get("developerMetadataLookup", {})
    if set(lookup) != {"metadataId"}:
        raise bad_request("fake: developer metadata lookups other than by id not implemented")
    wanted = int(lookup["metadataId"])
    deleted: list[Json] = []
    for sheet in ss.sheets:
        keep = [m for m in sheet.developer_metadata if int(m["metadataId"]) != wanted]
        deleted += [m for m in sheet.developer_metadata if int(m["metadataId"]) == wanted]
        sheet.developer_metadata = keep
    return {"deleteDeveloperMetadata": {"deletedDeveloperMetadata": json_copy(deleted)}}


# --- reads -------------------------------------------------------------------------------


def _dimension_metadata(sheet: Sheet, dimension: str, start: int, end: int) -> list[Json]:
    default = DEFAULT_ROW_PIXELS if dimension == "ROWS" else DEFAULT_COLUMN_PIXELS
    meta = sheet.meta(dimension)
    return [{"pixelSize": default, **meta.get(i, {})} for i in range(start, end)]


def grid_data(sheet: Sheet, r0: int, r1: int, c0: int, c1: int) -> Json:
    """One ``GridData`` block, trailing empty cells/rows trimmed like Google's."""
    keys = sorted(sheet.cells_in(r0, r1, c0, c1))
    row_data: list[Json] = []
    if keys:
        last_row = max(r for r, _ in keys)
        by_row: dict[int, dict[int, Json]] = {}
        for r, c in keys:
            by_row.setdefault(r, {})[c] = render_cell(sheet.cells[(r, c)])
        for r in range(r0, last_row + 1):
            cells = by_row.get(r)
            if not cells:
                row_data.append({})
                continue
            row_data.append({"values": [cells.get(c, {}) for c in range(c0, max(cells) + 1)]})
    data: Json = {}
    if r0:
        data["startRow"] = r0
    if c0:
        data["startColumn"] = c0
    if row_data:
        data["rowData"] = row_data
    data["rowMetadata"] = _dimension_metadata(sheet, "ROWS", r0, r1)
    data["columnMetadata"] = _dimension_metadata(sheet, "COLUMNS", c0, c1)
    return data


def spreadsheet_json(
    ss: Spreadsheet, *, include_grid: bool = False, ranges: list[str] | None = None
) -> Json:
    """The ``Spreadsheet`` resource. With ``ranges`` only intersecting sheets are returned
    (Google: "Limiting the range returns only the portions of the spreadsheet that
    intersect the requested ranges")."""
    boxes: dict[int, list[tuple[int, int, int, int]]] = {}
    for text in ranges or []:
        sheet, box = resolve_range(ss, text, clip=True)
        boxes.setdefault(sheet.sheet_id, []).append(box)
    sheets = []
    for sheet in ss.sheets:
        if ranges and sheet.sheet_id not in boxes:
            continue
        item: Json = {"properties": json_copy(sheet.properties)}
        if include_grid:
            areas = boxes.get(sheet.sheet_id) or [(0, sheet.row_count, 0, sheet.column_count)]
            item["data"] = [grid_data(sheet, *box) for box in areas]
        if sheet.charts:
            item["charts"] = json_copy(sheet.charts)
        if sheet.developer_metadata:
            item["developerMetadata"] = json_copy(sheet.developer_metadata)
        sheets.append(item)
    out: Json = {
        "spreadsheetId": ss.spreadsheet_id,
        "properties": json_copy(ss.properties),
        "sheets": sheets,
    }
    out["spreadsheetUrl"] = f"https://docs.google.com/spreadsheets/d/{ss.spreadsheet_id}/edit"
    return out


# --- A1 ranges for the values API ----------------------------------------------------------


def _parse_or_fail(ss: Spreadsheet, text: str) -> tuple[Sheet, A1Ref]:
    unparsable = bad_request(f"Unable to parse range: {text}")
    try:
        ref = parse_a1(text)
    except A1Error:
        raise unparsable from None
    if not ref.cells:
        assert ref.sheet is not None
        sheet = ss.sheet_by_title(ref.sheet)
        if sheet is None:
            raise unparsable  # Google would try a named range; the fake has none
        return sheet, ref
    if ref.sheet is None:
        return ss.sheets[0], ref
    sheet = ss.sheet_by_title(ref.sheet)
    if sheet is None:
        raise unparsable
    return sheet, ref


def _grid_error(text: str, sheet: Sheet) -> SheetsError:
    return bad_request(
        f"Range ({text}) exceeds grid limits. Max rows: {sheet.row_count}, "
        f"max columns: {sheet.column_count}"
    )


def resolve_range(
    ss: Spreadsheet, text: str, *, clip: bool
) -> tuple[Sheet, tuple[int, int, int, int]]:
    """A1 text -> ``(sheet, (r0, r1, c0, c1))``. Reads clip to the grid (``clip=True``);
    writes and clears beyond it fail with Google's grid-limit error."""
    sheet, ref = _parse_or_fail(ss, text)
    r1 = sheet.row_count if ref.r1 is None else int(ref.r1)
    c1 = sheet.column_count if ref.c1 is None else int(ref.c1)
    if ref.r0 >= sheet.row_count or ref.c0 >= sheet.column_count:
        raise _grid_error(text, sheet)
    if r1 > sheet.row_count or c1 > sheet.column_count:
        if not clip:
            raise _grid_error(text, sheet)
        r1, c1 = min(r1, sheet.row_count), min(c1, sheet.column_count)
    return sheet, (ref.r0, r1, ref.c0, c1)


def set_user_value(sheet: Sheet, r: int, c: int, value: Any, input_option: str) -> None:
    cell = dict(sheet.cells.get((r, c), {}))
    number_format = cell.get("userEnteredFormat", {}).get("numberFormat")
    detected: Json | None = None
    if input_option == "RAW":
        entered = parse_raw(value)
    elif isinstance(value, str) and number_format and number_format.get("type") == "TEXT":
        entered = {"stringValue": value} if value else None  # plain-text cells keep "0123"
    else:
        entered, detected = parse_user_entered(value)
    if entered is None:
        cell.pop("userEnteredValue", None)
    else:
        cell["userEnteredValue"] = entered
    if detected and not number_format:
        user_format = dict(cell.get("userEnteredFormat", {}))
        user_format["numberFormat"] = detected
        cell["userEnteredFormat"] = user_format
    sheet.put(r, c, cell)


def _check_values_shape(values: Any) -> list[list[Any]]:
    rows: list[list[Any]] = values or []
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if not is_scalar(value):
                raise bad_request(f"Invalid values[{i}][{j}]: {proto_text(value)}")
    return rows


def values_write(
    ss: Spreadsheet, text: str, values: Any, *, input_option: str, major: str = "ROWS",
    body_range: str | None = None,
) -> Json:
    """``values.update`` semantics on ``ss`` (callers pass a clone for atomicity)."""
    sheet, ref = _parse_or_fail(ss, text)
    if body_range and body_range != text:
        body_sheet, body_ref = _parse_or_fail(ss, body_range)
        if (body_sheet is not sheet or (body_ref.r0, body_ref.r1, body_ref.c0, body_ref.c1)
                != (ref.r0, ref.r1, ref.c0, ref.c1)):
            raise bad_request(
                f"Request range[{text}] does not match value's range[{body_range}]"
            )
    rows = _check_values_shape(values)
    if major == "COLUMNS":
        width = max((len(row) for row in rows), default=0)
        padded = [row + [None] * (width - len(row)) for row in rows]
        rows = [list(column) for column in zip(*padded, strict=True)]
    height = len(rows)
    width = max((len(row) for row in rows), default=0)
    r0, c0 = ref.r0, ref.c0
    if not ref.single:
        # Bounded ranges cap the data; open ends (A:B, a bare sheet name) run to the grid.
        limit_r = ref.r1 if ref.cells else None
        limit_c = ref.c1 if ref.cells else None
        if limit_r is not None and r0 + height > limit_r:
            raise bad_request(
                f"Requested writing within range [{text}], but tried writing to row "
                f"[{limit_r + 1}]"
            )
        if limit_c is not None and c0 + width > limit_c:
            raise bad_request(
                f"Requested writing within range [{text}], but tried writing to column "
                f"[{column_letters(limit_c)}]"
            )
    if r0 + height > sheet.row_count or c0 + width > sheet.column_count or \
            r0 >= sheet.row_count or c0 >= sheet.column_count:
        raise _grid_error(text, sheet)
    cells = 0
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is None:
                continue  # null means "leave this cell alone"
            set_user_value(sheet, r0 + i, c0 + j, value, input_option)
            cells += 1
    out: Json = {"spreadsheetId": ss.spreadsheet_id}
    if height and width:
        out.update(
            updatedRange=a1(sheet.title, r0, r0 + height, c0, c0 + width),
            updatedRows=height,
            updatedColumns=width,
            updatedCells=cells,
        )
    return out


def values_clear(ss: Spreadsheet, text: str) -> str:
    """Clear values (not formats) in a range; returns the cleared A1 range."""
    sheet, (r0, r1, c0, c1) = resolve_range(ss, text, clip=False)
    for r, c in list(sheet.cells_in(r0, r1, c0, c1)):
        cell = dict(sheet.cells[(r, c)])
        cell.pop("userEnteredValue", None)
        sheet.put(r, c, cell)
    return a1(sheet.title, r0, r1, c0, c1)

"""A1 notation and cell values for the fake Sheets API.

Pure functions, no state: parsing ``'Tab name'!A1:C`` into indexes and back, turning what
a client sends (RAW / USER_ENTERED values, ``CellData``) into what the fake stores, and
rendering stored cells with the ``effectiveValue`` Google would add (not
``formattedValue`` or ``effectiveFormat``: nothing reads them).

Google computes formulas; the fake does not. A formula cell keeps its
``userEnteredValue.formulaValue`` and its effective value is the marker string
``#FAKE_FORMULA`` so a test can see "a formula landed here" without pretending to know
its result.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

FORMULA_MARKER = "#FAKE_FORMULA"
DEFAULT_ROW_PIXELS = 21
DEFAULT_COLUMN_PIXELS = 100
# Fields of CellData a client can write; the rest (effective*, formattedValue,
# hyperlink...) are computed by Google and ignored on input.
WRITABLE_CELL_FIELDS = (
    "userEnteredValue",
    "userEnteredFormat",
    "note",
    "textFormatRuns",
    "dataValidation",
    "pivotTable",
    "chipRuns",
)
# What a read returns of a cell: what was written, plus the one computed field the fake
# knows how to compute without a spreadsheet engine.
RENDERED_CELL_FIELDS = frozenset({*WRITABLE_CELL_FIELDS, "effectiveValue"})
# Google's default format for a new spreadsheet (``properties.defaultFormat``).
DEFAULT_FORMAT: dict[str, Any] = {
    "backgroundColor": {"red": 1, "green": 1, "blue": 1},
    "padding": {"top": 2, "right": 3, "bottom": 2, "left": 3},
    "verticalAlignment": "BOTTOM",
    "wrapStrategy": "OVERFLOW_CELL",
    "textFormat": {
        "foregroundColor": {},
        "fontFamily": "arial",
        "fontSize": 10,
        "bold": False,
        "italic": False,
        "strikethrough": False,
        "underline": False,
        "foregroundColorStyle": {"rgbColor": {}},
    },
    "backgroundColorStyle": {"rgbColor": {"red": 1, "green": 1, "blue": 1}},
}
_SERIAL_EPOCH = dt.datetime(1899, 12, 30)


# --- columns and A1 --------------------------------------------------------------------


def column_letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def column_index(letters: str) -> int:
    """A -> 0, AA -> 26 (case-insensitive)."""
    value = 0
    for char in letters.upper():
        value = value * 26 + (ord(char) - 64)
    return value - 1


def quote_title(title: str) -> str:
    """Quote a sheet title the way Google does in the ranges it returns."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) is not None
    looks_like_cell = re.fullmatch(r"[A-Za-z]{1,3}\d+|[Rr]\d+[Cc]\d+", title) is not None
    if plain and not looks_like_cell:
        return title
    return "'" + title.replace("'", "''") + "'"


def a1(title: str | None, r0: int, r1: int, c0: int, c1: int, *, always_quote: bool = False) -> str:
    """A1 text for the half-open box rows [r0, r1) x cols [c0, c1)."""
    start = f"{column_letters(c0)}{r0 + 1}"
    end = f"{column_letters(max(c1 - 1, c0))}{max(r1, r0 + 1)}"
    cells = start if (r1 - r0 <= 1 and c1 - c0 <= 1) else f"{start}:{end}"
    if title is None:
        return cells
    shown = "'" + title.replace("'", "''") + "'" if always_quote else quote_title(title)
    return f"{shown}!{cells}"


@dataclass(frozen=True)
class A1Ref:
    """A parsed A1 string. ``None`` bounds are open (to the grid's edge).

    ``sheet`` is the title as written (unquoted) or None when the string had no ``!``;
    ``cells`` is False when the string named only a sheet (or a named range).
    """

    sheet: str | None
    r0: int
    r1: int | None
    c0: int
    c1: int | None
    cells: bool
    single: bool


_ENDPOINT = re.compile(r"\$?([A-Za-z]{1,3})?\$?(\d+)?")
# Characters that force a sheet name to be quoted. Google's own quickstart uses
# ``Class Data!A2:E`` unquoted, so spaces are fine; ``Items & Stock!A1`` is rejected.
_UNQUOTED_TITLE = re.compile(r"[\w .\-]+")


class A1Error(ValueError):
    pass


def parse_a1(text: str) -> A1Ref:
    """Parse ``Tab!A1:B2`` / ``'Tab name'!A:C`` / ``A1`` / ``Tab`` (sheet-only)."""
    sheet: str | None = None
    rest = text
    if text.startswith("'"):
        match = re.match(r"'((?:[^']|'')*)'(?:!(.*))?$", text, re.S)
        if match is None:
            raise A1Error(text)
        sheet = match.group(1).replace("''", "'")
        if match.group(2) is None:
            return A1Ref(sheet, 0, None, 0, None, cells=False, single=False)
        rest = match.group(2)
    elif "!" in text:
        sheet, rest = text.rsplit("!", 1)
        if not _UNQUOTED_TITLE.fullmatch(sheet):
            raise A1Error(text)
    cell = _parse_cells(rest)
    if cell is None:
        if sheet is not None:
            raise A1Error(text)
        # No '!' and not cell-shaped: a sheet title or a named range.
        return A1Ref(text, 0, None, 0, None, cells=False, single=False)
    r0, r1, c0, c1, single = cell
    return A1Ref(sheet, r0, r1, c0, c1, cells=True, single=single)


def _bounds(first: int | None, second: int | None) -> tuple[int, int | None]:
    """Half-open bounds of one axis of ``X:Y``; a missing end is open (grid edge)."""
    if first is not None and second is not None:
        return min(first, second), max(first, second) + 1
    return (first if first is not None else 0), (second + 1 if second is not None else None)


def _parse_cells(text: str) -> tuple[int, int | None, int, int | None, bool] | None:
    parts = text.split(":")
    if len(parts) > 2 or not text:
        return None
    points = []
    for part in parts:
        match = _ENDPOINT.fullmatch(part)
        if match is None or not part or (match.group(1) is None and match.group(2) is None):
            return None
        col = column_index(match.group(1)) if match.group(1) else None
        row = int(match.group(2)) - 1 if match.group(2) else None
        if row is not None and row < 0:
            return None
        points.append((col, row))
    if len(points) == 1:
        col, row = points[0]
        if col is None or row is None:
            return None
        return row, row + 1, col, col + 1, True
    (ca, ra), (cb, rb) = points
    c0, c1 = _bounds(ca, cb)
    r0, r1 = _bounds(ra, rb)
    return r0, r1, c0, c1, False


# --- values in ---------------------------------------------------------------------------


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def proto_text(value: Any, indent: int = 0) -> str:
    """Render a JSON value like protobuf's text format, for Google's ``Invalid values[i][j]:
    list_value ...`` message."""
    pad = "  " * indent
    if isinstance(value, list):
        inner = "".join(
            f"{pad}  values {{\n{proto_text(item, indent + 2)}{pad}  }}\n" for item in value
        )
        return f"{pad}list_value \t {{\n{inner}{pad}}}\n" if indent == 0 else inner
    if isinstance(value, dict):
        return f"{pad}struct_value {{\n{pad}}}\n"
    if isinstance(value, bool):
        return f"{pad}bool_value: {str(value).lower()}\n"
    if isinstance(value, int | float):
        return f"{pad}number_value: {float(value)}\n"
    return f'{pad}string_value: "{value}"\n'


_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?")


def parse_user_entered(value: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What typing ``value`` into a cell stores: ``(userEnteredValue, numberFormat)``.

    ``(None, None)`` means "clear the value". A detected format (``12%`` -> PERCENT,
    ``2024-01-31`` -> DATE) is returned so the caller can set it, as Sheets does.
    """
    if isinstance(value, bool):
        return {"boolValue": value}, None
    if isinstance(value, int | float):
        return {"numberValue": value}, None
    text = str(value)
    if text == "":
        return None, None
    if text.startswith("="):
        return {"formulaValue": text}, None
    if text.startswith("'"):
        return {"stringValue": text[1:]}, None
    stripped = text.strip()
    if stripped.upper() in ("TRUE", "FALSE"):
        return {"boolValue": stripped.upper() == "TRUE"}, None
    percent = stripped.endswith("%")
    number_text = stripped[:-1].strip() if percent else stripped
    if number_text and _NUMBER.fullmatch(number_text) and any(ch.isdigit() for ch in number_text):
        number = float(number_text.replace(",", ""))
        if percent:
            decimals = len(number_text.split(".")[1]) if "." in number_text else 0
            pattern = "0" + ("." + "0" * decimals if decimals else "") + "%"
            return {"numberValue": _tidy(number / 100)}, {"type": "PERCENT", "pattern": pattern}
        return {"numberValue": _tidy(number)}, None
    date = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", stripped)
    if date:
        try:
            day = dt.datetime(int(date[1]), int(date[2]), int(date[3]))
        except ValueError:
            return {"stringValue": text}, None
        serial = (day - _SERIAL_EPOCH).days
        return {"numberValue": serial}, {"type": "DATE", "pattern": "yyyy-mm-dd"}
    return {"stringValue": text}, None


def parse_raw(value: Any) -> dict[str, Any] | None:
    """RAW input: stored as-is (a string starting with '=' stays a string)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int | float):
        return {"numberValue": value}
    text = str(value)
    return {"stringValue": text} if text != "" else None


def _tidy(number: float) -> int | float:
    """Integral doubles travel as JSON integers (Google prints 5, not 5.0)."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number


# --- values out --------------------------------------------------------------------------


def effective_value(cell: dict[str, Any]) -> dict[str, Any] | None:
    entered = cell.get("userEnteredValue")
    if not entered:
        return None
    if "formulaValue" in entered:
        return {"stringValue": FORMULA_MARKER}
    if "numberValue" in entered:
        return {"numberValue": _tidy(entered["numberValue"])}
    return dict(entered)


def python_value(extended: dict[str, Any] | None) -> Any:
    """ExtendedValue -> Python (numbers int when integral, like Google's JSON)."""
    if not extended:
        return None
    if "numberValue" in extended:
        number = extended["numberValue"]
        return _tidy(float(number)) if isinstance(number, float) else number
    if "boolValue" in extended:
        return bool(extended["boolValue"])
    if "stringValue" in extended:
        return extended["stringValue"]
    if "formulaValue" in extended:
        return extended["formulaValue"]
    if "errorValue" in extended:
        return "#ERROR!"
    return None


def json_copy(value: Any) -> Any:
    """Deep copy of JSON-shaped data; ~10x faster than copy.deepcopy on big grids."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


def render_cell(stored: dict[str, Any]) -> dict[str, Any]:
    """Stored (client-written) CellData -> the CellData Google would return, as far as the
    fake computes it: ``effectiveValue`` beside what was written. ``formattedValue`` and
    ``effectiveFormat`` are not computed (nothing reads them), and a read that asks for
    them is refused, see ``RENDERED_CELL_FIELDS``.

    The result shares its nested parts with ``stored`` (a read copies nothing it does not
    change): serialise it or ``json_copy`` it, never change it in place."""
    out = dict(stored)
    value = effective_value(stored)
    if value is not None:
        out["effectiveValue"] = value
        entered = out.get("userEnteredValue", {})
        if "numberValue" in entered:
            out["userEnteredValue"] = {**entered, "numberValue": _tidy(entered["numberValue"])}
    return out


def value_length(stored: dict[str, Any]) -> int:
    entered = stored.get("userEnteredValue", {})
    text = entered.get("stringValue") or entered.get("formulaValue") or ""
    return len(text)

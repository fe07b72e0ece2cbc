"""A report to Sheets API ``batchUpdate`` requests (pure: no I/O).

The whole tab is described by stateless requests: the grid is set to exactly the size
the report needs (which also drops rows left over from a longer previous report), then
one ``updateCells`` over the full grid carries every value and every format. Nothing
depends on what the tab held before, so the steady-state refresh needs no read, and the
batch either applies whole or not at all. Alternating shading is written as cell
backgrounds rather than a banding object, because ``addBanding`` fails when one exists
and ``updateBanding`` fails when none does; cell formats have no such state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import isfinite
from typing import Any, Literal

from sheets_sync.errors import ReportTooLarge
from sheets_sync.pipeline.report import LABEL_KEYS, Report, Row
from sheets_sync.pipeline.request_body import (
    EncodedRows,
    float_text,
    int_text,
    json_number,
    json_string,
    json_value,
)

HEADER_ROW = 2
FIRST_DATA_ROW = 3
# Far below Google's 10,000,000 cells per spreadsheet, leaving room for the user's tabs.
MAX_TAB_CELLS = 2_000_000

INT_FORMAT = {"type": "NUMBER", "pattern": "#,##0"}
PERCENT_FORMAT = {"type": "PERCENT", "pattern": "0.0%"}

_WHITE = {"red": 1, "green": 1, "blue": 1}
_BAND = {"red": 0.953, "green": 0.965, "blue": 0.984}
_HEADER_BG = {"red": 0.141, "green": 0.259, "blue": 0.439}
_TOTAL_BG = {"red": 0.886, "green": 0.910, "blue": 0.941}
_MUTED = {"red": 0.35, "green": 0.35, "blue": 0.35}
_WINNER_BG = {"red": 0.851, "green": 0.918, "blue": 0.827}
_LEADING_BG = {"red": 1.0, "green": 0.949, "blue": 0.8}
_FONT = "Arial"
HEADER_FORMAT: dict[str, Any] = {
    "backgroundColor": _HEADER_BG,
    "textFormat": {"fontFamily": _FONT, "fontSize": 10, "bold": True, "foregroundColor": _WHITE},
    "verticalAlignment": "MIDDLE",
    "wrapStrategy": "WRAP",
}

NOTES_HEADER = "Notes"
KEY_HEADER = "sheets-sync row key (do not edit)"
CHART_LABEL_HEADER = "Chart label"
REMOVED_TITLE = "Notes of removed rows"
REMOVED_PREFIX = "removed:"
CHART_TITLE = "Reply rate by step and variant"


@dataclass(frozen=True)
class RemovedNoteRow:
    key: str
    label: str
    value: Mapping[str, Any]


@dataclass(frozen=True)
class Extras:
    """What the optional features add right of (and below) the report's columns.

    ``notes``: a Notes column (values by row key) and a hidden row-key column; notes whose
    row is gone are listed in ``removed_notes`` below the table. ``chart``: a hidden label
    column and the chart request, "add" (it is not there) or "update" (it is).
    """

    notes: Mapping[str, Mapping[str, Any]] | None = None
    removed_notes: Sequence[RemovedNoteRow] = ()
    row_keys: Sequence[str] = field(default=())  # per report.all_rows, when notes are on
    chart: Literal["add", "update"] | None = None
    chart_id: int = 0


def grid_size(report: Report, extras: Extras | None = None) -> tuple[int, int]:
    extras = extras or Extras()
    rows = FIRST_DATA_ROW + len(report.all_rows)
    if extras.notes is not None and extras.removed_notes:
        rows += 2 + len(extras.removed_notes)  # a blank row, a title, one row per note
    return rows, len(report.columns) + len(_extra_columns(extras))


def _extra_columns(extras: Extras) -> list[str]:
    cols = []
    if extras.notes is not None:
        cols += [NOTES_HEADER, KEY_HEADER]
    if extras.chart is not None:
        cols.append(CHART_LABEL_HEADER)
    return cols


def label_column_count(report: Report) -> int:
    """Leading campaign/step/variant columns: frozen, so they stay in view."""
    count = 0
    for col in report.columns:
        if col.key not in LABEL_KEYS:
            break
        count += 1
    return count


def chart_id_for(sheet_id: int) -> int:
    """The chart's id, chosen by us and derived from the tab's, so it is known without a
    lookup. Embedded object ids are positive int32."""
    return (sheet_id * 31 + 7) % 2_000_000_000 + 1


def text_cell(value: str, fmt: dict[str, Any]) -> dict[str, Any]:
    return _text(value, fmt)


def _text(value: str, fmt: dict[str, Any]) -> dict[str, Any]:
    # stringValue, never formulaValue: a campaign named "=IMPORTXML(...)" stays text.
    return {"userEnteredValue": {"stringValue": value}, "userEnteredFormat": fmt}


def _blank(fmt: dict[str, Any] | None = None) -> dict[str, Any]:
    # With "userEnteredValue,userEnteredFormat" in the field mask, an empty cell object
    # clears whatever the cell held before.
    return {"userEnteredFormat": fmt} if fmt else {}


def _row_format(background: dict[str, float] | None, *, bold: bool = False) -> dict[str, Any]:
    # Only what differs from Google's defaults: a 1,000-row refresh is one request, and
    # every byte of a cell's format is repeated 16 times per row.
    fmt: dict[str, Any] = {}
    if background is not None:
        fmt["backgroundColor"] = background
    if bold:
        fmt["textFormat"] = {"bold": True}
    return fmt


# How a cell's JSON text starts, for the rows written as text (here and in history.py).
_VALUE_OPEN = '{"userEnteredValue": '
NUMBER_CELL_OPEN = '{"userEnteredValue": {"numberValue": '
STRING_CELL_OPEN = '{"userEnteredValue": {"stringValue": '


def _value_cells(
    text_columns: Sequence[bool], values: Sequence[Any], style: _RowStyle
) -> list[str]:
    """One row's report cells, as JSON text. The hottest loop of a refresh (rows ×
    columns): each cell is the row style's prepared text around one encoded value, and
    every empty cell is the style's one ``blank`` text (see request_body)."""
    cells: list[str] = []
    append = cells.append
    blank, close_text, close_number = style.blank_text, style.close_text, style.close_number
    for is_text, value in zip(text_columns, values, strict=True):
        if value is None or value == "":
            # A rate over zero emails sent is undefined: an empty cell, not 0%.
            append(blank)
        elif is_text:
            # stringValue, never formulaValue: a campaign named "=IMPORTXML(...)" stays
            # text.
            append(STRING_CELL_OPEN + json_string(str(value)) + close_text)
        else:
            # Number formats are applied per column block by ``_number_formats``; a
            # plain row's number cell carries no format at all.
            kind = value.__class__
            if kind is float and isfinite(value):
                number = float_text(value)
            elif kind is int:
                number = int_text(value)
            else:
                number = json_number(value)
            append(NUMBER_CELL_OPEN + number + close_number)
    return cells


@dataclass(frozen=True)
class _RowStyle:
    """A row look (band, winner…) as JSON text: its empty cells and what closes each
    kind of cell in it (the format), made once per render and shared by every cell of
    every row in that style."""

    blank_text: str
    blank_note_text: str
    close_text: str  # after a stringValue: the format, even when it is empty
    close_number: str  # after a numberValue: the format, when there is one
    close_note: str  # after a note's value

    @classmethod
    def of(cls, background: dict[str, float] | None, *, bold: bool = False) -> _RowStyle:
        fmt = _row_format(background, bold=bold)
        note_fmt = dict(fmt, wrapStrategy="WRAP")
        fmt_text = json_value(fmt)
        close_text = '}, "userEnteredFormat": ' + fmt_text + "}"
        return cls(
            blank_text=json_value(_blank(fmt)),
            blank_note_text=json_value(_blank(note_fmt)),
            close_text=close_text,
            close_number=close_text if fmt else "}}",
            close_note=', "userEnteredFormat": ' + json_value(note_fmt) + "}",
        )


class _RowRenderer:
    """The data rows of one render: what every row shares is worked out once."""

    def __init__(self, report: Report, extras: Extras) -> None:
        self.extras = extras
        self.text_columns = [c.kind == "text" for c in report.columns]
        index = {c.key: i for i, c in enumerate(report.columns)}
        self.label_at = [index[k] for k in LABEL_KEYS if k in index]
        self.total = _RowStyle.of(_TOTAL_BG, bold=True)
        self.winner = _RowStyle.of(_WINNER_BG, bold=True)
        self.leading = _RowStyle.of(_LEADING_BG)
        self.band = _RowStyle.of(_BAND)
        self.plain = _RowStyle.of(None)

    def style(self, row: Row, position: int) -> _RowStyle:
        if row.kind == "total":
            return self.total
        if row.highlight == "winner":
            return self.winner
        if row.highlight == "leading":
            return self.leading
        return self.band if position % 2 else self.plain

    def row(self, row: Row, position: int) -> str:
        """One data row as the JSON text of ``{"values": [cells]}``."""
        style = self.style(row, position)
        cells = _value_cells(self.text_columns, row.values, style)
        extras = self.extras
        if extras.notes is not None:
            key = extras.row_keys[position]
            value = extras.notes.get(key)
            # What the teammate typed, exactly as typed (text, number or their formula).
            cells.append(
                _VALUE_OPEN + json_value(dict(value)) + style.close_note
                if value else style.blank_note_text
            )
            cells.append(STRING_CELL_OPEN + json_string(key) + style.close_text)
        if extras.chart is not None:
            label = (
                " · ".join(p for p in (str(row.values[i]) for i in self.label_at) if p)
                if row.kind != "total" else ""
            )
            cells.append(
                STRING_CELL_OPEN + json_string(label) + style.close_text if label
                else style.blank_text
            )
        return '{"values": [' + ", ".join(cells) + "]}"


def _title_rows(report: Report, synced_at: datetime, width: int) -> list[dict[str, Any]]:
    title_fmt = {
        "textFormat": {"fontFamily": _FONT, "fontSize": 13, "bold": True},
        "verticalAlignment": "MIDDLE",
    }
    info_fmt = {"textFormat": {"fontFamily": _FONT, "fontSize": 10, "foregroundColor": _MUTED}}
    when = synced_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = f"Dates: {report.date_label} (UTC)    Last synced: {when}"
    if report.totals_check:
        info += f"    {report.totals_check}"
    title_cells = [_text(report.title, title_fmt)] + [_blank()] * (width - 1)
    info_cells = [_text(info, info_fmt)] + [_blank()] * (width - 1)
    return [{"values": title_cells}, {"values": info_cells}]


def _header_row(report: Report, extras: Extras) -> dict[str, Any]:
    cells = []
    for col in report.columns:
        align = "LEFT" if col.kind == "text" else "RIGHT"
        cells.append(_text(col.header, dict(HEADER_FORMAT, horizontalAlignment=align)))
    if report.reading_note and cells:
        # On the first header cell, where a reader's eye starts; the field mask of the
        # one updateCells includes "note", so it is rewritten (or cleared) every refresh.
        cells[0]["note"] = report.reading_note
    for header in _extra_columns(extras):
        cells.append(_text(header, dict(HEADER_FORMAT, horizontalAlignment="LEFT")))
    return {"values": cells}


def chart_label(report: Report, row: Row) -> str:
    index = {c.key: i for i, c in enumerate(report.columns)}
    parts = [str(row.values[index[k]]) for k in LABEL_KEYS if k in index]
    return " · ".join(p for p in parts if p)


def _note_cell(value: Mapping[str, Any] | None, row_format: dict[str, Any]) -> dict[str, Any]:
    fmt = dict(row_format, wrapStrategy="WRAP")
    if not value:
        return _blank(fmt)
    # What the teammate typed, exactly as typed (text, number or their own formula).
    return {"userEnteredValue": dict(value), "userEnteredFormat": fmt}


def _removed_rows(report: Report, extras: Extras, width: int) -> list[dict[str, Any]]:
    if extras.notes is None or not extras.removed_notes:
        return []
    notes_col = len(report.columns)
    title_fmt = {"textFormat": {"fontFamily": _FONT, "bold": True}}
    explain = (
        f"{REMOVED_TITLE}: their rows are no longer in the report. A note moves back "
        "when its row returns; clear a note here to drop it."
    )
    rows = [{"values": [_blank()] * width}]
    rows.append({"values": [_text(explain, title_fmt)] + [_blank()] * (width - 1)})
    muted = {"textFormat": {"foregroundColor": _MUTED}}
    for note in extras.removed_notes:
        cells = [_blank()] * width
        cells[0] = _text(note.label, muted)
        cells[notes_col] = _note_cell(note.value, {})
        cells[notes_col + 1] = _text(REMOVED_PREFIX + note.key, {})
        rows.append({"values": cells})
    return rows


def chart_spec(report: Report, sheet_id: int, extras: Extras) -> dict[str, Any]:
    label_col = len(report.columns) + len(_extra_columns(extras)) - 1
    rate_col = [c.key for c in report.columns].index("reply_rate")
    end = FIRST_DATA_ROW + len(report.rows)

    def source(column: int) -> dict[str, Any]:
        return {
            "sourceRange": {
                "sources": [
                    {
                        "sheetId": sheet_id,
                        "startRowIndex": FIRST_DATA_ROW,
                        "endRowIndex": end,
                        "startColumnIndex": column,
                        "endColumnIndex": column + 1,
                    }
                ]
            }
        }

    return {
        "title": CHART_TITLE,
        # The label column is hidden: plot it anyway.
        "hiddenDimensionStrategy": "SHOW_ALL",
        "basicChart": {
            "chartType": "COLUMN",
            "legendPosition": "NO_LEGEND",
            "headerCount": 0,
            "axis": [
                {"position": "BOTTOM_AXIS", "title": "Step · variant"},
                {"position": "LEFT_AXIS", "title": "Reply rate (unique replies / sent)"},
            ],
            "domains": [{"domain": source(label_col)}],
            "series": [{"series": source(rate_col), "targetAxis": "LEFT_AXIS"}],
        },
    }


def _chart_request(report: Report, sheet_id: int, extras: Extras) -> list[dict[str, Any]]:
    if extras.chart is None or not report.rows:
        return []
    spec = chart_spec(report, sheet_id, extras)
    if extras.chart == "update":
        return [{"updateChartSpec": {"chartId": extras.chart_id, "spec": spec}}]
    # Anchored just right of the visible columns, below the header; people may move it
    # (updateChartSpec leaves the position alone).
    first_hidden = len(report.columns) + (1 if extras.notes is not None else 0)
    return [
        {
            "addChart": {
                "chart": {
                    "chartId": extras.chart_id,
                    "spec": spec,
                    "position": {
                        "overlayPosition": {
                            "anchorCell": {
                                "sheetId": sheet_id,
                                "rowIndex": HEADER_ROW,
                                "columnIndex": first_hidden,
                            },
                            "offsetXPixels": 16,
                            "offsetYPixels": 0,
                            "widthPixels": 720,
                            "heightPixels": 380,
                        }
                    },
                }
            }
        }
    ]


def column_properties(sheet_id: int, index: int, props: dict[str, Any]) -> dict[str, Any]:
    """Set ``props`` (width, hidden) of one column; the field mask names exactly those."""
    return {
        "updateDimensionProperties": {
            "range": {
                "sheetId": sheet_id,
                "dimension": "COLUMNS",
                "startIndex": index,
                "endIndex": index + 1,
            },
            "properties": props,
            "fields": ",".join(props),
        }
    }


def _number_formats(report: Report, sheet_id: int, rows: int) -> list[dict[str, Any]]:
    """One ``repeatCell`` per run of integer or percent columns, over the data rows.

    Sent after ``updateCells`` (which resets each cell's whole format) and masked to
    ``numberFormat`` alone, so it merges with the row shading instead of replacing it.
    """
    requests: list[dict[str, Any]] = []
    kinds = [c.kind for c in report.columns]
    start = 0
    while start < len(kinds):
        end = start
        while end < len(kinds) and kinds[end] == kinds[start]:
            end += 1
        if kinds[start] != "text":
            fmt = INT_FORMAT if kinds[start] == "int" else PERCENT_FORMAT
            requests.append(
                {
                    "repeatCell": {
                        "range": {
                            "sheetId": sheet_id,
                            "startRowIndex": FIRST_DATA_ROW,
                            "endRowIndex": rows,
                            "startColumnIndex": start,
                            "endColumnIndex": end,
                        },
                        "cell": {
                            "userEnteredFormat": {
                                "numberFormat": fmt,
                                "horizontalAlignment": "RIGHT",
                            }
                        },
                        "fields": "userEnteredFormat(numberFormat,horizontalAlignment)",
                    }
                }
            )
        start = end
    return requests


def render(
    report: Report, *, sheet_id: int, synced_at: datetime, extras: Extras | None = None
) -> list[dict[str, Any]]:
    """Every request that makes the tab ``sheet_id`` show ``report``, in order."""
    extras = extras or Extras()
    rows, cols = grid_size(report, extras)
    if rows * cols > MAX_TAB_CELLS:
        raise ReportTooLarge(
            f"The report has {rows:,} rows × {cols} columns, more than one tab should hold. "
            "Pick fewer campaigns or a shorter date range."
        )
    frozen_cols = label_column_count(report)
    # The few rows above and below the data are built as dicts, the data rows as text.
    head = _title_rows(report, synced_at, cols) + [_header_row(report, extras)]
    rows_of = _RowRenderer(report, extras).row
    body_rows = EncodedRows(
        [json_value(r) for r in head]
        + [rows_of(row, i) for i, row in enumerate(report.all_rows)]
        + [json_value(r) for r in _removed_rows(report, extras, cols)]
    )
    requests: list[dict[str, Any]] = [
        {
            "updateSheetProperties": {
                "properties": {
                    "sheetId": sheet_id,
                    "gridProperties": {
                        "rowCount": rows,
                        "columnCount": cols,
                        "frozenRowCount": FIRST_DATA_ROW,
                        "frozenColumnCount": frozen_cols,
                    },
                },
                "fields": "gridProperties(rowCount,columnCount,frozenRowCount,frozenColumnCount)",
            }
        },
        {
            "updateCells": {
                # A range (not a start cell) so any cell of the grid not listed is cleared.
                "range": {
                    "sheetId": sheet_id,
                    "startRowIndex": 0,
                    "endRowIndex": rows,
                    "startColumnIndex": 0,
                    "endColumnIndex": cols,
                },
                "rows": body_rows,
                "fields": "userEnteredValue,userEnteredFormat,note",
            }
        },
    ]
    requests += _number_formats(report, sheet_id, FIRST_DATA_ROW + len(report.all_rows))
    widths: list[tuple[int, bool]] = [(col.width, False) for col in report.columns]
    for header in _extra_columns(extras):
        widths.append((260, False) if header == NOTES_HEADER else (120, True))
    for index, (width, hidden) in enumerate(widths):
        props: dict[str, Any] = {"pixelSize": width}
        if extras.notes is not None or extras.chart is not None:
            # Managed columns are shown again if someone hid one; ours stay hidden.
            props["hiddenByUser"] = hidden
        requests.append(column_properties(sheet_id, index, props))
    requests.append(
        {
            "updateDimensionProperties": {
                "range": {
                    "sheetId": sheet_id,
                    "dimension": "ROWS",
                    "startIndex": HEADER_ROW,
                    "endIndex": HEADER_ROW + 1,
                },
                "properties": {"pixelSize": 42},
                "fields": "pixelSize",
            }
        }
    )
    requests += _chart_request(report, sheet_id, extras)
    return requests


def add_sheet_request(
    report: Report, *, sheet_id: int, title: str, extras: Extras | None = None
) -> dict[str, Any]:
    rows, cols = grid_size(report, extras)
    return {
        "addSheet": {
            "properties": {
                "sheetId": sheet_id,
                "title": title,
                "gridProperties": {"rowCount": rows, "columnCount": cols},
            }
        }
    }

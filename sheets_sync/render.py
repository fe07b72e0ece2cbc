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

from datetime import UTC, datetime
from typing import Any

from .errors import ReportTooLarge
from .report import Column, Report, Row

TITLE_ROW = 0
INFO_ROW = 1
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
_FONT = "Arial"


def grid_size(report: Report) -> tuple[int, int]:
    return FIRST_DATA_ROW + len(report.all_rows), len(report.columns)


def label_column_count(report: Report) -> int:
    return sum(1 for c in report.columns if c.kind == "text")


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


def _value_cell(column: Column, value: Any, row_format: dict[str, Any]) -> dict[str, Any]:
    if column.kind == "text":
        return _blank(row_format) if value in (None, "") else _text(str(value), row_format)
    # Number formats are applied per column block by ``_number_formats``.
    if value is None or value == "":
        # A rate over zero emails sent is undefined: an empty cell, not 0%.
        return _blank(row_format)
    cell: dict[str, Any] = {"userEnteredValue": {"numberValue": value}}
    if row_format:
        cell["userEnteredFormat"] = row_format
    return cell


def _title_rows(report: Report, synced_at: datetime, width: int) -> list[dict[str, Any]]:
    title_fmt = {
        "textFormat": {"fontFamily": _FONT, "fontSize": 13, "bold": True},
        "verticalAlignment": "MIDDLE",
    }
    info_fmt = {"textFormat": {"fontFamily": _FONT, "fontSize": 10, "foregroundColor": _MUTED}}
    when = synced_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = f"Dates: {report.date_label} (UTC)    Last synced: {when}"
    title_cells = [_text(report.title, title_fmt)] + [_blank()] * (width - 1)
    info_cells = [_text(info, info_fmt)] + [_blank()] * (width - 1)
    return [{"values": title_cells}, {"values": info_cells}]


def _header_row(report: Report) -> dict[str, Any]:
    fmt = {
        "backgroundColor": _HEADER_BG,
        "textFormat": {
            "fontFamily": _FONT,
            "fontSize": 10,
            "bold": True,
            "foregroundColor": _WHITE,
        },
        "verticalAlignment": "MIDDLE",
        "wrapStrategy": "WRAP",
    }
    cells = []
    for col in report.columns:
        align = "LEFT" if col.kind == "text" else "RIGHT"
        cells.append(_text(col.header, dict(fmt, horizontalAlignment=align)))
    return {"values": cells}


def _data_row(report: Report, row: Row, position: int) -> dict[str, Any]:
    if row.kind == "total":
        row_format = _row_format(_TOTAL_BG, bold=True)
    else:
        row_format = _row_format(_BAND if position % 2 else None)
    cells = [
        _value_cell(col, val, row_format)
        for col, val in zip(report.columns, row.values, strict=True)
    ]
    return {"values": cells}


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


def render(report: Report, *, sheet_id: int, synced_at: datetime) -> list[dict[str, Any]]:
    """Every request that makes the tab ``sheet_id`` show ``report``, in order."""
    rows, cols = grid_size(report)
    if rows * cols > MAX_TAB_CELLS:
        raise ReportTooLarge(
            f"The report has {rows:,} rows × {cols} columns, more than one tab should hold. "
            "Pick fewer campaigns or a shorter date range."
        )
    frozen_cols = label_column_count(report)
    body_rows = _title_rows(report, synced_at, cols) + [_header_row(report)]
    body_rows += [_data_row(report, row, i) for i, row in enumerate(report.all_rows)]
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
    requests += _number_formats(report, sheet_id, rows)
    for index, col in enumerate(report.columns):
        requests.append(
            {
                "updateDimensionProperties": {
                    "range": {
                        "sheetId": sheet_id,
                        "dimension": "COLUMNS",
                        "startIndex": index,
                        "endIndex": index + 1,
                    },
                    "properties": {"pixelSize": col.width},
                    "fields": "pixelSize",
                }
            }
        )
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
    return requests


def add_sheet_request(report: Report, *, sheet_id: int, title: str) -> dict[str, Any]:
    rows, cols = grid_size(report)
    return {
        "addSheet": {
            "properties": {
                "sheetId": sheet_id,
                "title": title,
                "gridProperties": {"rowCount": rows, "columnCount": cols},
            }
        }
    }

"""The history tab: one row per UTC day and campaign × step × variant (pure).

Each row holds that day's own numbers (Instantly asked for that one day), never the
connection's date range totals, so a column of the tab charts as a daily trend.

Layout (fixed, whatever the connection's settings, so rows of different days line up):
``Day (UTC) | row key (hidden) | Campaign | Step | Variant | counts… | rates…``. The
refresh reads back only columns A:B (date and key) and plans the smallest edit:

* rows older than the horizon are deleted (``deleteDimension``, bottom-up);
* each fetched day's rows (today's, partial so far, and the days missed since the last
  refresh) are upserted by (day, key): a key already there that day is overwritten in
  place, a new one is appended at the end; a key reported earlier but not now is left
  as it was;
* if the tab would still pass :data:`MAX_HISTORY_CELLS`, the oldest days go first.

Everything is requests for the same ``batchUpdate`` as the main tab.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from math import isfinite
from operator import itemgetter
from typing import Any

from sheets_sync.pipeline.notes import row_key
from sheets_sync.pipeline.render import (
    HEADER_FORMAT,
    INT_FORMAT,
    NUMBER_CELL_OPEN,
    PERCENT_FORMAT,
    STRING_CELL_OPEN,
    column_properties,
    text_cell,
)
from sheets_sync.pipeline.report import ALL_CAMPAIGNS, Report
from sheets_sync.pipeline.request_body import (
    EncodedRows,
    float_text,
    json_number,
    json_string,
    json_value,
)

DEFAULT_HORIZON_DAYS = 180
# Far below Google's 10,000,000 cells per spreadsheet, leaving room for the other tabs.
MAX_HISTORY_CELLS = 4_000_000
# Days fetched per refresh at most (today included): a long pause costs a bounded number
# of Instantly calls, and a longer gap simply stays a gap.
BACKFILL_DAYS = 7
_EPOCH = date(1899, 12, 30)  # Sheets' day zero for date serial numbers

# (key, header, kind, width)
COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("date", "Day (UTC): that day's numbers only", "date", 120),
    ("key", "sheets-sync row key (do not edit)", "key", 100),
    ("campaign", "Campaign", "text", 200),
    ("step", "Step", "text", 140),
    ("variant", "Variant", "text", 90),
    ("sent", "Sent", "int", 90),
    ("opened", "Opens", "int", 90),
    ("unique_opened", "Unique opens", "int", 90),
    ("replies", "Replies", "int", 90),
    ("unique_replies", "Unique replies", "int", 90),
    ("replies_automatic", "Automatic replies", "int", 90),
    ("unique_replies_automatic", "Unique automatic replies", "int", 90),
    ("clicks", "Link clicks", "int", 90),
    ("unique_clicks", "Unique link clicks", "int", 90),
    ("opportunities", "Opportunities", "int", 90),
    ("unique_opportunities", "Unique opportunities", "int", 90),
    ("meetings_booked", "Meetings booked", "int", 90),
    ("won", "Won", "int", 90),
    ("open_rate", "Open rate (unique opens / sent)", "percent", 110),
    ("reply_rate", "Reply rate (unique replies / sent)", "percent", 110),
    ("click_rate", "Click rate (unique clicks / sent)", "percent", 110),
    ("opportunity_rate", "Opportunity rate (unique opportunities / sent)", "percent", 110),
)
KEY_COLUMN = 1
WIDTH = len(COLUMNS)

HistoryValue = str | int | float | None


def serial(day: date) -> int:
    return (day - _EPOCH).days


def day_of(cell: Mapping[str, Any] | None) -> date | None:
    """The date in a history row's first cell (a serial number, or ISO text typed by hand)."""
    value = (cell or {}).get("userEnteredValue") or {}
    if "numberValue" in value:
        try:
            return _EPOCH + timedelta(days=int(value["numberValue"]))
        except (OverflowError, ValueError):
            return None
    if "stringValue" in value:
        try:
            return datetime.strptime(str(value["stringValue"]).strip(), "%Y-%m-%d").date()
        except ValueError:
            return None
    return None


def days_to_fetch(last_day: date | None, today: date) -> list[date]:
    """The days whose own numbers this refresh writes, oldest first.

    The last refreshed day is fetched again because it was partial when written; without
    one (a first refresh, or a remembered day in the future) only today is.
    """
    if last_day is None or last_day > today:
        return [today]
    first = max(last_day, today - timedelta(days=BACKFILL_DAYS - 1))
    return [first + timedelta(days=n) for n in range((today - first).days + 1)]


def snapshot(report: Report, day: date) -> list[tuple[str, list[HistoryValue]]]:
    """(key, cells) per report row (the total excluded) for the history tab."""
    index = {c.key: i for i, c in enumerate(report.columns)}
    single_name = (
        report.campaign_names[0] if len(report.campaign_names) == 1 else ALL_CAMPAIGNS
    )
    # The report column of each history column after date, key and campaign; a column
    # the report lacks reads the padding None appended to each row's values.
    missing = len(report.columns)
    pick = itemgetter(*(index.get(name, missing) for name, _, _, _ in COLUMNS[3:]))
    campaign_at = index.get("campaign")
    day_serial = serial(day)
    out: list[tuple[str, list[HistoryValue]]] = []
    for row in report.rows:
        key = row_key(row)
        values = (*row.values, None)
        campaign = single_name if campaign_at is None else values[campaign_at]
        out.append((key, [day_serial, key, campaign, *pick(values)]))
    return out


def with_quiet_rows(
    day: date,
    rows: Sequence[tuple[str, list[HistoryValue]]],
    known: Sequence[tuple[str, list[HistoryValue]]],
) -> list[tuple[str, list[HistoryValue]]]:
    """``day``'s rows, plus a zero row for each ``known`` key Instantly had nothing for.

    Instantly leaves out a step without events that day; a zero there keeps a daily trend
    continuous instead of skipping the day. Counts not asked for stay blank, and rates
    over nothing sent are blank.
    """
    have = dict(rows)
    kinds = [kind for _, _, kind, _ in COLUMNS]
    out: list[tuple[str, list[HistoryValue]]] = []
    for key, cells in known:
        if key in have:
            out.append((key, have.pop(key)))
            continue
        quiet: list[HistoryValue] = []
        for kind, value in zip(kinds, cells, strict=True):
            if kind == "date":
                quiet.append(serial(day))
            elif kind == "int":
                quiet.append(None if value is None else 0)
            elif kind == "percent":
                quiet.append(None)
            else:
                quiet.append(value)
        out.append((key, quiet))
    out += list(have.items())
    return out


@dataclass(frozen=True)
class HistoryPlan:
    # Half-open sheet row ranges to delete, highest first (so indices stay valid).
    deletes: list[tuple[int, int]]
    # (sheet row index after the deletes, cells): contiguous runs become one updateCells.
    writes: list[tuple[int, list[HistoryValue]]]
    row_count: int  # grid rows after the edit, header included


def _runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def plan(
    existing: Sequence[tuple[date | None, str]],
    today: date,
    rows: Sequence[tuple[str, list[HistoryValue]]],
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    max_cells: int = MAX_HISTORY_CELLS,
) -> HistoryPlan:
    """The edit that upserts ``rows`` as ``today``'s snapshot."""
    return plan_days(
        existing, today, {today: rows}, horizon_days=horizon_days, max_cells=max_cells
    )


def plan_days(
    existing: Sequence[tuple[date | None, str]],
    today: date,
    days: Mapping[date, Sequence[tuple[str, list[HistoryValue]]]],
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    max_cells: int = MAX_HISTORY_CELLS,
) -> HistoryPlan:
    """The edit that upserts each of ``days``' rows as that day's, in one plan.

    ``existing[i]`` is (date, key) of sheet row ``i + 1`` (row 0 is the header). Rows
    whose date cannot be read are someone else's: never deleted, never overwritten.
    """
    cutoff = today - timedelta(days=horizon_days)
    written_days = {day for day in days if day >= cutoff}
    delete: set[int] = set()
    at: dict[tuple[date, str], int] = {}
    for i, (day, key) in enumerate(existing, start=1):
        if day is None:
            continue
        if day < cutoff:
            delete.add(i)
        elif day in written_days and key:
            if (day, key) in at:
                delete.add(i)  # a duplicate: keep one row per key and day
            else:
                at[(day, key)] = i
    wanted = [
        (day, key, cells)
        for day in sorted(written_days)
        for key, cells in days[day]
    ]
    new_rows = sum(1 for day, key, _ in wanted if (day, key) not in at)
    kept = len(existing) - len(delete)
    max_rows = max(1, max_cells // WIDTH) - 1
    overflow = kept + new_rows - max_rows
    if overflow > 0:
        # Still too big: drop the oldest days (never the days being written).
        by_age = sorted(
            (day, i)
            for i, (day, _) in enumerate(existing, start=1)
            if day is not None and day < today and day not in written_days
            and i not in delete
        )
        for _, i in by_age[:overflow]:
            delete.add(i)
    deletes = sorted(_runs(delete), reverse=True)

    deleted = sorted(delete)

    def shifted(index: int) -> int:
        return index - bisect_left(deleted, index)

    row_count = 1 + len(existing) - len(delete)
    writes: list[tuple[int, list[HistoryValue]]] = []
    for day, key, cells in wanted:
        if (day, key) in at and at[(day, key)] not in delete:
            writes.append((shifted(at[(day, key)]), cells))
        else:
            writes.append((row_count, cells))
            row_count += 1
    writes.sort(key=lambda w: w[0])
    return HistoryPlan(deletes, writes, row_count)


# Rows read per pass of the quick path; a row that is not ours sends only its own block
# the long way.
_BLOCK = 1024


def existing_rows(grid: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[date | None, str]]:
    """(date, key) per row below the header from the A:B grid read back."""
    days: dict[float, date | None] = {}  # 90,000 rows share ~90 dates: parse each once
    out: list[tuple[date | None, str]] = []
    for start in range(1, len(grid), _BLOCK):  # row 0 is the header
        block = grid[start:start + _BLOCK]
        out += _rows_we_wrote(block, days) or _rows_one_by_one(block, days)
    return out


def _rows_we_wrote(
    block: Sequence[Sequence[Mapping[str, Any]]], days: dict[float, date | None]
) -> list[tuple[date | None, str]] | None:
    """The block's (date, key) in one pass when every row is the two cells we wrote, a
    date serial and a key (nearly always); None when some row is not."""
    try:
        pairs = [
            (day["userEnteredValue"]["numberValue"], key["userEnteredValue"]["stringValue"])
            for day, key in block
        ]
    except (KeyError, TypeError, ValueError):
        return None
    if {n.__class__ for n, _ in pairs} - {int, float} or {k.__class__ for _, k in pairs} - {str}:
        return None
    for number in {n for n, _ in pairs} - days.keys():
        days[number] = day_of({"userEnteredValue": {"numberValue": number}})
    return [(days[number], key) for number, key in pairs]


def _rows_one_by_one(
    body: Sequence[Sequence[Mapping[str, Any]]], days: dict[float, date | None]
) -> list[tuple[date | None, str]]:
    out: list[tuple[date | None, str]] = []
    append = out.append
    for cells in body:
        # Rows that are the two cells we wrote are read straight; anything else (typed
        # by hand, cleared, odd types) takes the long way.
        try:
            date_cell, key_cell = cells
            number = date_cell["userEnteredValue"]["numberValue"]
            key = key_cell["userEnteredValue"]["stringValue"]
        except (KeyError, TypeError, ValueError):
            append(_existing_row(cells, days))
            continue
        if (number.__class__ is not int and number.__class__ is not float) or (
            key.__class__ is not str
        ):
            append(_existing_row(cells, days))
            continue
        day = days.get(number, _UNPARSED)
        if day is _UNPARSED:
            day = days[number] = day_of(date_cell)
        append((day, key))
    return out


def _existing_row(
    cells: Sequence[Mapping[str, Any]], days: dict[float, date | None]
) -> tuple[date | None, str]:
    first = cells[0] if cells else None
    number = ((first or {}).get("userEnteredValue") or {}).get("numberValue")
    if isinstance(number, int | float):
        day = days.get(number, _UNPARSED)
        if day is _UNPARSED:
            day = days[number] = day_of(first)
    else:
        day = day_of(first)
    key_cell = cells[KEY_COLUMN] if len(cells) > KEY_COLUMN else {}
    key_value = (key_cell.get("userEnteredValue") or {}).get("stringValue", "")
    return day, str(key_value)


_UNPARSED: Any = object()


DATE_FORMAT = {"type": "DATE", "pattern": "yyyy-mm-dd"}


def add_sheet_request(sheet_id: int, title: str) -> dict[str, Any]:
    return {
        "addSheet": {
            "properties": {
                "sheetId": sheet_id,
                "title": title,
                "gridProperties": {"rowCount": 2, "columnCount": WIDTH},
            }
        }
    }


def requests(edit: HistoryPlan, sheet_id: int) -> list[dict[str, Any]]:
    """The history tab's part of the refresh batch."""
    # Google refuses to delete every row below the frozen header, which pruning an old
    # tab on a quiet day can ask for; a spare row first keeps one, and the rowCount
    # below trims it again.
    spare: list[dict[str, Any]] = [
        {"appendDimension": {"sheetId": sheet_id, "dimension": "ROWS", "length": 1}}
    ] if edit.deletes else []
    out: list[dict[str, Any]] = spare + [
        {
            "deleteDimension": {
                "range": {
                    "sheetId": sheet_id,
                    "dimension": "ROWS",
                    "startIndex": start,
                    "endIndex": end,
                }
            }
        }
        for start, end in edit.deletes
    ]
    rows = max(2, edit.row_count)
    out.append(
        {
            "updateSheetProperties": {
                "properties": {
                    "sheetId": sheet_id,
                    "gridProperties": {
                        "rowCount": rows,
                        "columnCount": WIDTH,
                        "frozenRowCount": 1,
                    },
                },
                "fields": "gridProperties(rowCount,columnCount,frozenRowCount)",
            }
        }
    )
    header = [
        text_cell(title, dict(HEADER_FORMAT, horizontalAlignment="LEFT"))
        for _, title, _, _ in COLUMNS
    ]
    out.append(_update(
        sheet_id, 0, EncodedRows([json_value({"values": header})]),
        "userEnteredValue,userEnteredFormat",
    ))
    start = None
    block: list[str] = []
    shared: dict[HistoryValue, str] = {}
    for index, cells in edit.writes:
        if start is None or index != start + len(block):
            if block and start is not None:
                out.append(_update(sheet_id, start, EncodedRows(block), "userEnteredValue"))
            start, block = index, []
        block.append(_row_text(cells, shared))
    if block and start is not None:
        out.append(_update(sheet_id, start, EncodedRows(block), "userEnteredValue"))
    # Formats by column over every data row: a few small requests, whatever the length.
    kinds = {"date": DATE_FORMAT, "int": INT_FORMAT, "percent": PERCENT_FORMAT}
    for index, (_, _, kind, width) in enumerate(COLUMNS):
        if kind in kinds and rows > 1:
            out.append(
                {
                    "repeatCell": {
                        "range": {
                            "sheetId": sheet_id,
                            "startRowIndex": 1,
                            "endRowIndex": rows,
                            "startColumnIndex": index,
                            "endColumnIndex": index + 1,
                        },
                        "cell": {"userEnteredFormat": {"numberFormat": kinds[kind]}},
                        "fields": "userEnteredFormat.numberFormat",
                    }
                }
            )
        props: dict[str, Any] = {"pixelSize": width}
        if kind == "key":
            props["hiddenByUser"] = True
        out.append(column_properties(sheet_id, index, props))
    return out


def _cell_text(value: HistoryValue) -> str:
    """One history cell: text as stringValue (never a formula), numbers as numbers, and
    nothing at all for no value."""
    if value is None or value == "":
        return "{}"
    if isinstance(value, str):
        return STRING_CELL_OPEN + json_string(str(value)) + "}}"
    return NUMBER_CELL_OPEN + json_number(value) + "}}"


def _row_text(values: Sequence[HistoryValue], shared: dict[HistoryValue, str]) -> str:
    """A history row as the JSON text of ``{"values": [cells]}`` (see request_body). The
    tab repeats the same day, labels and small counts on every row, so the text of each
    such cell is made once per batch. Floats and bools are made every time: 0.0 and
    -0.0, or 1 and True, are equal keys but not the same JSON."""
    cells: list[str] = []
    append = cells.append
    for value in values:
        if isinstance(value, float):
            # Inline: a history row is mostly rates.
            append(NUMBER_CELL_OPEN + float_text(value) + "}}" if isfinite(value)
                   else _cell_text(value))
            continue
        if value.__class__ is bool:
            append(_cell_text(value))
            continue
        cell = shared.get(value)
        if cell is None:
            cell = shared[value] = _cell_text(value)
        append(cell)
    return '{"values": [' + ", ".join(cells) + "]}"


def _update(sheet_id: int, start_row: int, rows: EncodedRows, fields: str) -> dict[str, Any]:
    return {
        "updateCells": {
            "range": {
                "sheetId": sheet_id,
                "startRowIndex": start_row,
                "endRowIndex": start_row + len(rows),
                "startColumnIndex": 0,
                "endColumnIndex": WIDTH,
            },
            "rows": rows,
            "fields": fields,
        }
    }

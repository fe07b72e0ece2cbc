"""The body of the one write: rows written as JSON text are sent as the dicts they
encode, and nothing a teammate or Instantly can put in a string changes that."""

from __future__ import annotations

import json
import math

import pytest

from sheets_sync.pipeline import request_body
from sheets_sync.pipeline.request_body import (
    EncodedRows,
    batch_update_body,
    json_number,
    json_string,
)
from tests.engine_scenarios import encode


def _update(rows: EncodedRows, name: str) -> list[dict]:
    return [
        {"updateSheetProperties": {"properties": {"title": name}, "fields": "title"}},
        {"updateCells": {"range": {"sheetId": 7}, "rows": rows, "fields": "userEnteredValue"}},
        {"updateCells": {"range": {"sheetId": 8}, "rows": EncodedRows(['{"values": []}']),
                         "fields": "userEnteredValue"}},
    ]


def _row(*cells: str) -> str:
    return '{"values": [' + ", ".join(cells) + "]}"


def test_rows_written_as_text_are_sent_as_the_dicts_they_encode():
    rows = EncodedRows([
        _row('{"userEnteredValue": {"stringValue": ' + json_string("Étape 1 \"A\"\n") + "}}"),
        _row('{"userEnteredValue": {"numberValue": ' + json_number(0.1 + 0.2) + "}}", "{}"),
    ])
    requests_ = _update(rows, "Q4 ☃")
    body = batch_update_body(requests_)
    assert body == encode(requests_)
    sent = json.loads(body)["requests"][1]["updateCells"]["rows"]
    assert sent[0]["values"][0]["userEnteredValue"]["stringValue"] == "Étape 1 \"A\"\n"
    assert sent[1]["values"][0]["userEnteredValue"]["numberValue"] == 0.1 + 0.2
    # Read back as a request, the rows are the same dicts.
    assert list(rows) == sent and len(rows) == 2


def test_a_string_that_holds_a_marker_of_its_own_is_sent_as_written():
    name = "\0rows:0123456789abcdef and \\u0000rows: too"
    requests_ = _update(EncodedRows([_row("{}")]), name)
    body = json.loads(batch_update_body(requests_))
    assert body["requests"][0]["updateSheetProperties"]["properties"]["title"] == name
    assert body["requests"][1]["updateCells"]["rows"] == [{"values": [{}]}]


def test_a_string_that_collides_with_this_bodys_marker_is_refused_not_mangled(monkeypatch):
    monkeypatch.setattr(request_body.secrets, "token_hex", lambda n: "f" * (2 * n))
    requests_ = _update(EncodedRows([_row("{}")]), "\0rows:" + "f" * 16)
    with pytest.raises(ValueError, match="marker"):
        batch_update_body(requests_)


@pytest.mark.parametrize("value", [1, -0.0, 1e16, 2.5e-7, 10**20, True, False])
def test_numbers_are_written_as_json_writes_them(value):
    assert json_number(value) == json.dumps(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_number_json_cannot_carry_is_refused(value):
    with pytest.raises(ValueError):
        json_number(value)


def test_something_that_is_not_json_is_refused_as_the_body_would_refuse_it():
    with pytest.raises(TypeError):
        batch_update_body([{"updateCells": {"rows": object()}}])

"""Matching teammates' notes to row keys (pure)."""

from __future__ import annotations

from sheets_sync.pipeline.notes import (
    KEY_HEADER,
    NOTES_HEADER,
    REMOVED_PREFIX,
    plan_notes,
    read_notes,
    row_key,
)
from sheets_sync.pipeline.report import Row


def s(text):
    return {"userEnteredValue": {"stringValue": text}}


def grid(*rows):
    header = [s("Step"), s("Variant"), s("Sent"), s(NOTES_HEADER), s(KEY_HEADER)]
    return [[s("title")], [], header, *rows]


def test_row_keys_are_stable_text():
    assert row_key(Row("data", ("c1", 0, 1), ())) == "c1|0|1"
    assert row_key(Row("unattributed", ("", None, None), ())) == "||"
    assert row_key(Row("total", ("", None, None), ())) == "total"


def test_notes_follow_keys_and_vanished_rows_are_parked():
    sheet = read_notes(grid(
        [s("Step 1"), s("A"), {}, s("good"), s("c|0|0")],
        [s("Step 1"), s("B"), {}, {"userEnteredValue": {"numberValue": 3}}, s("c|0|1")],
        [s("Step 2"), s("A"), {}, s("gone"), s("c|1|0")],
        [s("Step 3"), s("A"), {}, {}, s("c|2|0")],
    ))
    plan = plan_notes(sheet, ["c|0|1", "c|0|0", "c|4|0", "total"])
    assert plan.by_key == {"c|0|0": {"stringValue": "good"}, "c|0|1": {"numberValue": 3}}
    assert [(n.key, n.label, n.value) for n in plan.removed] == [
        ("c|1|0", "Step 2 · A", {"stringValue": "gone"})]


def test_parked_notes_return_with_their_row_and_unkeyed_notes_are_kept():
    sheet = read_notes(grid(
        [s("Step 1"), s("A"), {}, {}, s("c|0|0")],
        [],
        [s("Notes of removed rows")],
        [s("Step 2 · A"), {}, {}, s("back"), s(REMOVED_PREFIX + "c|1|0")],
        [s("Step 9 · Z"), {}, {}, s("still gone"), s(REMOVED_PREFIX + "c|8|25")],
        [{}, {}, {}, s("typed below")],
    ))
    plan = plan_notes(sheet, ["c|0|0", "c|1|0"])
    assert plan.by_key == {"c|1|0": {"stringValue": "back"}}
    assert [n.value["stringValue"] for n in plan.removed] == ["still gone", "typed below"]


def test_a_tab_without_our_header_has_no_notes():
    assert plan_notes(read_notes([[s("anything")]]), ["a"]).by_key == {}


def test_blank_notes_are_not_kept():
    sheet = read_notes(grid([s("Step 1"), s("A"), {}, s("   "), s("c|0|0")]))
    assert sheet.by_key == {} and sheet.loose == []

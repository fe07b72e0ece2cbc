"""What helps a teammate read the tab right: no shading on a coin-flip lead, and a
"How to read this tab" note on the header row. Real gspread against the Sheets fake,
numbers from the Instantly fake."""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.pipeline.refresh import Features, SyncSpec, run_sync
from sheets_sync.pipeline.render import FIRST_DATA_ROW, HEADER_ROW

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)
TAB = "Instantly steps"
YELLOW = {"red": 1.0, "green": 0.949, "blue": 0.8}
GREEN = {"red": 0.851, "green": 0.918, "blue": 0.827}


@pytest.fixture
def campaign(workspace):
    cid = workspace.add_campaign(
        "Q4 outbound",
        steps=[[{"subject": "a"}, {"subject": "b"}]] * 3,
    )
    rows = [
        (0, 0, 100, 10), (0, 1, 100, 9),    # A leads with ~59 %: a coin flip
        (1, 0, 300, 36), (1, 1, 300, 30),   # A leads with ~78 %: still not shaded
        (2, 0, 300, 40), (2, 1, 300, 30),   # A leads with ~89 %: shaded yellow
    ]
    for step, variant, sent, replies in rows:
        workspace.record(cid, DAY, step, variant, sent=sent, unique_replies=replies,
                         replies=replies, unique_opportunities=replies // 3)
    return cid


def sync(instantly, sheets, spreadsheet_id, campaign_id, features, **kw):
    spec = SyncSpec(spreadsheet_id=spreadsheet_id, worksheet_title=TAB,
                    campaign_ids=(campaign_id,), features=features, **kw)
    return run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)


def background(fake_sheets, spreadsheet_id, row: int) -> dict | None:
    cell = fake_sheets.cell(spreadsheet_id, TAB, f"A{FIRST_DATA_ROW + row + 1}")
    return cell.get("userEnteredFormat", {}).get("backgroundColor")


def test_a_leading_call_below_80_percent_is_not_shaded(
    fake_sheets, spreadsheet_id, instantly, sheets, campaign
):
    sync(instantly, sheets, spreadsheet_id, campaign, Features(winner_calls=True))
    grid = fake_sheets.values(spreadsheet_id, TAB)
    header = grid[HEADER_ROW]
    calls = [r[header.index("Reply-rate call (chance the leader is best)")]
             for r in grid[FIRST_DATA_ROW:FIRST_DATA_ROW + 6]]
    assert calls == ["Leading (59%)", "Behind A (59%)", "Leading (78%)", "Behind A (78%)",
                     "Leading (89%)", "Behind A (89%)"]
    shades = [background(fake_sheets, spreadsheet_id, i) for i in range(6)]
    assert YELLOW not in (shades[0], shades[2])
    assert GREEN not in (shades[0], shades[2])
    assert shades[4] == YELLOW


def note_of_header(fake_sheets, spreadsheet_id) -> str:
    return fake_sheets.cell(spreadsheet_id, TAB, f"A{HEADER_ROW + 1}").get("note", "")


def test_the_header_row_says_how_to_read_the_tab_in_the_same_single_write(
    fake_sheets, spreadsheet_id, instantly, sheets, campaign
):
    features = Features.all_on()
    first = sync(instantly, sheets, spreadsheet_id, campaign, features,
                 include_opportunities=True)
    fake_sheets.reset_calls()
    second = sync(
        instantly, sheets, spreadsheet_id, campaign, features, include_opportunities=True,
        sheet_id=first.sheet_id, known_campaigns=first.campaigns,
        history_sheet_id=first.history_sheet_id,
        tab_titles=first.saved_options["tab_titles"],
    )
    # The note rides in the refresh's one write; the read is the features' usual one.
    assert second.sheets_calls == 2
    assert fake_sheets.count("batchUpdate") == 1
    note = note_of_header(fake_sheets, spreadsheet_id)
    assert note.startswith("How to read this tab")
    for rate in ("Open rate (unique opens / sent)", "Reply rate (unique replies / sent)",
                 "Click rate (unique clicks / sent)",
                 "Opportunity rate (unique opportunities / sent)"):
        assert rate in note
    assert "Bayesian Beta-Binomial" in note
    assert "95 % or more" in note
    assert "fewer than 100" in note
    assert fake_sheets.status_counts().get(400) is None


def test_without_winner_calls_the_note_explains_only_the_rates(
    fake_sheets, spreadsheet_id, instantly, sheets, campaign
):
    first = sync(instantly, sheets, spreadsheet_id, campaign, Features())
    fake_sheets.reset_calls()
    sync(instantly, sheets, spreadsheet_id, campaign, Features(), sheet_id=first.sheet_id,
         known_campaigns=first.campaigns)
    assert fake_sheets.count() == fake_sheets.count("batchUpdate") == 1
    note = note_of_header(fake_sheets, spreadsheet_id)
    assert "Reply rate (unique replies / sent)" in note
    assert "Opportunity rate" not in note
    assert "Beta-Binomial" not in note

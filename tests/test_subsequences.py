"""Subsequences under their own names, from Instantly's subsequence endpoints (via the fake)."""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.errors import InstantlyMalformedResponse
from sheets_sync.pipeline.refresh import Features, SyncSpec, run_sync
from sheets_sync.pipeline.render import FIRST_DATA_ROW

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)
EARLIER = dt.date(2026, 11, 2)
TAB = "Instantly steps"


def setup(workspace):
    cid = workspace.add_campaign(
        "Q4", steps=[[{"subject": "Hello", "body": "a"}, {"subject": "Hi", "body": "b"}]]
    )
    workspace.record(cid, DAY, 0, 0, sent=300, unique_replies=30, replies=30)
    workspace.record(cid, DAY, 0, 1, sent=300, unique_replies=3, replies=3)
    # Instantly counts subsequence emails on past the main sequence in the campaign rows.
    workspace.record(cid, DAY, 1, 0, sent=7)
    warm = workspace.add_subsequence(
        cid, "Warm leads",
        steps=[[{"subject": "Still keen?", "body": "x"}, {"subject": "Quick one", "body": "y"}]],
    )
    cold = workspace.add_subsequence(cid, "No reply", steps=[[{"subject": "Bump", "body": "z"}]])
    workspace.record_subsequence(warm, DAY, 0, 0, sent=200, unique_replies=40, replies=41)
    workspace.record_subsequence(warm, DAY, 0, 1, sent=200, unique_replies=4, replies=4)
    workspace.record_subsequence(warm, EARLIER, 0, 0, sent=1000, unique_replies=1)
    workspace.record_subsequence(cold, DAY, 0, 0, sent=50, unique_replies=5, unique_opened=9)
    return cid, warm, cold


def sync(spreadsheet_id, instantly, sheets, campaign_ids, features):
    spec = SyncSpec(
        spreadsheet_id=spreadsheet_id, worksheet_title=TAB, campaign_ids=tuple(campaign_ids),
        features=features, date_range={"start": "2026-11-15",
                                       "end": "2026-11-27"},
    )
    return run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)


def table(fake_sheets, spreadsheet_id):
    rows = fake_sheets.values(spreadsheet_id, TAB)
    head = rows[FIRST_DATA_ROW - 1]
    return head, [dict(zip(head, r, strict=False)) for r in rows[FIRST_DATA_ROW:]]


def test_subsequences_show_under_their_names_with_their_numbers(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    cid, warm, cold = setup(workspace)
    fake_sheets.reset_calls()
    features = Features.all_on(subsequences=True, min_sample=100)
    out = sync(spreadsheet_id, instantly, sheets, [cid], features)
    assert out.sheets_calls == 2
    assert fake_sheets.count("batchUpdate", spreadsheet_id) == 1
    _, rows = table(fake_sheets, spreadsheet_id)
    by = {(r["Step"], r["Variant"]): r for r in rows if r["Step"] != "Total"}
    assert "Campaign" not in rows[0]  # one campaign, subsequences or not
    first = by[("Subsequence 'Warm leads' · Step 1", "A")]
    assert first["Sent"] == 200  # the 2 November events are outside the dates
    assert first["Unique replies"] == 40
    assert first["Replies"] == 41
    assert first["Subject line"] == "Still keen?"
    assert first["Reply-rate call (chance the leader is best)"].startswith("Winner (")
    second = by[("Subsequence 'Warm leads' · Step 1", "B")]
    assert (second["Sent"], second["Subject line"]) == (200, "Quick one")
    bump = by[("Subsequence 'No reply' · Step 1", "A")]
    assert (bump["Sent"], bump["Unique opens"], bump["Subject line"]) == (50, 9, "Bump")
    # Not guessed any more: the real subsequences are listed.
    assert not any(step.startswith("Subsequence step") for step, _ in by)
    assert ("Step 2 (past the main sequence)", "A") in by
    keys = [r.key for r in out.report.rows]
    assert (f"{cid}/sub:{warm}", 0, 0) in keys
    assert (f"{cid}/sub:{cold}", 0, 0) in keys
    # campaign, steps, overview, today's history; list of subsequences, one steps call
    # for each (the history tab keeps the main sequence only).
    assert out.instantly_calls == 4 + 1 + 2
    assert fake_instantly.count("/subsequences") == 3


def test_switched_off_there_are_no_subsequence_rows_and_no_calls(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    cid, _, _ = setup(workspace)
    fake_instantly.reset_calls()
    out = sync(spreadsheet_id, instantly, sheets, [cid], Features.all_on(subsequences=False))
    assert fake_instantly.count("/subsequences") == 0
    assert out.instantly_calls == 4  # campaign, steps, overview, today's history
    _, rows = table(fake_sheets, spreadsheet_id)
    steps = {r["Step"] for r in rows}
    assert not any("'" in str(s) for s in steps)
    assert "Subsequence step 1" in steps  # the old guess, as before


def test_all_campaigns_combined_makes_no_subsequence_calls(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    setup(workspace)
    fake_instantly.reset_calls()
    out = sync(spreadsheet_id, instantly, sheets, [], Features.all_on(subsequences=True))
    assert fake_instantly.count("/subsequences") == 0
    assert out.instantly_calls == 3  # steps, overview, today's history


@pytest.mark.parametrize("where", ["list", "steps"])
def test_a_malformed_subsequence_payload_leaves_the_sheet_untouched(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace, where
):
    cid, warm, _ = setup(workspace)
    if where == "list":
        fake_instantly.malform_next({"items": [{"name": "no id"}]}, count=5,
                                    path_is="/subsequences")
    else:
        fake_instantly.malform_next([{"step": "0", "variant": "0", "sent": "12"}], count=5,
                                    path_is=f"/subsequences/{warm}/analytics/steps")
    before = fake_sheets.values(spreadsheet_id, "Sheet1")
    fake_sheets.reset_calls()
    with pytest.raises(InstantlyMalformedResponse) as caught:
        sync(spreadsheet_id, instantly, sheets, [cid], Features.all_on(subsequences=True))
    assert "subsequence" in str(caught.value)
    assert fake_sheets.count() == 0
    assert fake_sheets.values(spreadsheet_id, "Sheet1") == before
    assert TAB not in fake_sheets.sheet_titles(spreadsheet_id)


def test_the_subsequence_list_is_followed_page_by_page(instantly, workspace):
    cid = workspace.add_campaign("Big")
    made = {workspace.add_subsequence(cid, f"S{i}") for i in range(105)}
    other = workspace.add_campaign("Other")
    workspace.add_subsequence(other, "Not mine")
    found = instantly.subsequences(cid)
    assert {s.id for s in found} == made
    assert instantly.calls == 2


def test_with_opportunities_a_subsequence_row_leaves_them_empty_not_zero(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid, _, _ = setup(workspace)
    spec = SyncSpec(spreadsheet_id=spreadsheet_id, worksheet_title=TAB, campaign_ids=(cid,),
                    include_opportunities=True, features=Features.all_on())
    run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)
    _, rows = table(fake_sheets, spreadsheet_id)
    warm = next(r for r in rows if r["Step"] == "Subsequence 'Warm leads' · Step 1")
    assert warm["Unique opportunities"] in (None, "")
    assert warm["Opportunity rate (unique opportunities / sent)"] in (None, "")
    assert warm["Opportunity-rate call (chance the leader is best)"] in (None, "")
    main = next(r for r in rows if r["Step"] == "Step 1")
    assert main["Unique opportunities"] == 0


def test_a_subsequence_that_suddenly_says_nothing_is_refused_by_name(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    from sheets_sync.errors import InstantlyEmptyAnswer

    cid, warm, _ = setup(workspace)
    first = sync(spreadsheet_id, instantly, sheets, [cid], Features.all_on())
    fake_instantly.malform_next([], count=5, path_is=f"/subsequences/{warm}/analytics/steps")
    spec = SyncSpec(
        spreadsheet_id=spreadsheet_id, worksheet_title=TAB, campaign_ids=(cid,),
        features=Features.all_on(), sheet_id=first.sheet_id,
        date_range={"start": "2026-11-15", "end": "2026-11-27"},
        last_sent=first.saved_options["last_sent"],
    )
    with pytest.raises(InstantlyEmptyAnswer, match="subsequence 'Warm leads' of campaign 'Q4'"):
        run_sync(spec, instantly=instantly, sheets=sheets, now=NOW)

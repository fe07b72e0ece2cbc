"""The reader features end to end: real gspread against the discovery-validated fake."""

from __future__ import annotations

import datetime as dt

from sheets_sync.pipeline import history
from sheets_sync.pipeline.notes import KEY_HEADER, NOTES_HEADER, REMOVED_PREFIX
from sheets_sync.pipeline.refresh import Features, SyncSpec, history_title, run_sync
from sheets_sync.pipeline.render import FIRST_DATA_ROW, chart_id_for
from tests.plugin_fakes import INSTANTLY_KEY

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)
TAB = "Instantly steps"
HISTORY = history_title(TAB)


def campaign(workspace, name, rows, *, disabled_b=False):
    cid = workspace.add_campaign(
        name,
        steps=[
            [{"subject": f"{name}: hello", "body": "a"},
             {"subject": f"{name}: quick q", "body": "b", "v_disabled": disabled_b}],
            [{"subject": "", "body": "c"}],
        ],
    )
    for step, variant, sent, replies in rows:
        workspace.record(cid, DAY, step, variant, sent=sent, unique_replies=replies,
                         replies=replies)
    return cid


class Syncer:
    """Refreshes like the stored connection does: ids and titles carried over."""

    def __init__(self, instantly, sheets, spreadsheet_id, features=None):
        self.instantly, self.sheets, self.ssid = instantly, sheets, spreadsheet_id
        self.features = features or Features.all_on()
        self.sheet_id = self.history_id = None
        self.titles = {}
        self.known = {}
        self.history_day = None

    def __call__(self, campaign_ids, now=NOW, before_write=None, **kw):
        spec = SyncSpec(
            spreadsheet_id=self.ssid, worksheet_title=TAB, sheet_id=self.sheet_id,
            campaign_ids=tuple(campaign_ids), features=self.features,
            history_sheet_id=self.history_id, tab_titles=self.titles,
            known_campaigns=self.known, history_last_day=self.history_day, **kw,
        )
        out = run_sync(spec, instantly=self.instantly, sheets=self.sheets, now=now,
                       before_write=before_write)
        self.sheet_id = out.sheet_id
        self.history_id = out.saved_options.get("history_sheet_id")
        self.titles = dict(out.saved_options.get("tab_titles", {}))
        self.known = dict(out.campaigns)
        self.last = out.saved_options
        if "history_day" in out.saved_options:
            self.history_day = dt.date.fromisoformat(out.saved_options["history_day"])
        return out


def grid(fake_sheets, ssid, tab=TAB):
    return fake_sheets.values(ssid, tab)


def header(rows):
    return rows[FIRST_DATA_ROW - 1]


def a1(col, row):
    letters = ""
    n = col + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return f"{letters}{row + 1}"


def row_of(rows, *labels):
    for i, r in enumerate(rows):
        if tuple(r[: len(labels)]) == labels:
            return i
    raise AssertionError(f"no row {labels}")


def type_note(fake_sheets, ssid, rows, labels, text):
    col = header(rows).index(NOTES_HEADER)
    fake_sheets.set_cell(ssid, TAB, a1(col, row_of(rows, *labels)), text)


def note_at(rows, *labels):
    return rows[row_of(rows, *labels)][header(rows).index(NOTES_HEADER)]


def test_first_sync_with_every_feature_is_one_read_and_one_write(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 300, 40), (0, 1, 300, 12), (1, 0, 150, 3)],
                   disabled_b=True)
    fake_sheets.reset_calls()
    out = Syncer(instantly, sheets, spreadsheet_id)([cid])
    assert out.tab_created
    assert out.sheets_calls == 2
    assert fake_sheets.count("batchUpdate", spreadsheet_id) == 1
    rows = grid(fake_sheets, spreadsheet_id)
    head = header(rows)
    assert head[:3] == ["Step", "Variant", "Subject line"]
    assert rows[FIRST_DATA_ROW][:3] == ["Step 1", "A", "Q4: hello"]
    assert rows[FIRST_DATA_ROW + 1][:3] == ["Step 1", "B (disabled)", "Q4: quick q"]
    assert rows[FIRST_DATA_ROW + 2][2] == "(no subject: sent in the same thread)"
    call = head.index("Reply-rate call (chance the leader is best)")
    assert rows[FIRST_DATA_ROW][call].startswith("Winner (")
    assert rows[FIRST_DATA_ROW + 1][call].startswith("Behind A (")
    assert rows[FIRST_DATA_ROW + 2][call] in (None, "")  # one variant: nothing to call
    # The winner's row is coloured by the same updateCells.
    cell = fake_sheets.cell(spreadsheet_id, TAB, a1(0, FIRST_DATA_ROW))
    assert cell["userEnteredFormat"]["backgroundColor"]["green"] > 0.9
    # Notes sit right of the managed columns, inside the grid; the key column is hidden.
    assert head[-3:] == [NOTES_HEADER, KEY_HEADER, "Chart label"]
    props = fake_sheets.sheet_properties(spreadsheet_id, title=TAB)
    assert props["gridProperties"]["columnCount"] == len(head)
    assert HISTORY in fake_sheets.sheet_titles(spreadsheet_id)
    charts = fake_sheets.charts(spreadsheet_id, TAB)
    assert [c["chartId"] for c in charts] == [chart_id_for(out.sheet_id)]


def test_steady_state_with_every_feature_is_one_read_and_one_write(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 300, 40), (0, 1, 300, 12)])
    sync = Syncer(instantly, sheets, spreadsheet_id)
    sync([cid])
    for _ in range(2):
        fake_sheets.reset_calls()
        out = sync([cid])
        assert out.sheets_calls == 2
        assert fake_sheets.count("batchUpdate", spreadsheet_id) == 1
        assert fake_sheets.count() - fake_sheets.count("batchUpdate") == 1  # the one read


def test_notes_follow_their_rows_through_reorder_add_and_remove(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    one = campaign(workspace, "One", [(0, 0, 10, 1), (0, 1, 10, 2)])
    two = campaign(workspace, "Two", [(0, 0, 20, 1), (1, 0, 20, 2)])
    three = campaign(workspace, "Three", [(0, 0, 30, 3)])
    sync = Syncer(instantly, sheets, spreadsheet_id)
    sync([one, two])
    rows = grid(fake_sheets, spreadsheet_id)
    type_note(fake_sheets, spreadsheet_id, rows, ("One", "Step 1", "B"), "B subject too long")
    type_note(fake_sheets, spreadsheet_id, rows, ("Two", "Step 2", "A"), "rewrite this one")
    type_note(fake_sheets, spreadsheet_id, rows, ("Two", "Step 1", "A"), 42)

    # Reorder (Two first), add (Three, and a new variant of Two), remove (One).
    workspace.record(two, DAY, 0, 1, sent=5, unique_replies=1)
    fake_sheets.reset_calls()
    out = sync([three, two])
    assert out.sheets_calls == 2
    rows = grid(fake_sheets, spreadsheet_id)
    assert note_at(rows, "Two", "Step 2", "A") == "rewrite this one"
    assert note_at(rows, "Two", "Step 1", "A") == 42
    assert note_at(rows, "Two", "Step 1", "B") is None
    assert note_at(rows, "Three", "Step 1", "A") is None
    # One's row is gone: its note is parked, labelled, never dropped.
    notes_col = header(rows).index(NOTES_HEADER)
    flat = [r[0] for r in rows]
    assert any(str(v).startswith("Notes of removed rows") for v in flat if v)
    parked = [r for r in rows if r[notes_col] == "B subject too long"]
    assert len(parked) == 1
    assert parked[0][0] == "One · Step 1 · B"
    assert parked[0][notes_col + 1].startswith(REMOVED_PREFIX)

    # A refresh that changes nothing keeps everything where it is.
    sync([three, two])
    assert grid(fake_sheets, spreadsheet_id) == rows

    # The row comes back: so does its note, and the parking area goes away.
    sync([one, two])
    rows = grid(fake_sheets, spreadsheet_id)
    assert note_at(rows, "One", "Step 1", "B") == "B subject too long"
    assert note_at(rows, "Two", "Step 2", "A") == "rewrite this one"
    assert not any(str(r[0]).startswith("Notes of removed rows") for r in rows if r[0])


def test_a_note_typed_below_the_table_is_kept(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 10, 1)])
    sync = Syncer(instantly, sheets, spreadsheet_id)
    sync([cid])
    rows = grid(fake_sheets, spreadsheet_id)
    # A person adds a row by hand below the total and writes in the Notes column.
    sheet_id = sync.sheet_id
    sheets.batch_update(spreadsheet_id, [{"appendDimension": {
        "sheetId": sheet_id, "dimension": "ROWS", "length": 1}}])
    col = header(rows).index(NOTES_HEADER)
    fake_sheets.set_cell(spreadsheet_id, TAB, a1(col, len(rows)), "call Anna on Monday")
    sync([cid])
    rows = grid(fake_sheets, spreadsheet_id)
    assert any(r[col] == "call Anna on Monday" for r in rows)


def test_notes_survive_a_layout_change(fake_sheets, spreadsheet_id, instantly, sheets,
                                       workspace):
    cid = campaign(workspace, "Q4", [(0, 0, 10, 1), (0, 1, 10, 1)])
    sync = Syncer(instantly, sheets, spreadsheet_id)
    sync([cid])
    type_note(fake_sheets, spreadsheet_id, grid(fake_sheets, spreadsheet_id),
              ("Step 1", "B"), "keep me")
    sync([cid], include_opportunities=True)  # more columns: Notes moves right
    rows = grid(fake_sheets, spreadsheet_id)
    assert "Opportunities" in header(rows)
    assert note_at(rows, "Step 1", "B") == "keep me"


def history_body(fake_sheets, spreadsheet_id):
    hist = fake_sheets.values(spreadsheet_id, HISTORY)
    return hist[0], hist[1:]


def sent_by_day(fake_sheets, spreadsheet_id, key_suffix="|0|0"):
    head, body = history_body(fake_sheets, spreadsheet_id)
    sent = head.index("Sent")
    return {r[0]: r[sent] for r in body if r[1].endswith(key_suffix)}


def test_history_holds_one_row_per_key_per_day(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    day1 = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10), (0, 1, 100, 5), (1, 0, 50, 1)])
    for step, variant, sent in [(0, 0, 30), (0, 1, 20), (1, 0, 5)]:
        workspace.record(cid, day1.date(), step, variant, sent=sent)
    sync = Syncer(instantly, sheets, spreadsheet_id)
    sync([cid], now=day1)
    workspace.record(cid, day1.date(), 0, 0, sent=10, unique_replies=1)
    sync([cid], now=day1 + dt.timedelta(hours=5))  # same UTC day: replaces
    for step, variant, sent in [(0, 0, 7), (0, 1, 6), (1, 0, 2)]:
        workspace.record(cid, day1.date() + dt.timedelta(days=1), step, variant, sent=sent)
    fake_sheets.reset_calls()
    out = sync([cid], now=day1 + dt.timedelta(days=1))
    assert out.sheets_calls == 2  # history shares the one read and the one write
    head, body = history_body(fake_sheets, spreadsheet_id)
    assert head[:5] == ["Day (UTC): that day's numbers only", KEY_HEADER, "Campaign",
                        "Step", "Variant"]
    assert len(body) == 6  # 3 keys × 2 days
    assert len({(r[0], r[1]) for r in body}) == 6
    # Each day's own sends, the second refresh of day 1 winning; never the totals.
    assert list(sent_by_day(fake_sheets, spreadsheet_id).values()) == [40, 7]
    assert {r[2] for r in body} == {"Q4"}
    date_cell = fake_sheets.cell(spreadsheet_id, HISTORY, "A2")
    assert date_cell["userEnteredFormat"]["numberFormat"]["type"] == "DATE"
    # The main tab still shows the connection's date range (all time) totals.
    rows = grid(fake_sheets, spreadsheet_id)
    sent = header(rows).index("Sent")
    assert rows[row_of(rows, "Step 1", "A")][sent] == 100 + 40 + 7


def test_history_rows_hold_exactly_that_days_numbers(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [])
    days = [dt.date(2026, 11, 24) + dt.timedelta(days=n) for n in range(3)]
    sync = Syncer(instantly, sheets, spreadsheet_id, Features(history=True))
    for n, day in enumerate(days):
        workspace.record(cid, day, 0, 0, sent=10 * (n + 1), unique_replies=n + 1)
        workspace.record(cid, day, 0, 1, sent=5 * (n + 1))
        sync([cid], now=dt.datetime.combine(day, dt.time(18), dt.UTC))
    head, body = history_body(fake_sheets, spreadsheet_id)
    sent, replies = head.index("Sent"), head.index("Unique replies")
    a = [(r[sent], r[replies]) for r in body if r[1].endswith("|0|0")]
    b = [r[sent] for r in body if r[1].endswith("|0|1")]
    assert a == [(10, 1), (20, 2), (30, 3)]
    assert b == [5, 10, 15]
    assert [r[0] for r in body if r[1].endswith("|0|0")] == [
        history.serial(d) for d in days
    ]


def test_a_refresh_after_a_gap_backfills_the_missed_days(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace, fake_instantly
):
    cid = campaign(workspace, "Q4", [])
    first = dt.date(2026, 11, 20)
    for n in range(5):
        workspace.record(cid, first + dt.timedelta(days=n), 0, 0, sent=n + 1)
    sync = Syncer(instantly, sheets, spreadsheet_id, Features(history=True))
    sync([cid], now=dt.datetime.combine(first, dt.time(6), dt.UTC))
    fake_instantly.reset_calls()
    out = sync([cid], now=dt.datetime.combine(first + dt.timedelta(days=4), dt.time(6),
                                              dt.UTC))
    days = [first + dt.timedelta(days=n) for n in range(5)]
    assert sent_by_day(fake_sheets, spreadsheet_id) == {
        history.serial(d): n + 1 for n, d in enumerate(days)
    }
    # The range, the overview check, and one call for each of the 5 days.
    assert fake_instantly.count("/campaigns/analytics/steps") == 1 + 5
    assert out.instantly_calls == 2 + 5


def test_a_long_gap_backfills_only_the_last_seven_days(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace, fake_instantly
):
    cid = campaign(workspace, "Q4", [])
    first = dt.date(2026, 11, 10)
    for n in range(11):
        workspace.record(cid, first + dt.timedelta(days=n), 0, 0, sent=n + 1)
    sync = Syncer(instantly, sheets, spreadsheet_id, Features(history=True))
    sync([cid], now=dt.datetime.combine(first, dt.time(6), dt.UTC))
    fake_instantly.reset_calls()
    sync([cid], now=dt.datetime.combine(first + dt.timedelta(days=10), dt.time(6), dt.UTC))
    assert fake_instantly.count("/campaigns/analytics/steps") == 1 + 7
    kept = [first] + [first + dt.timedelta(days=n) for n in range(4, 11)]
    assert sent_by_day(fake_sheets, spreadsheet_id) == {
        history.serial(d): (d - first).days + 1 for d in kept
    }


def test_history_prunes_rows_past_the_horizon(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [])
    sync = Syncer(instantly, sheets, spreadsheet_id, Features(history=True, history_days=2))
    start = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    for day in range(5):
        workspace.record(cid, (start + dt.timedelta(days=day)).date(), 0, 0, sent=10)
        sync([cid], now=start + dt.timedelta(days=day))
    hist = fake_sheets.values(spreadsheet_id, HISTORY)
    assert len(hist) == 1 + 3  # today and the two days before


def test_a_deleted_chart_comes_back(fake_sheets, spreadsheet_id, instantly, sheets,
                                    workspace):
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10), (0, 1, 100, 5)])
    sync = Syncer(instantly, sheets, spreadsheet_id, Features(chart=True))
    out = sync([cid])
    chart_id = chart_id_for(out.sheet_id)
    [chart] = fake_sheets.charts(spreadsheet_id, TAB)
    assert chart["chartId"] == chart_id
    assert chart["spec"]["basicChart"]["chartType"] == "COLUMN"
    # A refresh with more rows updates the chart's ranges in place (no second chart).
    workspace.record(cid, DAY, 1, 0, sent=10)
    sync([cid])
    [chart] = fake_sheets.charts(spreadsheet_id, TAB)
    series = chart["spec"]["basicChart"]["series"][0]["series"]["sourceRange"]["sources"][0]
    assert series["endRowIndex"] - series["startRowIndex"] == 3
    # Someone deletes it; the next refresh (still one read + one write) brings it back.
    sheets.batch_update(spreadsheet_id, [{"deleteEmbeddedObject": {"objectId": chart_id}}])
    assert fake_sheets.charts(spreadsheet_id, TAB) == []
    fake_sheets.reset_calls()
    again = sync([cid])
    assert again.sheets_calls == 2
    assert [c["chartId"] for c in fake_sheets.charts(spreadsheet_id, TAB)] == [chart_id]


def test_without_notes_the_read_asks_for_one_cell_of_the_table_not_all_of_it(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    """Only notes need the table's cells; the chart and the write's guard come with the
    tab. A big table's refresh then downloads a few hundred bytes, not the table."""
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10), (0, 1, 100, 5)])
    sync = Syncer(instantly, sheets, spreadsheet_id, Features.all_on(notes=False))
    sync([cid])
    fake_sheets.reset_calls()
    sync([cid])
    [read] = [c for c in fake_sheets.calls if c.kind == "get"]
    assert read.query["ranges"] == [f"'{TAB}'!A1", f"'{HISTORY}'!A:B"]
    # With notes on, the whole table is read: the Notes column can be anywhere in it.
    sync.features = Features.all_on()
    sync([cid])
    fake_sheets.reset_calls()
    sync([cid])
    [read] = [c for c in fake_sheets.calls if c.kind == "get"]
    assert read.query["ranges"] == [f"'{TAB}'", f"'{HISTORY}'!A:B"]
    assert [c["chartId"] for c in fake_sheets.charts(spreadsheet_id, TAB)] == [
        chart_id_for(sync.sheet_id)
    ]


def test_a_renamed_tab_is_found_again_and_keeps_its_notes(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 10, 1)])
    sync = Syncer(instantly, sheets, spreadsheet_id)
    first = sync([cid])
    type_note(fake_sheets, spreadsheet_id, grid(fake_sheets, spreadsheet_id),
              ("Step 1", "A"), "renamed but kept")
    fake_sheets.rename_sheet(spreadsheet_id, TAB, "Our numbers")
    out = sync([cid])
    assert out.sheet_id == first.sheet_id
    assert out.sheet_title == "Our numbers"
    rows = fake_sheets.values(spreadsheet_id, "Our numbers")
    col = header(rows).index(NOTES_HEADER)
    assert rows[FIRST_DATA_ROW][col] == "renamed but kept"
    fake_sheets.reset_calls()
    assert sync([cid]).sheets_calls == 2  # the new title is remembered


def test_everything_off_is_the_plain_tab_in_one_write(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 300, 40), (0, 1, 300, 12)])
    sync = Syncer(instantly, sheets, spreadsheet_id, Features())
    sync([cid])
    fake_sheets.reset_calls()
    out = sync([cid])
    assert out.sheets_calls == 1
    rows = grid(fake_sheets, spreadsheet_id)
    assert header(rows)[:3] == ["Step", "Variant", "Sent"]
    assert NOTES_HEADER not in header(rows)
    assert fake_sheets.sheet_titles(spreadsheet_id) == ["Sheet1", TAB]
    assert fake_sheets.charts(spreadsheet_id, TAB) == []


# --- through a stored connection (spec_for, execute_run, the connection page) -------------


def test_stored_connection_keeps_ids_and_shows_the_last_table(
    runtime, client, auth, fake_sheets, spreadsheet_id, workspace
):
    from sheets_sync import store
    from sheets_sync.jobs.sync import run_connection_now, spec_for
    from sheets_sync.store.db import take_write_lock

    cid = campaign(workspace, "Q4", [(0, 0, 300, 40), (0, 1, 300, 12)])
    auth.signup()
    with runtime.session_factory() as s, s.begin():
        take_write_lock(s)
        user = store.get_user_by_email(s, "ann@example.com")
        conn = store.create_connection(
            s, user, fernet=runtime.fernet, name="Q4", instantly_api_key=INSTANTLY_KEY,
            spreadsheet_url=f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit",
            campaign_ids=[cid],
        )
        conn_id = conn.id
    assert run_connection_now(runtime, conn_id).ok
    with runtime.session_factory() as s:
        options = s.get(store.Connection, conn_id).options
    assert isinstance(options["history_sheet_id"], int)
    assert options["tab_titles"] == {"main": TAB, "history": HISTORY}
    # The next refresh starts its history days from the day this one wrote.
    with runtime.session_factory() as s:
        spec = spec_for(s.get(store.Connection, conn_id), dt.datetime.now(dt.UTC))
    assert spec.history_last_day == dt.date.fromisoformat(options["history_day"])
    fake_sheets.reset_calls()
    second = run_connection_now(runtime, conn_id)
    assert second.ok
    assert fake_sheets.count("batchUpdate") == 1
    assert fake_sheets.count() - fake_sheets.count("batchUpdate") == 1  # one read
    page = client.get(f"/connections/{conn_id}/runs").get_data(as_text=True)
    assert "Last synced table" in page
    assert 'class="call-winner"' in page
    assert "Winner (" in page and "Q4: hello" in page


def test_a_deleted_main_tab_is_recreated_and_history_kept(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 10, 1)])
    for back in (0, 1):
        workspace.record(cid, (NOW - dt.timedelta(days=back)).date(), 0, 0, sent=3)
    sync = Syncer(instantly, sheets, spreadsheet_id)
    sync([cid], now=NOW - dt.timedelta(days=1))
    fake_sheets.delete_sheet(spreadsheet_id, TAB)
    out = sync([cid])
    assert out.tab_created
    assert len(fake_sheets.charts(spreadsheet_id, TAB)) == 1
    assert len(fake_sheets.values(spreadsheet_id, HISTORY)) == 1 + 2  # both days

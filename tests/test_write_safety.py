"""Writes that are safe to send twice: lost responses, hangs and late applies.

Real gspread and google-auth against the Sheets fake, which can apply a batch and then
lose its answer (``when="after"``), close the connection with no answer at all
(``DROP``), or hold a batch and apply it after the client gave up (``status=0`` with a
``delay``). Each case is checked twice: the failure before Google
applied the write, and after. What must hold: the tab ends exactly as one clean refresh
writes it, and no history row inside the horizon is lost or doubled.
"""

from __future__ import annotations

import datetime as dt

import pytest

from sheets_sync.errors import InstantlyEmptyAnswer, SheetsWriteUnconfirmed
from sheets_sync.pipeline.refresh import Features
from sheets_sync.pipeline.sheets_writer import make_sheets_client
from tests.fakes.sheets_api import DROP
from tests.test_engine_features import HISTORY, TAB, Syncer, campaign

START = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
HORIZON = 3
# Seconds: the client gives up on an answer after QUICK; a hung call answers after HANG;
# the worst case holds a write for HELD, past the give-up, the re-read and the rewrite.
QUICK = 1.5
HANG = 3.0
HELD = 6.0


@pytest.fixture
def quick_sheets(fake_sheets, service_account_file, fast_retry):
    """A writer that gives up on an answer after QUICK seconds, so hangs are cheap to test.

    The faults hold their answer for HANG (or HELD) seconds: far enough past QUICK that a
    loaded machine answering an ordinary call late cannot pass for a hang, or the reverse."""
    return make_sheets_client(
        service_account_file, api_url=fake_sheets.url, timeout=(2, QUICK), retry=fast_retry
    )


def history_days(fake_sheets, ssid):
    """(date serial, row key) per history row, in sheet order."""
    return [(r[0], r[1]) for r in fake_sheets.values(ssid, HISTORY)[1:]]


def prime(workspace, instantly, sheets, ssid):
    """Four days of refreshes with a 3-day horizon: rows of days 1-4 in the history tab."""
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10), (0, 1, 100, 5)])
    sync = Syncer(instantly, sheets, ssid, Features.all_on(history_days=HORIZON))
    for day in range(4):
        sync([cid], now=START + dt.timedelta(days=day))
    return cid, sync


def expected_after_day5(fake_sheets, ssid, before):
    """Day 1 pruned (past the horizon), days 2-4 kept, day 5 added once per key."""
    days = sorted({d for d, _ in before})
    kept = [row for row in before if row[0] != days[0]]
    new_day = days[-1] + 1
    keys = sorted({k for _, k in before})
    return kept + [(new_day, k) for k in keys]


def wait_for_writes(fake_sheets, count):
    """The fake logs a call when it has answered it: wait for a held batch to finish."""
    fake_sheets.wait_idle()
    assert fake_sheets.count("batchUpdate") >= count


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(dict(status=503), id="503-not-applied"),
        pytest.param(dict(status=503, when="after"), id="503-after-apply"),
        pytest.param(dict(status=500, when="after"), id="500-after-apply"),
        pytest.param(dict(status=503, delay=HANG), id="hang-then-503-not-applied"),
        pytest.param(dict(status=0, when="after", delay=HANG), id="apply-then-hang"),
        pytest.param(dict(status=DROP), id="connection-dropped-not-applied"),
        pytest.param(dict(status=DROP, when="after"), id="applied-then-connection-dropped"),
    ],
)
def test_a_lost_write_is_checked_not_resent_blind(
    fake_sheets, spreadsheet_id, instantly, quick_sheets, workspace, fault
):
    cid, sync = prime(workspace, instantly, quick_sheets, spreadsheet_id)
    before = history_days(fake_sheets, spreadsheet_id)
    grid_before = fake_sheets.values(spreadsheet_id, TAB)
    fake_sheets.reset_calls()
    fake_sheets.fail_next("write", **fault)

    out = sync([cid], now=START + dt.timedelta(days=4))

    assert history_days(fake_sheets, spreadsheet_id) == expected_after_day5(
        fake_sheets, spreadsheet_id, before
    )
    applied_first = fault.get("when") == "after"
    # Applied: the re-read proves it and nothing is sent again. Not applied: re-planned
    # from the re-read and sent once more.
    sends = 1 if applied_first else 2
    wait_for_writes(fake_sheets, sends)  # a held call is logged when it has answered
    assert fake_sheets.count("batchUpdate") == sends
    assert fake_sheets.count("get") == 2  # the refresh's read, and the re-read
    grid = fake_sheets.values(spreadsheet_id, TAB)
    assert len(grid) == len(grid_before)
    assert "2026-11-24" in grid[1][0]  # the info line says this refresh's time
    assert out.rows_written == 3  # A, B and the total


def test_a_write_google_applies_after_the_client_gave_up_cannot_apply_twice(
    fake_sheets, spreadsheet_id, instantly, quick_sheets, workspace
):
    """The worst case: the re-read comes before Google applies the held batch, so the
    refresh re-plans and writes; then the held copy lands. Its revision guard fails it."""
    cid, sync = prime(workspace, instantly, quick_sheets, spreadsheet_id)
    before = history_days(fake_sheets, spreadsheet_id)
    fake_sheets.reset_calls()
    fake_sheets.fail_next("write", 0, delay=HELD)  # held, then applied

    sync([cid], now=START + dt.timedelta(days=4))
    wait_for_writes(fake_sheets, 2)

    assert fake_sheets.count("batchUpdate", status=200) == 1
    assert fake_sheets.count("batchUpdate", status=400) == 1  # the late copy, refused whole
    assert history_days(fake_sheets, spreadsheet_id) == expected_after_day5(
        fake_sheets, spreadsheet_id, before
    )


def test_an_unconfirmed_write_that_cannot_be_checked_says_the_outcome_is_unknown(
    fake_sheets, spreadsheet_id, instantly, quick_sheets, workspace
):
    cid, sync = prime(workspace, instantly, quick_sheets, spreadsheet_id)
    before = history_days(fake_sheets, spreadsheet_id)
    fake_sheets.fail_next("write", 503, when="after")

    def google_goes_down() -> None:  # after the refresh's own read: the re-read fails
        fake_sheets.fail_next("read", 503, count=10)

    with pytest.raises(SheetsWriteUnconfirmed) as caught:
        sync([cid], now=START + dt.timedelta(days=4), before_write=google_goes_down)
    fake_sheets.clear_faults()
    message = caught.value.message
    assert "unknown" in message and "not changed" not in message
    assert caught.value.code == "sheets_write_unconfirmed"
    # The write had applied; the next refresh reconciles without losing or doubling rows.
    sync([cid], now=START + dt.timedelta(days=4, hours=1))
    assert history_days(fake_sheets, spreadsheet_id) == expected_after_day5(
        fake_sheets, spreadsheet_id, before
    )


LOST_ANSWERS = [
    pytest.param(503, "before", id="503-not-applied"),
    pytest.param(503, "after", id="503-after-apply"),
    pytest.param(DROP, "before", id="connection-dropped-not-applied"),
    pytest.param(DROP, "after", id="applied-then-connection-dropped"),
]


@pytest.mark.parametrize(("status", "when"), LOST_ANSWERS)
def test_a_first_sync_whose_answer_is_lost_creates_one_tab(
    fake_sheets, spreadsheet_id, instantly, quick_sheets, workspace, status, when
):
    """The plain tab (no read): its addSheet must not be sent twice, nor fail the run."""
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10)])
    sync = Syncer(instantly, quick_sheets, spreadsheet_id, Features())
    fake_sheets.fail_next("write", status, when=when)
    out = sync([cid])
    assert fake_sheets.sheet_titles(spreadsheet_id).count(TAB) == 1
    assert out.tab_created
    assert fake_sheets.values(spreadsheet_id, TAB)[3][:2] == ["Step 1", "A"]


@pytest.mark.parametrize(("status", "when"), LOST_ANSWERS)
def test_a_first_sync_with_features_whose_answer_is_lost_creates_each_tab_once(
    fake_sheets, spreadsheet_id, instantly, quick_sheets, workspace, status, when
):
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10)])
    sync = Syncer(instantly, quick_sheets, spreadsheet_id)
    fake_sheets.fail_next("write", status, when=when)
    out = sync([cid])
    titles = fake_sheets.sheet_titles(spreadsheet_id)
    assert titles.count(TAB) == 1 and titles.count(HISTORY) == 1
    assert out.tab_created
    assert len(fake_sheets.values(spreadsheet_id, HISTORY)) == 2


def test_every_send_of_a_write_is_counted(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    # The normal timeouts: with 0.5 s a loaded machine can time out a read, which is
    # rightly retried, and the count would then include that extra send.
    cid, sync = prime(workspace, instantly, sheets, spreadsheet_id)
    fake_sheets.reset_calls()
    fake_sheets.fail_next("write", 503)
    out = sync([cid], now=START + dt.timedelta(days=4))
    sent = fake_sheets.count("get") + fake_sheets.count("batchUpdate")
    assert out.sheets_calls == sent == 4  # read, write, re-read, write


# --- an empty answer where there were numbers ------------------------------------------


def test_a_sudden_empty_answer_leaves_the_table_as_it_was(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10), (0, 1, 100, 5)])
    sync = Syncer(instantly, sheets, spreadsheet_id, Features())
    sync([cid], last_sent={})
    memory = sync.last["last_sent"]
    before = fake_sheets.snapshot(spreadsheet_id)
    fake_instantly.malform_next([], path_contains="/analytics/steps")
    with pytest.raises(InstantlyEmptyAnswer) as caught:
        sync([cid], last_sent=memory)
    assert "200 sent" in caught.value.message and "Q4" in caught.value.message
    assert fake_sheets.snapshot(spreadsheet_id) == before


def test_a_campaign_that_never_sent_shows_its_empty_table(
    fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "New", [])
    sync = Syncer(instantly, sheets, spreadsheet_id, Features())
    sync([cid], last_sent={})
    sync([cid], last_sent=sync.last["last_sent"])
    assert fake_sheets.values(spreadsheet_id, TAB)[3][0] == "Total"


def test_a_rolling_range_that_moved_past_the_sends_may_go_empty(
    fake_sheets, fake_instantly, spreadsheet_id, instantly, sheets, workspace
):
    cid = campaign(workspace, "Q4", [(0, 0, 100, 10)])  # sent on 2026-11-20
    sync = Syncer(instantly, sheets, spreadsheet_id, Features())
    rolling = {"preset": "last_7_days"}
    sync([cid], now=START, date_range=rolling, last_sent={})
    later = START + dt.timedelta(days=10)
    sync([cid], now=later, date_range=rolling, last_sent=sync.last["last_sent"])
    assert fake_sheets.values(spreadsheet_id, TAB)[3][0] == "Total"

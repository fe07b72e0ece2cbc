"""A refresh's Instantly calls go side by side, and fail as predictably as one by one."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace

import pytest

from sheets_sync.errors import InstantlyKeyRejected, InstantlyMalformedResponse
from sheets_sync.pipeline.history import serial
from sheets_sync.pipeline.instantly import InstantlyClient
from sheets_sync.pipeline.overlap import side_by_side
from sheets_sync.pipeline.refresh import Features, SyncSpec, run_sync
from tests.plugin_fakes import INSTANTLY_KEY

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 27)
TAB = "Instantly steps"
WAIT = 10.0  # seconds a call waits for its partner before the test fails


class Boom(Exception):
    pass


# -- side_by_side ---------------------------------------------------------------------


def test_calls_run_at_the_same_time_and_results_keep_their_order():
    both = threading.Barrier(2, timeout=WAIT)  # broken (and raising) if run one by one

    def first():
        both.wait()
        done_second.wait(WAIT)  # finishes last
        return "first"

    done_second = threading.Event()

    def second():
        both.wait()
        done_second.set()
        return "second"

    assert side_by_side([first, second, lambda: "third"]) == ["first", "second", "third"]


def test_the_failure_raised_is_the_first_in_order_not_the_first_in_time():
    later_failed = threading.Event()

    def earlier():
        assert later_failed.wait(WAIT)
        raise Boom("earlier")

    def later():
        try:
            raise Boom("later")
        finally:
            later_failed.set()

    with pytest.raises(Boom, match="earlier"):
        side_by_side([earlier, later])


def test_calls_listed_after_a_failure_are_not_sent_once_it_failed():
    sent: list[str] = []

    def call(name, fail=False):
        def run():
            sent.append(name)
            if fail:
                raise Boom(name)
            return name
        return run

    with pytest.raises(Boom, match="b"):
        side_by_side([call("a"), call("b", fail=True), call("c"), call("d")], max_in_flight=1)
    assert sent == ["a", "b"]


def test_nothing_is_still_running_when_the_failure_is_raised():
    failed = threading.Event()
    finished = threading.Event()

    def slow():
        assert failed.wait(WAIT)
        finished.set()
        return "slow"

    def fails():
        failed.set()
        raise Boom("fails")

    with pytest.raises(Boom):
        side_by_side([slow, fails])
    assert finished.is_set()


def test_one_call_or_none_needs_no_thread():
    assert side_by_side([]) == []
    assert side_by_side([threading.current_thread]) == [threading.current_thread()]


# -- a refresh ------------------------------------------------------------------------


class OverviewMeetsClient(InstantlyClient):
    """The real client, whose overview call waits (up to ``WAIT``) for one other call of
    the refresh, named by the subclass, to be in flight too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.meet = threading.Barrier(2, timeout=WAIT)

    def campaign_overview(self, *args, **kwargs):
        self.meet.wait()
        return super().campaign_overview(*args, **kwargs)


class MeetingClient(OverviewMeetsClient):
    """The overview and the per-day call meet: one by one, the refresh would fail."""

    def step_analytics(self, campaign_id=None, **kwargs):
        if kwargs.get("start") == dt.datetime.combine(DAY, dt.time.min, dt.UTC):
            self.meet.wait()
        return super().step_analytics(campaign_id, **kwargs)


def seeded(workspace):
    cid = workspace.add_campaign(
        "Q4", steps=[[{"subject": "Hello", "body": "a"}, {"subject": "Hi", "body": "b"}]]
    )
    workspace.record(cid, DAY, 0, 0, sent=300, unique_replies=30, replies=30)
    workspace.record(cid, DAY, 0, 1, sent=280, unique_replies=3, replies=3)
    return cid


def spec_for(spreadsheet_id, campaign_ids, **features):
    return SyncSpec(
        spreadsheet_id=spreadsheet_id, worksheet_title=TAB, campaign_ids=tuple(campaign_ids),
        features=Features.all_on(**features),
        date_range={"start": "2026-11-01", "end": "2026-11-27"},
    )


def test_the_overview_and_the_history_day_are_asked_side_by_side(
    fake_instantly, fake_sheets, spreadsheet_id, sheets, workspace, fast_retry
):
    cid = seeded(workspace)
    client = MeetingClient(
        INSTANTLY_KEY, base_url=fake_instantly.url, timeout=(2, 5), retry=fast_retry
    )
    out = run_sync(spec_for(spreadsheet_id, [cid]), instantly=client, sheets=sheets, now=NOW)
    assert out.totals is not None and out.totals.text  # the overview's check was made
    assert out.instantly_calls == 5  # campaign, steps, subsequence list, overview, the day
    history = fake_sheets.values(spreadsheet_id, f"{TAB} history")
    assert [row[5] for row in history[1:] if row[0] == serial(DAY)] == [300, 280]  # Sent


def test_a_rejected_key_costs_one_call_and_no_google_call(
    fake_instantly, fake_sheets, spreadsheet_id, sheets, workspace, fast_retry
):
    cid = seeded(workspace)
    other = workspace.add_campaign("Q1")
    wrong = InstantlyClient(
        "not-the-key-0000", base_url=fake_instantly.url, timeout=(2, 5), retry=fast_retry
    )
    fake_instantly.reset_calls()
    fake_sheets.reset_calls()
    with pytest.raises(InstantlyKeyRejected):
        run_sync(spec_for(spreadsheet_id, [cid, other]), instantly=wrong, sheets=sheets, now=NOW)
    assert fake_instantly.count() == 1  # the first call alone; the rest were never sent
    assert fake_sheets.count() == 0


class FirstMeetsOverviewClient(OverviewMeetsClient):
    """The refresh's first call (the campaign's details) and the overview meet: sent
    alone first, the first call would fail."""

    def campaign(self, *args, **kwargs):
        self.meet.wait()
        return super().campaign(*args, **kwargs)


def test_a_refresh_whose_key_worked_last_time_sends_its_first_call_with_the_rest(
    fake_instantly, fake_sheets, spreadsheet_id, sheets, workspace, fast_retry
):
    cid = seeded(workspace)
    client = FirstMeetsOverviewClient(
        INSTANTLY_KEY, base_url=fake_instantly.url, timeout=(2, 5), retry=fast_retry
    )
    spec = replace(spec_for(spreadsheet_id, [cid]), first_call_alone=False)
    out = run_sync(spec, instantly=client, sheets=sheets, now=NOW)
    assert out.instantly_calls == 5
    rows = fake_sheets.values(spreadsheet_id, TAB)
    assert rows[0][0] == "Instantly step analytics: Q4"  # the campaign's details, used
    assert [row[3] for row in rows if row[0] == "Step 1"] == [300, 280]  # Sent


def test_a_rejected_key_sent_with_the_rest_is_the_error_raised_and_google_is_not_called(
    fake_instantly, fake_sheets, spreadsheet_id, sheets, workspace, fast_retry
):
    cid = seeded(workspace)
    wrong = InstantlyClient(
        "not-the-key-0000", base_url=fake_instantly.url, timeout=(2, 5), retry=fast_retry
    )
    fake_sheets.reset_calls()
    spec = replace(spec_for(spreadsheet_id, [cid, workspace.add_campaign("Q1")]),
                   first_call_alone=False)
    with pytest.raises(InstantlyKeyRejected):
        run_sync(spec, instantly=wrong, sheets=sheets, now=NOW)
    assert fake_sheets.count() == 0


def test_a_later_call_failing_is_reported_and_leaves_the_sheet_untouched(
    fake_instantly, fake_sheets, spreadsheet_id, instantly, sheets, workspace
):
    cid = seeded(workspace)
    run_sync(spec_for(spreadsheet_id, [cid]), instantly=instantly, sheets=sheets, now=NOW)
    before = fake_sheets.values(spreadsheet_id, TAB)
    # The list of subsequences (round 2) is malformed, every time it is asked.
    fake_instantly.malform_next({"items": [{"name": "no id"}]}, count=50,
                                path_is="/subsequences")
    fake_sheets.reset_calls()
    with pytest.raises(InstantlyMalformedResponse, match="subsequence"):
        run_sync(spec_for(spreadsheet_id, [cid]), instantly=instantly, sheets=sheets, now=NOW)
    assert fake_sheets.count() == 0
    assert fake_sheets.values(spreadsheet_id, TAB) == before

"""Schedule arithmetic (pure, across DST changes) and queueing due connections."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from sheets_sync.jobs.quota import backlog_eta
from sheets_sync.jobs.scheduler import backlog, enqueue_due
from sheets_sync.schedules import next_run_at, spread_for
from tests.worker_helpers import add_connections, connection, make_user, runs_of

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone)


@pytest.mark.parametrize(
    ("zone", "before", "after_change"),
    [
        # New York: spring forward 2026-03-08 02:00 EST -> 03:00 EDT; fall back 11-01.
        ("America/New_York", utc(2026, 3, 7, 20), (2026, 3, 8)),
        ("America/New_York", utc(2026, 10, 31, 20), (2026, 11, 1)),
        # Berlin: spring forward 2026-03-29 02:00 CET -> 03:00 CEST; fall back 10-25.
        ("Europe/Berlin", utc(2026, 3, 28, 20), (2026, 3, 29)),
        ("Europe/Berlin", utc(2026, 10, 24, 20), (2026, 10, 25)),
    ],
)
def test_daily_stays_at_local_wall_time_across_dst(zone, before, after_change) -> None:
    tz = ZoneInfo(zone)
    first = next_run_at("daily", after=before, schedule_time="09:00", timezone=zone)
    assert first is not None
    assert first.astimezone(tz).date() == dt.date(*after_change)
    assert first.astimezone(tz).time() == dt.time(9, 0)
    second = next_run_at("daily", after=first, schedule_time="09:00", timezone=zone)
    assert second is not None and second.astimezone(tz).time() == dt.time(9, 0)
    # The day of the change has 23 or 25 hours; the next day is a normal 24.
    assert (second - first) == dt.timedelta(hours=24)
    # Across the change itself, the UTC gap is 23 h (spring) or 25 h (fall).
    prev_day = dt.date(*after_change) - dt.timedelta(days=1)
    day_before = next_run_at("daily", after=local(tz, *prev_day.timetuple()[:3], 8),
                             schedule_time="09:00", timezone=zone)
    assert day_before is not None
    gap = first - day_before
    assert gap in (dt.timedelta(hours=23), dt.timedelta(hours=25))


def test_spring_forward_gap_time_runs_an_hour_later_local() -> None:
    # 02:30 does not exist in New York on 2026-03-08: it runs at 03:30 EDT (07:30 UTC).
    got = next_run_at("daily", after=utc(2026, 3, 8, 0), schedule_time="02:30",
                      timezone="America/New_York")
    assert got == utc(2026, 3, 8, 7, 30)
    assert got.astimezone(NY).time() == dt.time(3, 30)


def test_fall_back_repeated_time_runs_once_at_the_first_occurrence() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25: first (CEST, 00:30 UTC), not again.
    first = next_run_at("daily", after=utc(2026, 10, 24, 12), schedule_time="02:30",
                        timezone="Europe/Berlin")
    assert first == utc(2026, 10, 25, 0, 30)
    again = next_run_at("daily", after=first, schedule_time="02:30", timezone="Europe/Berlin")
    assert again == utc(2026, 10, 26, 1, 30)  # next day, CET


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
@pytest.mark.parametrize(
    "start", [utc(2026, 3, 7, 12), utc(2026, 10, 24, 12), utc(2026, 10, 31, 12)]
)
def test_hourly_is_always_one_real_hour_apart(zone: str, start: dt.datetime) -> None:
    moment = start
    for _ in range(48):
        following = next_run_at("hourly", after=moment, timezone=zone)
        assert following is not None
        assert following - moment <= dt.timedelta(hours=1)
        if moment != start:
            assert following - moment == dt.timedelta(hours=1)
        moment = following


def test_every_6_hours_aligns_to_local_quarters_of_the_day() -> None:
    moment = utc(2026, 3, 28, 12)  # Berlin, across spring forward
    seen = []
    for _ in range(8):
        moment = next_run_at("every_6_hours", after=moment, timezone="Europe/Berlin")
        seen.append(moment.astimezone(BERLIN).hour)
    assert set(seen) <= {0, 6, 12, 18}


def test_weekly_on_a_weekday_across_dst() -> None:
    # Mondays 08:15 New York, from Friday 2026-03-06 over the spring change.
    first = next_run_at("weekly", after=utc(2026, 3, 6, 12), schedule_time="08:15", weekday=0,
                        timezone="America/New_York")
    assert first == local(NY, 2026, 3, 9, 8, 15).astimezone(UTC)
    second = next_run_at("weekly", after=first, schedule_time="08:15", weekday=0,
                         timezone="America/New_York")
    assert second - first == dt.timedelta(days=7)
    assert next_run_at("off", after=first) is None


def test_spread_is_stable_and_bounded() -> None:
    spreads = {spread_for(i) for i in range(1000)}
    assert all(dt.timedelta(0) <= s < dt.timedelta(seconds=300) for s in spreads)
    assert len(spreads) > 200  # 1,000 "daily 09:00" connections do not fire together
    assert spread_for(7) == spread_for(7)


def test_backlog_eta() -> None:
    assert backlog_eta(0, 60, 60) == 0
    assert backlog_eta(60, 60, 60) == 0  # the first minute's worth goes at once
    assert backlog_eta(61, 60, 60) == pytest.approx(61)
    assert backlog_eta(1000, 60, 60) == pytest.approx(16 * 61)


def test_connection_gets_next_run_at_and_enqueue_due_queues_once(runtime) -> None:
    user_id = make_user(runtime)
    [cid] = add_connections(runtime, user_id, ["1" * 44], api_key="k-1234", schedule="daily")
    c = connection(runtime, cid)
    assert c.next_run_at is not None and c.next_run_at > dt.datetime.now(UTC)

    with runtime.session_factory() as s, s.begin():
        s.get(type(c), cid).next_run_at = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    assert enqueue_due(runtime) == 1
    assert enqueue_due(runtime) == 0  # next_run_at moved on: one run per slot
    runs = runs_of(runtime, cid)
    assert [(r.status, r.trigger) for r in runs] == [("queued", "schedule")]
    assert connection(runtime, cid).next_run_at > dt.datetime.now(UTC)
    report = backlog(runtime)
    assert report.queued == 1 and report.eta_seconds == 0

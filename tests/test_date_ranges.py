from datetime import UTC, date, datetime

import pytest

from sheets_sync.date_ranges import resolve, validate_date_range
from sheets_sync.errors import InvalidInput

TODAY = date(2026, 3, 15)


@pytest.mark.parametrize(
    ("preset", "start", "end"),
    [
        ("all_time", None, None),
        ("today", date(2026, 3, 15), date(2026, 3, 15)),
        ("yesterday", date(2026, 3, 14), date(2026, 3, 14)),
        ("last_7_days", date(2026, 3, 9), date(2026, 3, 15)),
        ("last_30_days", date(2026, 2, 14), date(2026, 3, 15)),
        ("this_month", date(2026, 3, 1), date(2026, 3, 15)),
        ("last_month", date(2026, 2, 1), date(2026, 2, 28)),
        ("this_year", date(2026, 1, 1), date(2026, 3, 15)),
    ],
)
def test_presets_are_inclusive_utc_days(preset, start, end):
    rng = resolve({"preset": preset}, TODAY)
    assert (rng.start, rng.end) == (start, end)


def test_inclusive_end_is_sent_as_the_last_moment_of_the_day():
    rng = resolve({"start": "2026-01-01", "end": "2026-01-31"}, TODAY)
    assert rng.start_instant == datetime(2026, 1, 1, tzinfo=UTC)
    assert rng.end_instant == datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)


@pytest.mark.parametrize(
    "spec",
    [
        {"preset": "fortnight"},
        {"start": "2026-02-01", "end": "2026-01-01"},
        {"start": "2026-13-01", "end": "2026-12-01"},
        {"start": "2026-01-01"},
        # date.fromisoformat takes these too; a range is written YYYY-MM-DD only.
        {"start": "20260101", "end": "2026-01-31"},
        {"start": "2026-01-01", "end": "2026-W05-6"},
        {"start": "2026-01-01", "end": "2026-01-31 "},
    ],
)
def test_bad_ranges_are_refused_with_a_reason(spec):
    with pytest.raises(InvalidInput) as err:
        validate_date_range(spec)
    assert err.value.message

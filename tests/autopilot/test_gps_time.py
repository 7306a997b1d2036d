"""UTC -> GPS week / time of week with leap seconds (GPS_INPUT.time_week/time_week_ms)."""

import calendar

import pytest

from terrafix.autopilot.gps_time import gps_minus_utc_s, gps_week_and_ms, utc_from_gps


def _ns(y, mo, d, h=0, mi=0, s=0, ms=0):
    return (calendar.timegm((y, mo, d, h, mi, s)) * 1000 + ms) * 1_000_000


def test_gps_epoch_is_week_zero():
    assert gps_week_and_ms(_ns(1980, 1, 6)) == (0, 0)


def test_week_1930_starts_on_2017_01_01_with_18_leap_seconds():
    # 2017-01-01 00:00:00 UTC is Sunday, start of GPS week 1930; GPS runs 18 s ahead of UTC.
    assert gps_week_and_ms(_ns(2017, 1, 1)) == (1930, 18_000)


def test_leap_second_boundary_2016_to_2017():
    # The last second of 2016 (23:59:59 UTC) is GPS 17 s ahead; a second later it is 18 s.
    assert gps_minus_utc_s(calendar.timegm((2016, 12, 31, 23, 59, 59))) == 17
    assert gps_minus_utc_s(calendar.timegm((2017, 1, 1, 0, 0, 0))) == 18
    # Saturday 23:59:59 UTC is 604799 s into week 1929 in UTC terms; +17 s wraps into week 1930.
    assert gps_week_and_ms(_ns(2016, 12, 31, 23, 59, 59)) == (1930, 16_000)
    # The inserted second 23:59:60 is GPS 17 000 ms; midnight UTC is 18 000 ms: no gap, no repeat
    # on the GPS side.
    assert gps_week_and_ms(_ns(2017, 1, 1)) == (1930, 18_000)


def test_known_date_in_2024():
    # 2024-03-15 12:34:56.789 UTC: Sunday 2024-03-10 starts week 2305 (= 16135 days / 7).
    week, ms = gps_week_and_ms(_ns(2024, 3, 15, 12, 34, 56, 789))
    assert week == 2305
    assert ms == ((5 * 86400 + 12 * 3600 + 34 * 60 + 56 + 18) * 1000 + 789)


@pytest.mark.parametrize("when", [(2001, 5, 1, 3, 4, 5, 6), (2019, 12, 31, 23, 59, 58, 999),
                                  (2026, 7, 4, 0, 0, 1, 0)])
def test_round_trip(when):
    ns = _ns(*when)
    assert utc_from_gps(*gps_week_and_ms(ns)) == ns


def test_before_gps_epoch_is_rejected():
    with pytest.raises(ValueError, match="before the GPS epoch"):
        gps_week_and_ms(_ns(1979, 12, 31))

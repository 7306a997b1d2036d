"""UTC -> GPS week and time of week, with leap seconds.

Why this exists: ArduPilot's "MAV" GPS takes its time from GPS_INPUT.time_week/time_week_ms and
ignores time_usec (REQUIREMENTS A1), and iNav's MSP GPS wants the same pair. GPS time does not
stop for leap seconds, so it runs ahead of UTC by the number of leap seconds inserted since the
GPS epoch (1980-01-06 00:00:00 UTC): 18 s since 2017-01-01. The table below is the IERS list;
no leap second has been announced after 2017-01-01. A new one needs one line here.
"""

from __future__ import annotations

import calendar
from typing import Final

GPS_EPOCH_UNIX_S: Final = calendar.timegm((1980, 1, 6, 0, 0, 0))
SECONDS_PER_WEEK: Final = 7 * 24 * 3600

# (UTC date from which the offset applies, GPS - UTC in seconds)
_LEAP_TABLE: Final = (
    ((1981, 7, 1), 1),
    ((1982, 7, 1), 2),
    ((1983, 7, 1), 3),
    ((1985, 7, 1), 4),
    ((1988, 1, 1), 5),
    ((1990, 1, 1), 6),
    ((1991, 1, 1), 7),
    ((1992, 7, 1), 8),
    ((1993, 7, 1), 9),
    ((1994, 7, 1), 10),
    ((1996, 1, 1), 11),
    ((1997, 7, 1), 12),
    ((1999, 1, 1), 13),
    ((2006, 1, 1), 14),
    ((2009, 1, 1), 15),
    ((2012, 7, 1), 16),
    ((2015, 7, 1), 17),
    ((2017, 1, 1), 18),
)
_LEAP_UNIX_S: Final = tuple(
    (calendar.timegm((y, m, d, 0, 0, 0)), off) for (y, m, d), off in _LEAP_TABLE
)


def gps_minus_utc_s(unix_s: float) -> int:
    """Leap seconds between GPS time and UTC at a UTC instant given as UNIX seconds."""
    offset = 0
    for start, off in _LEAP_UNIX_S:
        if unix_s >= start:
            offset = off
        else:
            break
    return offset


def gps_week_and_ms(utc_unix_ns: int) -> tuple[int, int]:
    """(GPS week number, milliseconds into the week) of a UTC instant in UNIX nanoseconds.

    The week is the full count since 1980 (not modulo 1024), as GPS_INPUT.time_week expects.
    Instants before the GPS epoch are rejected: they can only come from an unset clock.
    """
    unix_s = utc_unix_ns / 1e9
    if unix_s < GPS_EPOCH_UNIX_S:
        raise ValueError(f"UTC time {unix_s} s is before the GPS epoch {GPS_EPOCH_UNIX_S} s")
    gps_ms = (utc_unix_ns // 1_000_000) - GPS_EPOCH_UNIX_S * 1000 + gps_minus_utc_s(unix_s) * 1000
    week, ms = divmod(gps_ms, SECONDS_PER_WEEK * 1000)
    return int(week), int(ms)


def utc_from_gps(week: int, week_ms: int) -> int:
    """Inverse of gps_week_and_ms: UTC UNIX nanoseconds of a GPS week/ms (used by the FC side)."""
    gps_ms = week * SECONDS_PER_WEEK * 1000 + week_ms
    approx_unix_s = GPS_EPOCH_UNIX_S + gps_ms / 1000
    offset = gps_minus_utc_s(approx_unix_s - gps_minus_utc_s(approx_unix_s))
    unix_ms = GPS_EPOCH_UNIX_S * 1000 + gps_ms - offset * 1000
    return unix_ms * 1_000_000

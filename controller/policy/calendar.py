"""Calendars and local time: which profile a night gets, and when a local clock time happens.

Theory of operation
-------------------
*Nights, not days.* A night is named by the local calendar date ``D`` on which it starts and
runs from local noon of ``D`` to local noon of ``D + 1`` (TALQ's ``dayOffset = 12``, noon to
noon). Calendar rules are matched against ``D``: a rule for 24 December applies to the night
from the evening of the 24th to the morning of the 25th.

*Night order.* Clock times in a policy are read in night order: ``12:00``-``23:59`` fall on
``D`` and ``00:00``-``11:59`` on ``D + 1``, so ``22:00``-``06:00`` and ``00:00``-``05:30`` are
plain intervals. ``12:00`` as the end of a window means noon of ``D + 1``.

*Daylight saving.* A clock time happens at the first instant of the night at which the local
wall clock shows that time or later. On a normal night that is simply the time. When the
clocks go back and a time occurs twice, it is its first occurrence (so ``01:30``-``05:30`` on
the October night in London is one unbroken window of five hours, not two pieces). When the
clocks go forward and a time does not exist, it is the instant of the change (``01:30`` on the
March night in London happens at 01:00 GMT, when the clocks jump to 02:00 BST). The night
itself is 23 or 25 hours long on those dates.

*Lux thresholds.* A photocell compares horizontal illuminance with a threshold. Under a clear
sky that illuminance falls from about 400 lx at sunset (solar zenith 90.833 deg) to about
3.4 lx at the end of civil twilight (zenith 96 deg) (AMS Glossary of Meteorology, "civil
twilight": ~585-410 lx down to ~3.5-2 lx), close to exponentially in the solar depression.
:func:`lux_to_zenith_deg` interpolates ``log(lux)`` linearly between those two points: 35 lx
maps to zenith 93.47 deg, which the sun reaches 17-20 minutes after sunset in the UK at the
equinoxes and 20-27 minutes at midwinter (up to ~33 at midsummer in Scotland), matching the
~20 minutes observed for photocells (Dundee). Overcast skies are darker
and a real photocell would switch earlier; add a negative ``offset_min`` to allow for it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.policy.model import WEEKDAYS, CalendarRule, DateRange, NthWeekday

NS_PER_S = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NOON_MIN = 12 * 60
_DAY_MIN = 24 * 60

#: Clear-sky horizontal illuminance at sunset and at the end of civil twilight (AMS glossary).
LUX_AT_SUNSET = 400.0
LUX_AT_CIVIL_DUSK = 3.4
ZENITH_SUNSET_DEG = 90.833
ZENITH_CIVIL_DUSK_DEG = 96.0


# --- calendar rules -----------------------------------------------------------------------------


def _month_day_key(month: int, day: int) -> int:
    return month * 100 + day


def _day_matches(spec: str, night_date: dt.date) -> bool:
    if len(spec) == 5:  # MM-DD, every year
        return spec == night_date.strftime("%m-%d")
    return dt.date.fromisoformat(spec) == night_date


def _range_matches(date_range: DateRange, night_date: dt.date) -> bool:
    if len(date_range.start) == 10:
        first = dt.date.fromisoformat(date_range.start)
        last = dt.date.fromisoformat(date_range.end)
        return first <= night_date <= last
    first_key = _month_day_key(int(date_range.start[:2]), int(date_range.start[3:]))
    last_key = _month_day_key(int(date_range.end[:2]), int(date_range.end[3:]))
    key = _month_day_key(night_date.month, night_date.day)
    if first_key <= last_key:
        return first_key <= key <= last_key
    return key >= first_key or key <= last_key  # wraps the new year: 12-20 .. 01-05


def nth_weekday_matches(rule: NthWeekday, night_date: dt.date) -> bool:
    """True if ``night_date`` is the ``rule.n``-th (or last, ``n = -1``) weekday of its month."""
    if WEEKDAYS[night_date.weekday()] != rule.weekday:
        return False
    if rule.month is not None and night_date.month != rule.month:
        return False
    if rule.n == -1:
        return (night_date + dt.timedelta(days=7)).month != night_date.month
    return (night_date.day - 1) // 7 + 1 == rule.n


def rule_matches(rule: CalendarRule, night_date: dt.date) -> bool:
    """Every condition the rule gives must match; any entry of a condition may match."""
    if rule.dates and not any(_day_matches(spec, night_date) for spec in rule.dates):
        return False
    if rule.date_ranges and not any(_range_matches(r, night_date) for r in rule.date_ranges):
        return False
    if rule.weekdays and WEEKDAYS[night_date.weekday()] not in rule.weekdays:
        return False
    return not rule.nth_weekday or any(nth_weekday_matches(n, night_date) for n in rule.nth_weekday)


def select_rule(rules: Sequence[CalendarRule], night_date: dt.date) -> int | None:
    """Index of the rule that applies to the night starting on ``night_date``: the last match."""
    chosen: int | None = None
    for index, rule in enumerate(rules):
        if rule_matches(rule, night_date):
            chosen = index
    return chosen


# --- night order and local time -----------------------------------------------------------------


def clock_minutes(clock: str) -> int:
    """Minutes after midnight of an ``HH:MM`` string."""
    return int(clock[:2]) * 60 + int(clock[3:])


def night_minutes(clock: str, *, is_end: bool = False) -> int:
    """Minutes after the night's noon of a clock time, 0..1439 (1440 for an ``is_end`` 12:00)."""
    minutes = (clock_minutes(clock) - _NOON_MIN) % _DAY_MIN
    return _DAY_MIN if is_end and minutes == 0 else minutes


@lru_cache(maxsize=64)
def zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz``, or a ``ValueError`` that says what to pass."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r}; use an IANA name such as 'Europe/London'"
        ) from None


def datetime_to_ns(moment: dt.datetime) -> int:
    """UTC epoch nanoseconds of an aware datetime, exactly (integer arithmetic)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def ns_to_datetime(time_ns: int, tz: ZoneInfo) -> dt.datetime:
    seconds, rest_ns = divmod(time_ns, NS_PER_S)
    return (_EPOCH + dt.timedelta(seconds=seconds, microseconds=rest_ns // 1000)).astimezone(tz)


def wall_clock_to_ns(wall: dt.datetime, tz: ZoneInfo) -> int:
    """First instant at which the local wall clock of ``tz`` shows ``wall`` (naive) or later.

    An ambiguous wall time (clocks going back) gives its first occurrence; a wall time that
    does not exist (clocks going forward) gives the instant of the change.
    """
    if wall.tzinfo is not None:
        raise ValueError("wall must be a naive local datetime")
    first = datetime_to_ns(wall.replace(tzinfo=tz, fold=0))
    second = datetime_to_ns(wall.replace(tzinfo=tz, fold=1))
    earlier, later = min(first, second), max(first, second)
    if ns_to_datetime(earlier, tz).replace(tzinfo=None) == wall:
        return earlier
    # Inside a gap: the wall clock passes ``wall`` somewhere in (earlier, later]; transitions
    # fall on whole seconds, so bisect on seconds for the first instant showing >= ``wall``.
    low_s, high_s = earlier // NS_PER_S, later // NS_PER_S
    while high_s - low_s > 1:
        mid_s = (low_s + high_s) // 2
        if ns_to_datetime(mid_s * NS_PER_S, tz).replace(tzinfo=None) >= wall:
            high_s = mid_s
        else:
            low_s = mid_s
    return high_s * NS_PER_S


def local_noon_ns(day: dt.date, tz: ZoneInfo) -> int:
    return wall_clock_to_ns(dt.datetime(day.year, day.month, day.day, 12), tz)


def night_clock_ns(night_date: dt.date, clock: str, tz: ZoneInfo, *, is_end: bool = False) -> int:
    """UTC instant of local clock time ``clock`` in the night starting on ``night_date``."""
    minutes = night_minutes(clock, is_end=is_end)
    start = dt.datetime(night_date.year, night_date.month, night_date.day, 12)
    return wall_clock_to_ns(start + dt.timedelta(minutes=minutes), tz)


# --- lux thresholds -----------------------------------------------------------------------------


def lux_to_zenith_deg(lux: float) -> float:
    """Solar zenith (deg) at which clear-sky horizontal illuminance falls to ``lux``.

    Log-linear between 400 lx at zenith 90.833 deg (sunset) and 3.4 lx at 96 deg (civil dusk);
    valid for thresholds within that range (see the module docstring for the source).
    """
    if not LUX_AT_CIVIL_DUSK <= lux <= LUX_AT_SUNSET:
        raise ValueError(
            f"lux threshold {lux} lx is outside the twilight model's "
            f"{LUX_AT_CIVIL_DUSK}-{LUX_AT_SUNSET} lx"
        )
    position = math.log(LUX_AT_SUNSET / lux) / math.log(LUX_AT_SUNSET / LUX_AT_CIVIL_DUSK)
    return ZENITH_SUNSET_DEG + position * (ZENITH_CIVIL_DUSK_DEG - ZENITH_SUNSET_DEG)

"""Calendar rules, night order, local time across daylight saving, and the lux model."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.policy.calendar import (
    lux_to_zenith_deg,
    night_clock_ns,
    night_minutes,
    rule_matches,
    select_rule,
    wall_clock_to_ns,
    zone,
)
from controller.policy.model import CalendarRule

LONDON = zone("Europe/London")


def _ns(text: str) -> int:
    """UTC epoch ns of an ISO instant written with an explicit Z."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000


def _rule(**kwargs: object) -> CalendarRule:
    return CalendarRule.model_validate({"profile": "p", **kwargs})


# --- rules --------------------------------------------------------------------------------------


def test_nth_weekday_finds_the_second_tuesday_only() -> None:
    rule = _rule(nth_weekday={"n": 2, "weekday": "tue"})
    # March 2026: Tuesdays are the 3rd, 10th, 17th, 24th and 31st.
    matches = [d for d in range(1, 32) if rule_matches(rule, dt.date(2026, 3, d))]
    assert matches == [10]


def test_last_weekday_of_a_month_with_five_of_them() -> None:
    rule = _rule(nth_weekday={"n": -1, "weekday": "tue", "month": 3})
    assert rule_matches(rule, dt.date(2026, 3, 31))
    assert not rule_matches(rule, dt.date(2026, 3, 24))
    # Same weekday-of-month in another month does not match when the month is given.
    assert not rule_matches(rule, dt.date(2026, 6, 30))


def test_last_friday_of_november_and_fourth_is_not_always_last() -> None:
    last = _rule(nth_weekday={"n": -1, "weekday": "fri", "month": 11})
    fourth = _rule(nth_weekday={"n": 4, "weekday": "fri", "month": 11})
    # November 2026 has Fridays on 6, 13, 20, 27: the fourth is the last.
    assert rule_matches(last, dt.date(2026, 11, 27)) and rule_matches(fourth, dt.date(2026, 11, 27))
    # November 2024 has five Fridays (1, 8, 15, 22, 29).
    assert rule_matches(last, dt.date(2024, 11, 29))
    assert not rule_matches(fourth, dt.date(2024, 11, 29))
    assert rule_matches(fourth, dt.date(2024, 11, 22))


def test_date_ranges_are_inclusive_and_yearly_ranges_wrap_the_new_year() -> None:
    fixed = _rule(date_ranges=[{"from": "2026-12-20", "to": "2027-01-05"}])
    yearly = _rule(date_ranges=[{"from": "12-20", "to": "01-05"}])
    for day, expected_fixed, expected_yearly in (
        (dt.date(2026, 12, 19), False, False),
        (dt.date(2026, 12, 20), True, True),
        (dt.date(2027, 1, 5), True, True),
        (dt.date(2027, 1, 6), False, False),
        (dt.date(2030, 1, 1), False, True),
        (dt.date(2030, 7, 1), False, False),
    ):
        assert rule_matches(fixed, day) is expected_fixed, day
        assert rule_matches(yearly, day) is expected_yearly, day


def test_yearly_and_fixed_dates() -> None:
    rule = _rule(dates=["11-05", "2026-07-04"])
    assert rule_matches(rule, dt.date(2031, 11, 5))
    assert rule_matches(rule, dt.date(2026, 7, 4))
    assert not rule_matches(rule, dt.date(2027, 7, 4))


def test_conditions_of_one_rule_must_all_match() -> None:
    # Saturdays in December only.
    rule = _rule(weekdays=["sat"], date_ranges=[{"from": "12-01", "to": "12-31"}])
    assert rule_matches(rule, dt.date(2026, 12, 5))  # a Saturday
    assert not rule_matches(rule, dt.date(2026, 12, 6))  # Sunday in December
    assert not rule_matches(rule, dt.date(2026, 11, 28))  # Saturday in November


def test_later_rules_win() -> None:
    rules = [
        _rule(),
        _rule(weekdays=["fri", "sat"]),
        _rule(dates=["2026-12-25"]),
        _rule(date_ranges=[{"from": "2026-12-24", "to": "2026-12-26"}]),
    ]
    assert select_rule(rules, dt.date(2026, 12, 1)) == 0  # a Tuesday
    assert select_rule(rules, dt.date(2026, 12, 4)) == 1  # a Friday
    # The 25th matches rules 2 and 3 (and is a Friday, rule 1): the last one wins.
    assert select_rule(rules, dt.date(2026, 12, 25)) == 3
    assert select_rule(rules[:3], dt.date(2026, 12, 25)) == 2
    assert select_rule([_rule(weekdays=["mon"])], dt.date(2026, 12, 1)) is None


def test_weekday_names_are_normalised() -> None:
    rule = _rule(weekdays=["Friday", "SAT"])
    assert rule.weekdays == ("fri", "sat")


# --- night order and daylight saving ------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "is_end", "minutes"),
    [
        ("12:00", False, 0),
        ("12:00", True, 1440),
        ("22:00", False, 600),
        ("00:00", False, 720),
        ("05:30", True, 1050),
        ("11:59", False, 1439),
    ],
)
def test_night_minutes(clock: str, is_end: bool, minutes: int) -> None:
    assert night_minutes(clock, is_end=is_end) == minutes


def test_midnight_before_and_after_the_spring_change_in_london() -> None:
    night = dt.date(2026, 3, 28)  # clocks go forward at 01:00 GMT on the 29th
    assert night_clock_ns(night, "22:00", LONDON) == _ns("2026-03-28T22:00:00Z")
    assert night_clock_ns(night, "00:00", LONDON) == _ns("2026-03-29T00:00:00Z")
    assert night_clock_ns(night, "05:30", LONDON, is_end=True) == _ns("2026-03-29T04:30:00Z")
    assert night_clock_ns(night, "12:00", LONDON, is_end=True) == _ns("2026-03-29T11:00:00Z")


def test_a_time_skipped_by_the_spring_change_happens_at_the_change() -> None:
    # 01:00-02:00 does not exist on 29 March 2026 in London; 01:30 happens at 01:00 GMT.
    wall = dt.datetime(2026, 3, 29, 1, 30)
    assert wall_clock_to_ns(wall, LONDON) == _ns("2026-03-29T01:00:00Z")
    assert wall_clock_to_ns(dt.datetime(2026, 3, 29, 2, 0), LONDON) == _ns("2026-03-29T01:00:00Z")
    assert wall_clock_to_ns(dt.datetime(2026, 3, 29, 0, 59), LONDON) == _ns("2026-03-29T00:59:00Z")


def test_a_time_repeated_by_the_autumn_change_is_its_first_occurrence() -> None:
    # 01:00-02:00 happens twice on 25 October 2026 in London (BST, then GMT).
    wall = dt.datetime(2026, 10, 25, 1, 30)
    assert wall_clock_to_ns(wall, LONDON) == _ns("2026-10-25T00:30:00Z")
    night = dt.date(2026, 10, 24)
    assert night_clock_ns(night, "00:00", LONDON) == _ns("2026-10-24T23:00:00Z")
    assert night_clock_ns(night, "05:30", LONDON) == _ns("2026-10-25T05:30:00Z")


def test_southern_hemisphere_change() -> None:
    sydney = zone("Australia/Sydney")
    # Clocks go back at 03:00 AEDT (16:00 UTC) on 5 April 2026; 02:30 happens first in AEDT.
    assert wall_clock_to_ns(dt.datetime(2026, 4, 5, 2, 30), sydney) == _ns("2026-04-04T15:30:00Z")
    # Clocks go forward at 02:00 AEST (16:00 UTC) on 4 October 2026; 02:30 does not exist.
    assert wall_clock_to_ns(dt.datetime(2026, 10, 4, 2, 30), sydney) == _ns("2026-10-03T16:00:00Z")


def test_unknown_time_zone_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Lundon'; use an IANA name"):
        zone("Europe/Lundon")


# --- lux ----------------------------------------------------------------------------------------


def test_lux_model_end_points_and_photocell_thresholds() -> None:
    assert lux_to_zenith_deg(400.0) == pytest.approx(90.833)
    assert lux_to_zenith_deg(3.4) == pytest.approx(96.0)
    assert lux_to_zenith_deg(35.0) == pytest.approx(93.473, abs=1e-3)
    assert lux_to_zenith_deg(18.0) == pytest.approx(94.194, abs=1e-3)
    # Darker threshold, deeper sun.
    assert lux_to_zenith_deg(18.0) > lux_to_zenith_deg(35.0) > lux_to_zenith_deg(70.0)
    with pytest.raises(ValueError, match="outside the twilight model"):
        lux_to_zenith_deg(1000.0)

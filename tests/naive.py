"""Slow, obviously correct twins of the numba kernels, one section per kernel module.

Each section is self-contained (its own imports and helpers) and names its functions after the
module it mirrors, e.g. ``solar_*`` for :mod:`controller.dimming._solar`. Twins are written for
clarity, one value at a time, in plain Python; the tests assert the kernels agree with them.
"""

from __future__ import annotations

# --- solar -------------------------------------------------------------------------------------
# Twin of controller/dimming/_solar.py. The solar position uses the same published equations
# (Meeus, Astronomical Algorithms, 2nd ed., ch. 22, 25, 28; NOAA General Solar Position), but the
# events are found differently: the kernel iterates the NOAA sunrise formula, this twin bisects
# the sun's zenith angle for the moment it crosses the threshold, which is what "sunrise" means.
import datetime as _solar_datetime
import math as _solar_math

_SOLAR_UNIX_EPOCH = _solar_datetime.datetime(1970, 1, 1, tzinfo=_solar_datetime.UTC)
_SOLAR_NS_PER_S = 1_000_000_000
_SOLAR_NO_EVENT_NS = -(2**63)
SOLAR_NORMAL, SOLAR_POLAR_DAY, SOLAR_POLAR_NIGHT = 0, 1, 2


def _solar_sin_deg(angle_deg: float) -> float:
    return _solar_math.sin(_solar_math.radians(angle_deg))


def _solar_cos_deg(angle_deg: float) -> float:
    return _solar_math.cos(_solar_math.radians(angle_deg))


def solar_declination_and_eqtime(time_ns: int) -> tuple[float, float]:
    """Sun's apparent declination (deg) and equation of time (minutes) at a UTC instant."""
    julian_day = 2440587.5 + time_ns / (86400 * _SOLAR_NS_PER_S)
    t = (julian_day - 2451545.0) / 36525.0  # Julian centuries since J2000.0

    # Meeus ch. 25, low accuracy solar coordinates.
    mean_longitude = (280.46646 + 36000.76983 * t + 0.0003032 * t * t) % 360.0
    mean_anomaly = 357.52911 + 35999.05029 * t - 0.0001537 * t * t
    eccentricity = 0.016708634 - 0.000042037 * t - 0.0000001267 * t * t
    equation_of_centre = (
        (1.914602 - 0.004817 * t - 0.000014 * t * t) * _solar_sin_deg(mean_anomaly)
        + (0.019993 - 0.000101 * t) * _solar_sin_deg(2 * mean_anomaly)
        + 0.000289 * _solar_sin_deg(3 * mean_anomaly)
    )
    true_longitude = mean_longitude + equation_of_centre
    omega = 125.04 - 1934.136 * t
    apparent_longitude = true_longitude - 0.00569 - 0.00478 * _solar_sin_deg(omega)

    # Meeus eq. 22.2: 23 deg 26' 21.448" - 46.8150" T - 0.00059" T^2 + 0.001813" T^3.
    mean_obliquity_arcsec = 21.448 - 46.8150 * t - 0.00059 * t**2 + 0.001813 * t**3
    mean_obliquity = 23.0 + 26.0 / 60.0 + mean_obliquity_arcsec / 3600.0
    obliquity = mean_obliquity + 0.00256 * _solar_cos_deg(omega)

    declination = _solar_math.degrees(
        _solar_math.asin(_solar_sin_deg(obliquity) * _solar_sin_deg(apparent_longitude))
    )

    # Meeus eq. 28.3 (radians), then 4 minutes of time per degree.
    y = _solar_math.tan(_solar_math.radians(obliquity / 2.0)) ** 2
    e = eccentricity
    eqtime_rad = (
        y * _solar_sin_deg(2 * mean_longitude)
        - 2 * e * _solar_sin_deg(mean_anomaly)
        + 4 * e * y * _solar_sin_deg(mean_anomaly) * _solar_cos_deg(2 * mean_longitude)
        - 0.5 * y * y * _solar_sin_deg(4 * mean_longitude)
        - 1.25 * e * e * _solar_sin_deg(2 * mean_anomaly)
    )
    return declination, 4.0 * _solar_math.degrees(eqtime_rad)


def _solar_day_start_ns(date: _solar_datetime.date) -> int:
    return (date - _SOLAR_UNIX_EPOCH.date()).days * 86400 * _SOLAR_NS_PER_S


def _solar_hour_angle_deg(time_ns: int, date: _solar_datetime.date, lon_deg: float) -> float:
    """Hour angle counted continuously from the solar noon of ``date`` (no wrap to +-180):
    true solar time (NOAA) measured in minutes from 00:00 UTC of ``date``."""
    minutes = (time_ns - _solar_day_start_ns(date)) / (60 * _SOLAR_NS_PER_S)
    eqtime = solar_declination_and_eqtime(time_ns)[1]
    true_solar_minutes = minutes + eqtime + 4.0 * lon_deg
    return true_solar_minutes / 4.0 - 180.0


def solar_zenith_deg(time_ns: int, lat_deg: float, lon_deg: float) -> float:
    """Geometric zenith angle of the sun's centre (no refraction)."""
    when = _SOLAR_UNIX_EPOCH + _solar_datetime.timedelta(microseconds=time_ns / 1000)
    declination, eqtime = solar_declination_and_eqtime(time_ns)
    true_solar_minutes = (
        when.hour * 60 + when.minute + (when.second + when.microsecond / 1e6) / 60
    ) + (eqtime + 4.0 * lon_deg)
    hour_angle = true_solar_minutes / 4.0 - 180.0
    cos_zenith = _solar_sin_deg(lat_deg) * _solar_sin_deg(declination) + _solar_cos_deg(
        lat_deg
    ) * _solar_cos_deg(declination) * _solar_cos_deg(hour_angle)
    return _solar_math.degrees(_solar_math.acos(max(-1.0, min(1.0, cos_zenith))))


def solar_elevation_deg(time_ns: int, lat_deg: float, lon_deg: float) -> float:
    """Geometric elevation of the sun's centre (no refraction)."""
    return 90.0 - solar_zenith_deg(time_ns, lat_deg, lon_deg)


def _solar_bisect(f: object, lo_ns: int, hi_ns: int) -> int:
    """Instant in [lo_ns, hi_ns] where the increasing-or-decreasing ``f`` changes sign."""
    assert callable(f)
    f_lo = f(lo_ns)
    while hi_ns - lo_ns > 1000:  # 1 microsecond
        mid = (lo_ns + hi_ns) // 2
        f_mid = f(mid)
        if (f_mid > 0) == (f_lo > 0):
            lo_ns, f_lo = mid, f_mid
        else:
            hi_ns = mid
    return (lo_ns + hi_ns) // 2


def solar_events(
    date: _solar_datetime.date, lat_deg: float, lon_deg: float, zenith_deg: float = 90.833
) -> tuple[int, int, int, int]:
    """(rise_ns, set_ns, noon_ns, status) for the day centred on the solar noon of ``date``."""
    hour = 3600 * _SOLAR_NS_PER_S
    mean_noon_ns = _solar_day_start_ns(date) + round((720.0 - 4.0 * lon_deg) * 60 * 1e9)

    # Solar noon: hour angle zero. The equation of time never exceeds 17 minutes.
    noon_ns = _solar_bisect(
        lambda t: _solar_hour_angle_deg(t, date, lon_deg), mean_noon_ns - hour, mean_noon_ns + hour
    )

    # Highest and lowest zenith angle of the day, from the declination at noon.
    declination = solar_declination_and_eqtime(noon_ns)[0]
    zenith_at_noon = abs(lat_deg - declination)
    zenith_at_midnight = 180.0 - abs(lat_deg + declination)
    if zenith_at_noon >= zenith_deg:
        return _SOLAR_NO_EVENT_NS, _SOLAR_NO_EVENT_NS, noon_ns, SOLAR_POLAR_NIGHT
    if zenith_at_midnight <= zenith_deg:
        return _SOLAR_NO_EVENT_NS, _SOLAR_NO_EVENT_NS, noon_ns, SOLAR_POLAR_DAY

    def above_threshold(t: int) -> float:
        return zenith_deg - solar_zenith_deg(t, lat_deg, lon_deg)

    events = []
    for midnight_hour_angle in (-180.0, 180.0):
        # The solar midnight before (after) noon: hour angle -180 (+180).
        midnight_ns = _solar_bisect(
            lambda t, h=midnight_hour_angle: _solar_hour_angle_deg(t, date, lon_deg) - h,
            noon_ns + round(midnight_hour_angle / 15.0) * hour - hour,
            noon_ns + round(midnight_hour_angle / 15.0) * hour + hour,
        )
        if above_threshold(midnight_ns) >= 0:
            # The sun is still up at solar midnight (the day next to polar day): the event is
            # pushed to that midnight, never invented inside the night.
            events.append(midnight_ns)
        else:
            lo, hi = sorted((midnight_ns, noon_ns))
            events.append(_solar_bisect(above_threshold, lo, hi))
    rise_ns, set_ns = events
    return min(rise_ns, noon_ns), max(set_ns, noon_ns), noon_ns, SOLAR_NORMAL


def solar_dusk_dawn(
    night_date: _solar_datetime.date,
    lat_deg: float,
    lon_deg: float,
    zenith_deg: float = 90.833,
    dusk_offset_s: float = 0,
    dawn_offset_s: float = 0,
) -> tuple[int, int, int]:
    """(dusk_ns, dawn_ns, status) of the night that begins on ``night_date``."""
    _, sunset, noon_before, status_before = solar_events(night_date, lat_deg, lon_deg, zenith_deg)
    next_date = night_date + _solar_datetime.timedelta(days=1)
    sunrise, _, noon_after, status_after = solar_events(next_date, lat_deg, lon_deg, zenith_deg)
    solar_midnight = noon_before + (noon_after - noon_before) // 2

    if status_before == SOLAR_NORMAL:
        dusk = sunset + round(dusk_offset_s * _SOLAR_NS_PER_S)
    elif status_before == SOLAR_POLAR_NIGHT:
        dusk = noon_before  # dark all day: the night starts at noon
    else:
        dusk = solar_midnight  # sun up all day: no dark evening

    if status_after == SOLAR_NORMAL:
        dawn = sunrise + round(dawn_offset_s * _SOLAR_NS_PER_S)
    elif status_after == SOLAR_POLAR_NIGHT:
        dawn = noon_after
    else:
        dawn = solar_midnight

    # A night lies between the two solar noons and may be empty.
    dusk = min(max(dusk, noon_before), noon_after)
    dawn = max(min(dawn, noon_after), dusk)
    if SOLAR_POLAR_NIGHT in (status_before, status_after):
        status = SOLAR_POLAR_NIGHT
    elif status_before == status_after == SOLAR_POLAR_DAY:
        status = SOLAR_POLAR_DAY
    else:
        status = SOLAR_NORMAL
    return dusk, dawn, status


def solar_astral_zenith_deg() -> float:
    """The zenith angle astral's sunrise/sunset use: 90 deg + the sun's apparent radius + its
    own refraction model evaluated there (about 90.789 deg, versus NOAA's 90.833 deg)."""
    from astral import refraction_at_zenith
    from astral.sun import SUN_APPARENT_RADIUS

    return 90.0 + SUN_APPARENT_RADIUS + refraction_at_zenith(90.0 + SUN_APPARENT_RADIUS)


def solar_astral_nearest_ns(
    kind: str, lat_deg: float, lon_deg: float, near_ns: int, zenith_deg: float | None = None
) -> int | None:
    """astral's sunrise (``kind="rise"``) or sunset nearest to ``near_ns``; None if astral has
    no such event within 12 h of it (astral raises ValueError on those dates).

    astral labels each event with its UTC date, whereas :mod:`controller.dimming.solar` labels
    it with the local date whose solar noon it brackets, so the UTC dates around ``near_ns``
    are all asked. ``astral.sun.sunrise``/``sunset`` can skip an event lying close to 00:00
    UTC (two consecutive dates map to the events either side of it), so the calculation they
    wrap, ``astral.sun.time_of_transit``, is asked as well. With ``zenith_deg`` given, only
    ``time_of_transit`` at that zenith without astral's refraction is used.
    """
    import astral
    import astral.sun

    direction = astral.SunDirection.RISING if kind == "rise" else astral.SunDirection.SETTING
    observer = astral.Observer(latitude=lat_deg, longitude=lon_deg)
    near_date = (_SOLAR_UNIX_EPOCH + _solar_datetime.timedelta(microseconds=near_ns // 1000)).date()
    window_ns = 12 * 3600 * _SOLAR_NS_PER_S

    def nearest(calls: list[object]) -> int | None:
        found = []
        for call in calls:
            assert callable(call)
            try:
                when = call()
            except ValueError:
                continue
            found.append(round((when - _SOLAR_UNIX_EPOCH).total_seconds() * 1e6) * 1000)
        found = [t for t in found if abs(t - near_ns) < window_ns]
        return min(found, key=lambda t: abs(t - near_ns)) if found else None

    dates = [near_date + _solar_datetime.timedelta(days=shift) for shift in (-1, 0, 1)]
    if zenith_deg is None:
        event = astral.sun.sunrise if kind == "rise" else astral.sun.sunset
        best = nearest([lambda d=d: event(observer, d) for d in dates])
        if best is not None and abs(best - near_ns) < 3600 * _SOLAR_NS_PER_S:
            return best
        zenith_deg, refraction = 90.0 + astral.sun.SUN_APPARENT_RADIUS, True
    else:
        best, refraction = None, False
    transit = nearest(
        [
            lambda d=d: astral.sun.time_of_transit(observer, d, zenith_deg, direction, refraction)
            for d in dates
        ]
    )
    if best is None or (transit is not None and abs(transit - near_ns) < abs(best - near_ns)):
        return transit
    return best


# --- end solar ---------------------------------------------------------------------------------


# --- policy ------------------------------------------------------------------------------------
# Twin of controller/policy/compile.py and calendar.py: the program of one night evaluated one
# step at a time, straight from what the policy document means. The calendar is matched by
# counting weekdays in the month, classes are looked up in a table of their own, and local
# time is read off the wall clock at each step: a clock time "has happened" once the wall
# clock has shown it or a later time during the night (a running maximum), which is the rule
# the compiler implements with time-zone arithmetic instead. Imports are local to keep the
# sections of this file independent.

POLICY_REQUIREMENT = {
    "M": [2.0, 1.5, 1.0, 0.75, 0.5, 0.3],
    "C": [50.0, 30.0, 20.0, 15.0, 10.0, 7.5],
    "P": [15.0, 10.0, 7.5, 5.0, 3.0, 2.0],
}


def _policy_position(cls: str) -> tuple[str, int]:
    """(series, position in the series, 0 = brightest)."""
    series = cls[0]
    return series, int(cls[1:]) - (0 if series == "C" else 1)


def policy_ratio(cls: str, steps_down: int, bottom: int = 5) -> float:
    """Light ratio of ``cls`` stepped ``steps_down`` classes, stopping at position ``bottom``."""
    series, here = _policy_position(cls)
    there = max(here, min(here + steps_down, bottom))
    return POLICY_REQUIREMENT[series][there] / POLICY_REQUIREMENT[series][here]


def policy_floor(policy: object, cls: str) -> float:
    overrides = {str(k): v for k, v in policy.floor_frac.items()}  # type: ignore[attr-defined]
    if cls in overrides:
        return float(overrides[cls])
    return max(0.1, policy_ratio(cls, 5))


def policy_rule_matches(rule: object, day: object) -> bool:
    import calendar
    import datetime

    assert isinstance(day, datetime.date)
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    weekday = names[day.weekday()]
    r = rule
    if r.dates:  # type: ignore[attr-defined]
        ok = False
        for spec in r.dates:  # type: ignore[attr-defined]
            if len(spec) == 5:
                ok = ok or (int(spec[:2]), int(spec[3:])) == (day.month, day.day)
            else:
                ok = ok or spec == day.isoformat()
        if not ok:
            return False
    if r.date_ranges:  # type: ignore[attr-defined]
        ok = False
        for dr in r.date_ranges:  # type: ignore[attr-defined]
            if len(dr.start) == 10:
                ok = ok or dr.start <= day.isoformat() <= dr.end
            else:
                here = day.strftime("%m-%d")
                if dr.start <= dr.end:
                    ok = ok or dr.start <= here <= dr.end
                else:
                    ok = ok or here >= dr.start or here <= dr.end
        if not ok:
            return False
    if r.weekdays and weekday not in r.weekdays:  # type: ignore[attr-defined]
        return False
    if r.nth_weekday:  # type: ignore[attr-defined]
        ok = False
        days_in_month = calendar.monthrange(day.year, day.month)[1]
        same = [
            d
            for d in range(1, days_in_month + 1)
            if datetime.date(day.year, day.month, d).weekday() == day.weekday()
        ]
        for nth in r.nth_weekday:  # type: ignore[attr-defined]
            if nth.weekday != weekday or (nth.month is not None and nth.month != day.month):
                continue
            wanted = same[-1] if nth.n == -1 else (same[nth.n - 1] if nth.n <= len(same) else 0)
            ok = ok or wanted == day.day
        if not ok:
            return False
    return True


def policy_profile_name(policy: object, day: object) -> str:
    chosen = None
    for rule in policy.calendar:  # type: ignore[attr-defined]
        if policy_rule_matches(rule, day):
            chosen = rule.profile
    assert chosen is not None
    return str(chosen)


def _policy_zenith(event: str, lux: float) -> float:
    import math

    if event in ("sunset", "sunrise"):
        return 90.833
    if event in ("civil_dusk", "civil_dawn"):
        return 96.0
    # Straight line in log(lux) from 400 lx at 90.833 deg to 3.4 lx at 96 deg.
    slope = (96.0 - 90.833) / (math.log(3.4) - math.log(400.0))
    return 90.833 + slope * (math.log(lux) - math.log(400.0))


def policy_night(
    policy: object,
    classes: list[str],
    night_date: object,
    tz_name: str,
    lat_deg: float,
    lon_deg: float,
    step_s: int,
) -> dict[str, object]:
    """Per class: program and floor lists, one value per step; plus the profile's scalars."""
    import datetime
    import zoneinfo

    import numpy as np

    from controller.dimming.solar import dusk_dawn

    assert isinstance(night_date, datetime.date)
    tz = zoneinfo.ZoneInfo(tz_name)
    noon = datetime.datetime(night_date.year, night_date.month, night_date.day, 12)
    start_s = int(noon.replace(tzinfo=tz).timestamp())
    end_s = int((noon + datetime.timedelta(days=1)).replace(tzinfo=tz).timestamp())
    n_steps = -(-(end_s - start_s) // step_s)
    profile = policy.profiles[policy_profile_name(policy, night_date)]  # type: ignore[attr-defined]
    sw = policy.switching  # type: ignore[attr-defined]

    def night_s(clock: str, is_end: bool) -> int:
        seconds = ((int(clock[:2]) - 12) % 24 * 60 + int(clock[3:])) * 60
        return 86400 if is_end and seconds == 0 else seconds

    astro = [(night_date + datetime.timedelta(days=k)) for k in (-1, 0, 1)]

    def astro_ns(point: object, evening: bool, lux: float) -> list[int]:
        out = []
        for day in astro:
            w = dusk_dawn(
                np.datetime64(day.isoformat(), "D"),
                lat_deg,
                lon_deg,
                _policy_zenith(point.event, lux),  # type: ignore[attr-defined]
                point.offset_min * 60.0 if evening else 0.0,  # type: ignore[attr-defined]
                0.0 if evening else point.offset_min * 60.0,  # type: ignore[attr-defined]
            )
            out.append(int(w.dusk_ns if evening else w.dawn_ns))
        return out

    on_clock = sw.on.event == "clock"
    off_clock = sw.off.event == "clock"
    on_ns = [] if on_clock else astro_ns(sw.on, True, sw.lux_on)
    off_ns = [] if off_clock else astro_ns(sw.off, False, sw.lux_off)

    if profile.presence:
        base = profile.presence.base_level_frac
    else:
        base = 1.0 if profile.level_frac is None else profile.level_frac
    adaptive = profile.adaptive
    k_count = len(adaptive.thresholds) if adaptive else 0

    def bottom(cls: str) -> int:
        if adaptive is None:
            return 5
        for mc in adaptive.min_class:
            if str(mc)[0] == cls[0]:
                return _policy_position(str(mc))[1]
        return 5

    program: dict[str, list[float]] = {c: [] for c in classes}
    floor: dict[str, list[float]] = {c: [] for c in classes}
    running_max_s = -1.0
    for t in range(n_steps):
        t_s = start_s + t * step_s
        wall = datetime.datetime.fromtimestamp(t_s, tz).replace(tzinfo=None)
        running_max_s = max(running_max_s, (wall - noon).total_seconds())
        t_ns = t_s * 1_000_000_000
        if on_clock and off_clock:
            lit = night_s(sw.on.at, False) <= running_max_s < night_s(sw.off.at, True)
        elif on_clock:
            lit = running_max_s >= night_s(sw.on.at, False) and t_ns < off_ns[1]
        elif off_clock:
            lit = t_ns >= on_ns[1] and running_max_s < night_s(sw.off.at, True)
        else:
            lit = any(a <= t_ns < b for a, b in zip(on_ns, off_ns, strict=True))
        step = None
        for s in profile.steps:
            if night_s(s.start, False) <= running_max_s < night_s(s.end, True):
                step = s
        for cls in classes:
            if not lit:
                level = 0.0
            elif step is None:
                level = base
            elif step.off:
                level = 0.0
            elif step.class_steps_down is not None:
                level = policy_ratio(cls, step.class_steps_down)
            else:
                level = step.level_frac
            program[cls].append(level)
            floor[cls].append(policy_floor(policy, cls) if level > 0 else 0.0)

    presence = profile.presence
    return {
        "start_ns": start_s * 1_000_000_000,
        "n_steps": n_steps,
        "program": program,
        "floor": floor,
        "class_factor": {
            c: [policy_ratio(c, k, bottom(c)) for k in range(k_count + 1)] for c in classes
        },
        "boost": presence.boost_level_frac if presence else 0.0,
        "hold_s": presence.hold_s if presence else 0.0,
    }


# --- end policy --------------------------------------------------------------------------------

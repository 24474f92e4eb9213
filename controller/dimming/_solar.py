"""Private numba kernels for the astronomical clock: solar position, sunrise, noon, sunset.

Theory of operation
-------------------
The sun's apparent position comes from the low-accuracy solar coordinates of Meeus,
*Astronomical Algorithms* (2nd ed., 1998): geometric mean longitude and mean anomaly (eq. 25.2,
25.3), orbital eccentricity (25.4), equation of the centre, apparent longitude corrected for
nutation and aberration, mean obliquity (eq. 22.2) with the same nutation correction,
declination (25.7) and the equation of time (eq. 28.3). These are the equations behind the
NOAA Global Monitoring Laboratory solar calculator; their error is about 0.01 deg in position
and a few seconds in the equation of time between 1800 and 2200. Times are used as UT (Delta T
is ignored: it moves the sun by under 0.001 deg).

Events follow the NOAA "General Solar Position Calculations" scheme: for a calendar date ``D``
at longitude ``lon`` the day is the one centred on the solar noon of ``D`` at that longitude,

    noon  = 720 - 4 lon - E(noon)                       [minutes after 00:00 UTC of D]
    rise  = 720 - 4 (lon + H(rise)) - E(rise)
    set   = 720 - 4 (lon - H(set))  - E(set)
    cos H = cos(zenith) / (cos(lat) cos(decl)) - tan(lat) tan(decl)

with ``E`` the equation of time (minutes) and ``decl`` the declination, both evaluated at the
event itself. Each equation is a fixed point ``t = g(t)`` solved by iteration; ``g`` depends on
``t`` only through the slow drift of ``decl`` and ``E``, so each step shrinks the error about a
thousandfold and a few steps reach a millisecond.

Status is decided once per date from the declination at solar noon: ``cos H >= 1`` means the
sun stays at or beyond the zenith threshold all day (polar night; the equality counts as dark),
``cos H <= -1`` means it never reaches it (polar day). On the rare days next to those, where the
declination drifts across the limit during the day, ``cos H`` is clamped to [-1, 1] at the
event: a missing sunrise becomes the preceding solar midnight, a missing sunset the following
one, so the day is never shorter than the sun allows and darkness is never invented.

Rules: arrays in, preallocated arrays out; no I/O, clock, logging or Python objects. IEEE
semantics throughout (no fastmath): the polar tests compare against exact limits.
"""

from __future__ import annotations

import math

from numba import njit, prange

from controller.dimming.config import JIT_OPTIONS, PARALLEL_OPTIONS

#: Sentinel written to rise/set when the status is not NORMAL.
NO_EVENT_NS = -9223372036854775808  # np.iinfo(np.int64).min

STATUS_NORMAL = 0
STATUS_POLAR_DAY = 1
STATUS_POLAR_NIGHT = 2

NS_PER_DAY = 86_400_000_000_000
NS_PER_MINUTE = 60_000_000_000
_UNIX_EPOCH_JD = 2440587.5  # Julian Day of 1970-01-01T00:00 UTC
_J2000_JD = 2451545.0  # Julian Day of 2000-01-01T12:00 (epoch of the Meeus series)
_DAYS_PER_CENTURY = 36525.0
_MAX_ITERATIONS = 12
_TOLERANCE_MIN = 1e-6  # 60 microseconds: far below the output resolution that matters


@njit(**JIT_OPTIONS)
def _declination_and_eqtime(day, minutes):
    """Apparent declination (deg) and equation of time (minutes) at ``minutes`` after 00:00 UTC
    of epoch day ``day`` (days since 1970-01-01).

    Meeus (1998) ch. 25 (low accuracy solar coordinates), eq. 22.2 (mean obliquity) and
    eq. 28.3 (equation of time).
    """
    jd = _UNIX_EPOCH_JD + day + minutes / 1440.0
    t = (jd - _J2000_JD) / _DAYS_PER_CENTURY  # Julian centuries since J2000.0

    mean_long_deg = (280.46646 + t * (36000.76983 + 0.0003032 * t)) % 360.0  # eq. 25.2
    mean_anom_deg = 357.52911 + t * (35999.05029 - 0.0001537 * t)  # eq. 25.3
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)  # eq. 25.4

    m_rad = math.radians(mean_anom_deg)
    centre_deg = (
        (1.914602 - t * (0.004817 + 0.000014 * t)) * math.sin(m_rad)
        + (0.019993 - 0.000101 * t) * math.sin(2.0 * m_rad)
        + 0.000289 * math.sin(3.0 * m_rad)
    )
    true_long_deg = mean_long_deg + centre_deg
    omega_rad = math.radians(125.04 - 1934.136 * t)
    apparent_long_deg = true_long_deg - 0.00569 - 0.00478 * math.sin(omega_rad)

    mean_obliquity_deg = (
        23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - 0.001813 * t))) / 60.0) / 60.0
    )
    obliquity_rad = math.radians(mean_obliquity_deg + 0.00256 * math.cos(omega_rad))

    decl_deg = math.degrees(
        math.asin(math.sin(obliquity_rad) * math.sin(math.radians(apparent_long_deg)))
    )

    y = math.tan(obliquity_rad / 2.0) ** 2
    l0_rad = math.radians(mean_long_deg)
    eqtime_rad = (
        y * math.sin(2.0 * l0_rad)
        - 2.0 * ecc * math.sin(m_rad)
        + 4.0 * ecc * y * math.sin(m_rad) * math.cos(2.0 * l0_rad)
        - 0.5 * y * y * math.sin(4.0 * l0_rad)
        - 1.25 * ecc * ecc * math.sin(2.0 * m_rad)
    )
    return decl_deg, 4.0 * math.degrees(eqtime_rad)


@njit(**JIT_OPTIONS)
def _cos_hour_angle(lat_deg, decl_deg, zenith_deg):
    """Cosine of the hour angle at which the sun's centre is at ``zenith_deg`` (NOAA eq. for
    the sunrise hour angle). Outside [-1, 1] there is no such moment that day."""
    lat = math.radians(lat_deg)
    decl = math.radians(decl_deg)
    return (math.cos(math.radians(zenith_deg)) - math.sin(lat) * math.sin(decl)) / (
        math.cos(lat) * math.cos(decl)
    )


@njit(**JIT_OPTIONS)
def _solar_noon_min(day, lon_deg):
    """Solar noon of epoch day ``day`` at ``lon_deg`` in minutes after 00:00 UTC of that day."""
    mean_noon = 720.0 - 4.0 * lon_deg
    noon = mean_noon
    for _ in range(_MAX_ITERATIONS):
        eqtime = _declination_and_eqtime(day, noon)[1]
        new = mean_noon - eqtime
        done = abs(new - noon) < _TOLERANCE_MIN
        noon = new
        if done:
            break
    return noon


@njit(**JIT_OPTIONS)
def _event_min(day, lat_deg, lon_deg, zenith_deg, noon_min, sign):
    """Sunrise (``sign = -1``) or sunset (``sign = +1``) of the day centred on ``noon_min``,
    minutes after 00:00 UTC of ``day``; ``cos H`` clamped as the module header explains."""
    t = noon_min
    for _ in range(_MAX_ITERATIONS):
        decl_deg, eqtime = _declination_and_eqtime(day, t)
        cos_h = min(1.0, max(-1.0, _cos_hour_angle(lat_deg, decl_deg, zenith_deg)))
        hour_angle_deg = math.degrees(math.acos(cos_h))
        new = 720.0 - 4.0 * (lon_deg - sign * hour_angle_deg) - eqtime
        done = abs(new - t) < _TOLERANCE_MIN
        t = new
        if done:
            break
    return t


@njit(**JIT_OPTIONS)
def _minutes_to_ns(day, minutes):
    return day * NS_PER_DAY + round(minutes * NS_PER_MINUTE)


@njit(**JIT_OPTIONS)
def _events_one(day, lat_deg, lon_deg, zenith_deg):
    """(rise_ns, set_ns, noon_ns, status) for one epoch day and place."""
    noon_min = _solar_noon_min(day, lon_deg)
    noon_ns = _minutes_to_ns(day, noon_min)
    decl_deg = _declination_and_eqtime(day, noon_min)[0]
    cos_h = _cos_hour_angle(lat_deg, decl_deg, zenith_deg)
    if cos_h >= 1.0:
        return NO_EVENT_NS, NO_EVENT_NS, noon_ns, STATUS_POLAR_NIGHT
    if cos_h <= -1.0:
        return NO_EVENT_NS, NO_EVENT_NS, noon_ns, STATUS_POLAR_DAY
    rise_ns = _minutes_to_ns(day, _event_min(day, lat_deg, lon_deg, zenith_deg, noon_min, -1.0))
    set_ns = _minutes_to_ns(day, _event_min(day, lat_deg, lon_deg, zenith_deg, noon_min, 1.0))
    # The events bracket noon by construction; guard the last nanosecond against rounding.
    return min(rise_ns, noon_ns), max(set_ns, noon_ns), noon_ns, STATUS_NORMAL


@njit(**JIT_OPTIONS)
def _sun_events_serial(day, lat_deg, lon_deg, zenith_deg, rise_ns, set_ns, noon_ns, status):
    """Events for flat, equally long arrays ``day`` (int64 epoch days), ``lat_deg``,
    ``lon_deg`` (float64) at the scalar ``zenith_deg``; writes the four output arrays."""
    for i in range(day.shape[0]):
        r, s, n, st = _events_one(day[i], lat_deg[i], lon_deg[i], zenith_deg)
        rise_ns[i] = r
        set_ns[i] = s
        noon_ns[i] = n
        status[i] = st


@njit(**PARALLEL_OPTIONS)
def _sun_events_parallel(day, lat_deg, lon_deg, zenith_deg, rise_ns, set_ns, noon_ns, status):
    """Parallel twin of :func:`_sun_events_serial` (elements are independent)."""
    for i in prange(day.shape[0]):
        r, s, n, st = _events_one(day[i], lat_deg[i], lon_deg[i], zenith_deg)
        rise_ns[i] = r
        set_ns[i] = s
        noon_ns[i] = n
        status[i] = st


@njit(**JIT_OPTIONS)
def _night_one(day, lat_deg, lon_deg, zenith_deg, dusk_offset_ns, dawn_offset_ns):
    """(dusk_ns, dawn_ns, status) of the night that starts on epoch day ``day``.

    Dusk comes from day ``day``, dawn from ``day + 1``. An end on a polar-night day is pinned to
    that day's solar noon (dark through noon); an end on a polar-day day to the solar midnight
    between the two noons (no dark period). Offsets apply only to real sunsets and sunrises. The
    result is clipped to [noon of ``day``, noon of ``day + 1``]; if offsets would put dawn before
    dusk the window is empty (dawn = dusk).
    """
    _, set0, noon0, st0 = _events_one(day, lat_deg, lon_deg, zenith_deg)
    rise1, _, noon1, st1 = _events_one(day + 1, lat_deg, lon_deg, zenith_deg)
    midnight = noon0 + (noon1 - noon0) // 2

    if st0 == STATUS_NORMAL:
        dusk = set0 + dusk_offset_ns
    elif st0 == STATUS_POLAR_NIGHT:
        dusk = noon0
    else:
        dusk = midnight

    if st1 == STATUS_NORMAL:
        dawn = rise1 + dawn_offset_ns
    elif st1 == STATUS_POLAR_NIGHT:
        dawn = noon1
    else:
        dawn = midnight

    # The window stays between the two noons, so consecutive nights never overlap; only an
    # offset longer than the half-day next to polar night can reach a noon.
    dusk = min(max(dusk, noon0), noon1)
    dawn = max(min(dawn, noon1), dusk)
    if st0 == STATUS_POLAR_NIGHT or st1 == STATUS_POLAR_NIGHT:
        night_status = STATUS_POLAR_NIGHT
    elif st0 == STATUS_POLAR_DAY and st1 == STATUS_POLAR_DAY:
        night_status = STATUS_POLAR_DAY
    else:
        night_status = STATUS_NORMAL
    return dusk, dawn, night_status


@njit(**JIT_OPTIONS)
def _dusk_dawn_serial(
    day, lat_deg, lon_deg, zenith_deg, dusk_offset_ns, dawn_offset_ns, dusk_ns, dawn_ns, status
):
    """Night windows for flat, equally long arrays; writes ``dusk_ns``, ``dawn_ns``, ``status``."""
    for i in range(day.shape[0]):
        d, w, st = _night_one(
            day[i], lat_deg[i], lon_deg[i], zenith_deg, dusk_offset_ns, dawn_offset_ns
        )
        dusk_ns[i] = d
        dawn_ns[i] = w
        status[i] = st


@njit(**PARALLEL_OPTIONS)
def _dusk_dawn_parallel(
    day, lat_deg, lon_deg, zenith_deg, dusk_offset_ns, dawn_offset_ns, dusk_ns, dawn_ns, status
):
    """Parallel twin of :func:`_dusk_dawn_serial`."""
    for i in prange(day.shape[0]):
        d, w, st = _night_one(
            day[i], lat_deg[i], lon_deg[i], zenith_deg, dusk_offset_ns, dawn_offset_ns
        )
        dusk_ns[i] = d
        dawn_ns[i] = w
        status[i] = st


@njit(**JIT_OPTIONS)
def _elevation_one(time_ns, lat_deg, lon_deg):
    """Geometric (unrefracted) elevation of the sun's centre in degrees.

    NOAA General Solar Position: true solar time = UTC minutes + E + 4 lon, hour angle =
    TST / 4 - 180, cos(zenith) = sin(lat) sin(decl) + cos(lat) cos(decl) cos(hour angle).
    """
    day = time_ns // NS_PER_DAY
    minutes = (time_ns - day * NS_PER_DAY) / NS_PER_MINUTE
    decl_deg, eqtime = _declination_and_eqtime(day, minutes)
    hour_angle = math.radians((minutes + eqtime + 4.0 * lon_deg) / 4.0 - 180.0)
    lat = math.radians(lat_deg)
    decl = math.radians(decl_deg)
    cos_zenith = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(
        hour_angle
    )
    return 90.0 - math.degrees(math.acos(min(1.0, max(-1.0, cos_zenith))))


@njit(**JIT_OPTIONS)
def _elevation_serial(time_ns, lat_deg, lon_deg, out_deg):
    """Elevation for flat, equally long arrays; writes ``out_deg``."""
    for i in range(time_ns.shape[0]):
        out_deg[i] = _elevation_one(time_ns[i], lat_deg[i], lon_deg[i])


@njit(**PARALLEL_OPTIONS)
def _elevation_parallel(time_ns, lat_deg, lon_deg, out_deg):
    """Parallel twin of :func:`_elevation_serial`."""
    for i in prange(time_ns.shape[0]):
        out_deg[i] = _elevation_one(time_ns[i], lat_deg[i], lon_deg[i])

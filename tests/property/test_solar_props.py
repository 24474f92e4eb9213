"""Properties of the astronomical clock (controller.dimming.solar), checked with hypothesis."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dimming.solar import (
    NO_EVENT_NS,
    ZENITH_CIVIL_DEG,
    ZENITH_OFFICIAL_DEG,
    SunStatus,
    dusk_dawn,
    solar_elevation_deg,
    sun_events,
)
from tests import naive

S = 1_000_000_000
HOUR = 3600 * S
DAY = 24 * HOUR

# The first example pays for loading the compiled kernels from numba's cache.
PROPS = settings(max_examples=200, deadline=None)
FEW = settings(max_examples=60, deadline=None)

dates = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2040, 12, 31))
all_dates = st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2200, 12, 30))
mid_lat = st.floats(-65.0, 65.0)
any_lat = st.floats(-90.0, 90.0)
lon = st.floats(-180.0, 180.0)
zenith = st.floats(80.0, 110.0)
offset_s = st.floats(-3 * 3600.0, 3 * 3600.0)


def day64(date: dt.date) -> np.datetime64:
    return np.datetime64(date, "D")


@PROPS
@given(dates, mid_lat, lon)
def test_within_a_minute_of_astral(date: dt.date, lat_deg: float, lon_deg: float) -> None:
    """At astral's own threshold; see tests/unit/test_solar.py for why and for the matching."""
    ev = sun_events(day64(date), lat_deg, lon_deg, zenith_deg=naive.solar_astral_zenith_deg())
    assert ev.status == SunStatus.NORMAL  # |lat| <= 65: the sun rises and sets every day
    for kind, t in (("rise", int(ev.rise_ns)), ("set", int(ev.set_ns))):
        ref = naive.solar_astral_nearest_ns(kind, lat_deg, lon_deg, t)
        if ref is None:  # astral's date wrap drops a few events within minutes of 00:00 UTC
            assert min(t % DAY, DAY - t % DAY) < 15 * 60 * S
            continue
        assert abs(ref - t) < 60 * S


@PROPS
@given(all_dates, any_lat, lon, zenith)
def test_status_and_sentinels_are_consistent(
    date: dt.date, lat_deg: float, lon_deg: float, zenith_deg: float
) -> None:
    """Any place, any date, any threshold: a status, never an exception."""
    ev = sun_events(day64(date), lat_deg, lon_deg, zenith_deg=zenith_deg)
    status = SunStatus(int(ev.status))
    if status == SunStatus.NORMAL:
        assert ev.rise_ns <= ev.noon_ns <= ev.set_ns
        assert ev.set_ns - ev.rise_ns <= DAY + 60 * S
    else:
        assert ev.rise_ns == ev.set_ns == NO_EVENT_NS
    # The sun's height at noon and at solar midnight decides the status.
    noon_elev = float(solar_elevation_deg(ev.noon_ns, lat_deg, lon_deg))
    threshold = 90.0 - zenith_deg
    if status == SunStatus.POLAR_NIGHT:
        assert noon_elev <= threshold + 1e-6
    else:
        assert noon_elev > threshold - 1e-6
    if status == SunStatus.POLAR_DAY:
        midnight_elev = solar_elevation_deg(
            int(ev.noon_ns) + np.array([-1, 1]) * 12 * HOUR, lat_deg, lon_deg
        )
        assert np.all(midnight_elev >= threshold - 0.5)  # declination drifts < 0.5 deg a day


@PROPS
@given(dates, mid_lat, lon)
def test_rise_before_noon_before_set(date: dt.date, lat_deg: float, lon_deg: float) -> None:
    ev = sun_events(day64(date), lat_deg, lon_deg)
    assert ev.status == SunStatus.NORMAL
    assert ev.rise_ns < ev.noon_ns < ev.set_ns
    # The events of a date bracket the solar noon of that date at that longitude.
    local_noon = (np.datetime64(date, "ns").view(np.int64) + 12 * HOUR) - lon_deg / 15.0 * HOUR
    assert abs(int(ev.noon_ns) - local_noon) < 17 * 60 * S  # |equation of time| < 17 min


@PROPS
@given(any_lat, lon, st.integers(-(10**9), 10**9))
def test_elevation_is_the_threshold_at_the_events(
    lat_deg: float, lon_deg: float, seed: int
) -> None:
    date = dt.date(1990, 1, 1) + dt.timedelta(days=seed % 18_600)
    ev = sun_events(day64(date), lat_deg, lon_deg)
    if ev.status != SunStatus.NORMAL:
        return
    times = np.array([ev.rise_ns, ev.set_ns])
    elev = solar_elevation_deg(times, lat_deg, lon_deg)
    # Clamped events (a day next to polar day) sit at solar midnight with the sun above it.
    at_threshold = np.abs(elev - (90.0 - ZENITH_OFFICIAL_DEG)) < 1e-4
    clamped = np.abs(np.abs(times - ev.noon_ns) - 12 * HOUR) < 60 * S
    assert np.all(at_threshold | clamped)
    assert np.all((elev >= -90.0) & (elev <= 90.0))


@PROPS
@given(dates, any_lat, lon)
def test_larger_zenith_threshold_never_shortens_the_day(
    date: dt.date, lat_deg: float, lon_deg: float
) -> None:
    official = sun_events(day64(date), lat_deg, lon_deg)
    civil = sun_events(day64(date), lat_deg, lon_deg, zenith_deg=ZENITH_CIVIL_DEG)
    order = {SunStatus.POLAR_NIGHT: 0, SunStatus.NORMAL: 1, SunStatus.POLAR_DAY: 2}
    assert order[SunStatus(int(civil.status))] >= order[SunStatus(int(official.status))]
    if official.status == civil.status == SunStatus.NORMAL:
        assert civil.rise_ns <= official.rise_ns
        assert civil.set_ns >= official.set_ns


@PROPS
@given(
    st.integers(1990, 2040),
    st.floats(0.0, 65.0),
    st.floats(0.0, 65.0),
    lon,
    st.sampled_from([6, 12]),
)
def test_solstice_day_length_is_monotone_in_latitude(
    year: int, lat_a: float, lat_b: float, lon_deg: float, month: int
) -> None:
    """At the June solstice the day lengthens towards the north pole and shortens towards the
    south pole; at the December solstice the other way round."""
    lo, hi = sorted((lat_a, lat_b))
    when = np.datetime64(f"{year}-{month:02d}-21", "D")
    lat = np.array([lo, hi, -lo, -hi])
    ev = sun_events(when, lat, lon_deg)
    length = ev.set_ns - ev.rise_ns
    summer, winter = (length[:2], length[2:]) if month == 6 else (length[2:], length[:2])
    slack = S  # equal latitudes give equal lengths to within rounding
    assert summer[1] >= summer[0] - slack
    assert winter[1] <= winter[0] + slack


@PROPS
@given(all_dates, any_lat, lon, zenith, offset_s, offset_s)
def test_dusk_dawn_window(
    date: dt.date, lat_deg: float, lon_deg: float, zenith_deg: float, dusk_s: float, dawn_s: float
) -> None:
    plain = dusk_dawn(day64(date), lat_deg, lon_deg, zenith_deg=zenith_deg)
    dusk, dawn, status = dusk_dawn(
        day64(date),
        lat_deg,
        lon_deg,
        zenith_deg=zenith_deg,
        dusk_offset_s=dusk_s,
        dawn_offset_s=dawn_s,
    )
    ev = sun_events(
        np.array([day64(date), day64(date) + 1]), lat_deg, lon_deg, zenith_deg=zenith_deg
    )
    noon0, noon1 = (int(x) for x in ev.noon_ns)
    for window in (plain, (dusk, dawn, status)):
        assert noon0 <= window[0] <= window[1] <= noon1
        length = int(window[1]) - int(window[0])
        assert 0 <= length <= DAY + 30 * S
        if window[2] == SunStatus.POLAR_DAY:
            assert length == 0
        if window[2] == SunStatus.POLAR_NIGHT:
            assert noon0 in (window[0], window[1]) or noon1 in (window[0], window[1])
    assert status == plain.status

    def clip(t: int) -> int:
        return min(max(t, noon0), noon1)

    # Offsets shift real sunsets and sunrises only, within the noon-to-noon span.
    expected_dusk = (
        clip(int(plain.dusk_ns) + round(dusk_s * S)) if ev.status[0] == 0 else int(plain.dusk_ns)
    )
    assert dusk == expected_dusk
    if ev.status[1] == SunStatus.NORMAL:
        sunrise = int(ev.rise_ns[1])
        assert dawn == max(clip(sunrise + round(dawn_s * S)), expected_dusk)
    else:
        assert dawn == max(int(plain.dawn_ns), expected_dusk)


@PROPS
@given(dates, st.floats(-60.0, 60.0), lon)
def test_mid_latitude_nights_are_real_nights(date: dt.date, lat_deg: float, lon_deg: float) -> None:
    dusk, dawn, status = dusk_dawn(
        day64(date), lat_deg, lon_deg, dusk_offset_s=600, dawn_offset_s=-600
    )
    assert status == SunStatus.NORMAL
    assert 0 < int(dawn) - int(dusk) < DAY
    # The next night starts after this one ends.
    next_dusk = dusk_dawn(day64(date) + 1, lat_deg, lon_deg, dusk_offset_s=600).dusk_ns
    assert dawn < next_dusk


@FEW
@given(all_dates, any_lat, lon, zenith)
def test_kernel_matches_slow_twin(
    date: dt.date, lat_deg: float, lon_deg: float, zenith_deg: float
) -> None:
    ev = sun_events(day64(date), lat_deg, lon_deg, zenith_deg=zenith_deg)
    rise, set_, noon, status = naive.solar_events(date, lat_deg, lon_deg, zenith_deg)
    assert int(ev.status) == status
    assert abs(int(ev.noon_ns) - noon) < S
    assert abs(int(ev.rise_ns) - rise) < S
    assert abs(int(ev.set_ns) - set_) < S

"""Astronomical clock: sunrise, solar noon, sunset, solar elevation and the night window.

The formulas are those of the NOAA Global Monitoring Laboratory solar calculator ("General
Solar Position Calculations"), built on the low-accuracy solar coordinates and equation of time
of Meeus, *Astronomical Algorithms* (2nd ed., 1998, ch. 22, 25, 28); see
:mod:`controller.dimming._solar` for the theory of operation. Position error is about 0.01 deg,
which is a few seconds of sunrise time at mid-latitudes; refraction and the sun's radius enter
only through the zenith threshold (90.833 deg = 90 deg + 34' refraction + 16' radius).

Conventions
-----------
* Times are int64 nanoseconds since 1970-01-01T00:00 UTC; dates are ``datetime64[D]``.
* Latitude is north-positive, longitude east-positive, both in degrees.
* The events of a date ``D`` are those of the day centred on the solar noon of ``D`` at the
  place's longitude (NOAA convention): sunrise is the last crossing of the zenith threshold
  before that noon, sunset the first one after it. For longitudes far from Greenwich they may
  fall on the UTC date before or after ``D``; for a place at 170 deg E the sunrise of ``D`` is on
  the evening of ``D - 1`` UTC. (``astral`` instead returns the event whose UTC date is ``D``.)
* Status is decided once per date from the declination at solar noon; see :class:`SunStatus`.

Safety rule: under doubt, prefer dark. A date on which the sun only touches the threshold counts
as polar night, and :func:`dusk_dawn` pins a night next to a polar-night day to that day's solar
noon so the lamps stay on through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from controller.dimming import _solar, config

__all__ = [
    "NO_EVENT_NS",
    "ZENITH_CIVIL_DEG",
    "ZENITH_OFFICIAL_DEG",
    "NightWindow",
    "SunEvents",
    "SunStatus",
    "dusk_dawn",
    "solar_elevation_deg",
    "sun_events",
]

I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Sunrise/sunset: the sun's upper limb on the horizon, with standard refraction (NOAA).
ZENITH_OFFICIAL_DEG: Final[float] = 90.833
#: End of civil twilight (sun 6 deg below the horizon).
ZENITH_CIVIL_DEG: Final[float] = 96.0
#: Written to ``rise_ns``/``set_ns`` where the status is not NORMAL.
NO_EVENT_NS: Final[int] = int(np.iinfo(np.int64).min)

#: Dates and times the Meeus low-accuracy series is used for (its error grows with |T|).
_FIRST_DATE = np.datetime64("1800-01-01", "D")
_LAST_DATE = np.datetime64("2200-12-31", "D")
#: Largest switching offset accepted, seconds: more is a unit mistake, not a policy.
_MAX_OFFSET_S = 6 * 3600.0


class SunStatus(IntEnum):
    """What the sun does relative to the zenith threshold on a date."""

    #: It crosses the threshold: one sunrise before solar noon and one sunset after it.
    NORMAL = 0
    #: It never goes below the threshold (zenith stays smaller): no event, no darkness.
    POLAR_DAY = 1
    #: It never rises above the threshold (zenith stays at or beyond it): dark all day.
    POLAR_NIGHT = 2


@dataclass(frozen=True, eq=False)
class SunEvents:
    """Events per date and place, all arrays of the broadcast shape of the inputs.

    ``rise_ns`` / ``set_ns`` are UTC epoch nanoseconds, :data:`NO_EVENT_NS` where ``status`` is
    not :attr:`SunStatus.NORMAL`; ``noon_ns`` (solar noon, the sun's upper transit) is always
    set; ``status`` holds :class:`SunStatus` values as int8. For NORMAL entries
    ``rise_ns <= noon_ns <= set_ns``.
    """

    rise_ns: I64
    set_ns: I64
    noon_ns: I64
    status: I8


class NightWindow(NamedTuple):
    """The dark period of one night: lamps on from ``dusk_ns`` (inclusive) to ``dawn_ns``."""

    dusk_ns: I64
    dawn_ns: I64
    status: I8


def sun_events(
    dates: npt.ArrayLike,
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    zenith_deg: float = ZENITH_OFFICIAL_DEG,
) -> SunEvents:
    """Sunrise, solar noon and sunset (NOAA / Meeus) for every date and place.

    Parameters
    ----------
    dates
        Calendar dates, ``datetime64[D]`` (any datetime64 unit holding whole days is accepted),
        1800-01-01 to 2200-12-31. The events are those around the solar noon of each date at
        the place's longitude.
    lat_deg, lon_deg
        Latitude in [-90, 90] (north positive) and longitude in [-180, 180] (east positive),
        degrees. ``dates``, ``lat_deg`` and ``lon_deg`` broadcast together (NumPy rules), e.g.
        ``dates[:, None]`` with per-place arrays of shape ``(n_places,)``.
    zenith_deg
        Zenith angle of the sun's centre that defines the events, in (0, 180) degrees:
        :data:`ZENITH_OFFICIAL_DEG` for sunrise/sunset, :data:`ZENITH_CIVIL_DEG` for civil
        dawn/dusk.

    Raises
    ------
    ValueError
        With a message saying which argument to fix and how.
    """
    days, lat, lon, shape = _prepare(
        _epoch_days(dates, "dates"),
        _real_array(lat_deg, "lat_deg", -90.0, 90.0),
        _real_array(lon_deg, "lon_deg", -180.0, 180.0),
        ("dates", "lat_deg", "lon_deg"),
    )
    zenith = _zenith(zenith_deg)
    n = days.shape[0]
    rise_ns = np.empty(n, dtype=np.int64)
    set_ns = np.empty(n, dtype=np.int64)
    noon_ns = np.empty(n, dtype=np.int64)
    status = np.empty(n, dtype=np.int8)
    kernel = (
        _solar._sun_events_parallel if n >= config.PARALLEL_MIN_LAMPS else _solar._sun_events_serial
    )
    kernel(days, lat, lon, zenith, rise_ns, set_ns, noon_ns, status)
    return SunEvents(
        rise_ns=rise_ns.reshape(shape),
        set_ns=set_ns.reshape(shape),
        noon_ns=noon_ns.reshape(shape),
        status=status.reshape(shape),
    )


def solar_elevation_deg(
    time_ns: npt.ArrayLike, lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike
) -> F64:
    """Geometric elevation of the sun's centre above the horizon, degrees (NOAA / Meeus).

    No atmospheric refraction is applied (it lifts the sun by about 0.57 deg at the horizon and
    by under 0.1 deg above 10 deg), so compare with ``90 - zenith_deg`` thresholds, not with
    apparent elevations.

    ``time_ns`` is int64 UTC epoch nanoseconds (or ``datetime64``), 1800 to 2200;
    ``lat_deg``/``lon_deg`` as in :func:`sun_events`. The three broadcast together.
    """
    times, lat, lon, shape = _prepare(
        _epoch_ns(time_ns, "time_ns"),
        _real_array(lat_deg, "lat_deg", -90.0, 90.0),
        _real_array(lon_deg, "lon_deg", -180.0, 180.0),
        ("time_ns", "lat_deg", "lon_deg"),
    )
    out = np.empty(times.shape[0], dtype=np.float64)
    kernel = (
        _solar._elevation_parallel
        if times.shape[0] >= config.PARALLEL_MIN_LAMPS
        else _solar._elevation_serial
    )
    kernel(times, lat, lon, out)
    return out.reshape(shape)


def dusk_dawn(
    night_date: npt.ArrayLike,
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    zenith_deg: float = ZENITH_OFFICIAL_DEG,
    dusk_offset_s: float = 0.0,
    dawn_offset_s: float = 0.0,
) -> NightWindow:
    """The dark window of the night that begins on local calendar date ``night_date``.

    For a NORMAL night ``dusk_ns`` is the sunset of ``night_date`` plus ``dusk_offset_s`` and
    ``dawn_ns`` the sunrise of the next date plus ``dawn_offset_s`` (both offsets are added:
    a photocell that switches on 20 min after sunset and off 20 min before sunrise is
    ``dusk_offset_s=1200, dawn_offset_s=-1200``). Offsets must be within +-6 h.

    Polar dates, where there is no sunset or sunrise to offset:

    * sun never rises on ``night_date`` (POLAR_NIGHT): dusk is that date's solar noon;
    * sun never rises on the next date: dawn is the next date's solar noon. A night between two
      polar-night dates therefore runs noon to noon, lamps on for the whole 24 h, and
      consecutive windows tile time without a gap;
    * sun never sets (POLAR_DAY): that end is pinned to the solar midnight between the two
      noons. A night between two polar-day dates has ``dusk_ns == dawn_ns``: no dark period,
      lamps off.

    The window never leaves the span between the solar noon of ``night_date`` and that of the
    next date, so consecutive windows never overlap: always
    ``noon(D) <= dusk_ns <= dawn_ns <= noon(D + 1)``, hence ``dawn_ns - dusk_ns`` is at most 24 h
    (plus the day-to-day drift of solar noon, under 30 s). An offset can reach a noon only next
    to polar night, where the sun is up for less than twice the offset; it is cut there, and
    the neighbouring night's window continues from that noon. If offsets would put dawn before
    dusk, the window is empty (``dawn_ns == dusk_ns``).

    ``status`` (int8 :class:`SunStatus` values) is POLAR_NIGHT when either date is a
    polar-night date (the window reaches a solar noon), POLAR_DAY when both dates are polar-day
    dates, NORMAL otherwise (including the nights at the edges of polar day, where one end is
    pinned to solar midnight).

    ``night_date``, ``lat_deg``, ``lon_deg`` and ``zenith_deg`` are as in :func:`sun_events`.
    """
    days, lat, lon, shape = _prepare(
        _epoch_days(night_date, "night_date", last=_LAST_DATE - np.timedelta64(1, "D")),
        _real_array(lat_deg, "lat_deg", -90.0, 90.0),
        _real_array(lon_deg, "lon_deg", -180.0, 180.0),
        ("night_date", "lat_deg", "lon_deg"),
    )
    zenith = _zenith(zenith_deg)
    dusk_offset_ns = _offset_ns(dusk_offset_s, "dusk_offset_s")
    dawn_offset_ns = _offset_ns(dawn_offset_s, "dawn_offset_s")
    n = days.shape[0]
    dusk_ns = np.empty(n, dtype=np.int64)
    dawn_ns = np.empty(n, dtype=np.int64)
    status = np.empty(n, dtype=np.int8)
    kernel = (
        _solar._dusk_dawn_parallel if n >= config.PARALLEL_MIN_LAMPS else _solar._dusk_dawn_serial
    )
    kernel(days, lat, lon, zenith, dusk_offset_ns, dawn_offset_ns, dusk_ns, dawn_ns, status)
    return NightWindow(dusk_ns.reshape(shape), dawn_ns.reshape(shape), status.reshape(shape))


# --- validation ---------------------------------------------------------------------------------


def _epoch_days(
    values: npt.ArrayLike, name: str, last: np.datetime64 = _LAST_DATE
) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        raise ValueError(
            f"{name} must be numpy datetime64 calendar dates, got dtype {arr.dtype}; "
            f"convert with np.asarray({name}, dtype='datetime64[D]')"
        )
    if np.datetime_data(arr.dtype)[0] in ("Y", "M", "W", "generic"):
        raise ValueError(
            f"{name} must be calendar dates with day resolution, got dtype {arr.dtype}; "
            f"convert with np.asarray({name}, dtype='datetime64[D]')"
        )
    if np.isnat(arr).any():
        raise ValueError(f"{name} must not contain NaT")
    days = arr.astype("datetime64[D]")
    if np.any(days.astype(arr.dtype) != arr):
        raise ValueError(
            f"{name} must be whole calendar dates (datetime64[D]), not instants: the events of "
            "a date are tied to the local solar noon, so pass the local date, e.g. "
            f"{name}.astype('datetime64[D]') after converting to local time"
        )
    if days.size and (days.min() < _FIRST_DATE or days.max() > last):
        raise ValueError(
            f"{name} must lie between {_FIRST_DATE} and {last} (range of the Meeus series used), "
            f"got {days.min()} to {days.max()}"
        )
    return days.astype(np.int64)


def _epoch_ns(values: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        if np.isnat(arr).any():
            raise ValueError(f"{name} must not contain NaT")
        arr = arr.astype("datetime64[ns]").view(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be int64 UTC epoch nanoseconds or datetime64, got dtype {arr.dtype}; "
            "floats cannot hold nanosecond timestamps exactly"
        )
    first_ns = int(_FIRST_DATE.astype("datetime64[ns]").view(np.int64))
    end_ns = int((_LAST_DATE + np.timedelta64(1, "D")).astype("datetime64[ns]").view(np.int64))
    if arr.size and (int(arr.min()) < first_ns or int(arr.max()) >= end_ns):
        raise ValueError(
            f"{name} must lie between {_FIRST_DATE} and {_LAST_DATE} (as UTC epoch "
            f"nanoseconds), got {int(arr.min())} to {int(arr.max())}"
        )
    return arr.astype(np.int64)


def _real_array(values: npt.ArrayLike, name: str, lo: float, hi: float) -> F64:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers in degrees, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if out.size and (out.min() < lo or out.max() > hi):
        hint = ""
        if name == "lat_deg" and out.min() >= -180.0 and out.max() <= 180.0:
            hint = "; are latitude and longitude swapped?"
        raise ValueError(
            f"{name} must be within [{lo:g}, {hi:g}] degrees, got {out.min():g} to "
            f"{out.max():g}{hint}"
        )
    return out


def _prepare(
    first: npt.NDArray[np.int64], lat: F64, lon: F64, names: tuple[str, str, str]
) -> tuple[npt.NDArray[np.int64], F64, F64, tuple[int, ...]]:
    """Broadcast the three inputs and flatten them into contiguous arrays for the kernels."""
    try:
        shape = np.broadcast_shapes(first.shape, lat.shape, lon.shape)
    except ValueError as err:
        raise ValueError(
            f"{names[0]}, {names[1]} and {names[2]} cannot be broadcast together (shapes "
            f"{first.shape}, {lat.shape}, {lon.shape}); pass scalars, equal shapes, or e.g. "
            f"{names[0]}[:, None] with per-place arrays of shape (n_places,)"
        ) from err
    # Always fresh, writable, contiguous copies: numba compiles one specialisation per array
    # flavour, and read-only broadcast views would otherwise add a cache entry each.
    return (
        np.array(np.broadcast_to(first, shape), dtype=np.int64, order="C").reshape(-1),
        np.array(np.broadcast_to(lat, shape), dtype=np.float64, order="C").reshape(-1),
        np.array(np.broadcast_to(lon, shape), dtype=np.float64, order="C").reshape(-1),
        shape,
    )


def _scalar(value: object, name: str) -> float:
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a single real number, got {value!r}")
    out = float(arr)
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _zenith(value: object) -> float:
    zenith = _scalar(value, "zenith_deg")
    if not 0.0 < zenith < 180.0:
        raise ValueError(
            f"zenith_deg must be strictly between 0 and 180 degrees (e.g. {ZENITH_OFFICIAL_DEG} "
            f"for sunrise/sunset, {ZENITH_CIVIL_DEG} for civil twilight), got {zenith:g}"
        )
    return zenith


def _offset_ns(value: object, name: str) -> int:
    offset_s = _scalar(value, name)
    if abs(offset_s) > _MAX_OFFSET_S:
        raise ValueError(
            f"{name} must be within +-{_MAX_OFFSET_S:g} s (6 h), got {offset_s:g}; "
            "it is in seconds, not milliseconds or nanoseconds"
        )
    return round(offset_s * 1e9)

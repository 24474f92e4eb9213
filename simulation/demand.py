"""Road users for the night simulator: hourly rates -> arrivals -> passages -> detections.

Theory of operation
-------------------
1. **Rates** (:class:`DemandModel`): users per hour arriving at each street, by mode (walk,
   cycle, drive), piecewise constant on hourly slots. They come from a documented default shape
   scaled per street (towns without counts), from the median day of a count file
   (:meth:`HourlyCounts.profile_by_hour`), or from the actual hours of a counted night. Hours
   the count source lacked are marked in ``gap``; their rates are NaN until filled.
2. **Arrivals** (:func:`draw_users`): a non-homogeneous Poisson process per street by thinning
   (Lewis and Shedler, Naval Research Logistics Quarterly 26(3), 1979): candidates arrive at a
   constant ``cap_per_h`` >= the street's rate, and a candidate at time ``t`` with mark
   ``u ~ U(0, 1)`` is a user when ``u < rate(t) / cap``; its mode is the band of ``u`` among the
   cumulative mode rates. With a fixed cap and seed, raising any rate only ever adds users.
   Every random number of the night is drawn here, into :class:`UserDraws`.
3. **Kinematics** (:func:`trace_users`), deterministic given the draws: a user enters the
   street at one end (``forward`` = the end with the lowest ``order_on_street``) and moves at
   constant speed through every lamp's zone, which reaches half-way to the neighbouring lamps
   (and as far outwards at the street's ends). Each (user, lamp) passage is one record of the
   :class:`RoadUserTrace`. A "user" is one traversal of one street; trips across several streets
   are separate users.
4. **Detection** (:func:`detect`): a sensor lamp reports a passage unless it misses it (per-mode
   probability: PIR sensors miss moving vehicles more often, DOMAIN.md "Presence-triggered light
   on demand"), after a latency; the result is :class:`controller.dimming.levels.Triggers`.
5. **Zone demand** (:func:`demand_per_h`): users per hour entering each adaptive zone per
   interval, from a trace (counted) or from the rates (expected); NaN where the counts had gaps,
   so the adaptive controller falls back to the normal class (fail bright).

Times: ``start_ns`` is UTC epoch ns; the step grid is the night program's
(:class:`controller.dimming.program.NightProgram` ``start_ns``, ``step_s``, ``n_steps``), so
``enter_step`` and trigger steps index the same steps :func:`run_night` does.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.dimming.levels import Triggers
from domain.inventory import InventoryArrays
from domain.neighbours import local_xy_m
from simulation.counts import NS_PER_S, HourlyCounts, local_hour_of, zone_info

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


class Mode(enum.IntEnum):
    """Road-user modes; the value indexes the mode axis of every per-mode array."""

    WALK = 0
    CYCLE = 1
    DRIVE = 2


N_MODES = len(Mode)

#: Relative footfall on a residential street by local hour (peak 1). Commuting peaks at 08:00
#: and 17:00; 02:00-04:00 sits at 1.3-1.5 % of the peak, inside the 1-1.5 % Leeds city-centre
#: footfall gives (DOMAIN.md; Leeds 2016 medians 25-43 people/h at 01:00-04:00 against 2,783 at
#: 13:00). An assumed shape, not a measured one: replace it with local counts where they exist.
RESIDENTIAL_FOOTFALL_SHAPE: tuple[float, ...] = (
    0.05, 0.025, 0.015, 0.013, 0.015, 0.04, 0.15, 0.45, 0.75, 0.55, 0.5, 0.55,
    0.65, 0.65, 0.6, 0.75, 0.9, 1.0, 0.85, 0.6, 0.45, 0.32, 0.2, 0.1,
)  # fmt: skip

#: Relative vehicle traffic by local hour (peak 1): the median I-94 day (2012-2018, MnDOT ATR
#: 301, de-duplicated) divided by its 16:00 peak; night 5-6 % of the peak. It is a motorway, so
#: it overstates night traffic on residential streets (DOMAIN.md): a conservative default.
I94_TRAFFIC_SHAPE: tuple[float, ...] = (
    0.110, 0.068, 0.051, 0.058, 0.130, 0.426, 0.870, 0.973, 0.878, 0.781, 0.705, 0.740,
    0.779, 0.776, 0.819, 0.899, 1.000, 0.926, 0.712, 0.541, 0.467, 0.432, 0.334, 0.205,
)  # fmt: skip


def _check_shares(values: Sequence[float], name: str) -> None:
    if len(values) != N_MODES:
        raise ValueError(f"{name} needs one value per mode (walk, cycle, drive)")


@dataclass(frozen=True, slots=True)
class ModeMix:
    """Shares of a street's users by mode; they must sum to 1."""

    walk: float
    cycle: float
    drive: float

    def __post_init__(self) -> None:
        shares = self.as_array()
        if not np.all(np.isfinite(shares)) or np.any(shares < 0):
            raise ValueError(f"mode shares must be >= 0, got {shares.tolist()}")
        if abs(float(shares.sum()) - 1.0) > 1e-9:
            raise ValueError(f"mode shares must sum to 1, got {float(shares.sum())!r}")

    def as_array(self) -> F64:
        return np.array([self.walk, self.cycle, self.drive], dtype=np.float64)


#: Pedestrian counters count people on foot; some of them cycle (an assumed 10 %).
FOOTFALL_MIX = ModeMix(walk=0.9, cycle=0.1, drive=0.0)
#: Traffic counters count motor vehicles.
TRAFFIC_MIX = ModeMix(walk=0.0, cycle=0.0, drive=1.0)


@dataclass(frozen=True, slots=True)
class ModeSpeeds:
    """Speed of each mode: uniform in ``mean_mps +- jitter_mps`` (walk, cycle, drive).

    Defaults: walking 1.4 m/s, cycling 5 m/s, driving 11-13 m/s (25-30 mph streets).
    """

    mean_mps: tuple[float, float, float] = (1.4, 5.0, 12.0)
    jitter_mps: tuple[float, float, float] = (0.3, 1.0, 1.0)

    def __post_init__(self) -> None:
        _check_shares(self.mean_mps, "mean_mps")
        _check_shares(self.jitter_mps, "jitter_mps")
        for mean, jitter in zip(self.mean_mps, self.jitter_mps, strict=True):
            if not (math.isfinite(mean) and math.isfinite(jitter) and 0 <= jitter < mean):
                raise ValueError(
                    f"each speed needs 0 <= jitter_mps < mean_mps so that every user moves, "
                    f"got mean {mean!r} and jitter {jitter!r}"
                )


@dataclass(frozen=True, slots=True)
class SensorModel:
    """How presence sensors see road users (all values configurable defaults).

    ``miss_prob`` per mode (walk, cycle, drive): field tests found PIR sensors miss moving
    vehicles (DOMAIN.md); 0.05 / 0.1 / 0.3 are assumed values, not measurements. A detection is
    reported ``latency_s`` +- ``latency_jitter_s`` (uniform, at least 0) after the user enters
    the lamp's zone, rounded to whole steps. ``retrigger_s`` > 0 repeats the detection that
    often while the user stays in the zone, as a PIR does while it sees motion.
    """

    miss_prob: tuple[float, float, float] = (0.05, 0.10, 0.30)
    latency_s: float = 1.0
    latency_jitter_s: float = 0.25
    retrigger_s: float = 0.0

    def __post_init__(self) -> None:
        _check_shares(self.miss_prob, "miss_prob")
        if not all(0.0 <= p <= 1.0 for p in self.miss_prob):
            raise ValueError(f"miss_prob values are probabilities in [0, 1], got {self.miss_prob}")
        for name in ("latency_s", "latency_jitter_s", "retrigger_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


# --- rates -------------------------------------------------------------------------------------

#: A guard against building rates for years of counts at once (~800 MB of float64).
_MAX_RATE_CELLS = 100_000_000


def _per_street(value: npt.ArrayLike, n_streets: int, name: str) -> F64:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n_streets, float(array))
    if array.shape != (n_streets,):
        raise ValueError(
            f"{name} must be one number or one per street ({n_streets}), got {array.shape}"
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return array


def _mix_array(mix: ModeMix | npt.ArrayLike, n_streets: int) -> F64:
    """``[street, mode]`` shares from one mix or one row per street."""
    if isinstance(mix, ModeMix):
        return np.broadcast_to(mix.as_array(), (n_streets, N_MODES)).copy()
    array = np.asarray(mix, dtype=np.float64)
    if array.shape != (n_streets, N_MODES):
        raise ValueError(f"mode mix must be a ModeMix or [street={n_streets}, 3] shares")
    if (
        not np.all(np.isfinite(array))
        or np.any(array < 0)
        or np.any(np.abs(array.sum(1) - 1) > 1e-9)
    ):
        raise ValueError("each street's mode shares must be >= 0 and sum to 1")
    return array


def _hour_grid(start_ns: int, n_hours: int, tz: str) -> I8:
    """Local hour at the middle of each hourly slot (the middle, for half-hour zones)."""
    if n_hours < 0:
        raise ValueError(f"n_hours must be >= 0, got {n_hours}")
    middles = int(start_ns) + (np.arange(n_hours, dtype=np.int64) * 3600 + 1800) * NS_PER_S
    return local_hour_of(middles, tz)


@dataclass(frozen=True, eq=False)
class DemandModel:
    """Users per hour arriving at each street, by mode, on hourly slots.

    ``rate_per_h[mode, street, k]`` applies during ``[start_ns + k * slot_s, ... + slot_s)``
    (UTC epoch ns, seconds). ``gap[street, k]`` is True where the count source had no data;
    rates there are NaN unless filled (:meth:`with_gaps_filled`), and zone demand there stays NaN.
    """

    start_ns: int
    rate_per_h: F64
    gap: B
    slot_s: float = 3600.0
    source: str = ""

    def __post_init__(self) -> None:
        rate, gap = np.asarray(self.rate_per_h), np.asarray(self.gap)
        if rate.dtype != np.float64 or rate.ndim != 3 or rate.shape[0] != N_MODES:
            raise ValueError(f"rate_per_h must be float64 [mode=3, street, slot], got {rate.shape}")
        if gap.dtype != np.bool_ or gap.shape != rate.shape[1:]:
            raise ValueError(f"gap must be bool [street, slot] = {rate.shape[1:]}, got {gap.shape}")
        slot_ns = self.slot_s * NS_PER_S
        if not (self.slot_s > 0 and slot_ns == round(slot_ns)):
            raise ValueError(f"slot_s must be a positive whole number of ns, got {self.slot_s!r}")
        if np.any(np.isinf(rate)) or np.any(rate < 0):
            raise ValueError("rate_per_h must be finite and >= 0 (NaN only for count gaps)")
        if np.any(np.isnan(rate).any(axis=0) & ~gap):
            raise ValueError("rate_per_h is NaN outside a gap; mark count gaps in gap")
        for name, array in (("rate_per_h", rate), ("gap", gap)):
            view = array.view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)

    @property
    def n_streets(self) -> int:
        return int(self.rate_per_h.shape[1])

    @property
    def n_slots(self) -> int:
        return int(self.rate_per_h.shape[2])

    @property
    def slot_ns(self) -> int:
        return round(self.slot_s * NS_PER_S)

    @property
    def end_ns(self) -> int:
        return int(self.start_ns) + self.n_slots * self.slot_ns

    @property
    def total_rate_per_h(self) -> F64:
        """``[street, slot]`` all modes together."""
        return np.asarray(self.rate_per_h.sum(axis=0), dtype=np.float64)

    @classmethod
    def from_hourly_shape(
        cls,
        shape_per_h: npt.ArrayLike,
        scale: npt.ArrayLike,
        mix: ModeMix | npt.ArrayLike,
        *,
        n_streets: int,
        start_ns: int,
        n_hours: int,
        tz: str,
        source: str = "hourly shape",
    ) -> DemandModel:
        """``rate = scale[street] * shape[street, local hour] * mix[street, mode]``.

        ``shape_per_h`` is ``[24]`` (shared) or ``[street, 24]``; NaN entries (a profile hour
        without counts) become gaps.
        """
        shape = np.asarray(shape_per_h, dtype=np.float64)
        if shape.shape == (24,):
            shape = np.broadcast_to(shape, (n_streets, 24))
        if shape.shape != (n_streets, 24):
            raise ValueError(
                f"shape_per_h must be [24] or [street={n_streets}, 24], got {shape.shape}"
            )
        if np.any(np.isinf(shape)) or np.any(shape < 0):
            raise ValueError("shape_per_h must be >= 0 (NaN for hours without data)")
        zone_info(tz)
        hours = _hour_grid(start_ns, n_hours, tz)
        scale_s = _per_street(scale, n_streets, "scale")
        shares = _mix_array(mix, n_streets)
        base = scale_s[:, None] * shape[:, hours]  # [street, slot]
        rate = shares.T[:, :, None] * base[None, :, :]
        # 0 * NaN is NaN: a street with no users of a mode still has a gap, not a rate.
        return cls(int(start_ns), np.ascontiguousarray(rate), np.isnan(base), 3600.0, source)

    @classmethod
    def synthetic(
        cls,
        n_streets: int,
        *,
        start_ns: int,
        n_hours: int,
        tz: str,
        footfall_peak_per_h: npt.ArrayLike,
        traffic_peak_per_h: npt.ArrayLike,
        cycle_share: float = 0.1,
        footfall_shape: Sequence[float] = RESIDENTIAL_FOOTFALL_SHAPE,
        traffic_shape: Sequence[float] = I94_TRAFFIC_SHAPE,
    ) -> DemandModel:
        """Default shapes for a town without counts: people on foot (``cycle_share`` of them
        cycling) follow ``footfall_shape``, vehicles ``traffic_shape``; peaks per street."""
        if not 0.0 <= cycle_share <= 1.0:
            raise ValueError(f"cycle_share must be within [0, 1], got {cycle_share!r}")
        people = cls.from_hourly_shape(
            _normalised(footfall_shape, "footfall_shape"),
            footfall_peak_per_h,
            ModeMix(1.0 - cycle_share, cycle_share, 0.0),
            n_streets=n_streets,
            start_ns=start_ns,
            n_hours=n_hours,
            tz=tz,
            source="synthetic footfall",
        )
        vehicles = cls.from_hourly_shape(
            _normalised(traffic_shape, "traffic_shape"),
            traffic_peak_per_h,
            TRAFFIC_MIX,
            n_streets=n_streets,
            start_ns=start_ns,
            n_hours=n_hours,
            tz=tz,
            source="synthetic traffic",
        )
        return people.combined(vehicles)

    @classmethod
    def from_counts(
        cls,
        counts: HourlyCounts,
        site_of_street: npt.ArrayLike | Sequence[str],
        scale: npt.ArrayLike,
        *,
        mix: ModeMix | npt.ArrayLike | None = None,
    ) -> DemandModel:
        """The counted hours themselves (e.g. ``counts.night(date)``), on the counts' grid.

        Street ``s`` gets ``scale[s]`` times the count of site ``site_of_street[s]`` (an index
        or a site name; -1 or "" = no users from this source). ``mix`` defaults to
        :data:`FOOTFALL_MIX` or :data:`TRAFFIC_MIX` by ``counts.kind``.
        """
        sites = _site_indices(counts, site_of_street)
        n_streets = len(sites)
        if N_MODES * n_streets * counts.n_hours > _MAX_RATE_CELLS:
            raise ValueError(
                f"{counts.n_hours} hours for {n_streets} streets is too much to hold as rates; "
                "take the night you need first, e.g. counts.night(date)"
            )
        scale_s = _per_street(scale, n_streets, "scale")
        shares = _mix_array(_default_mix(counts, mix), n_streets)
        padded = np.vstack((counts.counts, np.zeros((1, counts.n_hours))))
        base = scale_s[:, None] * padded[sites]  # site -1 picks the zero row
        rate = shares.T[:, :, None] * base[None, :, :]
        start = int(counts.hour_start_ns[0]) if counts.n_hours else 0
        return cls(start, np.ascontiguousarray(rate), np.isnan(base), 3600.0, counts.report.source)

    @classmethod
    def from_profile(
        cls,
        counts: HourlyCounts,
        site_of_street: npt.ArrayLike | Sequence[str],
        scale: npt.ArrayLike,
        *,
        start_ns: int,
        n_hours: int,
        tz: str | None = None,
        mix: ModeMix | npt.ArrayLike | None = None,
    ) -> DemandModel:
        """A typical night: each site's median count by local hour
        (:meth:`HourlyCounts.profile_by_hour`) applied by local hour in ``tz`` (default the
        counts' zone), scaled per street as in :meth:`from_counts`."""
        sites = _site_indices(counts, site_of_street)
        profile = np.vstack((counts.profile_by_hour(), np.zeros((1, 24))))
        return cls.from_hourly_shape(
            profile[sites],
            scale,
            _default_mix(counts, mix),
            n_streets=len(sites),
            start_ns=start_ns,
            n_hours=n_hours,
            tz=tz or counts.tz,
            source=f"median day of {counts.report.source or counts.kind}",
        )

    def _check_same_grid(self, other: DemandModel) -> None:
        if (self.start_ns, self.slot_s, self.rate_per_h.shape) != (
            other.start_ns,
            other.slot_s,
            other.rate_per_h.shape,
        ):
            raise ValueError(
                "demand models must share start_ns, slot_s and [mode, street, slot] shape, got "
                f"{(self.start_ns, self.slot_s, self.rate_per_h.shape)} and "
                f"{(other.start_ns, other.slot_s, other.rate_per_h.shape)}"
            )

    def combined(self, *others: DemandModel) -> DemandModel:
        """Sum of independent sources (e.g. footfall plus traffic); a gap in any is a gap."""
        rate, gap = self.rate_per_h.copy(), self.gap.copy()
        for other in others:
            self._check_same_grid(other)
            rate += other.rate_per_h
            gap |= other.gap
        sources = " + ".join(m.source for m in (self, *others) if m.source)
        return DemandModel(self.start_ns, rate, gap, self.slot_s, sources)

    def with_gaps_filled(self, fallback: DemandModel) -> DemandModel:
        """NaN rates replaced by ``fallback``'s (e.g. :meth:`from_profile` on the same grid).

        ``gap`` is kept, so zone demand still reports those hours as unknown.
        """
        self._check_same_grid(fallback)
        rate = np.where(np.isnan(self.rate_per_h), fallback.rate_per_h, self.rate_per_h)
        if np.any(np.isnan(rate)):
            raise ValueError("the fallback model has gaps where this one does; fill it first")
        return DemandModel(self.start_ns, rate, self.gap.copy(), self.slot_s, self.source)


def _normalised(shape: Sequence[float], name: str) -> F64:
    array = np.asarray(shape, dtype=np.float64)
    if (
        array.shape != (24,)
        or not np.all(np.isfinite(array))
        or np.any(array < 0)
        or array.max() <= 0
    ):
        raise ValueError(f"{name} must be 24 finite values >= 0 (one per local hour), not all 0")
    return np.asarray(array / array.max(), dtype=np.float64)


def _default_mix(
    counts: HourlyCounts, mix: ModeMix | npt.ArrayLike | None
) -> ModeMix | npt.ArrayLike:
    if mix is not None:
        return mix
    return FOOTFALL_MIX if counts.kind == "footfall" else TRAFFIC_MIX


def _site_indices(counts: HourlyCounts, site_of_street: npt.ArrayLike | Sequence[str]) -> I64:
    """Row of ``counts`` for each street; ``counts.n_sites`` (a zero row) for no site."""
    if (
        isinstance(site_of_street, Sequence)
        and site_of_street
        and isinstance(site_of_street[0], str)
    ):
        names = [str(name) for name in site_of_street]
        return np.array(
            [counts.n_sites if not name else counts.site_index(name) for name in names],
            dtype=np.int64,
        ).reshape(-1)
    sites = np.asarray(site_of_street, dtype=np.int64).reshape(-1)
    if sites.size and (sites.min() < -1 or sites.max() >= counts.n_sites):
        raise ValueError(f"site_of_street values must index the {counts.n_sites} sites, or be -1")
    return np.where(sites < 0, counts.n_sites, sites)


# --- streets -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StreetGeometry:
    """Lamps in street order with their zones, as CSR arrays over streets.

    Street ``s`` holds ordered positions ``street_ptr[s]:street_ptr[s + 1]``; at each position,
    ``lamp`` is the inventory index, ``along_m`` the distance along the street from its first
    lamp (sum of straight lamp-to-lamp links), and ``zone_start_m``/``zone_end_m`` the stretch
    in which a user counts as passing that lamp.
    """

    street_ptr: I64
    lamp: I32
    along_m: F64
    zone_start_m: F64
    zone_end_m: F64
    n_lamps: int

    def __post_init__(self) -> None:
        n = len(self.lamp)
        if (
            len(self.street_ptr) < 1
            or int(self.street_ptr[0]) != 0
            or int(self.street_ptr[-1]) != n
        ):
            raise ValueError("street_ptr must be a CSR pointer array from 0 to the number of lamps")
        for name in ("along_m", "zone_start_m", "zone_end_m"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have one value per ordered lamp ({n})")
        if np.any(self.zone_end_m < self.zone_start_m):
            raise ValueError("every zone must end at or after its start")

    @property
    def n_streets(self) -> int:
        return len(self.street_ptr) - 1

    @property
    def lamps_per_street(self) -> I64:
        return np.diff(self.street_ptr)

    def street_of_position(self) -> I32:
        """The street of each ordered position."""
        return np.repeat(np.arange(self.n_streets, dtype=np.int32), self.lamps_per_street)

    def street_of_lamp(self) -> I32:
        """The street of each inventory lamp (-1 for lamps on no street)."""
        out = np.full(self.n_lamps, -1, dtype=np.int32)
        out[self.lamp] = self.street_of_position()
        return out

    @classmethod
    def from_xy(
        cls,
        x_m: npt.ArrayLike,
        y_m: npt.ArrayLike,
        street_index: npt.ArrayLike,
        order_on_street: npt.ArrayLike,
        *,
        n_streets: int | None = None,
        lone_half_zone_m: float = 15.0,
        max_half_zone_m: float | None = None,
    ) -> StreetGeometry:
        """Street order from ``(street_index, order_on_street)`` (ties by lamp index).

        A zone reaches half-way to each neighbouring lamp; the first and last lamps reach as far
        outwards as inwards, and a street's only lamp ``lone_half_zone_m`` each way.
        ``max_half_zone_m`` caps each half (long unlit stretches then belong to no lamp).
        """
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        street = np.asarray(street_index, dtype=np.int64)
        order_key = np.asarray(order_on_street, dtype=np.int64)
        n = len(x)
        if not (x.shape == y.shape == street.shape == order_key.shape == (n,)):
            raise ValueError("x_m, y_m, street_index and order_on_street need one value per lamp")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("lamp positions must be finite; drop lamps without a position first")
        if n and street.min() < 0:
            raise ValueError("street_index must be >= 0")
        if not (math.isfinite(lone_half_zone_m) and lone_half_zone_m > 0):
            raise ValueError(f"lone_half_zone_m must be > 0 metres, got {lone_half_zone_m!r}")
        if max_half_zone_m is not None and not max_half_zone_m > 0:
            raise ValueError(f"max_half_zone_m must be > 0 metres or None, got {max_half_zone_m!r}")
        needed = int(street.max()) + 1 if n else 0
        n_streets = needed if n_streets is None else n_streets
        if n_streets < needed:
            raise ValueError(f"n_streets={n_streets} but street_index reaches {needed - 1}")
        position = np.lexsort((np.arange(n), order_key, street))
        s = street[position]
        ptr = np.zeros(n_streets + 1, dtype=np.int64)
        np.cumsum(np.bincount(s, minlength=n_streets), out=ptr[1:])
        link = np.hypot(np.diff(x[position]), np.diff(y[position]))
        same = s[1:] == s[:-1]
        link = np.where(same, link, 0.0)
        along = np.concatenate(([0.0], np.cumsum(link)))
        # Restart the distance at each street's first lamp.
        first = ptr[:-1][np.diff(ptr) > 0]
        along -= np.repeat(along[first], np.diff(ptr)[np.diff(ptr) > 0])
        half_link = np.concatenate((link / 2.0, [0.0]))
        behind = np.concatenate(([0.0], link / 2.0))  # half the link to the previous lamp
        ahead = half_link  # half the link to the next lamp
        has_behind = np.concatenate(([False], same))
        has_ahead = np.concatenate((same, [False]))
        lone = ~has_behind & ~has_ahead
        behind = np.where(has_behind, behind, np.where(lone, lone_half_zone_m, ahead))
        ahead = np.where(has_ahead, ahead, np.where(lone, lone_half_zone_m, behind))
        if max_half_zone_m is not None:
            behind = np.minimum(behind, max_half_zone_m)
            ahead = np.minimum(ahead, max_half_zone_m)
        return cls(ptr, position.astype(np.int32), along, along - behind, along + ahead, n)

    @classmethod
    def from_inventory(
        cls,
        inventory: InventoryArrays,
        *,
        lone_half_zone_m: float = 15.0,
        max_half_zone_m: float | None = None,
    ) -> StreetGeometry:
        """Streets and order from the inventory; positions via :func:`local_xy_m`."""
        x_m, y_m = local_xy_m(inventory.lon_deg, inventory.lat_deg)
        n_streets = max(
            len(inventory.street_names),
            int(inventory.street_index.max()) + 1 if len(inventory) else 0,
        )
        return cls.from_xy(
            x_m,
            y_m,
            inventory.street_index,
            inventory.order_on_street,
            n_streets=n_streets,
            lone_half_zone_m=lone_half_zone_m,
            max_half_zone_m=max_half_zone_m,
        )


# --- arrivals ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UserDraws:
    """Every random quantity of a night's users, in order of arrival.

    ``arrive_s``: seconds after ``start_ns`` at which the user reaches the start of the street's
    first zone (its entry end); ``forward``: enters at the lowest-order end. The step grid
    (``start_ns``, ``step_s``, ``n_steps``) is the program's.
    """

    street: I32
    arrive_s: F64
    forward: B
    mode: I8
    speed_mps: F64
    start_ns: int
    step_s: float
    n_steps: int

    def __post_init__(self) -> None:
        n = len(self.street)
        for name in ("arrive_s", "forward", "mode", "speed_mps"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"UserDraws.{name} must have one value per user ({n})")
        if n and (np.any(self.speed_mps <= 0) or not np.all(np.isfinite(self.arrive_s))):
            raise ValueError("speeds must be > 0 and arrival times finite")

    @property
    def n_users(self) -> int:
        return len(self.street)


def _window(demand: DemandModel, start_ns: int, n_steps: int, step_s: float) -> float:
    """Seconds from the model's start to the window's start, after checking coverage."""
    if n_steps < 0 or not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"need n_steps >= 0 and step_s > 0, got {n_steps} and {step_s!r}")
    end_ns = int(start_ns) + round(n_steps * step_s * NS_PER_S)
    if int(start_ns) < demand.start_ns or end_ns > demand.end_ns:
        raise ValueError(
            f"the window {start_ns}..{end_ns} ns is not inside the demand model's "
            f"{demand.start_ns}..{demand.end_ns} ns; build the model over the whole night"
        )
    return (int(start_ns) - demand.start_ns) / NS_PER_S


def draw_users(
    demand: DemandModel,
    *,
    start_ns: int,
    n_steps: int,
    rng: np.random.Generator,
    step_s: float = 1.0,
    speeds: ModeSpeeds | None = None,
    cap_per_h: npt.ArrayLike | None = None,
) -> UserDraws:
    """Users arriving in ``[start_ns, start_ns + n_steps * step_s)``, by thinning.

    ``cap_per_h`` (per street, or one number) is the candidate rate; it must be at least the
    street's highest total rate in the window, which is the default. Give the same cap and seed
    to compare demand models: raising any rate then only adds users. Users already on a street
    when the window opens are not modelled.
    """
    speeds = speeds or ModeSpeeds()
    offset_s = _window(demand, start_ns, n_steps, step_s)
    duration_s = n_steps * step_s
    first_slot = math.floor(offset_s / demand.slot_s)
    last_slot = max(first_slot, math.ceil((offset_s + duration_s) / demand.slot_s) - 1)
    inside = demand.rate_per_h[:, :, first_slot : last_slot + 1]
    if np.any(np.isnan(inside)):
        streets = np.flatnonzero(np.isnan(inside).any(axis=(0, 2)))
        raise ValueError(
            f"{len(streets)} streets (first: {streets[:5].tolist()}) have count gaps in the window; "
            "fill them first with DemandModel.with_gaps_filled(DemandModel.from_profile(...))"
        )
    peak = inside.sum(axis=0).max(axis=1) if inside.shape[2] else np.zeros(demand.n_streets)
    if cap_per_h is None:
        cap = peak
    else:
        cap = _per_street(cap_per_h, demand.n_streets, "cap_per_h")
        if np.any(cap < peak * (1 - 1e-12)):
            worst = int(np.argmax(peak - cap))
            raise ValueError(
                f"cap_per_h must be at least each street's highest rate; street {worst} peaks at "
                f"{peak[worst]:.6g}/h above its cap {cap[worst]:.6g}/h"
            )

    n_candidates = rng.poisson(cap * duration_s / 3600.0)
    total = int(n_candidates.sum())
    street = np.repeat(np.arange(demand.n_streets, dtype=np.int32), n_candidates)
    arrive_s = rng.random(total) * duration_s
    mark = rng.random(total)
    direction = rng.random(total)
    speed_u = rng.random(total)

    slot = np.minimum(((arrive_s + offset_s) // demand.slot_s).astype(np.int64), demand.n_slots - 1)
    # Cumulative mode rates as fractions of the cap: mark bands pick keep-or-not and the mode.
    bands = np.cumsum(demand.rate_per_h[:, street, slot], axis=0) / np.maximum(cap[street], 1e-300)
    keep = mark < bands[-1]
    mode = ((mark >= bands[0]).astype(np.int8) + (mark >= bands[1]).astype(np.int8))[keep]
    street, arrive_s = street[keep], arrive_s[keep]
    forward = direction[keep] < 0.5
    mean = np.asarray(speeds.mean_mps)[mode]
    jitter = np.asarray(speeds.jitter_mps)[mode]
    speed = mean + jitter * (2.0 * speed_u[keep] - 1.0)
    order = np.lexsort((street, arrive_s))
    return UserDraws(
        street=street[order],
        arrive_s=arrive_s[order],
        forward=forward[order],
        mode=mode[order],
        speed_mps=speed[order],
        start_ns=int(start_ns),
        step_s=float(step_s),
        n_steps=int(n_steps),
    )


# --- kinematics --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RoadUserTrace:
    """Every (user, lamp) passage of a night, grouped by user in passing order.

    Record ``r``: user ``user[r]`` is within lamp ``lamp[r]``'s zone from step ``enter_step[r]``
    to step ``leave_step[r]`` inclusive (``leave_step`` is clipped to the last step; passages
    entering after the window are dropped). Per user: ``user_mode`` (:class:`Mode`) and
    ``user_street``. ``demand`` (if known) marks the hours the counts lacked.
    """

    user: I32
    lamp: I32
    enter_step: I64
    leave_step: I64
    user_mode: I8
    user_street: I32
    start_ns: int
    step_s: float
    n_steps: int
    streets: StreetGeometry
    demand: DemandModel | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_mode)

    @property
    def n_records(self) -> int:
        return len(self.user)


def _passage_offsets(streets: StreetGeometry, draws: UserDraws) -> tuple[I32, I64, F64, F64]:
    """Per record: user, ordered position, and metres from the user's entry point to the
    zone's entry and exit edges."""
    per_user = streets.lamps_per_street[draws.street]
    user = np.repeat(np.arange(draws.n_users, dtype=np.int32), per_user)
    passed_before = np.repeat(np.cumsum(per_user) - per_user, per_user)
    k = np.arange(len(user), dtype=np.int64) - passed_before  # k-th lamp this user passes
    first = streets.street_ptr[draws.street][user]
    count = per_user[user]
    forward = draws.forward[user]
    position = first + np.where(forward, k, count - 1 - k)
    path_start = streets.zone_start_m[first]
    path_end = streets.zone_end_m[first + count - 1]
    zone_start, zone_end = streets.zone_start_m[position], streets.zone_end_m[position]
    enter_m = np.where(forward, zone_start - path_start, path_end - zone_end)
    leave_m = np.where(forward, zone_end - path_start, path_end - zone_start)
    return user, position, enter_m, leave_m


def trace_users(
    streets: StreetGeometry, draws: UserDraws, *, demand: DemandModel | None = None
) -> RoadUserTrace:
    """Deterministic passages of ``draws`` along ``streets`` (see the module docstring)."""
    if len(draws.street) and int(draws.street.max()) >= streets.n_streets:
        raise ValueError(
            f"draws refer to street {int(draws.street.max())} but the geometry has "
            f"{streets.n_streets} streets; draw from a demand model of these streets"
        )
    user, position, enter_m, leave_m = _passage_offsets(streets, draws)
    speed = draws.speed_mps[user]
    enter_s = draws.arrive_s[user] + enter_m / speed
    leave_s = draws.arrive_s[user] + leave_m / speed
    enter_step = np.floor(enter_s / draws.step_s).astype(np.int64)
    leave_step = np.floor(leave_s / draws.step_s).astype(np.int64)
    keep = enter_step < draws.n_steps
    return RoadUserTrace(
        user=user[keep],
        lamp=streets.lamp[position[keep]],
        enter_step=enter_step[keep],
        leave_step=np.minimum(leave_step[keep], draws.n_steps - 1),
        user_mode=draws.mode.copy(),
        user_street=draws.street.copy(),
        start_ns=draws.start_ns,
        step_s=draws.step_s,
        n_steps=draws.n_steps,
        streets=streets,
        demand=demand,
    )


# --- detection ---------------------------------------------------------------------------------


def detect(
    trace: RoadUserTrace,
    rng: np.random.Generator,
    *,
    sensors: SensorModel | None = None,
    sensor_lamps: npt.ArrayLike | None = None,
) -> Triggers:
    """Presence detections of ``trace`` as :class:`Triggers` for :func:`run_night`.

    ``sensor_lamps``: a bool mask over the inventory or lamp indices (None = every lamp has a
    sensor). Draws are made for every passage, sensor or not, so that fewer sensors give a
    subset of the detections for the same seed. Triggers are sorted by step, then lamp.
    """
    sensors = sensors or SensorModel()
    n_lamps = trace.streets.n_lamps
    if sensor_lamps is None:
        has_sensor = np.ones(n_lamps, dtype=np.bool_)
    else:
        given = np.asarray(sensor_lamps)
        if given.dtype == np.bool_:
            if given.shape != (n_lamps,):
                raise ValueError(f"a sensor mask needs one bool per lamp ({n_lamps})")
            has_sensor = given
        else:
            index = given.astype(np.int64).reshape(-1)
            if index.size and (index.min() < 0 or index.max() >= n_lamps):
                raise ValueError(f"sensor lamp indices must be within [0, {n_lamps})")
            has_sensor = np.zeros(n_lamps, dtype=np.bool_)
            has_sensor[index] = True
    n = trace.n_records
    miss_u = rng.random(n)
    latency_u = rng.random(n)
    miss_prob = np.asarray(sensors.miss_prob)[trace.user_mode[trace.user]]
    seen = has_sensor[trace.lamp] & (miss_u >= miss_prob)
    latency_s = np.maximum(
        sensors.latency_s + sensors.latency_jitter_s * (2.0 * latency_u - 1.0), 0.0
    )
    delay = np.floor(latency_s / trace.step_s + 0.5).astype(np.int64)
    enter, leave = trace.enter_step[seen], trace.leave_step[seen]
    lamp, delay = trace.lamp[seen], delay[seen]
    if sensors.retrigger_s > 0:
        every = max(1, round(sensors.retrigger_s / trace.step_s))
        repeats = (leave - enter) // every + 1
        index = np.repeat(np.arange(len(enter)), repeats)
        nth = np.arange(len(index)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        step = enter[index] + nth * every + delay[index]
        lamp = lamp[index]
    else:
        step = enter + delay
    in_window = step < trace.n_steps
    step, lamp = step[in_window], lamp[in_window].astype(np.int32)
    order = np.lexsort((lamp, step))
    return Triggers(step=step[order], lamp=lamp[order])


def simulate_night(
    demand: DemandModel,
    streets: StreetGeometry,
    *,
    start_ns: int,
    n_steps: int,
    seed: int,
    step_s: float = 1.0,
    speeds: ModeSpeeds | None = None,
    sensors: SensorModel | None = None,
    sensor_lamps: npt.ArrayLike | None = None,
) -> tuple[RoadUserTrace, Triggers]:
    """Draw, trace and detect one night; the same inputs and seed give identical arrays.

    Arrivals and detections use separate child streams of ``seed``, so changing the sensor
    model leaves the road users unchanged.
    """
    arrivals_seed, detection_seed = np.random.SeedSequence(seed).spawn(2)
    draws = draw_users(
        demand,
        start_ns=start_ns,
        n_steps=n_steps,
        step_s=step_s,
        rng=np.random.default_rng(arrivals_seed),
        speeds=speeds,
    )
    trace = trace_users(streets, draws, demand=demand)
    triggers = detect(
        trace, np.random.default_rng(detection_seed), sensors=sensors, sensor_lamps=sensor_lamps
    )
    return trace, triggers


# --- zone demand -------------------------------------------------------------------------------


def _zones(zone_of_lamp: npt.ArrayLike, n_lamps: int, n_zones: int | None) -> tuple[I64, int]:
    zone = np.asarray(zone_of_lamp, dtype=np.int64).reshape(-1)
    if zone.shape != (n_lamps,):
        raise ValueError(f"zone_of_lamp needs one zone per lamp ({n_lamps}), got {zone.shape}")
    if zone.size and zone.min() < -1:
        raise ValueError("zone_of_lamp values must be zone indices >= 0, or -1 for no zone")
    needed = int(zone.max()) + 1 if zone.size else 0
    n_zones = needed if n_zones is None else n_zones
    if n_zones < needed:
        raise ValueError(f"n_zones={n_zones} but zone_of_lamp reaches zone {needed - 1}")
    return zone, n_zones


def _zone_entries(streets: StreetGeometry, zone: I64) -> tuple[I64, I64]:
    """(street, zone) of every run of consecutive same-zone lamps along a street: a user of
    the street enters the zone once per run, whichever way they go."""
    ordered = zone[streets.lamp]
    street = streets.street_of_position().astype(np.int64)
    starts = np.ones(len(ordered), dtype=np.bool_)
    starts[1:] = (ordered[1:] != ordered[:-1]) | (street[1:] != street[:-1])
    starts &= ordered >= 0
    return street[starts], ordered[starts]


def _interval_lengths(n_intervals: int, interval_s: float, duration_s: float) -> F64:
    """Seconds in each interval; the last one may be short."""
    begin = np.arange(n_intervals) * interval_s
    return np.asarray(np.minimum(begin + interval_s, duration_s) - begin, dtype=np.float64)


def _interval_weights(
    demand: DemandModel, start_ns: int, n_intervals: int, interval_s: float, duration_s: float
) -> tuple[F64, F64]:
    """``W[slot, interval]`` share of each interval in each slot, and each interval's length."""
    offset_s = (int(start_ns) - demand.start_ns) / NS_PER_S
    begin = np.arange(n_intervals) * interval_s
    end = begin + _interval_lengths(n_intervals, interval_s, duration_s)
    slot_begin = np.arange(demand.n_slots) * demand.slot_s - offset_s
    slot_end = slot_begin + demand.slot_s
    overlap = np.clip(
        np.minimum(slot_end[:, None], end[None, :])
        - np.maximum(slot_begin[:, None], begin[None, :]),
        0.0,
        None,
    )
    return overlap / (end - begin)[None, :], end - begin


def _gap_mask(
    demand: DemandModel | None,
    pairs: tuple[I64, I64],
    n_zones: int,
    start_ns: int,
    n_intervals: int,
    interval_s: float,
    duration_s: float,
) -> B:
    """True for zone-intervals fed by a street whose counts had a gap, or not covered."""
    out = np.zeros((n_zones, n_intervals), dtype=np.bool_)
    if demand is None:
        return out
    weights, _ = _interval_weights(demand, start_ns, n_intervals, interval_s, duration_s)
    uncovered = weights.sum(axis=0) < 1.0 - 1e-9
    street_gap = (demand.gap.astype(np.float64) @ (weights > 0)) > 0  # [street, interval]
    pair_street, pair_zone = pairs
    hit = np.zeros((n_zones, n_intervals), dtype=np.int64)
    np.add.at(hit, pair_zone, street_gap[pair_street].astype(np.int64))
    out |= hit > 0
    fed = np.bincount(pair_zone, minlength=n_zones) > 0
    out |= fed[:, None] & uncovered[None, :]
    return out


def demand_per_h(
    source: RoadUserTrace | DemandModel,
    zone_of_lamp: npt.ArrayLike,
    *,
    interval_s: float = 900.0,
    n_zones: int | None = None,
    streets: StreetGeometry | None = None,
    start_ns: int | None = None,
    n_steps: int | None = None,
    step_s: float = 1.0,
) -> F32:
    """``float32[zone, interval]`` users per hour entering each zone's lamps.

    Intervals of ``interval_s`` count from the window start (the program's first step, as
    ``run_night``'s ``adaptive_interval_s`` does); a short last interval is scaled by its own
    length. From a trace the entries are counted (one per user per run of the zone's lamps it
    passes); from a :class:`DemandModel` they are expected values (street rates times entries
    per traversal), which needs ``streets``, ``start_ns`` and ``n_steps``. NaN marks
    zone-intervals fed by a street whose counts had a gap (or outside the model): fail bright.
    ``zone_of_lamp`` is -1 for lamps in no zone.
    """
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"interval_s must be > 0 seconds, got {interval_s!r}")
    if isinstance(source, RoadUserTrace):
        streets, start, steps, step = source.streets, source.start_ns, source.n_steps, source.step_s
        demand = source.demand
    else:
        if streets is None or start_ns is None or n_steps is None:
            raise ValueError("demand from rates needs streets, start_ns and n_steps")
        if source.n_streets != streets.n_streets:
            raise ValueError(
                f"the demand model has {source.n_streets} streets, the geometry {streets.n_streets}"
            )
        start, steps, step, demand = int(start_ns), int(n_steps), float(step_s), source
    zone, n_zones = _zones(zone_of_lamp, streets.n_lamps, n_zones)
    duration_s = steps * step
    n_intervals = math.ceil(duration_s / interval_s - 1e-9) if duration_s > 0 else 0
    pairs = _zone_entries(streets, zone)
    if isinstance(source, RoadUserTrace):
        record_zone = zone[source.lamp]
        new = record_zone >= 0
        if len(new) > 1:
            same_user = source.user[1:] == source.user[:-1]
            new[1:] &= ~(same_user & (record_zone[1:] == record_zone[:-1]))
        interval = np.minimum(
            (source.enter_step[new] * step // interval_s).astype(np.int64), n_intervals - 1
        )
        entries = np.bincount(
            record_zone[new] * n_intervals + interval, minlength=n_zones * n_intervals
        ).reshape(n_zones, n_intervals)
        length = _interval_lengths(n_intervals, interval_s, duration_s)
        rate = entries / (length[None, :] / 3600.0)
    else:
        weights, _ = _interval_weights(source, start, n_intervals, interval_s, duration_s)
        filled = np.nan_to_num(source.total_rate_per_h, nan=0.0) @ weights  # [street, interval]
        pair_street, pair_zone = pairs
        rate = np.zeros((n_zones, n_intervals))
        np.add.at(rate, pair_zone, filled[pair_street])
    gaps = _gap_mask(demand, pairs, n_zones, start, n_intervals, interval_s, duration_s)
    return np.where(gaps, np.nan, rate).astype(np.float32)

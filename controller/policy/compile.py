"""Compile a policy into the NightProgram of one night: all calendar and clock work done once.

Theory of operation
-------------------
*Window.* The program of the night starting on local date ``D`` covers local noon of ``D`` to
local noon of ``D + 1`` (23, 24 or 25 hours across daylight-saving changes), on a grid of
``step_s`` seconds starting at that noon. ``window="night"`` keeps only the part from one hour
before switch-on to one hour after switch-off, still on the same grid (all of it when the lamps
are never lit). Each step takes the
state at its start instant: an event at instant ``x`` affects the first step starting at or
after ``x``.

*Astronomical clock.* Switch-on and switch-off come from
:func:`controller.dimming.solar.dusk_dawn` at the inventory's centroid (mean latitude and
longitude): across a town of 10 km sunset moves by well under a minute, less than any offset a
policy uses. The lamps are lit from switch-on to switch-off of this night and also of the
neighbouring nights where those reach into the window (only in polar night, where a night runs
from solar noon to solar noon and local noon differs, so no gap opens between programs).

*Profiles.* The calendar picks one profile for the night (:mod:`controller.policy.calendar`).
The program has one row per lighting class present in the inventory, in
:data:`domain.inventory.CLASS_ORDER` order, named ``"<profile>/<class>"``: levels differ by
class only through ``class_steps_down`` steps, floors and adaptive class factors.

``program_frac`` is 0 outside the lit time and inside ``off: true`` windows; elsewhere it is the
step's level or the profile's base level (``presence.base_level_frac`` with presence).
``floor_frac`` is the class's safety floor where lit, 0 where off. Presence gives ``boost_frac``
and the fade rates ``(boost - base) / fade_up_s`` and ``(boost - base) / fade_down_s``; a fade
time of 0 and profiles without presence get :data:`INSTANT_FRAC_PER_S`, a full swing well
within one step. The level kernels apply these rates to every change, so scheduled steps fade
at the presence rates too.

*Adaptive zones.* Lamps are grouped into zones (ids passed by the caller, or the lamps' street
or group names per ``adaptive.zone_by``); each zone gets the profile's thresholds, cut to the
deepest step any of its lamps can take (NaN after it, the kernel's padding), and
``class_factor`` holds each class's light ratio at 0..K steps down. Lamps that cannot step
(lowest class of their series) get no zone.

Everything per lamp is vectorised; the per-profile arrays are a handful of rows, so 50,000
lamps over 86,400 one-second steps compile in a few tens of milliseconds.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from controller.dimming.program import NightProgram
from controller.dimming.solar import ZENITH_CIVIL_DEG, ZENITH_OFFICIAL_DEG, dusk_dawn
from controller.policy.calendar import (
    NS_PER_S,
    local_noon_ns,
    lux_to_zenith_deg,
    night_clock_ns,
    select_rule,
    zone,
)
from controller.policy.classes import class_factor_row, floor_table
from controller.policy.clo import ceiling_frac
from controller.policy.model import Policy, Profile, Switching, SwitchPoint
from controller.policy.validate import check_policy, max_class_steps, scheduled_level
from domain.errors import PolicyError, ValidationIssue
from domain.inventory import CLASS_ORDER, InventoryArrays
from domain.neighbours import NeighbourGraph, neighbours_within
from domain.records import LightingClass

__all__ = [
    "INSTANT_FRAC_PER_S",
    "CompiledNight",
    "NeighbourGraphLike",
    "ZoneThresholds",
    "compile_night",
    "compile_night_full",
    "switch_times_ns",
]

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

#: Fade rate standing for "no fade": a full swing in a microsecond, within any step.
INSTANT_FRAC_PER_S: Final[float] = 1.0e6
_HOUR_NS = 3600 * NS_PER_S
_ZENITH = {
    "sunset": ZENITH_OFFICIAL_DEG,
    "sunrise": ZENITH_OFFICIAL_DEG,
    "civil_dusk": ZENITH_CIVIL_DEG,
    "civil_dawn": ZENITH_CIVIL_DEG,
}


class NeighbourGraphLike(Protocol):
    """Anything shaped like :class:`domain.neighbours.NeighbourGraph` (CSR, nearest first)."""

    @property
    def indptr(self) -> npt.NDArray[np.int64]: ...
    @property
    def indices(self) -> npt.NDArray[np.int32]: ...
    @property
    def distance_m(self) -> npt.NDArray[np.float32]: ...
    @property
    def side(self) -> npt.NDArray[np.int8]: ...


@dataclass(frozen=True, eq=False)
class ZoneThresholds:
    """Adaptive thresholds per zone, rows aligned with ``NightProgram.zone_names``.

    ``down_per_h[z, k]``: demand (vehicles or people per hour, per ``measure``) below which
    zone ``z`` may take ``k + 1`` class steps down; ``up_per_h[z, k]``: demand above which it
    comes back from that step. NaN pads steps the zone's lamps cannot take. The shape the
    ``controller.dimming.adaptive.adaptive_steps`` wrapper takes.
    """

    zone_names: tuple[str, ...]
    measure: str
    down_per_h: F32
    up_per_h: F32


@dataclass(frozen=True, eq=False)
class CompiledNight:
    """A night's program with what the program arrays cannot carry.

    ``profile``: the calendar-selected profile (``rule_index`` the winning calendar rule);
    ``lit_ns``: the lit intervals ``[on, off)`` (UTC ns) inside the window; ``max_speed_mps``:
    the presence plausible-speed limit (``inf`` when off or without presence).
    """

    program: NightProgram
    thresholds: ZoneThresholds
    profile: str
    rule_index: int
    lit_ns: tuple[tuple[int, int], ...]
    max_speed_mps: float


# --- switching ----------------------------------------------------------------------------------


def _event_ns(
    point: SwitchPoint,
    night_dates: Sequence[dt.date],
    lat_deg: float,
    lon_deg: float,
    tz: str,
    lux: float,
    evening: bool,
) -> list[int]:
    offset_ns = round(point.offset_min * 60 * NS_PER_S)
    if point.event == "clock":
        assert point.at is not None  # validated
        tzinfo = zone(tz)
        return [
            night_clock_ns(d, point.at, tzinfo, is_end=not evening) + offset_ns for d in night_dates
        ]
    zenith = lux_to_zenith_deg(lux) if point.event == "lux" else _ZENITH[point.event]
    offset_s = point.offset_min * 60.0
    window = dusk_dawn(
        np.array(night_dates, dtype="datetime64[D]"),
        lat_deg,
        lon_deg,
        zenith_deg=zenith,
        dusk_offset_s=offset_s if evening else 0.0,
        dawn_offset_s=0.0 if evening else offset_s,
    )
    chosen = window.dusk_ns if evening else window.dawn_ns
    return [int(x) for x in np.asarray(chosen).reshape(-1)]


def switch_times_ns(
    switching: Switching,
    night_dates: Sequence[dt.date],
    tz: str,
    lat_deg: float,
    lon_deg: float,
) -> list[tuple[int, int]]:
    """``(on_ns, off_ns)`` of each night (UTC epoch ns); ``on >= off`` means no lit time."""
    on = _event_ns(switching.on, night_dates, lat_deg, lon_deg, tz, switching.lux_on, True)
    off = _event_ns(switching.off, night_dates, lat_deg, lon_deg, tz, switching.lux_off, False)
    return list(zip(on, off, strict=True))


# --- helpers ------------------------------------------------------------------------------------


def _as_date(night_date: dt.date | np.datetime64 | str) -> dt.date:
    if isinstance(night_date, dt.datetime):
        raise ValueError(
            "night_date must be a calendar date (the local date the night starts), not a datetime"
        )
    if isinstance(night_date, dt.date):
        return night_date
    value = np.datetime64(night_date)
    day = value.astype("datetime64[D]")
    if day != value:
        raise ValueError(f"night_date must be a whole calendar date, got {night_date!r}")
    return dt.date.fromisoformat(str(day))


def _step_ns(step_s: float) -> int:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be a number of seconds above 0, got {step_s!r}")
    step_ns = round(step_s * 1e9)
    if step_ns < 1 or step_s > 3600:
        raise ValueError(f"step_s must be between 1 ns and 3600 s, got {step_s!r}")
    return step_ns


def _index(time_ns: int, start_ns: int, step_ns: int, n_steps: int) -> int:
    """First step starting at or after ``time_ns``, clipped to ``[0, n_steps]``."""
    return min(max(-((start_ns - time_ns) // step_ns), 0), n_steps)


def _empty_csr(n: int) -> tuple[I64, I32]:
    return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)


def _neighbours(
    profile: Profile, graph: NeighbourGraphLike | None, n_lamps: int
) -> tuple[I64, I32]:
    if profile.presence is None or graph is None:
        return _empty_csr(n_lamps)
    full = (
        graph
        if isinstance(graph, NeighbourGraph)
        else NeighbourGraph(
            np.asarray(graph.indptr, dtype=np.int64),
            np.asarray(graph.indices, dtype=np.int32),
            np.asarray(graph.distance_m, dtype=np.float32),
            np.asarray(graph.side, dtype=np.int8),
        )
    )
    if full.n_lamps != n_lamps:
        raise ValueError(
            f"the neighbour graph describes {full.n_lamps} lamps, the inventory {n_lamps}; "
            "build it from the same inventory"
        )
    spec = profile.presence.neighbours
    most = int(np.diff(full.indptr).max()) if n_lamps else 0
    farthest = float(full.distance_m.max()) if full.n_edges else 0.0
    kept = neighbours_within(
        full,
        most if spec.ahead is None else spec.ahead,
        most if spec.behind is None else spec.behind,
        farthest if spec.max_distance_m is None else spec.max_distance_m,
    )
    return kept.indptr.astype(np.int64), kept.indices.astype(np.int32)


def _zone_ids(
    profile: Profile,
    inventory: InventoryArrays,
    zones: Sequence[str] | npt.NDArray[np.str_] | None,
) -> npt.NDArray[np.str_]:
    n = len(inventory)
    if zones is not None:
        ids = np.asarray(zones).astype(np.str_)
        if ids.shape != (n,):
            raise ValueError(
                f"zones must give one zone id per lamp ({n}), got shape {ids.shape}; "
                "use '' for lamps without a zone"
            )
        return ids
    assert profile.adaptive is not None
    if profile.adaptive.zone_by == "group":
        return np.asarray(inventory.group).astype(np.str_)
    if not inventory.street_names:
        return np.full(n, "", dtype=np.str_)
    names = np.asarray(inventory.street_names, dtype=np.str_)
    return names[inventory.street_index]


def _adaptive(
    profile: Profile,
    inventory: InventoryArrays,
    zones: Sequence[str] | npt.NDArray[np.str_] | None,
    class_steps: I32,
) -> tuple[I32, ZoneThresholds]:
    n = len(inventory)
    adaptive = profile.adaptive
    if adaptive is None:
        empty = np.zeros((0, 0), dtype=np.float32)
        return np.full(n, -1, dtype=np.int32), ZoneThresholds((), "", empty, empty.copy())
    ids = _zone_ids(profile, inventory, zones)
    lamp_steps = class_steps[inventory.class_index]
    ids = np.where(lamp_steps > 0, ids, "")
    names, inverse = np.unique(ids, return_inverse=True)
    has_blank = len(names) > 0 and names[0] == ""
    lamp_zone = (inverse - 1 if has_blank else inverse).astype(np.int32)
    zone_names = tuple(str(x) for x in (names[1:] if has_blank else names))
    depth = np.zeros(len(zone_names), dtype=np.int32)
    in_zone = lamp_zone >= 0
    np.maximum.at(depth, lamp_zone[in_zone], lamp_steps[in_zone])
    k_count = len(adaptive.thresholds)
    down_row = np.array([t.down_below_per_h for t in adaptive.thresholds], dtype=np.float32)
    up_row = np.array([t.up_above_per_h for t in adaptive.thresholds], dtype=np.float32)
    usable = np.arange(k_count)[None, :] < depth[:, None]
    down = np.where(usable, down_row[None, :], np.float32(np.nan)).astype(np.float32)
    up = np.where(usable, up_row[None, :], np.float32(np.nan)).astype(np.float32)
    return lamp_zone, ZoneThresholds(zone_names, adaptive.measure, down, up)


def _check_classes(policy: Policy, inventory: InventoryArrays, present: list[int]) -> None:
    allowed = set(policy.lighting_classes)
    issues = []
    for index in present:
        cls = CLASS_ORDER[index]
        if cls in allowed:
            continue
        example = str(inventory.lamp_id[int(np.argmax(inventory.class_index == index))])
        issues.append(
            ValidationIssue(
                "lighting_classes",
                f"the inventory has lamps of class {cls.value} (e.g. lamp '{example}'), which "
                f"policy '{policy.name}' does not list; activate it only on lamps of "
                f"{', '.join(c.value for c in policy.lighting_classes)}, or add {cls.value} "
                "(its floor must hold)",
            )
        )
    if issues:
        raise PolicyError(issues)


# --- compile ------------------------------------------------------------------------------------


def compile_night_full(
    policy: Policy,
    inventory: InventoryArrays,
    night_date: dt.date | np.datetime64 | str,
    tz: str,
    *,
    step_s: float = 1.0,
    window: Literal["noon", "night"] = "noon",
    neighbours: NeighbourGraphLike | None = None,
    operating_hours: npt.ArrayLike | None = None,
    zones: Sequence[str] | npt.NDArray[np.str_] | None = None,
) -> CompiledNight:
    """:func:`compile_night` with the zone thresholds and the facts the program cannot carry."""
    check_policy(policy)
    night = _as_date(night_date)
    tzinfo = zone(tz)
    step_ns = _step_ns(step_s)
    if window not in ("noon", "night"):
        raise ValueError(f"window must be 'noon' or 'night', got {window!r}")
    n = len(inventory)
    if n == 0:
        raise ValueError("the inventory has no lamps; a program needs at least one")

    rule_index = select_rule(policy.calendar, night)
    assert rule_index is not None  # validation requires a rule matching every night
    profile_name = policy.calendar[rule_index].profile
    profile = policy.profiles[profile_name]

    present = sorted(int(i) for i in np.unique(inventory.class_index))
    _check_classes(policy, inventory, present)
    classes = [CLASS_ORDER[i] for i in present]

    # Window and grid.
    noon_start = local_noon_ns(night, tzinfo)
    noon_end = local_noon_ns(night + dt.timedelta(days=1), tzinfo)
    lat = float(np.mean(inventory.lat_deg))
    lon = float(np.mean(inventory.lon_deg))
    nights = [night + dt.timedelta(days=k) for k in (-1, 0, 1)]
    switches = switch_times_ns(policy.switching, nights, tz, lat, lon)
    lit_ns = tuple(
        (max(on, noon_start), min(off, noon_end))
        for on, off in switches
        if max(on, noon_start) < min(off, noon_end)
    )
    start_ns, end_ns = noon_start, noon_end
    if window == "night" and lit_ns:
        first = max(min(a for a, _ in lit_ns) - _HOUR_NS, noon_start)
        last = min(max(b for _, b in lit_ns) + _HOUR_NS, noon_end)
        start_ns = noon_start + ((first - noon_start) // step_ns) * step_ns
        end_ns = last
    n_steps = -((start_ns - end_ns) // step_ns)

    def index(time_ns: int) -> int:
        return _index(time_ns, start_ns, step_ns, n_steps)

    lit = np.zeros(n_steps, dtype=np.bool_)
    for on, off in lit_ns:
        lit[index(on) : index(off)] = True
    spans = [
        (
            index(night_clock_ns(night, s.start, tzinfo)),
            index(night_clock_ns(night, s.end, tzinfo, is_end=True)),
        )
        for s in profile.steps
    ]

    # Per-profile rows, one per class present.
    floors = floor_table(policy.floor_frac)
    p_count = len(classes)
    program = np.zeros((p_count, n_steps), dtype=np.float32)
    floor = np.zeros((p_count, n_steps), dtype=np.float32)
    class_steps = np.zeros(len(CLASS_ORDER), dtype=np.int32)
    k_count = len(profile.adaptive.thresholds) if profile.adaptive is not None else 0
    class_factor = np.ones((p_count, k_count + 1), dtype=np.float32)
    for p, cls in enumerate(classes):
        row = np.full(n_steps, scheduled_level(profile, cls), dtype=np.float32)
        for step, (a, b) in zip(profile.steps, spans, strict=True):
            row[a:b] = scheduled_level(step, cls)
        row[~lit] = 0.0
        program[p] = row
        floor[p] = np.where(row > 0.0, np.float32(floors[cls]), np.float32(0.0))
        if profile.adaptive is not None:
            bound = _min_class(profile, cls)
            class_factor[p] = class_factor_row(cls, k_count, bound)
            class_steps[CLASS_ORDER.index(cls)] = max_class_steps(profile, cls)

    presence = profile.presence
    if presence is not None:
        swing = presence.boost_level_frac - presence.base_level_frac
        up_rate = swing / presence.fade_up_s if presence.fade_up_s > 0 else INSTANT_FRAC_PER_S
        down_rate = swing / presence.fade_down_s if presence.fade_down_s > 0 else INSTANT_FRAC_PER_S
        boost, hold = presence.boost_level_frac, presence.hold_s
        max_speed = math.inf if presence.max_speed_mps is None else presence.max_speed_mps
    else:
        up_rate = down_rate = INSTANT_FRAC_PER_S
        boost, hold, max_speed = 0.0, 0.0, math.inf

    lookup = np.full(len(CLASS_ORDER), -1, dtype=np.int32)
    lookup[present] = np.arange(p_count, dtype=np.int32)
    lamp_profile = lookup[inventory.class_index].astype(np.int32)
    lamp_zone, thresholds = _adaptive(profile, inventory, zones, class_steps)
    indptr, indices = _neighbours(profile, neighbours, n)

    on_ns, off_ns = switches[1]
    meta = {
        "policy": policy.name,
        "policy_version": str(policy.version),
        "profile": profile_name,
        "calendar_rule": str(rule_index),
        "night_date": night.isoformat(),
        "tz": tz,
        "window": window,
        "centroid_lat_deg": f"{lat:.6f}",
        "centroid_lon_deg": f"{lon:.6f}",
        "switch_on_ns": str(on_ns),
        "switch_off_ns": str(off_ns),
        "max_speed_mps": str(max_speed),
        "adaptive_measure": thresholds.measure,
    }
    program_out = NightProgram(
        start_ns=start_ns,
        step_s=float(step_s),
        program_frac=program,
        floor_frac=floor,
        boost_frac=np.full(p_count, boost, dtype=np.float32),
        hold_s=np.full(p_count, hold, dtype=np.float32),
        fade_up_frac_per_s=np.full(p_count, up_rate, dtype=np.float32),
        fade_down_frac_per_s=np.full(p_count, down_rate, dtype=np.float32),
        class_factor=class_factor,
        lamp_profile=lamp_profile,
        lamp_zone=lamp_zone,
        ceiling_frac=ceiling_frac(policy.clo, operating_hours, n),
        neighbour_indptr=indptr,
        neighbour_indices=indices,
        profile_names=tuple(f"{profile_name}/{c.value}" for c in classes),
        zone_names=thresholds.zone_names,
        fail_safe_frac=float(policy.fail_safe_level_frac),
        meta=meta,
    )
    return CompiledNight(
        program=program_out,
        thresholds=thresholds,
        profile=profile_name,
        rule_index=rule_index,
        lit_ns=lit_ns,
        max_speed_mps=max_speed,
    )


def _min_class(profile: Profile, cls: LightingClass) -> LightingClass | None:
    if profile.adaptive is None:
        return None
    return next((c for c in profile.adaptive.min_class if c.series == cls.series), None)


def compile_night(
    policy: Policy,
    inventory: InventoryArrays,
    night_date: dt.date | np.datetime64 | str,
    tz: str,
    *,
    step_s: float = 1.0,
    window: Literal["noon", "night"] = "noon",
    neighbours: NeighbourGraphLike | None = None,
    operating_hours: npt.ArrayLike | None = None,
    zones: Sequence[str] | npt.NDArray[np.str_] | None = None,
) -> NightProgram:
    """The :class:`NightProgram` of ``policy`` for the night starting on local date ``night_date``.

    Parameters
    ----------
    policy
        A validated policy (:func:`controller.policy.validate.validate_policy`); it is checked
        again here, so no invalid policy can be compiled.
    inventory
        The lamps the policy is activated on; every class present must be in the policy's
        ``lighting_classes`` (else :class:`PolicyError`).
    night_date
        Local calendar date on which the night starts (``date``, ``datetime64[D]`` or ISO text).
    tz
        IANA time zone of the lamps, e.g. ``"Europe/London"``.
    step_s
        Grid step, seconds (1 s for simulation and live control).
    window
        ``"noon"``: local noon to local noon (23-25 h); ``"night"``: switch-on - 1 h to
        switch-off + 1 h, clipped to that.
    neighbours
        Neighbour graph of the inventory for presence (None: a detection raises only its lamp).
    operating_hours
        Per-lamp operating hours for constant light output (None or NaN: ceiling 1.0).
    zones
        Per-lamp adaptive zone ids ('' = none); None groups lamps by ``adaptive.zone_by``.

    See the module docstring for what the arrays hold; :func:`compile_night_full` also returns
    the per-zone adaptive thresholds and the presence speed limit.
    """
    return compile_night_full(
        policy,
        inventory,
        night_date,
        tz,
        step_s=step_s,
        window=window,
        neighbours=neighbours,
        operating_hours=operating_hours,
        zones=zones,
    ).program

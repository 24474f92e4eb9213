"""The live control loop: programs, overrides, presence and demand in; lamp commands out.

Theory of operation (sans-io: time is an argument, nothing here touches the network)
-----------------------------------------------------------------------------------
Time is cut into ticks of ``tick_s`` seconds (default 1 s), numbered from the UNIX epoch: tick
``k`` starts at ``k * tick_s``. :meth:`LiveController.step` advances the kernel state through
every tick up to the one containing ``now_ns`` (catching up if it was called late, at most
``max_catch_up_s`` of ticks; older ones are skipped) and then decides what to send.

*Who drives a lamp.* Each lamp follows the :class:`ActiveProgram` (a compiled night of the
policy activated on its group) whose program covers the tick. A lamp that no program covers (no
active policy, or tonight's program not compiled yet) follows a **fallback** program: full
output while the sun is less than ``fallback_daylight_elevation_deg`` above the horizon at the
fallback lamps' centroid, off in full daylight, with each class's default safety floor. When in
doubt, fail bright. The fallback is an ordinary :class:`NightProgram`, so it goes through the
same kernel as everything else.

*One tick.* For every program covering the tick, its lamps' state is gathered from the
controller's per-lamp arrays, advanced with :func:`controller.dimming.levels.tick` (the per-lamp
step the simulator's :func:`~controller.dimming.levels.run_night` uses, so a simulated policy is
the policy that runs) with that tick's presence detections, each adaptive zone's class step and
the override levels, and scattered back. Presence holds are kept as epoch tick numbers between
ticks, so a lamp keeps its hold when tonight's program replaces last night's.

*The target.* A lamp's *target* is where the kernel is driving it: the program level after
presence, adaptive step, CLO ceiling and override, raised to the safety floor and capped at
full output (the ``goal`` the simulator counts commands by). The kernel computes it too: each
program lamp has a *shadow* lamp in the same tick with the same inputs and an instant fade, and
one step lands the shadow exactly on the target (:func:`_with_shadows`).

*Sending.* After the last tick a lamp gets a :class:`LampCommand` when its target differs from
the level last sent to it by more than ``deadband_frac``, and always when it was never sent,
when the target or the last sent level is 0 (switching on or off), and when an override starts
or ends on it. The command carries the kernel's fade time for the change
(``|target - level| / fade rate``, the policy's presence fade rates) or ``ramp_s`` where the
program changes instantly. So after every :meth:`~LiveController.step`, every lamp's last sent
level is within the deadband of its target. Commands are returned per gateway.

*Safety.* The kernel keeps every lit lamp at or above its floor (> 0): no override, demand or
presence can make a lamp dark while its program has it lit. A lamp is dark at night only where
its program switches it off (``program_frac == 0``: a part-night window).

*Presence* events (a sensor id, mapped to lamps by ``Sensor.lamp_ids``, or a lamp id) land in
the tick containing their time, or in the next tick processed if that one is past; events older
than ``presence_max_age_s`` at that point are dropped (nobody is there any more). A policy with
``presence.max_speed_mps`` drops detections implying an impossible speed from a neighbouring
lamp's earlier detection, exactly as the simulator does
(:func:`controller.dimming.presence.plausible_triggers`).

*Demand* (people or vehicles per hour per adaptive zone: a street or group name, as the policy's
``adaptive.zone_by`` says) steps each zone's class with the policy's thresholds and hysteresis
(:func:`controller.dimming.adaptive.adaptive_steps`, called incrementally). A zone whose demand
is older than ``demand_stale_s``, or NaN, returns to its normal class: fail bright.

*Overrides* use :class:`controller.policy.overrides.OverrideTable` (TALQ: latest wins, an
empty override resumes the program, expiry resumes it too).

Public interface (the composition root and the API call these)
--------------------------------------------------------------
``LiveController(inventory, gateway_of, *, config=LiveConfig(), sensors=(), neighbours=None)``
    ``inventory``: :class:`domain.inventory.InventoryArrays` or a list of
    :class:`domain.records.Lamp`; ``gateway_of``: lamp id -> gateway id (every lamp needs one);
    ``neighbours``: the inventory's neighbour graph, needed by policies that filter presence by
    speed.
``set_programs(programs: Iterable[ActiveProgram]) -> None``
    Replace the active programs (e.g. at activation, and once a night with the next night's).
``set_overrides(overrides) -> None`` / ``add_override(override) -> None``
``presence(source_id, time_ns) -> int`` / ``presence_readings(readings) -> int``
``demand(per_h: Mapping[zone, float], time_ns, *, measure=None) -> int``
``step(now_ns) -> dict[gateway_id, list[LampCommand]]``
``forget_sent(lamp_ids) -> None``: commands that could not be delivered; resent next step.
``snapshot() -> LiveSnapshot``: per-lamp kernel level, target, last sent level, source.
``run(controller, clock, sink_for_gateway, stop)``: the thin async loop around ``step``, with a
:class:`Clock` (``now_ns()``, ``async sleep_until(ns)``; :class:`SystemClock` for production).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.levels import NO_HOLD, NO_OVERRIDE, LampState, Triggers, tick
from controller.dimming.presence import plausible_triggers
from controller.dimming.program import NightProgram
from controller.dimming.solar import solar_elevation_deg
from controller.policy.classes import floor_table
from controller.policy.compile import INSTANT_FRAC_PER_S, CompiledNight, NeighbourGraphLike
from controller.policy.overrides import Override, OverrideTable
from domain.errors import StreetlightError
from domain.inventory import CLASS_ORDER, InventoryArrays
from domain.records import CommandSink, Lamp, LampCommand, Reading, ReadingKind, Sensor

__all__ = [
    "FALLBACK",
    "MAX_COMMANDS_PER_BATCH",
    "ActiveProgram",
    "Clock",
    "LiveConfig",
    "LiveControlError",
    "LiveController",
    "LiveSnapshot",
    "SystemClock",
    "run",
]

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

NS_PER_S = 1_000_000_000
#: ``LiveSnapshot.source`` of lamps driven by the fallback program.
FALLBACK = "fallback"
#: "No demand yet": far enough in the past that ``now - _NEVER_NS`` cannot overflow int64.
_NEVER_NS = -(2**62)
#: Most commands in one downlink message (docs/gateway-protocol.md); :func:`run` splits batches.
MAX_COMMANDS_PER_BATCH = 5000
#: Longest ramp a command may carry (docs/gateway-protocol.md).
_MAX_RAMP_S = 3600.0
_NO_LAMPS = np.zeros(0, np.int32)
#: A fade at least this fast is "instant": commands get ``LiveConfig.ramp_s`` instead.
_INSTANT = np.float32(INSTANT_FRAC_PER_S / 2)


class LiveControlError(StreetlightError, ValueError):
    """The live controller was given something it cannot run; ``lamp_id`` names the lamp when
    one lamp is the problem."""

    def __init__(self, message: str, lamp_id: str = "") -> None:
        super().__init__(message)
        self.lamp_id = lamp_id


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """Thresholds of the live loop (all overridable; see docs/live-control.md).

    ``tick_s``: kernel step, seconds (programs must be compiled on the same grid).
    ``deadband_frac``: smallest change of target worth a command, fraction of full output.
    ``ramp_s``: fade time of commands where the program changes instantly, seconds.
    ``max_catch_up_s``: most time :meth:`LiveController.step` ticks through when called late.
    ``demand_stale_s``: demand older than this no longer steps a zone down (normal class).
    ``presence_max_age_s``: detections older than this when their tick is processed are dropped.
    ``fallback_daylight_elevation_deg``: lamps without a program are lit while the sun is lower.
    ``fallback_window_s``: length of each fallback program built.
    """

    tick_s: float = 1.0
    deadband_frac: float = 0.02
    ramp_s: float = 2.0
    max_catch_up_s: float = 600.0
    demand_stale_s: float = 1800.0
    presence_max_age_s: float = 30.0
    fallback_daylight_elevation_deg: float = 3.0
    fallback_window_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        tick_ns = round(self.tick_s * NS_PER_S) if math.isfinite(self.tick_s) else 0
        if not (self.tick_s > 0 and tick_ns >= 1_000_000 and abs(tick_ns - self.tick_s * 1e9) < 1):
            raise ValueError(
                f"tick_s must be a whole number of nanoseconds >= 0.001 s, got {self.tick_s!r}"
            )
        if not 0.0 <= self.deadband_frac < 1.0:
            raise ValueError(f"deadband_frac must be within [0, 1), got {self.deadband_frac!r}")
        if not 0.0 <= self.ramp_s <= _MAX_RAMP_S:
            raise ValueError(f"ramp_s must be within [0, 3600] seconds, got {self.ramp_s!r}")
        for name in ("max_catch_up_s", "demand_stale_s", "presence_max_age_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= self.tick_s):
                raise ValueError(
                    f"{name} must be at least one tick ({self.tick_s} s), got {value!r}"
                )
        if not -90.0 <= self.fallback_daylight_elevation_deg <= 90.0:
            raise ValueError(
                "fallback_daylight_elevation_deg must be within [-90, 90], got "
                f"{self.fallback_daylight_elevation_deg!r}"
            )
        if not (
            math.isfinite(self.fallback_window_s) and self.fallback_window_s >= 60 * self.tick_s
        ):
            raise ValueError(
                f"fallback_window_s must be at least 60 ticks, got {self.fallback_window_s!r}"
            )

    @property
    def tick_ns(self) -> int:
        return round(self.tick_s * NS_PER_S)


@dataclass(frozen=True, eq=False)
class ActiveProgram:
    """A compiled night driving some lamps: ``lamp_ids[k]`` is lamp ``k`` of the program.

    ``compiled`` is :func:`controller.policy.compile_night_full`'s result for the lamps of the
    groups the policy is activated on (``inventory.subset(...)``, in that order), or a bare
    :class:`NightProgram` (no adaptive thresholds, no presence speed limit). ``name`` labels the
    lamps' source in :class:`LiveSnapshot` (e.g. ``"estate-presence-adaptive v3"``).
    """

    lamp_ids: tuple[str, ...]
    compiled: CompiledNight | NightProgram
    name: str = ""

    @property
    def program(self) -> NightProgram:
        c = self.compiled
        return c.program if isinstance(c, CompiledNight) else c

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        meta = self.program.meta
        return f"{meta['policy']} v{meta['policy_version']}" if "policy" in meta else "program"


@dataclass(frozen=True, eq=False)
class LiveSnapshot:
    """Per-lamp view after the last step, aligned with ``lamp_id``.

    ``level_frac``: the kernel's model of the lamp's output; ``target_frac``: where it is being
    driven; ``sent_frac``: the level last sent (NaN: never); ``overridden``: an override is in
    force; ``source``: the :attr:`ActiveProgram.label` driving it, or :data:`FALLBACK`.
    ``time_ns``: start of the last tick processed (None before the first step).
    """

    lamp_id: tuple[str, ...]
    level_frac: F32
    target_frac: F32
    sent_frac: F32
    overridden: npt.NDArray[np.bool_]
    source: tuple[str, ...]
    time_ns: int | None


@dataclass(eq=False)
class _Slot:
    """One program with everything precomputed that its ticks need."""

    label: str
    active: ActiveProgram | None  # None for the fallback
    program: NightProgram
    #: What is ticked: ``program``, or it with a shadow lamp per lamp (see :func:`_with_shadows`).
    kernel_program: NightProgram
    shadows: bool
    lamps: I64  # global lamp index of each program lamp
    local: I32  # global lamp index -> program lamp index, or -1
    start_ns: int
    end_ns: int
    start_tick: int  # the controller's tick number of the program's step 0
    up_rate: F32  # per program lamp, fraction per second
    down_rate: F32
    measure: str = ""
    zone_names: tuple[str, ...] = ()
    down_per_h: F32 = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    up_per_h: F32 = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    zone_steps: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    zone_demand_ns: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    max_speed_mps: float = math.inf
    kept_ticks: list[int] = field(default_factory=list)
    kept_lamps: list[int] = field(default_factory=list)

    def covers(self, time_ns: int) -> bool:
        return self.start_ns <= time_ns < self.end_ns


def _with_shadows(program: NightProgram) -> NightProgram:
    """``program`` with lamps ``n .. 2n - 1`` shadowing lamps ``0 .. n - 1`` with instant fades.

    A shadow gets the same program, floor, boost, hold, adaptive zone, ceiling, override and
    detections (its neighbours are the shadows of its lamp's neighbours), so it holds exactly
    when its lamp does; with an instant fade one kernel step lands it on the lamp's target
    ``min(max(target, floor), 1)``. One :func:`tick` thus gives both the levels and the
    targets, from the kernel itself rather than from a second implementation of its rules.
    """
    n, p_count = program.n_lamps, program.n_profiles
    instant = np.full(p_count, INSTANT_FRAC_PER_S, np.float32)
    ptr, idx = program.neighbour_indptr, program.neighbour_indices
    return replace(
        program,
        program_frac=np.vstack([program.program_frac, program.program_frac]),
        floor_frac=np.vstack([program.floor_frac, program.floor_frac]),
        boost_frac=np.concatenate([program.boost_frac, program.boost_frac]),
        hold_s=np.concatenate([program.hold_s, program.hold_s]),
        fade_up_frac_per_s=np.concatenate([program.fade_up_frac_per_s, instant]),
        fade_down_frac_per_s=np.concatenate([program.fade_down_frac_per_s, instant]),
        class_factor=np.vstack([program.class_factor, program.class_factor]),
        lamp_profile=np.concatenate([program.lamp_profile, program.lamp_profile + p_count]),
        lamp_zone=np.concatenate([program.lamp_zone, program.lamp_zone]),
        ceiling_frac=np.concatenate([program.ceiling_frac, program.ceiling_frac]),
        neighbour_indptr=np.concatenate([ptr, ptr[1:] + ptr[-1]]),
        neighbour_indices=np.concatenate([idx, idx + np.int32(n)]).astype(np.int32),
        profile_names=(),
    )


class LiveController:
    """The central service's control loop for one inventory; see the module docstring."""

    def __init__(
        self,
        inventory: InventoryArrays | Sequence[Lamp],
        gateway_of: Mapping[str, str],
        *,
        config: LiveConfig | None = None,
        sensors: Iterable[Sensor] = (),
        neighbours: NeighbourGraphLike | None = None,
    ) -> None:
        inv = (
            inventory
            if isinstance(inventory, InventoryArrays)
            else InventoryArrays.from_lamps(list(inventory))
        )
        n = len(inv)
        if n == 0:
            raise LiveControlError("the inventory has no lamps; the live controller needs some")
        self.config = config or LiveConfig()
        self._inv = inv
        self._ids = tuple(str(x) for x in inv.lamp_id.tolist())
        self._index = {lamp: i for i, lamp in enumerate(self._ids)}
        if len(self._index) != n:
            raise LiveControlError("lamp ids must be unique in the inventory")
        missing = [lamp for lamp in self._ids if not gateway_of.get(lamp)]
        if missing:
            raise LiveControlError(
                f"{len(missing)} lamp(s) have no gateway (e.g. {', '.join(missing[:3])}); "
                "give every lamp of the inventory a gateway id in gateway_of",
                missing[0],
            )
        names = sorted({gateway_of[lamp] for lamp in self._ids})
        self._gateways = tuple(names)
        gw_pos = {g: k for k, g in enumerate(names)}
        self._gw_index = np.array([gw_pos[gateway_of[lamp]] for lamp in self._ids], np.int32)
        self._sensor_lamps: dict[str, I64] = {}
        self.set_sensors(sensors)
        self._graph = neighbours
        if neighbours is not None and len(neighbours.indptr) != n + 1:
            raise LiveControlError(
                f"the neighbour graph describes {len(neighbours.indptr) - 1} lamps, the "
                f"inventory {n}; build it from the same inventory"
            )
        self._tick_ns = self.config.tick_ns
        self._stale_ns = round(self.config.demand_stale_s * NS_PER_S)
        self._overrides = OverrideTable(self._ids, [str(g) for g in inv.group.tolist()])
        # Per-lamp state, global lamp order.
        self._level = np.zeros(n, np.float32)
        # Presence holds as epoch tick numbers (held while tick < hold): they carry over from
        # one night's program to the next. NO_HOLD stays far in the past under any shift.
        self._hold = np.full(n, NO_HOLD, np.int64)
        self._goal = np.zeros(n, np.float32)
        self._before = np.zeros(n, np.float32)  # level before the last tick, for ramp times
        self._up_rate = np.full(n, INSTANT_FRAC_PER_S, np.float32)  # fade rates, fraction/s
        self._down_rate = np.full(n, INSTANT_FRAC_PER_S, np.float32)
        self._override = np.full(n, NO_OVERRIDE, np.float32)
        self._any_override = False
        self._source = np.full(n, -1, np.int32)  # slot label index, -1 fallback
        self._sent = np.full(n, np.nan, np.float32)
        self._sent_override = np.zeros(n, np.bool_)
        self._slots: list[_Slot] = []
        self._labels: list[str] = []
        self._plan_key: tuple[int, ...] | None = None
        self._plan_from_ns = self._plan_until_ns = 0
        self._plan: list[_Slot] = []
        self._fallback: _Slot | None = None
        self._fallback_lamps: I64 = np.zeros(0, np.int64)
        self._last_tick: int | None = None
        self._pending_tick: list[int] = []
        self._pending_lamp: list[int] = []
        # For a sensor covering several lamps, one detection raises all of them: the lamps after
        # the first record that first lamp here (-1 for the first), so that the speed filter
        # judges the detection once, on the first lamp, and the others follow its verdict.
        self._pending_primary: list[int] = []
        self._due_tick: I64 = np.zeros(0, np.int64)
        self._due_lamp: I64 = np.zeros(0, np.int64)
        self._due_primary: I64 = np.zeros(0, np.int64)
        self._demand: dict[tuple[str, str], tuple[float, int]] = {}
        self.counters: dict[str, int] = {
            "ticks": 0,
            "skipped_ticks": 0,
            "commands": 0,
            "presence_unknown_source": 0,
            "presence_stale": 0,
            "presence_implausible": 0,
            "demand_unknown_zone": 0,
        }

    # --- configuration -------------------------------------------------------------------------

    @property
    def lamp_ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def gateways(self) -> tuple[str, ...]:
        return self._gateways

    @property
    def tick_ns(self) -> int:
        return self._tick_ns

    def set_sensors(self, sensors: Iterable[Sensor]) -> None:
        """Presence sensors and the lamps each one raises (``Sensor.lamp_ids``)."""
        table: dict[str, I64] = {}
        for sensor in sensors:
            unknown = [x for x in sensor.lamp_ids if x not in self._index]
            if unknown:
                raise LiveControlError(
                    f"sensor {sensor.sensor_id} names lamp(s) not in the inventory: "
                    f"{', '.join(unknown[:3])}; check its lamp_ids",
                    unknown[0],
                )
            table[sensor.sensor_id] = np.array(
                [self._index[x] for x in sensor.lamp_ids], dtype=np.int64
            )
        self._sensor_lamps = table

    def set_programs(self, programs: Iterable[ActiveProgram]) -> None:
        """Replace the active programs; lamps no program covers follow the fallback.

        A program passed again (the same :class:`ActiveProgram` object) keeps its adaptive
        zones' hysteresis; a new one starts its zones from the latest fresh demand. Refused
        (:class:`LiveControlError`) when a program names unknown lamps, is not on the tick grid,
        two programs drive one lamp at the same time, or a policy filters presence by speed and
        no neighbour graph was given.
        """
        # Slots hold their ActiveProgram, so its id cannot be reused while it is a key here.
        old = {id(s.active): s for s in self._slots}
        slots: list[_Slot] = []
        for k, active in enumerate(programs):
            reused = old.get(id(active))
            slots.append(reused if reused is not None else self._slot(active, k))
        self._check_overlaps(slots)
        self._slots = slots
        self._labels = [s.label for s in slots]
        self._plan_key = None

    def _slot(self, active: ActiveProgram, k: int) -> _Slot:
        program = active.program
        where = f"program {k} ({active.label})"
        if len(active.lamp_ids) != program.n_lamps:
            raise LiveControlError(
                f"{where} drives {program.n_lamps} lamps but lists {len(active.lamp_ids)} lamp ids"
            )
        unknown = [x for x in active.lamp_ids if x not in self._index]
        if unknown:
            raise LiveControlError(
                f"{where} names lamp(s) not in the inventory: {', '.join(unknown[:3])}",
                unknown[0],
            )
        if len(set(active.lamp_ids)) != len(active.lamp_ids):
            raise LiveControlError(f"{where} lists a lamp twice")
        step_ns = round(program.step_s * NS_PER_S)
        if step_ns != self._tick_ns or program.start_ns % self._tick_ns:
            raise LiveControlError(
                f"{where} has step_s={program.step_s} starting at {program.start_ns}; compile it "
                f"on the controller's tick grid (step_s={self.config.tick_s}, a start on a whole tick)"
            )
        lamps = np.array([self._index[x] for x in active.lamp_ids], dtype=np.int64)
        local = np.full(len(self._ids), -1, np.int32)
        local[lamps] = np.arange(len(lamps), dtype=np.int32)
        # Where every fade is instant a lamp's level is its target: no shadows needed.
        shadows = not (
            np.all(program.fade_up_frac_per_s >= _INSTANT)
            and np.all(program.fade_down_frac_per_s >= _INSTANT)
        )
        slot = _Slot(
            label=active.label,
            active=active,
            program=program,
            kernel_program=_with_shadows(program) if shadows else program,
            shadows=shadows,
            lamps=lamps,
            local=local,
            start_ns=program.start_ns,
            end_ns=program.start_ns + program.n_steps * step_ns,
            start_tick=program.start_ns // step_ns,
            up_rate=program.fade_up_frac_per_s[program.lamp_profile],
            down_rate=program.fade_down_frac_per_s[program.lamp_profile],
        )
        if isinstance(active.compiled, CompiledNight):
            th = active.compiled.thresholds
            slot.measure = th.measure
            slot.zone_names = th.zone_names
            slot.down_per_h = th.down_per_h
            slot.up_per_h = th.up_per_h
            slot.max_speed_mps = active.compiled.max_speed_mps
        n_zones = int(program.lamp_zone.max()) + 1 if program.n_lamps else 0
        if len(slot.zone_names) < n_zones:
            if slot.zone_names:
                raise LiveControlError(
                    f"{where}: lamp_zone refers to zones it has no thresholds for"
                )
            slot.zone_names = tuple(f"zone-{z}" for z in range(n_zones))
            slot.down_per_h = np.full((n_zones, 0), np.nan, np.float32)
            slot.up_per_h = np.full((n_zones, 0), np.nan, np.float32)
        slot.zone_steps = np.zeros(len(slot.zone_names), np.int8)
        slot.zone_demand_ns = np.full(len(slot.zone_names), _NEVER_NS, np.int64)
        for z, zone in enumerate(slot.zone_names):
            seen = self._demand.get((slot.measure, zone))
            if seen is not None:
                self._step_zone(slot, z, *seen)
        if math.isfinite(slot.max_speed_mps) and self._graph is None:
            raise LiveControlError(
                f"{where} filters presence at {slot.max_speed_mps} m/s; pass the inventory's "
                "neighbour graph (neighbours=) so false triggers can be dropped as in simulation"
            )
        return slot

    def _check_overlaps(self, slots: list[_Slot]) -> None:
        for a in range(len(slots)):
            for b in range(a + 1, len(slots)):
                sa, sb = slots[a], slots[b]
                if sa.start_ns < sb.end_ns and sb.start_ns < sa.end_ns:
                    both = np.intersect1d(sa.lamps, sb.lamps)
                    if len(both):
                        lamp = self._ids[int(both[0])]
                        raise LiveControlError(
                            f"programs {a} ({sa.label}) and {b} ({sb.label}) both drive lamp "
                            f"{lamp} between {max(sa.start_ns, sb.start_ns)} and "
                            f"{min(sa.end_ns, sb.end_ns)} ns; a lamp follows one program at a time",
                            lamp,
                        )

    def set_overrides(self, overrides: Iterable[Override]) -> None:
        """Replace every override (e.g. with the API's active overrides)."""
        self._overrides = OverrideTable(
            self._ids, [str(g) for g in self._inv.group.tolist()], overrides
        )

    def add_override(self, override: Override) -> None:
        """Add one override; it replaces older ones on its lamps from its start (latest wins)."""
        self._overrides = self._overrides.with_override(override)

    # --- inputs --------------------------------------------------------------------------------

    def presence(self, source_id: str, time_ns: int) -> int:
        """A detection by sensor or lamp ``source_id`` at ``time_ns``; returns the lamps raised
        (0 for an unknown source, which is counted)."""
        lamps = self._sensor_lamps.get(source_id)
        if lamps is None:
            i = self._index.get(source_id)
            if i is None:
                self.counters["presence_unknown_source"] += 1
                return 0
            lamps = np.array([i], np.int64)
        t = int(time_ns) // self._tick_ns
        listed = lamps.tolist()
        for k, i in enumerate(listed):
            self._pending_tick.append(t)
            self._pending_lamp.append(int(i))
            self._pending_primary.append(-1 if k == 0 else int(listed[0]))
        return len(lamps)

    def presence_readings(self, readings: Iterable[Reading]) -> int:
        """:meth:`presence` for every ``ReadingKind.PRESENCE`` reading with a value > 0."""
        return sum(
            self.presence(r.source_id, r.time_ns)
            for r in readings
            if r.kind is ReadingKind.PRESENCE and r.value > 0
        )

    def demand(
        self, per_h: Mapping[str, float], time_ns: int, *, measure: str | None = None
    ) -> int:
        """Measured demand per adaptive zone (people or vehicles per hour) at ``time_ns``.

        Zones are the policies' zone names (street or group names). ``measure`` (``"footfall"``
        or ``"traffic"``) limits the update to policies stepping on that measure; None updates
        every policy with a zone of that name. NaN means no data (normal class). Returns the
        number of (program, zone) pairs updated; names no program knows are counted.
        """
        updated = 0
        for zone, value in per_h.items():
            v = float(value)
            if not (math.isnan(v) or v >= 0):
                raise ValueError(f"demand for zone {zone!r} must be >= 0 per hour, got {v!r}")
            hit = False
            for slot in self._slots:
                if measure is not None and slot.measure != measure:
                    continue
                if zone in slot.zone_names:
                    self._step_zone(slot, slot.zone_names.index(zone), v, int(time_ns))
                    self._demand[(slot.measure, zone)] = (v, int(time_ns))
                    updated += 1
                    hit = True
            if not hit:
                self.counters["demand_unknown_zone"] += 1
        return updated

    def _step_zone(self, slot: _Slot, z: int, value: float, time_ns: int) -> None:
        last_ns = int(slot.zone_demand_ns[z])
        if time_ns < last_ns:
            return  # a late, older reading: the zone has moved on
        down, up = slot.down_per_h[z : z + 1], slot.up_per_h[z : z + 1]
        if down.shape[1] == 0 or not np.isfinite(down).any():
            slot.zone_steps[z] = 0
        else:
            # Hysteresis continues from the zone's step unless that had gone stale (normal class).
            stale = time_ns - last_ns > self._stale_ns
            current = 0 if stale else int(slot.zone_steps[z])
            slot.zone_steps[z] = adaptive_steps(
                np.array([[value]], np.float32), down, up, initial_steps=[current]
            )[0, 0]
        slot.zone_demand_ns[z] = time_ns

    def forget_sent(self, lamp_ids: Iterable[str]) -> None:
        """Commands to these lamps were not delivered: send their targets again next step."""
        for lamp in lamp_ids:
            i = self._index.get(lamp)
            if i is not None:
                self._sent[i] = np.nan

    # --- the loop ------------------------------------------------------------------------------

    def step(self, now_ns: int) -> dict[str, list[LampCommand]]:
        """Tick the kernels up to the tick containing ``now_ns``; the commands to send, per gateway."""
        target = int(now_ns) // self._tick_ns
        first = target if self._last_tick is None else self._last_tick + 1
        cap = max(1, round(self.config.max_catch_up_s / self.config.tick_s))
        if target - first + 1 > cap:
            self.counters["skipped_ticks"] += target - first + 1 - cap
            first = target - cap + 1
        if first <= target:
            self._drain_presence(first, target)
            for k in range(first, target + 1):
                self._tick(k)
            self._last_tick = target
            if len(self._overrides):
                self._overrides = self._overrides.prune((target + 1) * self._tick_ns)
        return self._commands(int(now_ns))

    def _drain_presence(self, first: int, last: int) -> None:
        """Order pending detections by tick; stale ones are dropped, future ones stay pending."""
        if not self._pending_tick:
            self._due_tick = self._due_lamp = self._due_primary = np.zeros(0, np.int64)
            return
        ticks = np.array(self._pending_tick, np.int64)
        lamps = np.array(self._pending_lamp, np.int64)
        primary = np.array(self._pending_primary, np.int64)
        later = ticks > last
        self._pending_tick = ticks[later].tolist()
        self._pending_lamp = lamps[later].tolist()
        self._pending_primary = primary[later].tolist()
        ticks, lamps, primary = ticks[~later], lamps[~later], primary[~later]
        applied = np.maximum(ticks, first)
        max_age = round(self.config.presence_max_age_s / self.config.tick_s)
        fresh = applied - ticks <= max_age
        self.counters["presence_stale"] += int((~fresh).sum())
        applied, lamps, primary = applied[fresh], lamps[fresh], primary[fresh]
        order = np.argsort(applied, kind="stable")
        self._due_tick = applied[order]
        self._due_lamp = lamps[order]
        self._due_primary = primary[order]

    def _plan_for(self, time_ns: int) -> list[_Slot]:
        """The slots driving the lamps at ``time_ns``: covering programs, then the fallback."""
        if self._plan_key is not None and self._plan_from_ns <= time_ns < self._plan_until_ns:
            return self._plan
        covering = tuple(k for k, s in enumerate(self._slots) if s.covers(time_ns))
        fb = self._fallback
        if covering != self._plan_key or (
            len(self._fallback_lamps) and (fb is None or not fb.covers(time_ns))
        ):
            plan = [self._slots[k] for k in covering]
            taken = np.zeros(len(self._ids), np.bool_)
            for s in plan:
                taken[s.lamps] = True
            rest = np.flatnonzero(~taken).astype(np.int64)
            if len(rest) == 0:
                self._fallback = None
            elif (
                fb is None
                or not fb.covers(time_ns)
                or not np.array_equal(rest, self._fallback_lamps)
            ):
                self._fallback = self._fallback_slot(rest, time_ns)
            self._fallback_lamps = rest
            self._plan_key = covering
            self._plan = plan if self._fallback is None else [*plan, self._fallback]
            self._source[:] = -1
            self._up_rate[:] = self._down_rate[:] = INSTANT_FRAC_PER_S
            for k in covering:
                slot = self._slots[k]
                self._source[slot.lamps] = k
                self._up_rate[slot.lamps] = slot.up_rate
                self._down_rate[slot.lamps] = slot.down_rate
        # The plan holds until a program starts or one in it (the fallback too) ends.
        edges = [s.start_ns for s in self._slots if s.start_ns > time_ns]
        edges += [s.end_ns for s in self._plan]
        self._plan_from_ns = time_ns
        self._plan_until_ns = min(edges, default=time_ns + 1)
        return self._plan

    def _fallback_slot(self, lamps: I64, time_ns: int) -> _Slot:
        """Full output (with default floors) while the sun is low at the lamps' centroid."""
        cfg = self.config
        n_steps = round(cfg.fallback_window_s / cfg.tick_s)
        times = time_ns + np.arange(n_steps, dtype=np.int64) * self._tick_ns
        lat = float(self._inv.lat_deg[lamps].mean())
        lon = float(self._inv.lon_deg[lamps].mean())
        dark = solar_elevation_deg(times, lat, lon) < cfg.fallback_daylight_elevation_deg
        classes, lamp_profile = np.unique(self._inv.class_index[lamps], return_inverse=True)
        floors = floor_table()
        p_count = len(classes)
        program_frac = np.tile(dark.astype(np.float32), (p_count, 1))
        floor = np.stack(
            [
                np.where(dark, np.float32(floors[CLASS_ORDER[int(c)]]), np.float32(0.0))
                for c in classes
            ]
        ).astype(np.float32)
        n = len(lamps)
        instant = np.full(p_count, INSTANT_FRAC_PER_S, np.float32)
        program = NightProgram(
            start_ns=time_ns,
            step_s=cfg.tick_s,
            program_frac=program_frac,
            floor_frac=floor,
            boost_frac=np.zeros(p_count, np.float32),
            hold_s=np.zeros(p_count, np.float32),
            fade_up_frac_per_s=instant,
            fade_down_frac_per_s=instant.copy(),
            class_factor=np.ones((p_count, 1), np.float32),
            lamp_profile=lamp_profile.astype(np.int32).reshape(-1),
            lamp_zone=np.full(n, -1, np.int32),
            ceiling_frac=np.ones(n, np.float32),
            neighbour_indptr=np.zeros(n + 1, np.int64),
            neighbour_indices=np.zeros(0, np.int32),
            profile_names=tuple(f"{FALLBACK}/{CLASS_ORDER[int(c)].value}" for c in classes),
            meta={"policy": FALLBACK},
        )
        local = np.full(len(self._ids), -1, np.int32)
        local[lamps] = np.arange(n, dtype=np.int32)
        return _Slot(
            label=FALLBACK,
            active=None,
            program=program,
            kernel_program=program,
            shadows=False,
            lamps=lamps,
            local=local,
            start_ns=time_ns,
            end_ns=time_ns + n_steps * self._tick_ns,
            start_tick=time_ns // self._tick_ns,
            up_rate=np.full(n, INSTANT_FRAC_PER_S, np.float32),
            down_rate=np.full(n, INSTANT_FRAC_PER_S, np.float32),
        )

    def _tick(self, k: int) -> None:
        t_ns = k * self._tick_ns
        if len(self._overrides):
            self._override = self._overrides.apply(t_ns, no_override=float(NO_OVERRIDE))
        elif self._any_override:
            self._override[:] = NO_OVERRIDE
        self._any_override = bool(len(self._overrides))
        due = due_primary = None
        if len(self._due_tick):
            lo = int(np.searchsorted(self._due_tick, k, side="left"))
            hi = int(np.searchsorted(self._due_tick, k, side="right"))
            if hi > lo:
                due, due_primary = self._due_lamp[lo:hi], self._due_primary[lo:hi]
        for slot in self._plan_for(t_ns):
            idx = slot.lamps
            n = len(idx)
            trig = _NO_LAMPS
            if due is not None and due_primary is not None:
                mine = slot.local[due] >= 0
                lamps_due, primary_due = due[mine], due_primary[mine]
                if len(lamps_due) and math.isfinite(slot.max_speed_mps):
                    first = primary_due < 0
                    judged = slot.local[lamps_due[first]].astype(np.int32)
                    kept = self._plausible(slot, k, judged)
                    kept_global = slot.lamps[kept]
                    # A sensor's other lamps follow the verdict on its first lamp (or stand on
                    # their own when that lamp is under another program).
                    follow = ~first & (
                        np.isin(primary_due, kept_global) | (slot.local[primary_due] < 0)
                    )
                    # Followers stay out of the filter's history: it re-judges that history
                    # with each tick's detections, and would take a sensor's own lamps for
                    # somebody moving between them in no time.
                    followers = lamps_due[follow]
                    trig = np.concatenate([kept, slot.local[followers]]).astype(np.int32)
                else:
                    trig = slot.local[lamps_due].astype(np.int32)
            steps_now = slot.zone_steps
            if len(steps_now):
                fresh = t_ns - slot.zone_demand_ns <= self._stale_ns
                steps_now = np.where(fresh, steps_now, 0).astype(np.int8)
            ovr = self._override[idx] if self._any_override else None
            before = self._level[idx]
            hold = self._hold[idx] - slot.start_tick  # epoch ticks -> program steps
            if slot.shadows:
                level2 = np.concatenate([before, before])
                state = LampState(level2, np.concatenate([hold, hold]), level2)
                if len(trig):
                    trig = np.concatenate([trig, trig + np.int32(n)])
                if ovr is not None:
                    ovr = np.concatenate([ovr, ovr])
            else:
                state = LampState(before, hold, before)
            new = tick(
                slot.kernel_program,
                state,
                k - slot.start_tick,
                trigger_lamps=trig,
                steps_now=steps_now,
                override_frac=ovr,
            )
            self._before[idx] = before
            self._level[idx] = new.level_frac[:n]
            self._goal[idx] = new.level_frac[n:] if slot.shadows else new.level_frac
            self._hold[idx] = new.hold_until_step[:n] + slot.start_tick
        self.counters["ticks"] += 1

    def _plausible(self, slot: _Slot, k: int, trig: I32) -> I32:
        """Drop detections implying an impossible speed, against the slot's recent kept ones."""
        graph = self._graph
        assert graph is not None  # checked when the program was set
        window = 1 + math.ceil(
            float(graph.distance_m.max(initial=0.0)) / slot.max_speed_mps / self.config.tick_s
        )
        keep_from = next(
            (j for j, t in enumerate(slot.kept_ticks) if t >= k - window), len(slot.kept_ticks)
        )
        del slot.kept_ticks[:keep_from], slot.kept_lamps[:keep_from]
        glob = slot.lamps[trig]
        steps = np.array([*slot.kept_ticks, *([k] * len(glob))], np.int64)
        lamps = np.array([*slot.kept_lamps, *glob.tolist()], np.int32)
        kept, dropped = plausible_triggers(
            Triggers(steps, lamps),
            neighbour_indptr=graph.indptr,
            neighbour_indices=graph.indices,
            neighbour_distance_m=graph.distance_m,
            max_speed_mps=slot.max_speed_mps,
            step_s=self.config.tick_s,
        )
        self.counters["presence_implausible"] += dropped
        new = kept.lamp[kept.step == k]
        slot.kept_ticks.extend([k] * len(new))
        slot.kept_lamps.extend(new.tolist())
        return np.asarray(slot.local[new], dtype=np.int32)

    def _commands(self, now_ns: int) -> dict[str, list[LampCommand]]:
        if self._last_tick is None:
            return {}
        goal, sent = self._goal, self._sent
        overridden = self._override >= 0
        with np.errstate(invalid="ignore"):
            moved = ~(np.abs(goal - sent) <= np.float32(self.config.deadband_frac))
        switched = (goal == 0) != (sent == 0)
        send = np.flatnonzero(moved | switched | (overridden != self._sent_override))
        if len(send) == 0:
            return {}
        self._sent[send] = goal[send]
        self._sent_override[send] = overridden[send]
        # The kernel's fade time for the change, so the lamp fades as the simulation assumed.
        before = self._before[send]
        rate = np.where(goal[send] >= before, self._up_rate[send], self._down_rate[send])
        ramp = np.where(
            rate >= _INSTANT,
            np.float32(self.config.ramp_s),
            np.minimum(np.abs(goal[send] - before) / rate, np.float32(_MAX_RAMP_S)),
        )
        ramp_of = dict(zip(send.tolist(), ramp.tolist(), strict=True))
        order = send[np.argsort(self._gw_index[send], kind="stable")]
        out: dict[str, list[LampCommand]] = {}
        for i in order.tolist():
            reason = (
                "override" if overridden[i] else "fail_safe" if self._source[i] < 0 else "program"
            )
            out.setdefault(self._gateways[self._gw_index[i]], []).append(
                LampCommand(
                    lamp_id=self._ids[i],
                    level_frac=float(goal[i]),
                    ramp_s=ramp_of[i],
                    issued_ns=now_ns,
                    reason=reason,
                )
            )
        self.counters["commands"] += len(send)
        return out

    def snapshot(self) -> LiveSnapshot:
        """Copies of the per-lamp state after the last step (for live status and tests)."""
        labels = [*self._labels, FALLBACK]
        return LiveSnapshot(
            lamp_id=self._ids,
            level_frac=self._level.copy(),
            target_frac=self._goal.copy(),
            sent_frac=self._sent.copy(),
            overridden=self._override >= 0,
            source=tuple(labels[k] for k in self._source.tolist()),
            time_ns=None if self._last_tick is None else self._last_tick * self._tick_ns,
        )


# --- the async loop -----------------------------------------------------------------------------


class Clock(Protocol):
    """Where the loop gets its time; tests pass one that moves time instead of sleeping."""

    def now_ns(self) -> int: ...

    async def sleep_until(self, time_ns: int) -> None: ...


class SystemClock:
    """Wall-clock time (UTC epoch ns) and asyncio sleeps."""

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep_until(self, time_ns: int) -> None:
        await asyncio.sleep(max(0.0, (time_ns - time.time_ns()) / NS_PER_S))


async def run(
    controller: LiveController,
    clock: Clock,
    sink_for_gateway: Callable[[str], CommandSink],
    stop: asyncio.Event,
    *,
    on_send_error: Callable[[str, StreetlightError], None] | None = None,
    max_batch: int = MAX_COMMANDS_PER_BATCH,
) -> None:
    """Step ``controller`` once a tick and send each gateway its commands, until ``stop`` is set.

    Gateways are sent to concurrently, in batches of at most ``max_batch`` commands. A sink that
    raises :class:`StreetlightError` (a link that is down) has its lamps resent next tick
    (:meth:`LiveController.forget_sent`) and is reported to ``on_send_error``; any other error
    is a bug and ends the loop.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")

    async def deliver(gateway: str, commands: list[LampCommand]) -> None:
        sink = sink_for_gateway(gateway)
        for a in range(0, len(commands), max_batch):
            chunk = commands[a : a + max_batch]
            try:
                await sink.send(chunk)
            except StreetlightError as err:
                controller.forget_sent(c.lamp_id for c in commands[a:])
                if on_send_error is not None:
                    on_send_error(gateway, err)
                return

    tick_ns = controller.tick_ns
    while not stop.is_set():
        now = clock.now_ns()
        batches = controller.step(now)
        if batches:
            await asyncio.gather(*(deliver(g, c) for g, c in batches.items()))
        await clock.sleep_until((now // tick_ns + 1) * tick_ns)

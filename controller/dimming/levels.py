"""Lamp levels for a whole night (simulation) and for one tick (live control).

Both call the same per-lamp step (:func:`controller.dimming._kernels._lamp_step`); a policy
that was simulated is the policy that runs. The wrappers check every array and raise
``ValueError`` saying what to fix before any kernel sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.dimming._kernels import _expand_triggers, _night_parallel, _night_serial, _tick
from controller.dimming.config import PARALLEL_MIN_LAMPS
from controller.dimming.power import LampElectrics
from controller.dimming.program import NightProgram

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

#: ``hold_until_step`` of a lamp that has never detected anybody.
NO_HOLD = np.int64(-(2**62))
#: ``override_frac`` of a lamp that follows its program.
NO_OVERRIDE = np.float32(-1.0)


@dataclass(frozen=True, eq=False)
class LampState:
    """What a lamp carries from one step to the next.

    ``hold_until_step``: presence holds the boost while ``step < hold_until_step``.
    ``sent_frac``: the (floored) target last sent to the controller, for deadband command
    counting: a command carries its fade time, so one change of target is one command.
    """

    level_frac: F32
    hold_until_step: I64
    sent_frac: F32

    @classmethod
    def initial(cls, n_lamps: int, level_frac: float = 0.0) -> LampState:
        return cls(
            level_frac=np.full(n_lamps, level_frac, dtype=np.float32),
            hold_until_step=np.full(n_lamps, NO_HOLD, dtype=np.int64),
            sent_frac=np.full(n_lamps, level_frac, dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.level_frac)


@dataclass(frozen=True, eq=False)
class Triggers:
    """Presence detections as (step, lamp) pairs, sorted by step."""

    step: I64
    lamp: I32

    def __post_init__(self) -> None:
        if self.step.dtype != np.int64 or self.lamp.dtype != np.int32:
            raise ValueError("Triggers.step must be int64 and Triggers.lamp int32")
        if self.step.shape != self.lamp.shape or self.step.ndim != 1:
            raise ValueError("Triggers.step and Triggers.lamp must be 1-D arrays of equal length")
        if len(self.step) > 1 and np.any(np.diff(self.step) < 0):
            raise ValueError("Triggers must be sorted by step (use Triggers.from_unsorted)")

    @classmethod
    def from_unsorted(cls, step: npt.ArrayLike, lamp: npt.ArrayLike) -> Triggers:
        s = np.asarray(step, dtype=np.int64)
        order = np.argsort(s, kind="stable")
        return cls(step=s[order], lamp=np.asarray(lamp, dtype=np.int32)[order])

    @classmethod
    def none(cls) -> Triggers:
        return cls(step=np.zeros(0, dtype=np.int64), lamp=np.zeros(0, dtype=np.int32))

    def __len__(self) -> int:
        return len(self.step)


@dataclass(frozen=True, eq=False)
class NightResult:
    """What a night run produced, per lamp.

    ``energy_wh[i, h]`` is lamp ``i``'s energy in hour ``h`` counted from the run's first step
    (standby included). ``on_s`` burning seconds; ``commands`` levels that moved more than the
    deadband since the last one sent (radio traffic: one command per change of target, its
    fade carried by the command); ``switch_ons`` off-to-on transitions;
    ``samples[i, s]`` the level at every ``sample_every_s`` seconds (empty if not asked for).
    ``below_required_s`` seconds each lamp was below its required level (see ``run_night``);
    ``probe_level_frac[m]`` / ``probe_below_required_s[m]``: for probe ``m``, the lamp's level
    after the probe's step and its seconds below requirement before that step.
    """

    energy_wh: F64
    on_s: F64
    commands: I32
    switch_ons: I32
    samples: F32
    sample_every_s: float
    state: LampState
    below_required_s: F64
    probe_level_frac: F32
    probe_below_required_s: F64

    @property
    def energy_kwh(self) -> float:
        return float(self.energy_wh.sum() / 1000.0)

    @property
    def energy_by_hour_kwh(self) -> F64:
        return np.asarray(self.energy_wh.sum(axis=0) / 1000.0, dtype=np.float64)


def _zone_rows(
    program: NightProgram, steps: npt.NDArray[np.int8] | None, n_intervals: int = 1
) -> tuple[I32, np.ndarray]:
    """Adaptive steps with an extra all-zero last row for lamps without a zone (-1).

    The result has at least ``n_intervals`` columns (zero-padded) so that the kernel can index
    every interval of the run for every row.
    """
    zone = program.lamp_zone
    if steps is None:
        if zone.size and zone.max() >= 0:
            raise ValueError("lamps have adaptive zones but no adaptive_steps were given")
        steps = np.zeros((0, 1), dtype=np.int8)
    steps = np.asarray(steps)
    if steps.ndim != 2 or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError("adaptive steps must be an integer array [zone, interval]")
    if zone.size and zone.max() >= steps.shape[0]:
        raise ValueError(
            f"lamp_zone refers to zone {zone.max()} but steps has {steps.shape[0]} zones"
        )
    if steps.size and (steps.min() < 0 or steps.max() > program.n_adaptive_steps):
        raise ValueError(
            f"adaptive steps must be within [0, {program.n_adaptive_steps}] (class_factor columns)"
        )
    ext = np.zeros((steps.shape[0] + 1, max(steps.shape[1], n_intervals, 1)), dtype=np.int32)
    ext[: steps.shape[0], : steps.shape[1]] = steps
    rows = np.where(zone < 0, steps.shape[0], zone).astype(np.int32)
    return rows, ext


def _hold_steps(program: NightProgram) -> I64:
    return np.ceil(program.hold_s.astype(np.float64) / program.step_s).astype(np.int64)


def _rates(program: NightProgram) -> tuple[F32, F32]:
    step = np.float32(program.step_s)
    return (program.fade_up_frac_per_s * step).astype(np.float32), (
        program.fade_down_frac_per_s * step
    ).astype(np.float32)


def _overrides(program: NightProgram, override_frac: npt.ArrayLike | None) -> F32:
    if override_frac is None:
        return np.full(program.n_lamps, NO_OVERRIDE, dtype=np.float32)
    ovr = np.asarray(override_frac, dtype=np.float32)
    if ovr.shape != (program.n_lamps,):
        raise ValueError(f"override_frac must have one value per lamp ({program.n_lamps})")
    if np.any(np.isnan(ovr)) or np.any(ovr > 1.0):
        raise ValueError("override_frac must be a level in [0, 1], or negative for no override")
    return np.where(ovr < 0, NO_OVERRIDE, ovr).astype(np.float32)


def _check_state(state: LampState, n_lamps: int) -> None:
    if (len(state.level_frac), len(state.hold_until_step), len(state.sent_frac)) != (n_lamps,) * 3:
        raise ValueError(f"lamp state must have one entry per lamp ({n_lamps})")
    if state.level_frac.dtype != np.float32 or state.sent_frac.dtype != np.float32:
        raise ValueError("lamp state levels must be float32")
    if state.hold_until_step.dtype != np.int64:
        raise ValueError("lamp state hold_until_step must be int64")


def _check_triggers(triggers: Triggers, n_lamps: int) -> None:
    if len(triggers) and (triggers.lamp.min() < 0 or triggers.lamp.max() >= n_lamps):
        raise ValueError(f"trigger lamp indices must be within [0, {n_lamps})")


def _requirements(
    program: NightProgram,
    required_frac: npt.ArrayLike | None,
    lamp_required_row: npt.ArrayLike | None,
    n_intervals: int,
) -> tuple[I32, F32]:
    """Requirement rows with an extra all-zero last row for lamps without a requirement.

    At least ``n_intervals`` columns, zero-padded, like :func:`_zone_rows`.
    """
    n = program.n_lamps
    if required_frac is None:
        if lamp_required_row is not None:
            raise ValueError("lamp_required_row was given without required_frac")
        return np.zeros(n, dtype=np.int32), np.zeros((1, max(n_intervals, 1)), dtype=np.float32)
    req = np.asarray(required_frac, dtype=np.float32)
    if (
        req.ndim != 2
        or not np.all(np.isfinite(req))
        or (req.size and (req.min() < 0 or req.max() > 1))
    ):
        raise ValueError("required_frac must be a 2-D array [row, interval] of levels in [0, 1]")
    rows = (
        np.zeros(n, dtype=np.int32)
        if lamp_required_row is None
        else np.asarray(lamp_required_row, dtype=np.int32).reshape(-1)
    )
    if rows.shape != (n,) or (n and (rows.min() < -1 or rows.max() >= req.shape[0])):
        raise ValueError(
            f"lamp_required_row must give each of {n} lamps a row of required_frac, or -1"
        )
    ext = np.zeros((req.shape[0] + 1, max(req.shape[1], n_intervals, 1)), dtype=np.float32)
    ext[: req.shape[0], : req.shape[1]] = req
    return np.where(rows < 0, req.shape[0], rows).astype(np.int32), ext


def _probes(
    n_lamps: int, probe_lamp: npt.ArrayLike, probe_step: npt.ArrayLike, first: int, end: int
) -> tuple[npt.NDArray[np.intp], I64, I64]:
    """Probes sorted by lamp then step, as CSR; ``order`` maps sorted positions to the caller's."""
    lamp = np.asarray(probe_lamp, dtype=np.int64).reshape(-1)
    step = np.asarray(probe_step, dtype=np.int64).reshape(-1)
    if lamp.shape != step.shape:
        raise ValueError("probe_lamp and probe_step must have the same length")
    if len(lamp) and (lamp.min() < 0 or lamp.max() >= n_lamps):
        raise ValueError(f"probe lamps must be within [0, {n_lamps})")
    if len(step) and (step.min() < first or step.max() > end):
        raise ValueError(f"probe steps must be within the run's steps {first}..{end}")
    order = np.lexsort((step, lamp))
    ptr = np.zeros(n_lamps + 1, dtype=np.int64)
    np.cumsum(np.bincount(lamp, minlength=n_lamps), out=ptr[1:])
    return order, ptr, np.ascontiguousarray(step[order])


def _unsort(values: npt.NDArray[np.generic], order: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    out = np.empty_like(values)
    out[order] = values
    return out


def expand_triggers(program: NightProgram, triggers: Triggers) -> tuple[I64, I64]:
    """Per-lamp sorted trigger steps (CSR ``ptr``, ``steps``): each lamp and its neighbours."""
    _check_triggers(triggers, program.n_lamps)
    ptr, steps = _expand_triggers(
        triggers.step,
        triggers.lamp,
        program.neighbour_indptr,
        program.neighbour_indices,
        program.n_lamps,
    )
    return ptr, steps


def run_night(
    program: NightProgram,
    electrics: LampElectrics,
    *,
    triggers: Triggers | None = None,
    adaptive_steps: npt.NDArray[np.int8] | None = None,
    adaptive_interval_s: float = 900.0,
    override_frac: npt.ArrayLike | None = None,
    state: LampState | None = None,
    start_step: int = 0,
    n_steps: int | None = None,
    sample_every_s: float = 0.0,
    deadband_frac: float = 0.02,
    required_frac: npt.ArrayLike | None = None,
    lamp_required_row: npt.ArrayLike | None = None,
    probe_lamp: npt.ArrayLike = (),
    probe_step: npt.ArrayLike = (),
    parallel: bool | None = None,
) -> NightResult:
    """Drive every lamp of ``program`` through steps ``start_step .. start_step + n_steps``.

    ``adaptive_steps[z, n]`` are each zone's class steps in intervals of ``adaptive_interval_s``
    counted from the program's first step (see :func:`controller.dimming.adaptive.adaptive_steps`).
    ``required_frac[r, n]`` is the level a lamp of requirement row ``r`` must give in adaptive
    interval ``n`` (what its lighting class requires then); ``lamp_required_row[i]`` picks each
    lamp's row (-1: no requirement). Probes (``probe_lamp[m]``, ``probe_step[m]``, steps within
    ``start_step .. start_step + n_steps``) record a lamp's level and its seconds below requirement
    at given steps, in the order given. ``parallel=None`` picks the parallel kernel for large fleets.
    """
    n = program.n_lamps
    if len(electrics.rated_power_w) != n:
        raise ValueError(f"electrics describe {len(electrics.rated_power_w)} lamps, program {n}")
    n_steps = program.n_steps - start_step if n_steps is None else n_steps
    if start_step < 0 or n_steps < 0 or start_step + n_steps > program.n_steps:
        raise ValueError(
            f"steps {start_step}..{start_step + n_steps} fall outside the program's 0..{program.n_steps}"
        )
    steps_per_hour = 3600.0 / program.step_s
    if abs(steps_per_hour - round(steps_per_hour)) > 1e-9:
        raise ValueError("step_s must divide an hour evenly")
    interval_steps = adaptive_interval_s / program.step_s
    if interval_steps < 1 or abs(interval_steps - round(interval_steps)) > 1e-9:
        raise ValueError("adaptive_interval_s must be a whole number of steps")
    sample_every = 0
    if sample_every_s:
        sample_every = round(sample_every_s / program.step_s)
        if sample_every < 1 or abs(sample_every * program.step_s - sample_every_s) > 1e-9:
            raise ValueError("sample_every_s must be a whole number of steps")
    if not 0.0 <= deadband_frac < 1.0:
        raise ValueError("deadband_frac must be within [0, 1)")
    state = LampState.initial(n) if state is None else state
    _check_state(state, n)
    needed = (start_step + n_steps - 1) // round(interval_steps) + 1
    zone_rows, steps_ext = _zone_rows(program, adaptive_steps)
    if n and zone_rows.min() < steps_ext.shape[0] - 1 and steps_ext.shape[1] < needed:
        raise ValueError(
            f"adaptive_steps covers {steps_ext.shape[1]} intervals, the run needs {needed}"
        )
    req_rows, req_ext = _requirements(program, required_frac, lamp_required_row, 1)
    if n and req_rows.min() < req_ext.shape[0] - 1 and req_ext.shape[1] < needed:
        raise ValueError(
            f"required_frac covers {req_ext.shape[1]} intervals, the run needs {needed}"
        )
    # Pad to every interval of the run: rows without data read zeros, never past the end.
    zone_rows, steps_ext = _zone_rows(program, adaptive_steps, needed)
    req_rows, req_ext = _requirements(program, required_frac, lamp_required_row, needed)
    pr_order, pr_ptr, pr_step = _probes(n, probe_lamp, probe_step, start_step, start_step + n_steps)
    ev_ptr, ev_step = expand_triggers(program, triggers or Triggers.none())
    up, down = _rates(program)
    n_hours = int(np.ceil(n_steps / round(steps_per_hour)))
    n_samples = 0 if sample_every == 0 else -(-n_steps // sample_every)
    energy = np.zeros((n, n_hours), dtype=np.float64)
    on_steps = np.zeros(n, dtype=np.int32)
    commands = np.zeros(n, dtype=np.int32)
    switch_ons = np.zeros(n, dtype=np.int32)
    samples = np.zeros((n, n_samples), dtype=np.float32)
    level_out = np.empty(n, dtype=np.float32)
    hold_out = np.empty(n, dtype=np.int64)
    sent_out = np.empty(n, dtype=np.float32)
    below = np.zeros(n, dtype=np.int64)
    pr_level = np.zeros(len(pr_step), dtype=np.float32)
    pr_below = np.zeros(len(pr_step), dtype=np.int64)
    use_parallel = n >= PARALLEL_MIN_LAMPS if parallel is None else parallel
    kernel = _night_parallel if use_parallel else _night_serial
    kernel(
        start_step,
        n_steps,
        round(steps_per_hour),
        sample_every,
        np.float32(deadband_frac),
        program.program_frac,
        program.floor_frac,
        program.boost_frac,
        _hold_steps(program),
        up,
        down,
        program.class_factor,
        steps_ext,
        round(interval_steps),
        program.lamp_profile,
        zone_rows,
        program.ceiling_frac,
        _overrides(program, override_frac),
        electrics.rated_power_w,
        electrics.standby_power_w,
        electrics.tables,
        electrics.curve_index,
        ev_ptr,
        ev_step,
        state.level_frac,
        state.hold_until_step,
        state.sent_frac,
        req_ext,
        req_rows,
        pr_ptr,
        pr_step,
        energy,
        on_steps,
        commands,
        switch_ons,
        samples,
        level_out,
        hold_out,
        sent_out,
        below,
        pr_level,
        pr_below,
    )
    energy *= program.step_s / 3600.0
    return NightResult(
        energy_wh=energy,
        on_s=on_steps.astype(np.float64) * program.step_s,
        commands=commands,
        switch_ons=switch_ons,
        samples=samples,
        sample_every_s=float(sample_every * program.step_s),
        state=LampState(level_out, hold_out, sent_out),
        below_required_s=below.astype(np.float64) * program.step_s,
        probe_level_frac=_unsort(pr_level, pr_order),
        probe_below_required_s=_unsort(pr_below, pr_order).astype(np.float64) * program.step_s,
    )


def tick(
    program: NightProgram,
    state: LampState,
    step: int,
    *,
    trigger_lamps: npt.ArrayLike = (),
    steps_now: npt.ArrayLike | None = None,
    override_frac: npt.ArrayLike | None = None,
) -> LampState:
    """Advance every lamp by one live step; returns the new state (``state`` is not changed).

    ``trigger_lamps`` are the lamps that detected presence since the last tick; ``steps_now``
    each adaptive zone's current class step. ``sent_frac`` is carried over unchanged: the
    control loop decides what to send and records it.
    """
    n = program.n_lamps
    _check_state(state, n)
    if not 0 <= step < program.n_steps:
        raise ValueError(f"step {step} is outside the program's 0..{program.n_steps - 1}")
    lamps = np.asarray(trigger_lamps, dtype=np.int32).reshape(-1)
    _check_triggers(Triggers(np.zeros(len(lamps), dtype=np.int64), lamps), n)
    zone_rows, steps_ext = _zone_rows(
        program, None if steps_now is None else np.asarray(steps_now).reshape(-1, 1)
    )
    up, down = _rates(program)
    hold = state.hold_until_step.copy()
    out = np.empty(n, dtype=np.float32)
    _tick(
        step,
        program.program_frac,
        program.floor_frac,
        program.boost_frac,
        _hold_steps(program),
        up,
        down,
        program.class_factor,
        np.ascontiguousarray(steps_ext[:, 0]),
        program.lamp_profile,
        zone_rows,
        program.ceiling_frac,
        _overrides(program, override_frac),
        lamps,
        program.neighbour_indptr,
        program.neighbour_indices,
        state.level_frac,
        hold,
        out,
    )
    return LampState(out, hold, state.sent_frac.copy())

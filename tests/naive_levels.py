"""Slow, obviously correct twins of the level kernels.

``night_numpy`` walks the night step by step, vectorised over lamps (time-major, the opposite
loop order of the kernel, with triggers applied to neighbours directly instead of expanded
per lamp). ``night_python`` is plain Python loops over lamps and steps for small fleets. Both
follow the rules in words:

  base   = program level x adaptive class factor
  target = max(base, boost) while a detection holds and the program has the lamp lit
  target = min(target, CLO ceiling); an override replaces the target
  level  moves toward target by at most the fade rate per step
  level  = max(level, safety floor), then min(level, 1)
"""

from __future__ import annotations

import math

import numpy as np

from controller.dimming.levels import NO_HOLD, LampState, NightResult, Triggers
from controller.dimming.power import LampElectrics
from controller.dimming.program import NightProgram


def _setup(program, steps, interval_s):
    hold_steps = np.ceil(program.hold_s.astype(np.float64) / program.step_s).astype(np.int64)
    dt = np.float32(program.step_s)
    up = (program.fade_up_frac_per_s * dt).astype(np.float32)
    down = (program.fade_down_frac_per_s * dt).astype(np.float32)
    interval = round(interval_s / program.step_s)
    return hold_steps, up, down, interval


def night_numpy(
    program: NightProgram,
    electrics: LampElectrics,
    triggers: Triggers | None = None,
    adaptive_steps=None,
    adaptive_interval_s: float = 900.0,
    override_frac=None,
    state: LampState | None = None,
    start_step: int = 0,
    n_steps: int | None = None,
    sample_every_s: float = 0.0,
    deadband_frac: float = 0.02,
    required_frac=None,
    lamp_required_row=None,
    probe_lamp=(),
    probe_step=(),
) -> NightResult:
    n = program.n_lamps
    n_steps = program.n_steps - start_step if n_steps is None else n_steps
    hold_steps, up, down, interval = _setup(program, adaptive_steps, adaptive_interval_s)
    state = state or LampState.initial(n)
    level = state.level_frac.copy()
    hold = state.hold_until_step.copy()
    sent = state.sent_frac.copy()
    prof = program.lamp_profile
    zone = program.lamp_zone
    has_zone = zone >= 0
    ovr = (
        np.full(n, -1.0, np.float32)
        if override_frac is None
        else np.asarray(override_frac, np.float32)
    )
    triggers = triggers or Triggers.none()
    nb_ptr, nb_idx = program.neighbour_indptr, program.neighbour_indices
    # Which lamps each trigger raises: the lamp and its neighbours, padded with the lamp itself.
    width = 1 + int(np.diff(nb_ptr).max(initial=0))
    raised = np.repeat(np.arange(n)[:, None], width, axis=1)
    for i in range(n):
        raised[i, 1 : 1 + nb_ptr[i + 1] - nb_ptr[i]] = nb_idx[nb_ptr[i] : nb_ptr[i + 1]]
    bounds = np.searchsorted(
        triggers.step, np.arange(start_step, start_step + n_steps + 1), "right"
    )
    rows = np.arange(n)
    tab = electrics.tables[electrics.curve_index]
    sph = round(3600 / program.step_s)
    energy = np.zeros((n, math.ceil(n_steps / sph)))
    on = np.zeros(n, np.int64)
    cmds = np.zeros(n, np.int32)
    sw = np.zeros(n, np.int32)
    every = round(sample_every_s / program.step_s) if sample_every_s else 0
    samples = np.zeros((n, 0 if not every else -(-n_steps // every)), np.float32)
    one = np.float32(1.0)
    # Requirement per lamp and interval (0 where a lamp has none), and probes by step.
    if required_frac is None:
        required = np.zeros((n, 1 + (start_step + n_steps) // interval), np.float32)
    else:
        req_rows = np.zeros(n, int) if lamp_required_row is None else np.asarray(lamp_required_row)
        required = np.where(
            (req_rows >= 0)[:, None],
            np.asarray(required_frac, np.float32)[np.maximum(req_rows, 0)],
            0,
        ).astype(np.float32)
    below = np.zeros(n, np.int64)
    probe_lamp = np.asarray(probe_lamp, np.int64)
    probe_step = np.asarray(probe_step, np.int64)
    probe_level = np.zeros(len(probe_lamp), np.float32)
    probe_below = np.zeros(len(probe_lamp), np.int64)
    for s in range(n_steps):
        t = start_step + s
        lo = 0 if s == 0 else bounds[s - 1]
        if bounds[s] > lo:
            r = raised[triggers.lamp[lo : bounds[s]]].ravel()
            until = np.repeat(triggers.step[lo : bounds[s]], width) + hold_steps[prof[r]]
            np.maximum.at(hold, r, until)
        prog = program.program_frac[prof, t]
        k = np.zeros(n, np.int64)
        if adaptive_steps is not None and has_zone.any():
            k[has_zone] = adaptive_steps[zone[has_zone], t // interval]
        base = prog * program.class_factor[prof, k]
        target = np.where((hold > t) & (prog > 0), np.maximum(base, program.boost_frac[prof]), base)
        target = np.minimum(target, program.ceiling_frac)
        target = np.where(ovr >= 0, ovr, target)
        new = np.minimum(np.maximum(target, level - down[prof]), level + up[prof])
        new = np.minimum(np.maximum(new, program.floor_frac[prof, t]), one).astype(np.float32)
        lit = new > 0
        on += lit
        sw += lit & (level <= 0)
        x = new.astype(np.float64) * 100
        j = np.minimum(x.astype(np.int64), 99)
        pf = tab[rows, j] + (x - j) * (tab[rows, j + 1] - tab[rows, j])
        power = electrics.standby_power_w + np.where(lit, electrics.rated_power_w * pf, 0.0)
        energy[:, s // sph] += power
        # Commands carry fade times: one per change of the floored target, not per fade step.
        goal = np.minimum(np.maximum(target, program.floor_frac[prof, t]), one).astype(np.float32)
        moved = np.abs(goal - sent) > np.float32(deadband_frac)
        cmds += moved
        sent = np.where(moved, goal, sent)
        now = probe_step == t
        probe_level[now] = new[probe_lamp[now]]
        probe_below[now] = below[probe_lamp[now]]
        below += new < required[:, t // interval]
        level = new
        if every and s % every == 0:
            samples[:, s // every] = level
    energy *= program.step_s / 3600.0
    return NightResult(
        energy_wh=energy,
        on_s=on.astype(np.float64) * program.step_s,
        commands=cmds,
        switch_ons=sw,
        samples=samples,
        sample_every_s=float(every * program.step_s),
        state=LampState(level, hold, sent),
        below_required_s=below * program.step_s,
        probe_level_frac=np.where(
            probe_step == start_step + n_steps, level[probe_lamp], probe_level
        ),
        probe_below_required_s=np.where(
            probe_step == start_step + n_steps, below[probe_lamp], probe_below
        )
        * program.step_s,
    )


def night_python(
    program: NightProgram,
    electrics: LampElectrics,
    triggers: Triggers | None = None,
    adaptive_steps=None,
    adaptive_interval_s: float = 900.0,
    n_steps: int | None = None,
) -> tuple[list[list[float]], list[float]]:
    """Plain-Python levels [lamp][step] and energy per lamp (Wh) for a small fleet."""
    n = program.n_lamps
    n_steps = program.n_steps if n_steps is None else n_steps
    hold_steps, up, down, interval = _setup(program, adaptive_steps, adaptive_interval_s)
    triggers = triggers or Triggers.none()
    raised_by: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        raised_by[i].append(i)
        for q in range(program.neighbour_indptr[i], program.neighbour_indptr[i + 1]):
            raised_by[i].append(int(program.neighbour_indices[q]))
    levels = [[0.0] * n_steps for _ in range(n)]
    energy = [0.0] * n
    hold = [int(NO_HOLD)] * n
    level = [np.float32(0.0)] * n
    table = electrics.tables
    for t in range(n_steps):
        for s, i in zip(triggers.step, triggers.lamp, strict=True):
            if s == t:
                for j in raised_by[int(i)]:
                    hold[j] = max(hold[j], t + int(hold_steps[program.lamp_profile[j]]))
        for i in range(n):
            p = int(program.lamp_profile[i])
            z = int(program.lamp_zone[i])
            k = int(adaptive_steps[z][t // interval]) if z >= 0 else 0
            prog = program.program_frac[p, t]
            base = prog * program.class_factor[p, k]
            target = base
            if hold[i] > t and prog > 0:
                target = max(base, program.boost_frac[p])
            target = min(target, program.ceiling_frac[i])
            lv = level[i]
            lv = min(target, lv + up[p]) if target > lv else max(target, lv - down[p])
            lv = min(max(lv, program.floor_frac[p, t]), np.float32(1.0))
            level[i] = np.float32(lv)
            levels[i][t] = float(lv)
            watts = float(electrics.standby_power_w[i])
            if lv > 0:
                x = float(lv) * 100
                j = min(int(x), 99)
                row = table[electrics.curve_index[i]]
                watts += float(electrics.rated_power_w[i]) * (
                    row[j] + (x - j) * (row[j + 1] - row[j])
                )
            energy[i] += watts * program.step_s / 3600.0
    return levels, energy

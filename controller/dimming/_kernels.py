"""Private numba kernels for lamp levels, presence, adaptive class steps, power and DALI.

Theory of operation
-------------------
A night is ``T`` steps of ``dt`` seconds. Every lamp carries three pieces of state: its current
level (fraction of full output), the step until which a presence detection holds its boost
(exclusive), and the level last sent to its controller (for counting radio commands). One step
of one lamp is :func:`_lamp_step`; both the whole-night kernels (simulation) and the one-tick
kernel (live control) call it, so a simulated policy and a live one cannot drift apart.

Presence triggers raise the detecting lamp and its neighbours. Before a night run the triggers
are expanded into one sorted list of trigger steps per lamp (:func:`_expand_triggers`), which
makes lamps independent of each other so the night loop runs lamp-major and in parallel.

For the planner's compliance figures a run can also carry *probes*: per-lamp sorted steps at
which the kernel records the lamp's level (after that step) and how many steps so far the lamp
spent below the level its lighting class required (``req_frac``, per requirement row and
adaptive interval). The seconds a road user spent under a lamp below requirement are then the
difference of two probes, taken when the user arrived and when they left.

Rules: arrays in, preallocated arrays out; no I/O, clock, logging or Python objects. "No
override" is encoded as a negative level, never NaN, because the level kernels use fastmath.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from controller.dimming.config import FAST_OPTIONS, FAST_PARALLEL_OPTIONS, JIT_OPTIONS

#: Samples per unit of level in the power tables: index ``j`` holds P/P_rated at level j/100.
POWER_TABLE_STEPS = 100


@njit(inline="always", **FAST_OPTIONS)
def _target(held, prog, factor, boost, ceiling, override):
    """The level a lamp is driven towards this step, before the safety floor.

    ``held`` is True while a presence detection holds the boost. A lamp switched off by the
    program (``prog == 0``) is not woken by presence. An override (``override >= 0``) replaces
    the program target.
    """
    base = prog * factor
    target = base
    if held and prog > 0.0:
        target = max(base, boost)
    target = min(target, ceiling)
    if override >= 0.0:
        target = override
    return target


@njit(inline="always", **FAST_OPTIONS)
def _lamp_step(level, target, floor, up, down):
    """One step of one lamp towards ``target``: the new level, a float32 fraction.

    Equal, by distributing max over min, to min(max(min(max(target, level - down), level + up),
    floor), 1): the fade limits, then the safety floor, then full output. Written so that the
    chain depending on the previous level is three operations long, not five; that chain is
    what bounds a lamp's steps per second.
    """
    upper = min(max(level + up, floor), np.float32(1.0))
    return min(max(level - down, max(target, floor)), upper)


@njit(inline="always", **FAST_OPTIONS)
def _power_frac(level, table):
    """P/P_rated at ``level`` by linear interpolation in a power table (0 when off)."""
    x = np.float64(level) * POWER_TABLE_STEPS
    j = min(int(x), POWER_TABLE_STEPS - 1)
    w = x - j
    return table[j] + w * (table[j + 1] - table[j])


@njit(**FAST_OPTIONS)
def _run_lamp(
    i,
    start_step,
    n_steps,
    steps_per_hour,
    sample_every,
    deadband,
    program,
    floor,
    boost,
    hold_steps,
    up,
    down,
    class_factor,
    steps,
    interval_steps,
    lamp_profile,
    lamp_zone_row,
    ceiling,
    override,
    rated_w,
    standby_w,
    power_table,
    lamp_curve,
    ev_ptr,
    ev_step,
    level0,
    hold0,
    sent0,
    req_frac,
    lamp_req_row,
    pr_ptr,
    pr_step,
    energy_wh,
    on_steps,
    commands,
    switch_ons,
    samples,
    level_out,
    hold_out,
    sent_out,
    below_steps,
    pr_level,
    pr_below,
):
    p = lamp_profile[i]
    z = lamp_zone_row[i]
    table = power_table[lamp_curve[i]]
    ceil_i = ceiling[i]
    ovr = override[i]
    boost_p = boost[p]
    hold_p = hold_steps[p]
    up_p = up[p]
    down_p = down[p]
    rated = rated_w[i]
    standby = standby_w[i]
    level = level0[i]
    hold_until = hold0[i]
    sent = sent0[i]
    e = ev_ptr[i]
    e_end = ev_ptr[i + 1]
    r = lamp_req_row[i]
    q = pr_ptr[i]
    q_end = pr_ptr[i + 1]
    n_below = 0
    n_on = 0
    n_cmd = 0
    n_switch = 0
    hour = 0
    in_hour = 0
    power_sum = 0.0
    watts = standby
    if level > 0.0:
        watts += rated * _power_frac(level, table)
    interval = start_step // interval_steps
    in_interval = start_step - interval * interval_steps
    to_sample = 0
    kk = 0
    for t in range(start_step, start_step + n_steps):
        while e < e_end and ev_step[e] <= t:
            hold_until = max(hold_until, ev_step[e] + hold_p)
            e += 1
        k = steps[z, interval]
        target = _target(hold_until > t, program[p, t], class_factor[p, k], boost_p, ceil_i, ovr)
        fl = floor[p, t]
        new = _lamp_step(level, target, fl, up_p, down_p)
        if new != level:
            # Levels hold still for most steps; interpolate the power table only on a change.
            watts = standby
            if new > 0.0:
                watts += rated * _power_frac(new, table)
                if level <= 0.0:
                    n_switch += 1
        if new > 0.0:
            n_on += 1
        power_sum += watts
        # A command carries its fade time (TALQ, DALI), so the controller sends one per change
        # of the floored target, not one per step of a fade.
        goal = min(max(target, fl), np.float32(1.0))
        if abs(goal - sent) > deadband:
            n_cmd += 1
            sent = goal
        while q < q_end and pr_step[q] <= t:
            pr_level[q] = new
            pr_below[q] = n_below
            q += 1
        if new < req_frac[r, interval]:
            n_below += 1
        level = new
        if sample_every > 0:
            if to_sample == 0:
                samples[i, kk] = level
                kk += 1
                to_sample = sample_every
            to_sample -= 1
        in_hour += 1
        if in_hour == steps_per_hour:
            energy_wh[i, hour] += power_sum
            power_sum = 0.0
            hour += 1
            in_hour = 0
        in_interval += 1
        if in_interval == interval_steps:
            interval += 1
            in_interval = 0
    if in_hour > 0:
        energy_wh[i, hour] += power_sum
    on_steps[i] = n_on
    commands[i] = n_cmd
    switch_ons[i] = n_switch
    level_out[i] = level
    hold_out[i] = hold_until
    sent_out[i] = sent
    below_steps[i] = n_below
    while q < q_end:  # probes at the run's end step
        pr_level[q] = level
        pr_below[q] = n_below
        q += 1


@njit(**FAST_OPTIONS)
def _night_serial(
    start_step,
    n_steps,
    steps_per_hour,
    sample_every,
    deadband,
    program,
    floor,
    boost,
    hold_steps,
    up,
    down,
    class_factor,
    steps,
    interval_steps,
    lamp_profile,
    lamp_zone_row,
    ceiling,
    override,
    rated_w,
    standby_w,
    power_table,
    lamp_curve,
    ev_ptr,
    ev_step,
    level0,
    hold0,
    sent0,
    req_frac,
    lamp_req_row,
    pr_ptr,
    pr_step,
    energy_wh,
    on_steps,
    commands,
    switch_ons,
    samples,
    level_out,
    hold_out,
    sent_out,
    below_steps,
    pr_level,
    pr_below,
):
    for i in range(lamp_profile.shape[0]):
        _run_lamp(
            i,
            start_step,
            n_steps,
            steps_per_hour,
            sample_every,
            deadband,
            program,
            floor,
            boost,
            hold_steps,
            up,
            down,
            class_factor,
            steps,
            interval_steps,
            lamp_profile,
            lamp_zone_row,
            ceiling,
            override,
            rated_w,
            standby_w,
            power_table,
            lamp_curve,
            ev_ptr,
            ev_step,
            level0,
            hold0,
            sent0,
            req_frac,
            lamp_req_row,
            pr_ptr,
            pr_step,
            energy_wh,
            on_steps,
            commands,
            switch_ons,
            samples,
            level_out,
            hold_out,
            sent_out,
            below_steps,
            pr_level,
            pr_below,
        )


@njit(**FAST_PARALLEL_OPTIONS)
def _night_parallel(
    start_step,
    n_steps,
    steps_per_hour,
    sample_every,
    deadband,
    program,
    floor,
    boost,
    hold_steps,
    up,
    down,
    class_factor,
    steps,
    interval_steps,
    lamp_profile,
    lamp_zone_row,
    ceiling,
    override,
    rated_w,
    standby_w,
    power_table,
    lamp_curve,
    ev_ptr,
    ev_step,
    level0,
    hold0,
    sent0,
    req_frac,
    lamp_req_row,
    pr_ptr,
    pr_step,
    energy_wh,
    on_steps,
    commands,
    switch_ons,
    samples,
    level_out,
    hold_out,
    sent_out,
    below_steps,
    pr_level,
    pr_below,
):
    for i in prange(lamp_profile.shape[0]):
        _run_lamp(
            i,
            start_step,
            n_steps,
            steps_per_hour,
            sample_every,
            deadband,
            program,
            floor,
            boost,
            hold_steps,
            up,
            down,
            class_factor,
            steps,
            interval_steps,
            lamp_profile,
            lamp_zone_row,
            ceiling,
            override,
            rated_w,
            standby_w,
            power_table,
            lamp_curve,
            ev_ptr,
            ev_step,
            level0,
            hold0,
            sent0,
            req_frac,
            lamp_req_row,
            pr_ptr,
            pr_step,
            energy_wh,
            on_steps,
            commands,
            switch_ons,
            samples,
            level_out,
            hold_out,
            sent_out,
            below_steps,
            pr_level,
            pr_below,
        )


@njit(**JIT_OPTIONS)
def _expand_triggers(trigger_step, trigger_lamp, nb_ptr, nb_idx, n_lamps):
    """Per-lamp sorted trigger steps (CSR) from triggers sorted by step.

    A trigger on lamp ``i`` lands in the lists of ``i`` and of every neighbour of ``i``.
    """
    counts = np.zeros(n_lamps + 1, dtype=np.int64)
    for e in range(trigger_step.shape[0]):
        i = trigger_lamp[e]
        counts[i + 1] += 1
        for q in range(nb_ptr[i], nb_ptr[i + 1]):
            counts[nb_idx[q] + 1] += 1
    ptr = np.cumsum(counts)
    fill = ptr[:-1].copy()
    out = np.empty(ptr[-1], dtype=np.int64)
    for e in range(trigger_step.shape[0]):
        i = trigger_lamp[e]
        s = trigger_step[e]
        out[fill[i]] = s
        fill[i] += 1
        for q in range(nb_ptr[i], nb_ptr[i + 1]):
            j = nb_idx[q]
            out[fill[j]] = s
            fill[j] += 1
    return ptr, out


@njit(**FAST_OPTIONS)
def _tick(
    t,
    program,
    floor,
    boost,
    hold_steps,
    up,
    down,
    class_factor,
    steps_now,
    lamp_profile,
    lamp_zone_row,
    ceiling,
    override,
    trigger_lamp,
    nb_ptr,
    nb_idx,
    level,
    hold_until,
    level_out,
):
    """One live step ``t`` for every lamp; ``hold_until`` is updated in place.

    ``steps_now[z]`` is each zone's current adaptive class step (last row 0 for lamps with no
    zone). Triggers are the lamps that detected presence since the previous tick.
    """
    for e in range(trigger_lamp.shape[0]):
        i = trigger_lamp[e]
        hold_until[i] = max(hold_until[i], t + hold_steps[lamp_profile[i]])
        for q in range(nb_ptr[i], nb_ptr[i + 1]):
            j = nb_idx[q]
            hold_until[j] = max(hold_until[j], t + hold_steps[lamp_profile[j]])
    for i in range(lamp_profile.shape[0]):
        p = lamp_profile[i]
        k = steps_now[lamp_zone_row[i]]
        target = _target(
            hold_until[i] > t, program[p, t], class_factor[p, k], boost[p], ceiling[i], override[i]
        )
        level_out[i] = _lamp_step(level[i], target, floor[p, t], up[p], down[p])


@njit(**JIT_OPTIONS)
def _adaptive_steps(demand, down, up, max_steps, initial, out):
    """Adaptive class steps with hysteresis, per zone and interval.

    ``demand[z, n]`` is the volume in interval ``n`` (vehicles or people per hour). Demand below
    ``down[z, k]`` allows ``k + 1`` steps below the normal class; once stepped down, a zone only
    comes back up when demand exceeds ``up[z, k]`` (> ``down[z, k]``). The update
    ``s = max(n_down, min(s, n_up))`` is monotone: more demand never gives more steps (less
    light). Missing demand (NaN) returns the zone to its normal class: fail bright.
    """
    for z in range(demand.shape[0]):
        s = initial[z]
        for n in range(demand.shape[1]):
            d = demand[z, n]
            if d != d:
                s = 0
            else:
                n_down = 0
                n_up = 0
                for k in range(max_steps[z]):
                    if d < down[z, k]:
                        n_down += 1
                    if d < up[z, k]:
                        n_up += 1
                s = max(n_down, min(s, n_up))
            out[z, n] = s


@njit(**JIT_OPTIONS)
def _lamp_power_w(level, rated_w, standby_w, table, out):
    for n in range(level.shape[0]):
        lv = level[n]
        if lv > 0.0:
            out[n] = standby_w[n] + rated_w[n] * _power_frac(min(lv, np.float32(1.0)), table)
        else:
            out[n] = standby_w[n]


@njit(**JIT_OPTIONS)
def _level_to_dali(level, out):
    """IEC 62386-102 logarithmic curve: arc level n = 1 + (253/3) * (log10(100 * level) + 1)."""
    for n in range(level.shape[0]):
        lv = level[n]
        if lv <= 0.0:
            out[n] = 0
        else:
            arc = 1.0 + (253.0 / 3.0) * (np.log10(lv * 100.0) + 1.0)
            out[n] = max(1, min(254, int(np.floor(arc + 0.5))))


@njit(**JIT_OPTIONS)
def _dali_to_level(arc, out):
    """Light output X(n) = 10^((n - 1) / (253/3) - 1) % for n = 1..254; 0 is off."""
    for n in range(arc.shape[0]):
        a = arc[n]
        if a == 0:
            out[n] = 0.0
        else:
            out[n] = 10.0 ** ((a - 1.0) / (253.0 / 3.0) - 1.0) / 100.0


@njit(**JIT_OPTIONS)
def _plausible(
    trigger_step, trigger_lamp, nb_ptr, nb_idx, nb_dist_m, max_speed_mps, step_s, n_lamps, keep
):
    """Mark detections that imply a speed above ``max_speed_mps`` from a neighbour's detection.

    Triggers are sorted by step. A detection at lamp ``j`` is implausible when a neighbour
    ``i`` (``d`` metres away) detected less than ``d / max_speed_mps`` seconds earlier (or at the
    same step): nobody could have walked or driven from one to the other. The earlier detection
    stands (it already raised its neighbours).
    """
    last = np.full(n_lamps, -(2**62), dtype=np.int64)
    for e in range(trigger_step.shape[0]):
        j = trigger_lamp[e]
        t = trigger_step[e]
        ok = True
        for q in range(nb_ptr[j], nb_ptr[j + 1]):
            i = nb_idx[q]
            if i == j:
                continue
            dt_s = (t - last[i]) * step_s
            if dt_s * max_speed_mps < nb_dist_m[q]:
                ok = False
                break
        keep[e] = ok
        if ok:
            last[j] = t

"""Builders of NightPrograms for kernel tests: small, random, but obeying the program's rules."""

from __future__ import annotations

import numpy as np

from controller.dimming.levels import Triggers
from controller.dimming.power import DriverCurve, LampElectrics
from controller.dimming.program import NightProgram


def random_program(
    rng: np.random.Generator,
    n_lamps: int = 12,
    n_steps: int = 400,
    n_profiles: int = 3,
    n_zones: int = 2,
    n_adaptive: int = 2,
    step_s: float = 1.0,
    max_neighbours: int = 3,
) -> NightProgram:
    """A night with dusk/dawn, a part-night window, dimming steps and presence per profile."""
    program = np.zeros((n_profiles, n_steps), np.float32)
    floor = np.zeros((n_profiles, n_steps), np.float32)
    for p in range(n_profiles):
        dusk = int(rng.integers(0, n_steps // 4))
        dawn = int(rng.integers(3 * n_steps // 4, n_steps + 1))
        cuts = np.sort(rng.integers(dusk, dawn, size=3))
        levels = rng.choice(np.array([1.0, 0.75, 0.5, 0.3], np.float32), size=4)
        edges = [dusk, *cuts.tolist(), dawn]
        for a, b, lv in zip(edges[:-1], edges[1:], levels, strict=False):
            program[p, a:b] = lv
        if rng.random() < 0.5:  # an explicit part-night switch-off window
            off_a = int(rng.integers(dusk, dawn))
            off_b = int(rng.integers(off_a, dawn + 1))
            program[p, off_a:off_b] = 0.0
        floor[p] = np.where(program[p] > 0, np.float32(rng.choice([0.1, 0.2, 0.3])), 0.0)
    class_factor = np.ones((n_profiles, n_adaptive + 1), np.float32)
    for k in range(1, n_adaptive + 1):
        class_factor[:, k] = class_factor[:, k - 1] * np.float32(rng.uniform(0.5, 0.9))
    n_nb = rng.integers(0, min(max_neighbours, n_lamps - 1) + 1, size=n_lamps)
    indptr = np.concatenate(([0], np.cumsum(n_nb))).astype(np.int64)
    indices = np.concatenate(
        [
            rng.choice(np.delete(np.arange(n_lamps), i), size=n_nb[i], replace=False)
            for i in range(n_lamps)
        ]
        or [np.zeros(0, np.int64)]
    ).astype(np.int32)
    return NightProgram(
        start_ns=1_700_000_000 * 10**9,
        step_s=step_s,
        program_frac=program,
        floor_frac=floor,
        boost_frac=rng.choice(np.array([0.0, 0.8, 1.0], np.float32), size=n_profiles),
        hold_s=rng.uniform(0, 40, size=n_profiles).astype(np.float32),
        fade_up_frac_per_s=rng.uniform(0.05, 1.0, size=n_profiles).astype(np.float32),
        fade_down_frac_per_s=rng.uniform(0.01, 0.2, size=n_profiles).astype(np.float32),
        class_factor=class_factor,
        lamp_profile=rng.integers(0, n_profiles, size=n_lamps).astype(np.int32),
        lamp_zone=rng.integers(-1, n_zones, size=n_lamps).astype(np.int32),
        ceiling_frac=rng.choice(np.array([1.0, 0.9, 0.8], np.float32), size=n_lamps),
        neighbour_indptr=indptr,
        neighbour_indices=indices,
    )


def random_triggers(
    rng: np.random.Generator, program: NightProgram, rate: float = 0.01
) -> Triggers:
    count = rng.poisson(rate * program.n_lamps * program.n_steps)
    return Triggers.from_unsorted(
        rng.integers(0, program.n_steps, size=count), rng.integers(0, program.n_lamps, size=count)
    )


def random_steps(
    rng: np.random.Generator, program: NightProgram, interval_steps: int, n_zones: int = 2
):
    n_int = -(-program.n_steps // interval_steps)
    return rng.integers(0, program.n_adaptive_steps + 1, size=(n_zones, n_int)).astype(np.int8)


def random_electrics(rng: np.random.Generator, n_lamps: int) -> LampElectrics:
    curves = [DriverCurve(), DriverCurve(name="ds", points=((0.01, 0.08), (0.5, 0.55), (1.0, 1.0)))]
    return LampElectrics(
        rated_power_w=rng.uniform(20, 250, size=n_lamps),
        standby_power_w=rng.uniform(0.2, 1.0, size=n_lamps),
        curve_index=rng.integers(0, 2, size=n_lamps).astype(np.int32),
        tables=np.stack([c.table() for c in curves]),
    )

"""Invariants of the level kernels, over random programs, triggers and demand (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.levels import Triggers, run_night
from tests.programs import random_electrics, random_program, random_steps, random_triggers

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def night(seed: int, extra_triggers: float = 0.0, steps_delta: int = 0):
    rng = np.random.default_rng(seed)
    program = random_program(rng, n_lamps=8, n_steps=240)
    electrics = random_electrics(rng, program.n_lamps)
    triggers = random_triggers(rng, program, rate=0.01)
    steps = random_steps(rng, program, 20)
    return program, electrics, triggers, steps


def levels(program, electrics, triggers, steps):
    res = run_night(
        program,
        electrics,
        triggers=triggers,
        adaptive_steps=steps,
        adaptive_interval_s=20.0,
        sample_every_s=1.0,
    )
    return res.samples


@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_level_stays_within_floor_and_ceiling(seed: int) -> None:
    program, electrics, triggers, steps = night(seed)
    lv = levels(program, electrics, triggers, steps)
    floor = program.floor_frac[program.lamp_profile]
    ceiling = np.maximum(program.ceiling_frac[:, None], floor)
    assert np.all(lv >= floor)
    assert np.all(lv <= ceiling + 1e-7)


@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_fade_rates_are_never_exceeded(seed: int) -> None:
    program, electrics, triggers, steps = night(seed)
    lv = levels(program, electrics, triggers, steps)
    prev = np.concatenate([np.zeros((lv.shape[0], 1), np.float32), lv[:, :-1]], axis=1)
    up = program.fade_up_frac_per_s[program.lamp_profile][:, None] * program.step_s
    down = program.fade_down_frac_per_s[program.lamp_profile][:, None] * program.step_s
    floor = program.floor_frac[program.lamp_profile]
    rise = lv - prev
    # A rise beyond the fade rate is allowed only where the safety floor lifted the lamp.
    assert np.all((rise <= up + 1e-6) | (lv == floor))
    assert np.all(-rise <= down + 1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_no_lamp_dark_between_dusk_and_dawn_unless_switched_off(seed: int) -> None:
    program, electrics, triggers, steps = night(seed)
    lv = levels(program, electrics, triggers, steps)
    lit_by_program = program.program_frac[program.lamp_profile] > 0
    assert np.all(lv[lit_by_program] > 0)


@SETTINGS
@given(seed=st.integers(0, 2**31), extra=st.integers(1, 40))
def test_more_presence_never_gives_less_light(seed: int, extra: int) -> None:
    program, electrics, triggers, steps = night(seed)
    rng = np.random.default_rng(seed + 1)
    more = Triggers.from_unsorted(
        np.concatenate([triggers.step, rng.integers(0, program.n_steps, extra)]),
        np.concatenate([triggers.lamp, rng.integers(0, program.n_lamps, extra)]),
    )
    assert np.all(
        levels(program, electrics, more, steps) >= levels(program, electrics, triggers, steps)
    )


@SETTINGS
@given(seed=st.integers(0, 2**31), data=st.data())
def test_more_demand_never_gives_less_light(seed: int, data: st.DataObject) -> None:
    program, electrics, triggers, _ = night(seed)
    rng = np.random.default_rng(seed)
    n_int = program.n_steps // 20
    demand = rng.uniform(0, 400, size=(2, n_int))
    bump = rng.uniform(0, data.draw(st.floats(0, 300)), size=demand.shape)
    down, up = [150.0, 60.0], [200.0, 90.0]
    low = adaptive_steps(demand, down, up)
    high = adaptive_steps(demand + bump, down, up)
    assert np.all(high <= low)
    assert np.all(
        levels(program, electrics, triggers, high) >= levels(program, electrics, triggers, low)
    )


@SETTINGS
@given(
    demand=st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=60),
    start=st.integers(0, 2),
)
def test_adaptive_matches_plain_python_and_has_hysteresis(demand: list[float], start: int) -> None:
    down, up = [150.0, 60.0], [200.0, 90.0]
    got = adaptive_steps(np.array([demand]), down, up, initial_steps=[start])[0]
    s = start
    for n, d in enumerate(demand):
        d32 = float(np.float32(d))
        deepest_allowed_down = sum(d32 < t for t in down)  # steps the demand is low enough for
        shallowest_allowed_up = sum(
            d32 < t for t in up
        )  # steps we must stay at, given up thresholds
        if deepest_allowed_down > s:
            s = deepest_allowed_down  # demand fell: step down at once
        elif shallowest_allowed_up < s:
            s = shallowest_allowed_up  # demand rose past the hysteresis band: step back up
        assert got[n] == s, (n, d, got.tolist())

"""The level kernels agree with their slow twins, serial with parallel, tick with night."""

from __future__ import annotations

import numpy as np
import pytest

from controller.dimming.levels import LampState, Triggers, run_night, tick
from controller.dimming.power import LampElectrics
from tests.naive_levels import night_numpy, night_python
from tests.programs import random_electrics, random_program, random_steps, random_triggers

INTERVAL_S = 60.0


@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_numpy_twin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    program = random_program(rng, n_lamps=15, n_steps=7200)
    electrics = random_electrics(rng, program.n_lamps)
    triggers = random_triggers(rng, program, rate=0.002)
    steps = random_steps(rng, program, int(INTERVAL_S))
    n_probes = 200
    kwargs = dict(
        triggers=triggers,
        adaptive_steps=steps,
        adaptive_interval_s=INTERVAL_S,
        sample_every_s=30.0,
        required_frac=rng.uniform(0, 1, size=(3, 7200 // 60)).astype(np.float32),
        lamp_required_row=rng.integers(-1, 3, size=program.n_lamps),
        probe_lamp=rng.integers(0, program.n_lamps, size=n_probes),
        probe_step=rng.integers(0, program.n_steps + 1, size=n_probes),
    )
    got = run_night(program, electrics, **kwargs)
    want = night_numpy(program, electrics, **kwargs)
    np.testing.assert_array_equal(got.samples, want.samples)
    np.testing.assert_array_equal(got.state.level_frac, want.state.level_frac)
    np.testing.assert_array_equal(got.state.hold_until_step, want.state.hold_until_step)
    np.testing.assert_array_equal(got.commands, want.commands)
    np.testing.assert_array_equal(got.switch_ons, want.switch_ons)
    np.testing.assert_array_equal(got.on_s, want.on_s)
    np.testing.assert_allclose(got.energy_wh, want.energy_wh, rtol=1e-9)
    np.testing.assert_array_equal(got.below_required_s, want.below_required_s)
    np.testing.assert_array_equal(got.probe_level_frac, want.probe_level_frac)
    np.testing.assert_array_equal(got.probe_below_required_s, want.probe_below_required_s)
    assert got.below_required_s.sum() > 0
    assert got.energy_wh.shape == (15, 2)
    assert got.samples.shape == (15, 240)


@pytest.mark.parametrize("seed", range(3))
def test_kernel_matches_plain_python(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    program = random_program(rng, n_lamps=6, n_steps=300)
    electrics = random_electrics(rng, program.n_lamps)
    triggers = random_triggers(rng, program, rate=0.01)
    steps = random_steps(rng, program, 30)
    got = run_night(
        program,
        electrics,
        triggers=triggers,
        adaptive_steps=steps,
        adaptive_interval_s=30.0,
        sample_every_s=1.0,
    )
    levels, energy = night_python(program, electrics, triggers, steps, 30.0)
    np.testing.assert_allclose(got.samples, np.array(levels, np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(got.energy_wh.sum(axis=1), energy, rtol=1e-9)


def test_serial_and_parallel_agree() -> None:
    rng = np.random.default_rng(7)
    program = random_program(rng, n_lamps=300, n_steps=3600)
    electrics = random_electrics(rng, program.n_lamps)
    triggers = random_triggers(rng, program, rate=0.001)
    steps = random_steps(rng, program, 60)
    kw = dict(
        triggers=triggers, adaptive_steps=steps, adaptive_interval_s=60.0, sample_every_s=10.0
    )
    a = run_night(program, electrics, parallel=False, **kw)
    b = run_night(program, electrics, parallel=True, **kw)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.energy_wh, b.energy_wh)
    np.testing.assert_array_equal(a.commands, b.commands)


def test_live_ticks_reproduce_the_night() -> None:
    """Ticking once a step with that step's triggers gives the simulated night's levels."""
    rng = np.random.default_rng(11)
    program = random_program(rng, n_lamps=20, n_steps=600)
    electrics = random_electrics(rng, program.n_lamps)
    triggers = random_triggers(rng, program, rate=0.005)
    steps = random_steps(rng, program, 60)
    night = run_night(
        program,
        electrics,
        triggers=triggers,
        adaptive_steps=steps,
        adaptive_interval_s=60.0,
        sample_every_s=1.0,
    )
    state = LampState.initial(program.n_lamps)
    for t in range(program.n_steps):
        state = tick(
            program,
            state,
            t,
            trigger_lamps=triggers.lamp[triggers.step == t],
            steps_now=steps[:, t // 60],
        )
        np.testing.assert_array_equal(state.level_frac, night.samples[:, t])


def test_split_runs_continue_exactly() -> None:
    """A night run in two halves, carrying the state, equals one run (the live loop relies on it)."""
    rng = np.random.default_rng(5)
    program = random_program(rng, n_lamps=10, n_steps=7200)
    electrics = random_electrics(rng, program.n_lamps)
    triggers = random_triggers(rng, program, rate=0.002)
    steps = random_steps(rng, program, 60)
    kw = dict(triggers=triggers, adaptive_steps=steps, adaptive_interval_s=60.0)
    whole = run_night(program, electrics, **kw)
    first = run_night(program, electrics, n_steps=3600, **kw)
    second = run_night(program, electrics, start_step=3600, state=first.state, **kw)
    np.testing.assert_array_equal(second.state.level_frac, whole.state.level_frac)
    np.testing.assert_allclose(
        np.concatenate([first.energy_wh, second.energy_wh], axis=1), whole.energy_wh, rtol=1e-12
    )
    np.testing.assert_array_equal(first.commands + second.commands, whole.commands)


def test_override_replaces_program_but_not_floor() -> None:
    rng = np.random.default_rng(3)
    program = random_program(rng, n_lamps=4, n_steps=200, n_zones=0)
    electrics = LampElectrics.uniform(4, 100.0)
    override = np.array([0.0, 0.55, -1.0, 1.0], np.float32)
    got = run_night(program, electrics, override_frac=override, sample_every_s=1.0)
    want = night_numpy(program, electrics, override_frac=override, sample_every_s=1.0)
    np.testing.assert_array_equal(got.samples, want.samples)
    floor = program.floor_frac[program.lamp_profile]
    assert np.all(got.samples >= floor)  # an override of 0 cannot darken a lit lamp
    lit = floor[0] > 0
    assert np.all(got.samples[0, lit] == floor[0, lit])


def test_probes_measure_seconds_below_requirement() -> None:
    """A lamp dimmed to 0.5 under a requirement of 0.8 is below it every second it is lit."""
    rng = np.random.default_rng(2)
    base = random_program(rng, n_lamps=2, n_steps=120, n_profiles=1, n_zones=0)
    program = base.__class__(
        **{
            **base.__dict__,
            "program_frac": np.full((1, 120), 0.5, np.float32),
            "floor_frac": np.full((1, 120), 0.1, np.float32),
            "boost_frac": np.zeros(1, np.float32),
            "fade_up_frac_per_s": np.ones(1, np.float32),
            "ceiling_frac": np.ones(2, np.float32),
        }
    )
    required = np.array([[0.8, 0.8], [0.4, 0.4]], np.float32)  # two 60 s intervals
    res = run_night(
        program,
        LampElectrics.uniform(2, 10.0),
        adaptive_interval_s=60.0,
        required_frac=required,
        lamp_required_row=[0, 1],
        probe_lamp=[0, 0, 1, 0],
        probe_step=[10, 40, 40, 120],
    )
    assert res.below_required_s.tolist() == [120.0, 0.0]
    assert res.probe_below_required_s.tolist() == [10.0, 40.0, 0.0, 120.0]
    np.testing.assert_allclose(res.probe_level_frac, 0.5)


def test_presence_boosts_neighbours_and_holds() -> None:
    rng = np.random.default_rng(0)
    base = random_program(rng, n_lamps=3, n_steps=100, n_profiles=1, n_zones=0)
    program = base.__class__(
        **{
            **base.__dict__,
            "program_frac": np.full((1, 100), 0.3, np.float32),
            "floor_frac": np.full((1, 100), 0.1, np.float32),
            "boost_frac": np.array([1.0], np.float32),
            "hold_s": np.array([20.0], np.float32),
            "fade_up_frac_per_s": np.array([0.35], np.float32),
            "fade_down_frac_per_s": np.array([0.1], np.float32),
            "ceiling_frac": np.ones(3, np.float32),
            "lamp_profile": np.zeros(3, np.int32),
            "neighbour_indptr": np.array([0, 1, 1, 1], np.int64),  # lamp 0 raises lamp 1
            "neighbour_indices": np.array([1], np.int32),
        }
    )
    trig = Triggers(step=np.array([10], np.int64), lamp=np.array([0], np.int32))
    res = run_night(program, LampElectrics.uniform(3, 50.0), triggers=trig, sample_every_s=1.0)
    lv = res.samples
    assert lv[2].max() == pytest.approx(0.3)  # not a neighbour: untouched
    for i in (0, 1):
        assert lv[i, 9] == pytest.approx(0.3)
        assert lv[i, 10] == pytest.approx(0.65)  # fade-up of 0.35 per second
        assert lv[i, 12] == pytest.approx(1.0)
        assert np.all(lv[i, 12:30] == 1.0)  # held for 20 s from step 10
        assert lv[i, 30] == pytest.approx(0.9)  # then fades down at 0.1 per second
        assert lv[i, 37] == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(start_step=-1), "fall outside the program"),
        (dict(sample_every_s=1.5), "sample_every_s must be a whole number of steps"),
        (dict(deadband_frac=1.5), "deadband_frac must be within"),
        (
            dict(override_frac=np.full(3, 2.0, np.float32)),
            "override_frac must have one value per lamp",
        ),
        (
            dict(triggers=Triggers(np.array([1], np.int64), np.array([99], np.int32))),
            "trigger lamp indices must be within",
        ),
    ],
)
def test_run_night_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    rng = np.random.default_rng(1)
    program = random_program(rng, n_lamps=5, n_steps=100, n_zones=0)
    with pytest.raises(ValueError, match=message):
        run_night(program, LampElectrics.uniform(5, 10.0), **kwargs)


def test_unsorted_triggers_are_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"sorted by step.*from_unsorted"):
        Triggers(np.array([5, 1], np.int64), np.array([0, 0], np.int32))

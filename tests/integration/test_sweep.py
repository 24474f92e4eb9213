"""Policy sweeps: a real Dask LocalCluster on 127.0.0.1 against the in-process run.

The town is tiny (4 streets x 20 lamps, one night) so the whole module stays well under a
minute, most of it the cluster's start-up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rich.console import Console

from simulation.run import (
    NightSetup,
    Town,
    account,
    load_policies,
    load_town,
    make_job,
    make_jobs,
    prepare_night,
    run_job,
    run_scenario,
)
from simulation.scenario import Scenario, load_scenario
from simulation.sweep import (
    SweepError,
    SweepResult,
    _split,
    job_from_arrays,
    job_to_arrays,
    load_sweep,
    parse_path,
    plan_sweep,
    print_sweep,
    run_arrays,
    run_sweep,
    run_sweep_serial,
)

SAMPLES = Path(__file__).resolve().parents[2] / "streetlight" / "samples"
PART_NIGHT = SAMPLES / "policy_part_night.yaml"
PRESENCE = SAMPLES / "policy_presence_adaptive.yaml"
HOLD = "profiles.estate.presence.hold_s"
LEVEL = "profiles.part_night.steps[0].level_frac"


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    _write(
        folder / "scenario.yaml",
        {
            "name": "tiny-town",
            "inventory": {"sample_town": {"streets": 4, "lamps_per_street": 20}},
            "policies": [{"file": str(PART_NIGHT)}, {"file": str(PRESENCE)}],
            "nights": {"first": "2026-12-21"},
            "seed": 7,
        },
    )
    # 2 x 2: each path is in one policy, so each policy gets two variants; 1.5 is no level.
    return _write(
        folder / "tiny.yaml",
        {"scenario": "scenario.yaml", "parameters": {HOLD: [30, 120], LEVEL: [0.75, 1.5]}},
    )


@pytest.fixture(scope="module")
def serial(sweep_file: Path) -> SweepResult:
    return run_sweep_serial(load_sweep(sweep_file))


def test_grid_gives_each_policy_the_parameters_it_has(serial: SweepResult) -> None:
    assert [(r.policy, r.parameters) for r in serial.rows] == [
        ("residential-part-night", {LEVEL: 0.75}),
        ("residential-part-night", {LEVEL: 1.5}),
        ("estate-presence-adaptive", {HOLD: 30}),
        ("estate-presence-adaptive", {HOLD: 120}),
    ]
    assert any(HOLD in note and "residential-part-night" in note for note in serial.notes)
    assert serial.lamps == 80 and serial.nights == ["2026-12-21"]


def test_invalid_variant_is_a_row_not_a_crash(serial: SweepResult) -> None:
    bad = serial.rows[1]
    assert not bad.valid and bad.figures is None
    assert any(issue.startswith("profiles.part_night.steps[0].level_frac") for issue in bad.issues)
    assert all(r.valid and r.figures is not None for i, r in enumerate(serial.rows) if i != 1)


def test_hold_time_moves_the_figures(serial: SweepResult) -> None:
    short, long = (serial.rows[2].figures, serial.rows[3].figures)
    assert short is not None and long is not None
    # A longer hold keeps lamps at the boost longer (more energy) and retriggers less.
    assert long.energy_kwh > short.energy_kwh
    assert long.commands < short.commands
    assert short.road_users == long.road_users > 0  # the same users meet every variant


def test_serial_runs_are_reproducible(sweep_file: Path, serial: SweepResult) -> None:
    again = run_sweep_serial(load_sweep(sweep_file))
    assert again.rows == serial.rows
    assert again.all_night_energy_kwh == serial.all_night_energy_kwh


@pytest.mark.integration
def test_dask_local_cluster_equals_serial(sweep_file: Path, serial: SweepResult) -> None:
    ticks: list[tuple[int, int]] = []
    result = run_sweep(
        load_sweep(sweep_file),
        n_workers=2,
        progress=lambda _label, done, total: ticks.append((done, total)),
    )
    assert result.rows == serial.rows
    assert result.all_night_energy_kwh == serial.all_night_energy_kwh
    assert result.executor.startswith("Dask LocalCluster (2 workers")
    assert ticks == [(1, 3), (2, 3), (3, 3)]


def test_no_parameters_reproduces_run_scenario(sweep_file: Path) -> None:
    plain = _write(sweep_file.with_name("plain.yaml"), {"scenario": "scenario.yaml"})
    swept = run_sweep_serial(load_sweep(plain))
    report = run_scenario(load_scenario(sweep_file.with_name("scenario.yaml")))
    assert swept.all_night_energy_kwh == report.all_night_energy_kwh
    for row, fig in zip(swept.rows, report.policies, strict=True):
        assert row.policy == fig.policy and row.figures is not None
        assert row.figures.energy_kwh == fig.energy_kwh
        assert row.figures.below_required_share == fig.compliance.below_required_share
        assert row.figures.users_before_boost == fig.compliance.users_before_boost
        assert row.figures.commands == fig.commands
        assert row.figures.saving_vs_all_night_frac == fig.saving_vs_all_night_frac


def test_json_and_table(serial: SweepResult, tmp_path: Path) -> None:
    path = serial.to_json(tmp_path / "out" / "sweep.json")
    assert SweepResult.model_validate(json.loads(path.read_text())) == serial
    console = Console(record=True, width=220)
    print_sweep(serial, console)
    text = console.export_text()
    assert "hold_s=30" in text and "steps[0].level_frac=1.5 invalid" in text
    assert "#1 invalid: profiles.part_night.steps[0].level_frac" in text


def _assert_same(a: Any, b: Any, where: str = "job") -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            _assert_same(x, y, f"{where}.{f.name}")
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f"{where}.{f.name}"
        else:
            assert x == y, f"{where}.{f.name}"


def test_job_arrays_round_trip(sweep_file: Path) -> None:
    scenario = load_scenario(sweep_file.with_name("scenario.yaml"))
    town = load_town(scenario)
    setup = prepare_night(scenario, town, load_policies(scenario), dt.date(2026, 12, 21), 7)
    for compiled in setup.compiled:
        job = make_job(scenario, town, setup, compiled)
        arrays = job_to_arrays(job)
        # Plain data only: arrays of numbers (names as strings) and Python scalars.
        for key, value in arrays.items():
            assert isinstance(value, np.ndarray | int | float), key
            assert not isinstance(value, np.ndarray) or value.dtype != object, key
        back = job_from_arrays(arrays)
        _assert_same(job, back)
        again = job_to_arrays(back)
        assert again.keys() == arrays.keys()
        # Names are optional: a worker is sent the arrays without them.
        bare = {k: v for k, v in arrays.items() if not k.endswith("_names")}
        assert job_from_arrays(bare).program.zone_names == ()


def _passages(setup: NightSetup) -> dict[str, Any]:
    # What a night's shared arrays carry for accounting besides the jobs.
    return {"passages.user": setup.trace.user, "passages.n_users": setup.trace.n_users}


@pytest.fixture(scope="module")
def presence_night(sweep_file: Path) -> tuple[Scenario, Town, NightSetup]:
    """The tiny town's night with both presence variants (hold 30 s and 120 s)."""
    plan = plan_sweep(load_sweep(sweep_file))
    policies = [
        v.policy
        for v in plan.variants
        if v.policy is not None and v.policy_name == "estate-presence-adaptive"
    ]
    town = load_town(plan.scenario)
    setup = prepare_night(plan.scenario, town, policies, dt.date(2026, 12, 21), 7)
    return plan.scenario, town, setup


def test_worker_accounts_as_the_driver_did(
    presence_night: tuple[Scenario, Town, NightSetup],
) -> None:
    scenario, town, setup = presence_night
    n_hours = setup.n_steps // 3600
    for compiled in setup.compiled:
        job = dataclasses.replace(make_job(scenario, town, setup, compiled), sample_every_s=0.0)
        result, _ = run_job(job, parallel=False)
        want = account(setup, job, result)  # the driver's accounting of the whole result
        out = run_arrays({}, {**job_to_arrays(job), **_passages(setup)})
        assert np.asarray(out["energy_wh_by_lamp"]).tolist() == [want.energy_wh_by_lamp.sum()]
        for key in ("energy_kwh_by_hour", "user_seconds_by_hour", "below_user_seconds_by_hour"):
            assert np.array_equal(out[key], getattr(want, key)), key
        for key in ("commands", "switch_ons", "burning_h", "users", "users_before_boost"):
            assert out[key] == getattr(want, key), key
        assert out["dark_user_seconds"] == want.dark_user_seconds
        assert out["users"] > 0 and out["users_before_boost"] > 0
        assert out["kernel_s"] > 0
        # Back come a few numbers per hour, never per lamp or per passage.
        sizes = {k: v.size for k, v in out.items() if isinstance(v, np.ndarray)}
        assert max(sizes.values()) == n_hours, sizes
        assert sizes["samples"] == sizes["user_seconds_by_lamp"] == 0


def test_worker_refuses_passages_that_do_not_match_the_probes(
    presence_night: tuple[Scenario, Town, NightSetup],
) -> None:
    scenario, town, setup = presence_night
    arrays = job_to_arrays(make_job(scenario, town, setup, setup.compiled[0]))
    m = setup.trace.n_records
    short = {**_passages(setup), "passages.user": setup.trace.user[:-1]}
    with pytest.raises(ValueError) as err:
        run_arrays({}, {**arrays, **short})
    assert str(err.value) == (
        f"{m - 1} passages need {2 * m - 2} probes (entries, then exits); the job has "
        f"{2 * m} and its result {2 * m}"
    )


def test_variants_share_their_night_arrays(
    presence_night: tuple[Scenario, Town, NightSetup],
) -> None:
    scenario, town, setup = presence_night
    jobs = make_jobs(scenario, town, setup)
    for job, compiled in zip(jobs, setup.compiled, strict=True):
        _assert_same(job, make_job(scenario, town, setup, compiled))
    # The speed filter and the demand steps read the whole trace: computed once, for both.
    assert jobs[0].triggers is jobs[1].triggers
    assert jobs[0].adaptive is jobs[1].adaptive
    assert len(jobs[0].triggers) < len(setup.triggers)  # the filter did drop detections
    shared, own = _split([job_to_arrays(j) for j in jobs])
    # Only what a hold time changes travels with each job; the night goes once to each worker.
    assert [sorted(o) for o in own] == [["program.hold_s"]] * 2
    assert 30.0 in np.asarray(own[0]["program.hold_s"])  # one hold per profile; estate's varies
    assert 120.0 in np.asarray(own[1]["program.hold_s"])
    assert {"probe_step", "triggers.step", "adaptive", "required_frac"} <= set(shared)


def test_path_syntax() -> None:
    assert parse_path("profiles.part_night.steps[1].from") == (
        "profiles",
        "part_night",
        "steps",
        1,
        "from",
    )
    with pytest.raises(ValueError, match="dotted path"):
        parse_path("profiles..hold_s")


def test_sweep_file_errors_are_located(sweep_file: Path) -> None:
    bad = _write(
        sweep_file.with_name("bad.yaml"),
        {"scenario": "scenario.yaml", "parameters": {"a..b": [1], HOLD: []}, "grid": {}},
    )
    with pytest.raises(SweepError) as err:
        load_sweep(bad)
    where = {issue.where for issue in err.value.issues}
    assert where == {"grid"}
    bad = _write(
        sweep_file.with_name("bad.yaml"), {"scenario": "scenario.yaml", "parameters": {"a..b": [1]}}
    )
    with pytest.raises(SweepError) as err:
        load_sweep(bad)
    assert [i.where for i in err.value.issues] == ["parameters.a..b"]
    typo = _write(
        sweep_file.with_name("typo.yaml"),
        {"scenario": "scenario.yaml", "parameters": {"profiles.estate.presence.hold_sec": [1]}},
    )
    with pytest.raises(SweepError) as err:
        run_sweep_serial(load_sweep(typo))
    (issue,) = err.value.issues
    assert issue.where == "parameters.profiles.estate.presence.hold_sec"
    assert "profiles.estate.presence has no 'hold_sec'" in issue.message

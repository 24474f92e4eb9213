"""The simulator end to end: closed-form energy, reproducibility, compliance, scenario errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from controller.dimming.solar import dusk_dawn
from simulation.run import (
    INTERVAL_S,
    account,
    load_policies,
    load_town,
    make_job,
    prepare_night,
    run_job,
    run_scenario,
)
from simulation.sample_town import sample_town
from simulation.scenario import ScenarioError, load_scenario

NIGHT = dt.date(2026, 12, 21)
SWITCHING = {
    "on": {"event": "sunset", "offset_min": 0},
    "off": {"event": "sunrise", "offset_min": 0},
}


def _policy(name: str, steps: list[dict]) -> dict:
    return {
        "schema_version": 1,
        "name": name,
        "version": 1,
        "lighting_classes": ["P3", "P4"],
        "switching": SWITCHING,
        "calendar": [{"profile": "p"}],
        "profiles": {"p": {"steps": steps}},
    }


POLICIES = {
    "all-night": _policy("all-night", []),
    "part-night": _policy("part-night", [{"from": "00:00", "to": "05:30", "off": True}]),
    "half-22-06": _policy("half-22-06", [{"from": "22:00", "to": "06:00", "level_frac": 0.5}]),
}


def _scenario(
    tmp_path: Path, *, footfall: float = 0.0, traffic: float = 0.0, seed: int = 3
) -> Path:
    for name, doc in POLICIES.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    scenario = {
        "name": "closed-form",
        "tz": "Europe/London",
        "inventory": {"sample_town": {"streets": 3, "lamps_per_street": 12}},
        "demand": {"footfall_peak_per_h": footfall, "traffic_peak_per_h": traffic},
        "policies": [{"file": f"{name}.yaml"} for name in POLICIES],
        "current_policy": "all-night",
        "nights": {"first": NIGHT.isoformat(), "count": 1},
        "seed": seed,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def _utc_ns(local: str) -> int:
    # In December Europe/London is UTC.
    return int(np.datetime64(local, "ns").astype(np.int64))


def test_simple_policies_match_the_closed_form_within_a_tenth_of_a_percent(tmp_path: Path) -> None:
    report = run_scenario(load_scenario(_scenario(tmp_path)))
    inv = sample_town(streets=3, lamps_per_street=12)
    sunset_ns, sunrise_ns, _ = dusk_dawn(
        np.datetime64(NIGHT.isoformat()), float(inv.lat_deg.mean()), float(inv.lon_deg.mean())
    )
    sunset_ns, sunrise_ns = int(sunset_ns), int(sunrise_ns)
    rated_w = inv.rated_power_w.sum()
    standby_wh = inv.standby_power_w.sum() * len(report.hour_labels)  # standby all window long
    midnight = _utc_ns("2026-12-22T00:00")
    h = 3.6e12  # ns per hour
    half_power = (0.05 + 0.95 * 0.5) / (1 - 0.2 * 0.5**2)  # power model P(0.5)/P_rated (DOMAIN.md)
    lit_h = (sunrise_ns - sunset_ns) / h
    expected_wh = {
        "all-night": rated_w * lit_h + standby_wh,
        "part-night": rated_w * ((midnight - sunset_ns) + (sunrise_ns - (midnight + 5.5 * h))) / h
        + standby_wh,
        "half-22-06": rated_w
        * ((midnight - 2 * h - sunset_ns) + half_power * 8 * h + (sunrise_ns - midnight - 6 * h))
        / h
        + standby_wh,
    }
    got = {p.policy: p.energy_kwh * 1000 for p in report.policies}
    for name, want in expected_wh.items():
        assert got[name] == pytest.approx(want, rel=1e-3), name
    # The all-night reference is the same closed form.
    assert report.all_night_energy_kwh * 1000 == pytest.approx(expected_wh["all-night"], rel=1e-3)
    saving = {p.policy: p.saving_vs_current_frac for p in report.policies}
    assert saving["all-night"] == pytest.approx(0.0)
    assert saving["part-night"] == pytest.approx(
        1 - expected_wh["part-night"] / expected_wh["all-night"], abs=1e-3
    )


def test_same_scenario_and_seed_give_identical_reports(tmp_path: Path) -> None:
    path = _scenario(tmp_path, footfall=60, traffic=20)
    a = run_scenario(load_scenario(path)).model_dump(exclude={"wall_s", "kernel_s"})
    b = run_scenario(load_scenario(path)).model_dump(exclude={"wall_s", "kernel_s"})
    assert a == b
    c = run_scenario(load_scenario(_scenario(tmp_path, footfall=60, traffic=20, seed=4)))
    assert c.policies[0].compliance.road_users != a["policies"][0]["compliance"]["road_users"]


def test_compliance_sees_users_left_in_the_dark(tmp_path: Path) -> None:
    report = run_scenario(load_scenario(_scenario(tmp_path, footfall=80, traffic=30)))
    by = {p.policy: p for p in report.policies}
    assert by["all-night"].compliance.road_users > 100
    # Full output all night never falls below what any class requires.
    assert by["all-night"].compliance.below_required_user_seconds == 0
    # Part-night leaves users under switched-off lamps while their class requires light.
    assert by["part-night"].compliance.dark_user_seconds > 0
    assert by["part-night"].compliance.below_required_share > 0
    # Halving output after 22:00 is below the normal class while demand keeps it required.
    assert by["half-22-06"].compliance.below_required_share > 0
    assert by["half-22-06"].compliance.dark_user_seconds == 0
    # Every hour of the report has a label and an energy figure.
    assert all(len(p.energy_by_hour_kwh) == len(report.hour_labels) for p in report.policies)


def test_bad_scenarios_are_reported_with_locations(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "tz": "Europe/Lonodn",
                "inventory": {"file": "x.csv", "sample_town": {}},
                "policies": [],
                "nights": {"first": "2026-02-30"},
                "tarif": {},
            }
        )
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "tz: 'Europe/Lonodn' is not an IANA time zone" in text
    assert "inventory: give exactly one of sample_town or file" in text
    assert "policies: List should have at least 1 item" in text
    assert "nights.first:" in text
    assert "tarif: unknown key" in text
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml")


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(
    not (SHARED / "leeds_footfall_hourly_2009-2016.csv.gz").exists(), reason="needs ../shared/data"
)
def test_replayed_leeds_counts_drive_the_night(tmp_path: Path) -> None:
    path = _scenario(tmp_path)
    scenario = yaml.safe_load(path.read_text())
    scenario["demand"] = {
        "model": "counts",
        "counts": {
            "kind": "leeds_footfall",
            "path": str(SHARED / "leeds_footfall_hourly_2009-2016.csv.gz"),
            "replay_date": "2016-12-15",
            "scale": 0.02,
        },
    }
    path.write_text(yaml.safe_dump(scenario))
    report = run_scenario(load_scenario(path))
    assert any("replayed counts of the night of 2016-12-15" in note for note in report.demand_notes)
    users = report.policies[0].compliance.road_users
    # Leeds city-centre cameras count thousands an hour in the evening: scaled by 0.02 over
    # 3 streets and ~18 hours that is hundreds of users, far fewer after midnight.
    assert 100 < users < 20_000
    by_hour = report.policies[1].below_required_share_by_hour
    assert len(by_hour) == len(report.hour_labels)


SAMPLES = Path(__file__).resolve().parents[2] / "streetlight" / "samples"


def _account_passage_by_passage(setup: Any, job: Any, result: Any) -> dict[str, Any]:
    """The slow twin of ``account``'s passage figures: read from the trace, one passage at a time."""
    tr, program = setup.trace, job.program
    m, n_hours = tr.n_records, setup.n_steps // 3600
    user_h, below_h = np.zeros(n_hours), np.zeros(n_hours)
    user_lamp, below_lamp = (
        np.zeros(len(job.electrics.rated_power_w)),
        np.zeros(len(job.electrics.rated_power_w)),
    )
    early: set[int] = set()
    dark = 0.0
    for r in range(m):
        lamp, enter = int(tr.lamp[r]), int(tr.enter_step[r])
        at = enter + setup.start_step
        row = setup.lamp_required_row[lamp]
        if setup.required_frac[row, at // round(INTERVAL_S)] <= 0:
            continue  # the class required no light: not counted
        seconds = min(int(tr.leave_step[r]) + 1, setup.n_steps) - enter
        below = result.probe_below_required_s[m + r] - result.probe_below_required_s[r]
        user_h[enter // 3600] += seconds
        below_h[enter // 3600] += below
        user_lamp[lamp] += seconds
        below_lamp[lamp] += below
        level = result.probe_level_frac[r]
        prof = program.lamp_profile[lamp]
        boost = min(program.boost_frac[prof], program.ceiling_frac[lamp])
        if (
            program.boost_frac[prof] > 0
            and level + 1e-6 < boost
            and program.program_frac[prof, at] > 0
        ):
            early.add(int(tr.user[r]))
        if level <= 0:
            dark += seconds
    return {
        "user_seconds_by_hour": user_h,
        "below_user_seconds_by_hour": below_h,
        "user_seconds_by_lamp": user_lamp,
        "below_user_seconds_by_lamp": below_lamp,
        "users_before_boost": len(early),
        "dark_user_seconds": dark,
    }


def test_accounting_from_probes_matches_the_trace_passage_by_passage(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "estate",
                "inventory": {"sample_town": {"streets": 3, "lamps_per_street": 15}},
                "demand": {"footfall_peak_per_h": 120, "traffic_peak_per_h": 40},
                "policies": [
                    {"file": str(SAMPLES / "policy_part_night.yaml")},
                    {"file": str(SAMPLES / "policy_presence_adaptive.yaml")},
                ],
                "nights": {"first": NIGHT.isoformat()},
                "seed": 5,
            }
        )
    )
    scenario = load_scenario(path)
    town = load_town(scenario)
    setup = prepare_night(scenario, town, load_policies(scenario), NIGHT, 5)
    seen = {"users_before_boost": 0, "dark_user_seconds": 0.0}
    for compiled in setup.compiled:
        job = make_job(scenario, town, setup, compiled)
        result, _ = run_job(job, parallel=False)
        got = account(setup, job, result)
        want = _account_passage_by_passage(setup, job, result)
        for key, value in want.items():
            assert np.array_equal(getattr(got, key), value), (compiled.program.meta, key)
            if key in seen:
                seen[key] += value
        assert got.users == setup.trace.n_users > 0
    # Both figures were exercised: presence users who met a lamp still fading up, and
    # part-night users under switched-off lamps.
    assert seen["users_before_boost"] > 0 and seen["dark_user_seconds"] > 0

"""Edge schedules on disk and the gateway's local autonomy: who drives, and never dark at night."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controller.dimming.levels import run_night
from controller.dimming.power import LampElectrics
from controller.dimming.solar import solar_elevation_deg
from controller.edge_schedule import ScheduleError, load_schedule, save_schedule
from controller.policy import compile_night, validate_policy
from gateways.autonomy import LocalAutonomy, Mode
from simulation.sample_town import sample_town

SAMPLES = Path(__file__).resolve().parents[2] / "streetlight" / "samples"
S = 1_000_000_000


@pytest.fixture(scope="module")
def town():  # type: ignore[no-untyped-def]
    return sample_town(streets=2, lamps_per_street=6)


@pytest.fixture(scope="module")
def programs(town):  # type: ignore[no-untyped-def]
    policy = validate_policy(SAMPLES / "policy_part_night.yaml")
    return [compile_night(policy, town, f"2026-12-{d}", "Europe/London") for d in (21, 22)]


def test_schedule_round_trips_and_refuses_damage(tmp_path: Path, town, programs) -> None:  # type: ignore[no-untyped-def]
    path = save_schedule(tmp_path / "schedule.npz", list(town.lamp_id), programs)
    loaded = load_schedule(path)
    assert loaded.lamp_ids == tuple(town.lamp_id)
    for a, b in zip(loaded.programs, programs, strict=True):
        assert a.start_ns == b.start_ns and a.profile_names == b.profile_names
        np.testing.assert_array_equal(a.program_frac, b.program_frac)
        np.testing.assert_array_equal(a.neighbour_indices, b.neighbour_indices)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "torn.npz").write_bytes(bytes(raw))
    with pytest.raises(ScheduleError, match=r"cannot be read|damaged|no readable header"):
        load_schedule(tmp_path / "torn.npz")
    with pytest.raises(ScheduleError, match="no edge schedule at"):
        load_schedule(tmp_path / "missing.npz")


def _autonomy(town, schedule, *, started_ns: int) -> LocalAutonomy:  # type: ignore[no-untyped-def]
    return LocalAutonomy(
        lamp_ids=list(town.lamp_id),
        schedule=schedule,
        uplink_timeout_s=30,
        fail_safe_frac=1.0,
        lat_deg=float(town.lat_deg.mean()),
        lon_deg=float(town.lon_deg.mean()),
        started_ns=started_ns,
    )


def test_takes_over_after_the_timeout_and_follows_the_schedule(
    tmp_path: Path, town, programs
) -> None:  # type: ignore[no-untyped-def]
    schedule = load_schedule(save_schedule(tmp_path / "s.npz", list(town.lamp_id), programs))
    p = programs[0]
    t0 = p.start_ns + 8 * 3600 * S  # 20:00 local, lamps lit at full
    auto = _autonomy(town, schedule, started_ns=t0)
    assert auto.mode(t0 + 10 * S) is Mode.CENTRAL
    assert auto.levels(t0 + 10 * S) is None
    assert auto.mode(t0 + 31 * S) is Mode.SCHEDULE
    # Cut the uplink for the rest of the night: follow the program second by second, no lamp
    # dark while the program has it lit, dark only inside the explicit part-night window.
    reference = run_night(p, LampElectrics.from_inventory(town), sample_every_s=1.0).samples
    for t in range(t0 + 31 * S, p.start_ns + p.n_steps * S, 7 * S):
        levels = np.array(list(auto.levels(t).values()))  # type: ignore[union-attr]
        step = p.step_of(t)
        lit = p.program_frac[p.lamp_profile, step] > 0
        assert np.all(levels[lit] > 0)
        np.testing.assert_allclose(levels, reference[:, step], atol=1e-6)
    # The central service speaks again: it drives.
    auto.heard_from_central(t0 + 4 * 3600 * S)
    assert auto.mode(t0 + 4 * 3600 * S + S) is Mode.CENTRAL


def test_fail_safe_without_a_schedule_is_bright_at_night_and_off_by_day(town) -> None:  # type: ignore[no-untyped-def]
    start = int(np.datetime64("2026-12-21T12:00", "ns").astype(np.int64))
    auto = _autonomy(town, None, started_ns=start)
    lat, lon = float(town.lat_deg.mean()), float(town.lon_deg.mean())
    for hour in range(1, 24):
        t = start + hour * 3600 * S
        assert auto.mode(t) is Mode.FAIL_SAFE
        levels = set(auto.levels(t).values())  # type: ignore[union-attr]
        dark = float(solar_elevation_deg(np.int64(t), lat, lon)) < 0
        assert levels == (
            {1.0}
            if dark
            else ({0.0} if float(solar_elevation_deg(np.int64(t), lat, lon)) > 3 else {1.0})
        )


def test_presence_boosts_lamp_and_neighbours_locally(tmp_path: Path, town) -> None:  # type: ignore[no-untyped-def]
    from domain.neighbours import build_neighbour_graph

    policy = validate_policy(SAMPLES / "policy_presence_adaptive.yaml")
    graph = build_neighbour_graph(
        town.lon_deg,
        town.lat_deg,
        street_index=town.street_index,
        order_on_street=town.order_on_street,
    )
    p = compile_night(policy, town, "2026-12-21", "Europe/London", neighbours=graph)
    schedule = load_schedule(save_schedule(tmp_path / "p.npz", list(town.lamp_id), [p]))
    t0 = p.start_ns + 12 * 3600 * S  # midnight: presence on a 50 % base
    auto = _autonomy(town, schedule, started_ns=t0 - 60 * S)
    before = auto.levels(t0)
    assert before is not None and max(before.values()) < 0.6
    auto.presence([str(town.lamp_id[3]), "unknown-lamp"])
    after = {}
    for k in range(1, 4):
        after = auto.levels(t0 + k * S) or {}
    raised = [lamp for lamp, level in after.items() if level > before[lamp] + 0.3]
    assert str(town.lamp_id[3]) in raised and len(raised) >= 2


def test_rejects_a_schedule_for_other_lamps(tmp_path: Path, town, programs) -> None:  # type: ignore[no-untyped-def]
    schedule = load_schedule(save_schedule(tmp_path / "s.npz", list(town.lamp_id), programs))
    with pytest.raises(ValueError, match="lamps differ"):
        LocalAutonomy(
            lamp_ids=["x"],
            schedule=schedule,
            uplink_timeout_s=30,
            fail_safe_frac=1.0,
            lat_deg=51,
            lon_deg=0,
        )

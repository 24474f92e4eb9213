"""The live control loop: same kernels as the simulator, deadband, batching, fallback, overrides."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.levels import Triggers, run_night
from controller.dimming.power import LampElectrics
from controller.dimming.presence import plausible_triggers
from controller.dimming.program import NightProgram
from controller.live import (
    FALLBACK,
    ActiveProgram,
    LiveConfig,
    LiveControlError,
    LiveController,
    run,
)
from controller.policy import Override, compile_night_full, validate_policy
from domain.errors import StreetlightError
from domain.inventory import InventoryArrays
from domain.neighbours import build_neighbour_graph
from domain.records import LampCommand, Reading, ReadingKind, Sensor, SensorKind
from simulation.sample_town import sample_town

SAMPLES = Path(__file__).resolve().parents[2] / "streetlight" / "samples"
S = 1_000_000_000
#: 2026-01-01T00:00Z: a winter night in Bristol (the sample town).
MIDNIGHT = 1_767_225_600 * S
NOON = MIDNIGHT + 12 * 3600 * S


@pytest.fixture(scope="module")
def town() -> InventoryArrays:
    # Streets 0 and 1 are main roads (group "main", P3), street 2 residential (P4).
    return sample_town(streets=3, lamps_per_street=4)


def _ids(inv: InventoryArrays) -> list[str]:
    return [str(x) for x in inv.lamp_id]


def _gateways(inv: InventoryArrays) -> dict[str, str]:
    """Street 0 on gw-a, the others on gw-b."""
    return {lamp: ("gw-a" if "-00-" in lamp else "gw-b") for lamp in _ids(inv)}


def _program(
    levels: np.ndarray,
    n_lamps: int,
    *,
    start_ns: int = MIDNIGHT,
    floor: float = 0.2,
    up: float = 1e6,
    down: float = 1e6,
    boost: float = 0.0,
    hold_s: float = 0.0,
) -> NightProgram:
    """One profile whose level at step ``t`` is ``levels[t]``, for every lamp."""
    row = np.asarray(levels, np.float32)[None, :]
    return NightProgram(
        start_ns=start_ns,
        step_s=1.0,
        program_frac=row,
        floor_frac=np.where(row > 0, np.float32(floor), np.float32(0)),
        boost_frac=np.array([boost], np.float32),
        hold_s=np.array([hold_s], np.float32),
        fade_up_frac_per_s=np.array([up], np.float32),
        fade_down_frac_per_s=np.array([down], np.float32),
        class_factor=np.ones((1, 1), np.float32),
        lamp_profile=np.zeros(n_lamps, np.int32),
        lamp_zone=np.full(n_lamps, -1, np.int32),
        ceiling_frac=np.ones(n_lamps, np.float32),
        neighbour_indptr=np.zeros(n_lamps + 1, np.int64),
        neighbour_indices=np.zeros(0, np.int32),
    )


def _sent(batches: dict[str, list[LampCommand]]) -> dict[str, float]:
    return {c.lamp_id: c.level_frac for cs in batches.values() for c in cs}


# --- the twin: the same kernels as the simulator ------------------------------------------------


def test_stepping_a_night_second_by_second_reproduces_run_night() -> None:
    """Presence (with the plausible-speed filter and neighbours), adaptive demand and fades:
    the live controller's levels equal the simulator's at every one of ~22,500 steps (a short
    midsummer night in Aberdeen), and it sends one command per change of target the simulator
    counts (plus the first one)."""
    inv = sample_town(streets=3, lamps_per_street=8, lat_deg=57.15, lon_deg=-2.11)
    graph = build_neighbour_graph(
        inv.lon_deg,
        inv.lat_deg,
        street_index=inv.street_index,
        order_on_street=inv.order_on_street,
    )
    policy = validate_policy(SAMPLES / "policy_presence_adaptive.yaml")
    compiled = compile_night_full(
        policy, inv, "2026-06-21", "Europe/London", window="night", neighbours=graph
    )
    program = compiled.program
    n, n_steps = program.n_lamps, program.n_steps
    rng = np.random.default_rng(1)
    count = rng.poisson(0.002 * n * n_steps)
    triggers = Triggers.from_unsorted(rng.integers(0, n_steps, count), rng.integers(0, n, count))
    kept, dropped = plausible_triggers(
        triggers,
        neighbour_indptr=graph.indptr,
        neighbour_indices=graph.indices,
        neighbour_distance_m=graph.distance_m,
        max_speed_mps=compiled.max_speed_mps,
    )
    zones = compiled.thresholds.zone_names
    demand = rng.uniform(0, 120, (len(zones), -(-n_steps // 900))).astype(np.float32)
    steps = adaptive_steps(demand, compiled.thresholds.down_per_h, compiled.thresholds.up_per_h)
    assert dropped > 0 and len(np.unique(steps)) == 3  # every feature is exercised
    night = run_night(
        program,
        LampElectrics.uniform(n, 50.0),
        triggers=kept,
        adaptive_steps=steps,
        adaptive_interval_s=900.0,
        sample_every_s=1.0,
    )

    ids = _ids(inv)
    live = LiveController(inv, _gateways(inv), neighbours=graph)
    live.set_programs([ActiveProgram(tuple(ids), compiled)])
    commands = np.zeros(n, np.int64)
    position = {lamp: i for i, lamp in enumerate(ids)}
    e = 0
    mismatched_steps = 0
    for s in range(n_steps):
        t = program.start_ns + s * S
        if s % 900 == 0:
            live.demand({z: float(demand[k, s // 900]) for k, z in enumerate(zones)}, t)
        while e < len(triggers) and triggers.step[e] == s:
            live.presence(ids[int(triggers.lamp[e])], t + 250_000_000)
            e += 1
        for batch in live.step(t + 500_000_000).values():
            for command in batch:
                commands[position[command.lamp_id]] += 1
        mismatched_steps += not np.array_equal(live.snapshot().level_frac, night.samples[:, s])
    assert mismatched_steps == 0
    np.testing.assert_array_equal(commands, night.commands + 1)
    assert live.counters["presence_implausible"] == dropped
    snap = live.snapshot()
    assert np.all(np.abs(snap.sent_frac - snap.target_frac) <= 0.02)


# --- deadband, batching, ramps ------------------------------------------------------------------


def test_first_step_sends_every_lamp_then_only_changes_beyond_the_deadband(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    # The program dims from 1.0 to 0.4 over 100 s, a step of 0.006 per second.
    levels = np.concatenate([np.ones(10), np.linspace(1.0, 0.4, 101), np.full(89, 0.4)])
    live = LiveController(town, _gateways(town))
    live.set_programs([ActiveProgram(tuple(ids), _program(levels, len(ids)))])

    first = live.step(MIDNIGHT)
    assert sorted(first) == ["gw-a", "gw-b"]
    assert [c.lamp_id for c in first["gw-a"]] == ids[:4]
    assert [c.lamp_id for c in first["gw-b"]] == ids[4:]
    assert {c.level_frac for cs in first.values() for c in cs} == {1.0}
    assert {(c.ramp_s, c.reason, c.issued_ns) for cs in first.values() for c in cs} == {
        (2.0, "program", MIDNIGHT)
    }
    sends = []
    for s in range(1, 200):
        batches = live.step(MIDNIGHT + s * S)
        if batches:
            sent = _sent(batches)
            assert set(sent) == set(ids)  # all lamps share the program: all move together
            sends.append((s, round(next(iter(sent.values())), 4)))
            snap = live.snapshot()
            assert np.all(np.abs(snap.sent_frac - snap.target_frac) <= 0.02)
    # A command whenever the target has moved more than 0.02 from the last one sent: every 4 s.
    assert [s for s, _ in sends] == list(range(14, 111, 4))
    assert sends[-1] == (110, 0.4)


def test_commands_carry_the_programs_fade_time(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    levels = np.concatenate([np.ones(10), np.full(90, 0.5)])
    program = _program(levels, len(ids), up=0.5 / 1.4, down=0.5 / 30)  # presence-style fades
    live = LiveController(town, _gateways(town), config=LiveConfig(ramp_s=3.0))
    live.set_programs([ActiveProgram(tuple(ids), program)])
    for s in range(10):
        live.step(MIDNIGHT + s * S)
    down = live.step(MIDNIGHT + 10 * S)
    # The kernel fades 1.0 -> 0.5 over 30 s; the command asks the lamp for the same fade.
    assert {(c.level_frac, round(c.ramp_s, 3)) for cs in down.values() for c in cs} == {(0.5, 30.0)}
    assert live.snapshot().level_frac[0] == pytest.approx(1.0 - 0.5 / 30, abs=1e-6)
    assert live.step(MIDNIGHT + 11 * S) == {}  # the fade itself sends nothing more


def test_a_late_step_catches_up_exactly_and_a_very_late_one_is_capped(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    levels = np.concatenate([np.ones(30), np.full(400, 0.3)])
    program = _program(levels, len(ids), up=0.05, down=0.02)
    every, late = (LiveController(town, _gateways(town)) for _ in range(2))
    for live in (every, late):
        live.set_programs([ActiveProgram(tuple(ids), program)])
        live.step(MIDNIGHT)
    for s in range(1, 61):
        every.step(MIDNIGHT + s * S)
    late.step(MIDNIGHT + 60 * S + 999_999_999)  # the same tick, 59 ticks late
    np.testing.assert_array_equal(late.snapshot().level_frac, every.snapshot().level_frac)
    assert late.counters["ticks"] == every.counters["ticks"] == 61

    capped = LiveController(town, _gateways(town), config=LiveConfig(max_catch_up_s=10))
    capped.set_programs([ActiveProgram(tuple(ids), program)])
    capped.step(MIDNIGHT)
    capped.step(MIDNIGHT + 100 * S)
    assert capped.counters["ticks"] == 11
    assert capped.counters["skipped_ticks"] == 90


# --- fallback, part-night, programs changing ----------------------------------------------------


def test_lamps_without_a_program_fail_bright_at_night_and_go_off_by_day(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    live = LiveController(town, _gateways(town))
    night = _sent(live.step(MIDNIGHT))
    assert night == dict.fromkeys(ids, 1.0)
    assert set(live.snapshot().source) == {FALLBACK}
    # An engineer's override of 0 cannot put an unprogrammed lamp out at night: class floor.
    live.add_override(Override(lamp_ids=(ids[0],), level_frac=0.0, issued_ns=MIDNIGHT + S))
    forced = live.step(MIDNIGHT + S)
    assert [(c.lamp_id, c.reason) for cs in forced.values() for c in cs] == [(ids[0], "override")]
    assert 0 < forced["gw-a"][0].level_frac < 1
    live.set_overrides([])
    live.step(MIDNIGHT + 2 * S)
    day = live.step(NOON)
    assert _sent(day) == dict.fromkeys(ids, 0.0)
    assert {c.reason for cs in day.values() for c in cs} == {"fail_safe"}


def test_part_night_program_switches_off_only_in_its_window_then_fallback_takes_over(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    policy = validate_policy(SAMPLES / "policy_part_night.yaml")
    p3 = np.flatnonzero(town.class_index == town.class_index[0])  # the main roads
    compiled = compile_night_full(policy, town.subset(p3), "2026-01-05", "Europe/London")
    program = compiled.program
    live = LiveController(town, _gateways(town))
    active = ActiveProgram(tuple(ids[i] for i in p3), compiled)
    live.set_programs([active])
    assert active.label == "residential-part-night v1"
    at = program.start_ns
    hour = 3600 * S

    def levels(t: int) -> np.ndarray:
        live.step(t)
        return live.snapshot().target_frac

    evening, small_hours, morning = at + 9 * hour, at + 14 * hour, at + 19 * hour
    assert np.all(levels(evening) == 1.0)  # 21:00: lit on both program and fallback
    off = levels(small_hours)  # 02:00: the program's explicit switch-off window
    assert np.all(off[p3] == 0.0) and np.all(np.delete(off, p3) == 1.0)
    assert np.all(levels(morning)[p3] > 0)  # 07:00: on again before dawn
    snap = live.snapshot()
    assert {snap.source[i] for i in p3} == {"residential-part-night v1"}
    # After the program's noon-to-noon window the fallback drives every lamp (it is day).
    assert np.all(levels(at + 24 * hour + S) == 0.0)
    assert set(live.snapshot().source) == {FALLBACK}


# --- overrides ----------------------------------------------------------------------------------


def test_override_starts_and_ends_with_a_command_even_within_the_deadband(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    live = LiveController(town, _gateways(town))
    live.set_programs([ActiveProgram(tuple(ids), _program(np.full(600, 0.5), len(ids)))])
    live.step(MIDNIGHT)
    live.set_overrides(
        [
            Override(groups=("main",), level_frac=1.0, issued_ns=MIDNIGHT + 5 * S),
            # Newer, on one main-road lamp, almost the program's level: within the deadband.
            Override(
                lamp_ids=(ids[0],),
                level_frac=0.51,
                issued_ns=MIDNIGHT + 10 * S,
                expiry_ns=MIDNIGHT + 20 * S,
            ),
        ]
    )
    assert live.step(MIDNIGHT + 4 * S) == {}
    on = live.step(MIDNIGHT + 5 * S)
    main = [i for i in ids if "-02-" not in i]
    assert sorted(_sent(on)) == sorted(main)
    assert {(c.level_frac, c.reason) for cs in on.values() for c in cs} == {(1.0, "override")}
    newer = _sent(live.step(MIDNIGHT + 10 * S))
    assert newer == {ids[0]: pytest.approx(0.51)}  # latest wins on the lamp it names
    # At expiry the lamp resumes its program (the older group override does not come back).
    resumed = live.step(MIDNIGHT + 20 * S)
    assert [(c.lamp_id, c.level_frac, c.reason) for cs in resumed.values() for c in cs] == [
        (ids[0], 0.5, "program")
    ]
    # An empty override resumes the program on the group.
    live.add_override(Override(groups=("main",), level_frac=None, issued_ns=MIDNIGHT + 30 * S))
    back = live.step(MIDNIGHT + 30 * S)
    assert _sent(back) == {i: 0.5 for i in main if i != ids[0]}
    assert not live.snapshot().overridden.any()


# --- presence and demand ------------------------------------------------------------------------


def test_sensor_detection_raises_its_lamps_and_holds(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    sensor = Sensor("PIR-1", "sample", SensorKind.PRESENCE, 0.0, 0.0, lamp_ids=(ids[1], ids[2]))
    live = LiveController(town, _gateways(town), sensors=[sensor])
    program = _program(np.full(600, 0.3), len(ids), boost=1.0, hold_s=30, up=1.0, down=0.1)
    live.set_programs([ActiveProgram(tuple(ids), program)])
    live.step(MIDNIGHT)
    assert live.presence("PIR-1", MIDNIGHT + S + 1) == 2
    assert live.presence("nobody", MIDNIGHT + S) == 0
    readings = [
        Reading(ids[5], ReadingKind.PRESENCE, 1.0, MIDNIGHT + S),
        Reading(ids[6], ReadingKind.LEVEL_FRAC, 1.0, MIDNIGHT + S),  # not presence: ignored
    ]
    assert live.presence_readings(readings) == 1
    up = live.step(MIDNIGHT + S)
    assert {c.lamp_id: (c.level_frac, round(c.ramp_s, 3)) for cs in up.values() for c in cs} == {
        ids[1]: (1.0, 0.7),
        ids[2]: (1.0, 0.7),
        ids[5]: (1.0, 0.7),
    }
    assert live.counters["presence_unknown_source"] == 1
    for s in range(2, 31):
        assert live.step(MIDNIGHT + s * S) == {}  # held at the boost for 30 s
    down = live.step(MIDNIGHT + 31 * S)
    assert sorted(_sent(down)) == sorted([ids[1], ids[2], ids[5]])
    # A detection 31 s older than the next tick to process is dropped: nobody is there now.
    live.presence(ids[7], MIDNIGHT + S)
    assert live.step(MIDNIGHT + 32 * S) == {}
    assert live.counters["presence_stale"] == 1


def test_demand_steps_zones_down_with_hysteresis_and_stale_demand_returns_to_normal(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    policy = validate_policy(SAMPLES / "policy_presence_adaptive.yaml")
    compiled = compile_night_full(policy, town, "2026-01-05", "Europe/London")
    live = LiveController(town, _gateways(town), neighbours=_graph(town))
    live.set_programs([ActiveProgram(tuple(ids), compiled)])
    t = compiled.program.start_ns + 11 * 3600 * S  # 23:00: the base level 0.5
    street2 = [i for i, lamp in enumerate(ids) if "-02-" in lamp]

    def target() -> float:
        return float(live.snapshot().target_frac[street2[0]])

    live.step(t)
    assert target() == 0.5
    assert live.demand({"Street 2": 10.0, "Nowhere": 5.0}, t, measure="footfall") == 1
    assert live.counters["demand_unknown_zone"] == 1
    live.step(t + S)
    assert target() == pytest.approx(0.5 * 0.6, abs=1e-6) or target() == 0.25  # P4 -> P5, floor
    stepped = target()
    live.demand({"Street 2": 70.0}, t + 2 * S)  # between down (60) and up (90): stays
    live.step(t + 2 * S)
    assert target() == stepped
    live.demand({"Street 2": 95.0}, t + 3 * S)  # above up: back to the normal class
    live.step(t + 3 * S)
    assert target() == 0.5
    live.demand({"Street 2": 10.0}, t + 4 * S)
    live.step(t + 4 * S)
    assert target() == stepped
    live.step(t + 1805 * S)  # no demand for 30 min: fail bright
    assert target() == 0.5
    assert live.demand({"Street 2": 1.0}, t, measure="traffic") == 0


def _graph(inv: InventoryArrays):  # type: ignore[no-untyped-def]
    return build_neighbour_graph(
        inv.lon_deg,
        inv.lat_deg,
        street_index=inv.street_index,
        order_on_street=inv.order_on_street,
    )


# --- refusals -----------------------------------------------------------------------------------


def test_refuses_what_it_cannot_run(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    gateways = _gateways(town)
    with pytest.raises(LiveControlError) as err:
        LiveController(town, {k: v for k, v in gateways.items() if k != ids[3]})
    assert str(err.value) == (
        "1 lamp(s) have no gateway (e.g. sample-00-003); give every lamp of the inventory a "
        "gateway id in gateway_of"
    )
    assert err.value.lamp_id == ids[3]
    live = LiveController(town, gateways)
    program = _program(np.ones(100), len(ids))
    with pytest.raises(LiveControlError) as err:
        live.set_programs(
            [
                ActiveProgram(tuple(ids), program, name="a"),
                ActiveProgram(tuple(ids), dataclasses.replace(program, start_ns=MIDNIGHT + 50 * S)),
            ]
        )
    assert str(err.value) == (
        f"programs 0 (a) and 1 (program) both drive lamp sample-00-000 between "
        f"{MIDNIGHT + 50 * S} and {MIDNIGHT + 100 * S} ns; a lamp follows one program at a time"
    )
    with pytest.raises(
        LiveControlError, match=r"^program 0 \(program\) has step_s=2.0 starting at"
    ):
        live.set_programs([ActiveProgram(tuple(ids), dataclasses.replace(program, step_s=2.0))])
    with pytest.raises(LiveControlError) as err:
        live.set_programs([ActiveProgram(tuple(ids[:-1]), program)])
    assert str(err.value) == "program 0 (program) drives 12 lamps but lists 11 lamp ids"
    with pytest.raises(LiveControlError) as err:
        live.set_programs([ActiveProgram((*ids[:-1], "L-404"), program)])
    assert str(err.value) == "program 0 (program) names lamp(s) not in the inventory: L-404"
    policy = validate_policy(SAMPLES / "policy_presence_adaptive.yaml")
    compiled = compile_night_full(policy, town, "2026-01-05", "Europe/London", window="night")
    with pytest.raises(LiveControlError) as err:
        live.set_programs([ActiveProgram(tuple(ids), compiled)])
    assert str(err.value) == (
        "program 0 (estate-presence-adaptive v3) filters presence at 15.0 m/s; pass the "
        "inventory's neighbour graph (neighbours=) so false triggers can be dropped as in simulation"
    )
    with pytest.raises(LiveControlError) as err:
        LiveController(
            town, gateways, sensors=[Sensor("S", "c", SensorKind.PRESENCE, 0, 0, ("X",))]
        )
    assert str(err.value) == "sensor S names lamp(s) not in the inventory: X; check its lamp_ids"
    with pytest.raises(ValueError) as verr:
        live.demand({"Street 2": -1.0}, MIDNIGHT)
    assert str(verr.value) == "demand for zone 'Street 2' must be >= 0 per hour, got -1.0"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tick_s": 0.0}, "tick_s must be a whole number of nanoseconds >= 0.001 s, got 0.0"),
        ({"deadband_frac": 1.0}, "deadband_frac must be within [0, 1), got 1.0"),
        ({"ramp_s": 4000.0}, "ramp_s must be within [0, 3600] seconds, got 4000.0"),
        ({"max_catch_up_s": 0.5}, "max_catch_up_s must be at least one tick (1.0 s), got 0.5"),
        (
            {"fallback_daylight_elevation_deg": 95.0},
            "fallback_daylight_elevation_deg must be within [-90, 90], got 95.0",
        ),
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as err:
        LiveConfig(**kwargs)
    assert str(err.value) == message


# --- the async loop -----------------------------------------------------------------------------


class MovingClock:
    """Time moves only when the loop sleeps; the loop is stopped once ``end_ns`` is reached."""

    def __init__(self, start_ns: int, end_ns: int, stop: asyncio.Event) -> None:
        self.t = start_ns
        self.end_ns = end_ns
        self.stop = stop
        self.sleeps: list[int] = []

    def now_ns(self) -> int:
        return self.t

    async def sleep_until(self, time_ns: int) -> None:
        self.sleeps.append(time_ns)
        self.t = max(self.t, time_ns) + 100_000_000  # the loop wakes 0.1 s late
        if self.t >= self.end_ns:
            self.stop.set()


class LinkDown(StreetlightError):
    pass


class RecordingSink:
    def __init__(self, fail_times: int = 0) -> None:
        self.batches: list[list[LampCommand]] = []
        self.fail_times = fail_times

    async def send(self, commands: list[LampCommand]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise LinkDown("downlink not connected")
        self.batches.append(list(commands))


def test_run_loop_ticks_once_a_second_batches_and_resends_after_a_failed_link(town) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(town)
    levels = np.concatenate([np.ones(5), np.full(100, 0.5)])
    live = LiveController(town, _gateways(town))
    live.set_programs([ActiveProgram(tuple(ids), _program(levels, len(ids)))])
    sinks = {"gw-a": RecordingSink(fail_times=1), "gw-b": RecordingSink()}
    errors: list[tuple[str, str]] = []

    async def main() -> MovingClock:
        stop = asyncio.Event()
        clock = MovingClock(MIDNIGHT, MIDNIGHT + 10 * S, stop)
        await run(
            live,
            clock,
            sinks.__getitem__,
            stop,
            on_send_error=lambda gw, err: errors.append((gw, str(err))),
            max_batch=5,
        )
        return clock

    clock = asyncio.run(main())
    assert clock.sleeps[:3] == [MIDNIGHT + S, MIDNIGHT + 2 * S, MIDNIGHT + 3 * S]
    assert errors == [("gw-a", "downlink not connected")]
    a, b = sinks["gw-a"].batches, sinks["gw-b"].batches
    # gw-b: 8 lamps in batches of at most 5, at the start and at the dimming step (t = 5 s).
    assert [len(x) for x in b] == [5, 3, 5, 3]
    assert [x[0].level_frac for x in b] == [1.0, 1.0, 0.5, 0.5]
    # gw-a failed first: its 4 lamps were sent again at the next tick, then dimmed.
    assert [(len(x), x[0].level_frac, x[0].issued_ns) for x in a] == [
        (4, 1.0, MIDNIGHT + S + 100_000_000),
        (4, 0.5, MIDNIGHT + 5 * S + 100_000_000),
    ]


def test_one_sensor_over_several_lamps_is_one_detection_for_the_speed_filter() -> None:
    """A sensor covering two lamps 30 m apart raises both at once: that is one detection, not
    somebody moving 30 m in no time. A second sensor firing a second later at the next lamp
    along (30 m/s, over the policy's 15 m/s) is filtered, and its companion lamp with it."""
    inv = sample_town(streets=1, lamps_per_street=6, lat_deg=51.45, lon_deg=-2.58)
    ids = _ids(inv)
    policy = validate_policy(SAMPLES / "policy_presence_adaptive.yaml")
    compiled = compile_night_full(
        policy, inv, "2026-01-15", "Europe/London", window="night", neighbours=_graph(inv)
    )
    assert compiled.max_speed_mps == 15.0
    sensors = [
        # Each sensor is judged on its first lamp: PIR-A's is ids[1], next to PIR-B's ids[2].
        Sensor("PIR-A", "sample", SensorKind.PRESENCE, 0.0, 0.0, lamp_ids=(ids[1], ids[0])),
        Sensor("PIR-B", "sample", SensorKind.PRESENCE, 0.0, 0.0, lamp_ids=(ids[2], ids[5])),
    ]
    live = LiveController(inv, _gateways(inv), sensors=sensors, neighbours=_graph(inv))
    live.set_programs([ActiveProgram(tuple(ids), compiled)])
    late = int(dt.datetime(2026, 1, 15, 23, 30, tzinfo=dt.UTC).timestamp()) * S
    live.step(late)

    def targets() -> dict[str, float]:
        snap = live.snapshot()
        return dict(zip(snap.lamp_id, snap.target_frac.tolist(), strict=True))

    base = targets()[ids[5]]
    assert base < 1.0
    assert live.presence("PIR-A", late + S) == 2
    live.step(late + S)
    assert targets()[ids[0]] == targets()[ids[1]] == 1.0  # both of PIR-A's lamps
    assert live.counters["presence_implausible"] == 0
    assert live.presence("PIR-B", late + 2 * S) == 2  # 30 m from ids[1] in 1 s
    live.step(late + 2 * S)
    assert live.counters["presence_implausible"] == 1  # judged once, on its first lamp
    assert targets()[ids[5]] == base  # the companion follows the verdict: not raised

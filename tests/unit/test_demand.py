"""Demand rates, road-user traces, detections and zone demand: twins, statistics, real towns."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.levels import Triggers, run_night
from domain.importer import ColumnMapping, import_csv
from domain.inventory import InventoryArrays
from domain.records import Lamp
from simulation.counts import NS_PER_H, HourlyCounts
from simulation.demand import (
    FOOTFALL_MIX,
    RESIDENTIAL_FOOTFALL_SHAPE,
    DemandModel,
    Mode,
    ModeMix,
    ModeSpeeds,
    RoadUserTrace,
    SensorModel,
    StreetGeometry,
    UserDraws,
    demand_per_h,
    detect,
    draw_users,
    simulate_night,
    trace_users,
)
from tests.programs import random_electrics, random_program

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BRISTOL_CSV = DATA_DIR / "bristol_streetlights_lonlat.csv"
T0_NS = int(dt.datetime(2024, 12, 15, 16, tzinfo=dt.UTC).timestamp()) * 10**9


def line_streets(spacings_m: list[list[float]], seed: int = 0) -> StreetGeometry:
    """Straight streets 100 m apart; lamps handed over in shuffled order to test the sort."""
    xs: list[float] = []
    ys: list[float] = []
    street: list[int] = []
    order: list[int] = []
    for s, gaps in enumerate(spacings_m):
        along = np.concatenate(([0.0], np.cumsum(gaps)))
        xs += along.tolist()
        ys += [100.0 * s] * len(along)
        street += [s] * len(along)
        order += list(range(len(along)))
    shuffle = np.random.default_rng(seed).permutation(len(xs))
    return StreetGeometry.from_xy(
        np.array(xs)[shuffle],
        np.array(ys)[shuffle],
        np.array(street)[shuffle],
        np.array(order)[shuffle],
    )


def flat_model(rates_per_h: list[list[float]], n_streets: int, n_hours: int) -> DemandModel:
    """Every street gets ``rates_per_h[mode][hour]``."""
    rate = np.broadcast_to(
        np.asarray(rates_per_h, dtype=np.float64)[:, None, :], (3, n_streets, n_hours)
    ).copy()
    return DemandModel(T0_NS, rate, np.zeros((n_streets, n_hours), dtype=np.bool_))


# --- geometry ----------------------------------------------------------------------------------


def test_zones_reach_half_way_and_mirror_at_the_ends() -> None:
    streets = line_streets([[20.0, 40.0], [], [10.0, 0.0]])
    assert streets.street_ptr.tolist() == [0, 3, 4, 7]
    first, lone, third = slice(0, 3), slice(3, 4), slice(4, 7)
    assert streets.along_m[first].tolist() == [0.0, 20.0, 60.0]
    assert streets.zone_start_m[first].tolist() == [-10.0, 10.0, 40.0]
    assert streets.zone_end_m[first].tolist() == [10.0, 40.0, 80.0]
    assert (streets.zone_start_m[lone][0], streets.zone_end_m[lone][0]) == (-15.0, 15.0)
    # Two lamps on one spot: the second gets an empty zone, and the end mirrors the zero link.
    assert streets.zone_start_m[third].tolist() == [-5.0, 5.0, 10.0]
    assert streets.zone_end_m[third].tolist() == [5.0, 10.0, 10.0]
    street_of_lamp = streets.street_of_lamp()
    assert np.array_equal(street_of_lamp[streets.lamp], streets.street_of_position())
    capped = StreetGeometry.from_xy([0.0, 200.0], [0.0, 0.0], [0, 0], [0, 1], max_half_zone_m=30.0)
    assert capped.zone_start_m.tolist() == [-30.0, 170.0]
    assert capped.zone_end_m.tolist() == [30.0, 230.0]


def test_geometry_from_inventory_follows_street_order() -> None:
    m_per_deg_lon = 111_320.0 * math.cos(math.radians(51.45))
    lamps = [
        Lamp(
            f"l{i}",
            "t",
            -2.59 + x_m / m_per_deg_lon,
            51.45,
            35.0,
            street="High St",
            order_on_street=k,
        )
        for i, (x_m, k) in enumerate([(60.0, 2), (0.0, 0), (30.0, 1)])
    ]
    streets = StreetGeometry.from_inventory(InventoryArrays.from_lamps(lamps))
    assert streets.lamp.tolist() == [1, 2, 0]
    # The test places lamps on a sphere; the projection uses the ellipsoid (0.2 % apart).
    assert streets.along_m == pytest.approx([0.0, 30.0, 60.0], rel=5e-3)


# --- rates -------------------------------------------------------------------------------------


def test_synthetic_model_follows_the_default_shapes() -> None:
    model = DemandModel.synthetic(
        2,
        start_ns=T0_NS,
        n_hours=16,
        tz="Europe/London",
        footfall_peak_per_h=[10.0, 20.0],
        traffic_peak_per_h=5.0,
        cycle_share=0.2,
    )
    assert model.rate_per_h.shape == (3, 2, 16)
    walk, cycle, drive = model.rate_per_h
    local_hours = (16 + np.arange(16)) % 24  # GMT in December
    shape = np.asarray(RESIDENTIAL_FOOTFALL_SHAPE)[local_hours]
    assert np.allclose(walk[1], 20.0 * 0.8 * shape)
    assert np.allclose(cycle[0], 10.0 * 0.2 * shape)
    assert drive[0, 0] == pytest.approx(5.0)  # 16:00 is the traffic peak
    assert not model.gap.any()
    night = shape[(local_hours >= 2) & (local_hours <= 4)]
    assert np.all((night >= 0.01) & (night <= 0.02))  # ~1-2 % of the peak


def hourly(values: list[list[float]], start_ns: int = T0_NS) -> HourlyCounts:
    counts = np.asarray(values, dtype=np.float64)
    hours = start_ns + np.arange(counts.shape[1], dtype=np.int64) * NS_PER_H
    return HourlyCounts(("A", "B"), hours, counts, "footfall", "Europe/London")


def test_from_counts_scales_sites_per_street_and_marks_gaps() -> None:
    counts = hourly([[100.0, np.nan, 40.0], [10.0, 20.0, 30.0]])
    model = DemandModel.from_counts(counts, ["B", "A", ""], [0.5, 0.1, 1.0])
    total = model.total_rate_per_h
    assert total[0].tolist() == [5.0, 10.0, 15.0]
    assert total[1, 0] == 10.0 and np.isnan(total[1, 1]) and total[1, 2] == pytest.approx(4.0)
    assert total[2].tolist() == [0.0, 0.0, 0.0]
    assert model.gap.tolist() == [[False] * 3, [False, True, False], [False] * 3]
    assert np.allclose(model.rate_per_h[:, 0, 0], 5.0 * FOOTFALL_MIX.as_array())
    by_index = DemandModel.from_counts(counts, [1, 0, -1], [0.5, 0.1, 1.0])
    assert np.array_equal(by_index.rate_per_h, model.rate_per_h, equal_nan=True)
    with pytest.raises(ValueError, match="index the 2 sites"):
        DemandModel.from_counts(counts, [2], 1.0)


def test_from_profile_and_gap_filling() -> None:
    start = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    days = np.tile(np.arange(24, dtype=np.float64), 3)  # count = local hour, three days
    counts = hourly([days.tolist(), (2 * days).tolist()], start_ns=start)
    typical = DemandModel.from_profile(counts, [0, 1], 1.0, start_ns=T0_NS, n_hours=4)
    assert typical.total_rate_per_h.tolist() == [[16, 17, 18, 19], [32, 34, 36, 38]]
    actual = DemandModel.from_counts(
        hourly([[1.0, np.nan, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]), [0, 1], 1.0
    )
    with pytest.raises(ValueError, match="with_gaps_filled"):
        draw_users(actual, start_ns=T0_NS, n_steps=7200, rng=np.random.default_rng(0))
    filled = actual.with_gaps_filled(typical)
    assert filled.total_rate_per_h[0].tolist() == [1.0, 17.0, 1.0, 1.0]
    assert filled.gap[0, 1] and filled.gap.sum() == 1


def test_model_validation_says_what_to_fix() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        ModeMix(0.5, 0.1, 0.1)
    with pytest.raises(ValueError, match="jitter_mps < mean_mps"):
        ModeSpeeds(jitter_mps=(2.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="probabilities"):
        SensorModel(miss_prob=(0.1, 1.5, 0.2))
    with pytest.raises(ValueError, match="NaN outside a gap"):
        DemandModel(0, np.full((3, 1, 1), np.nan), np.zeros((1, 1), dtype=np.bool_))
    model = flat_model([[1.0], [0.0], [0.0]], 1, 1)
    with pytest.raises(ValueError, match="not inside the demand model"):
        draw_users(model, start_ns=T0_NS, n_steps=3601, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="highest rate"):
        draw_users(model, start_ns=T0_NS, n_steps=10, rng=np.random.default_rng(0), cap_per_h=0.5)


# --- arrivals: statistics ----------------------------------------------------------------------


def test_arrivals_match_the_integrated_rate_over_many_seeds() -> None:
    rates = [[6.0, 2.0, 0.5], [1.0, 0.0, 0.25], [3.0, 1.0, 0.0]]  # [mode][hour]
    model = flat_model(rates, n_streets=4, n_hours=3)
    # Window from 00:30 to 02:30: half of hour 0, all of hour 1, half of hour 2.
    weights = np.array([0.5, 1.0, 0.5])
    expected_by_mode = np.asarray(rates) @ weights
    n_seeds = 300
    per_street = []
    by_mode = np.zeros(3)
    for seed in range(n_seeds):
        draws = draw_users(
            model,
            start_ns=T0_NS + NS_PER_H // 2,
            n_steps=7200,
            rng=np.random.default_rng(seed),
        )
        per_street.append(np.bincount(draws.street, minlength=4))
        by_mode += np.bincount(draws.mode, minlength=3)
        assert np.all((draws.arrive_s >= 0) & (draws.arrive_s < 7200))
    counts = np.concatenate(per_street)
    expected = expected_by_mode.sum()  # 8.375 users per street
    samples = len(counts)
    assert abs(counts.mean() - expected) < 4 * math.sqrt(expected / samples)
    assert 0.8 < counts.var() / counts.mean() < 1.2  # Poisson: variance = mean
    assert np.allclose(by_mode / samples, expected_by_mode, atol=4 * math.sqrt(expected / samples))


def test_arrival_times_follow_the_hourly_rates() -> None:
    model = flat_model([[30.0, 3.0, 12.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], 50, 3)
    draws = draw_users(model, start_ns=T0_NS, n_steps=3 * 3600, rng=np.random.default_rng(1))
    per_hour = np.bincount((draws.arrive_s // 3600).astype(int), minlength=3) / 50
    assert per_hour == pytest.approx([30.0, 3.0, 12.0], abs=4 * math.sqrt(30 / 50))
    assert np.all(np.diff(draws.arrive_s) >= 0)


# --- kinematics: twin --------------------------------------------------------------------------


def slow_trace(streets: StreetGeometry, draws: UserDraws) -> list[tuple[int, int, int, int]]:
    """(user, lamp, enter_step, leave_step), one passage at a time, in plain Python."""
    records = []
    for u in range(draws.n_users):
        s = int(draws.street[u])
        a, b = int(streets.street_ptr[s]), int(streets.street_ptr[s + 1])
        if a == b:
            continue
        path_start = float(streets.zone_start_m[a])
        path_end = float(streets.zone_end_m[b - 1])
        forward = bool(draws.forward[u])
        arrive, speed = float(draws.arrive_s[u]), float(draws.speed_mps[u])
        for p in range(a, b) if forward else range(b - 1, a - 1, -1):
            lo, hi = float(streets.zone_start_m[p]), float(streets.zone_end_m[p])
            enter_m, leave_m = (
                (lo - path_start, hi - path_start)
                if forward
                else (
                    path_end - hi,
                    path_end - lo,
                )
            )
            enter = math.floor((arrive + enter_m / speed) / draws.step_s)
            leave = math.floor((arrive + leave_m / speed) / draws.step_s)
            if enter < draws.n_steps:
                records.append((u, int(streets.lamp[p]), enter, min(leave, draws.n_steps - 1)))
    return records


@pytest.mark.parametrize("step_s", [1.0, 0.5, 2.0])
def test_trace_matches_its_slow_twin(step_s: float) -> None:
    streets = line_streets([[25.0, 30.0, 35.0, 20.0], [40.0], [], [0.0, 15.0, 60.0]], seed=3)
    model = flat_model([[40.0], [10.0], [30.0]], streets.n_streets, 1)
    n_steps = round(3600 / step_s)
    draws = draw_users(
        model, start_ns=T0_NS, n_steps=n_steps, step_s=step_s, rng=np.random.default_rng(5)
    )
    assert draws.n_users > 100
    trace = trace_users(streets, draws)
    got = list(
        zip(
            trace.user.tolist(),
            trace.lamp.tolist(),
            trace.enter_step.tolist(),
            trace.leave_step.tolist(),
            strict=True,
        )
    )
    assert got == slow_trace(streets, draws)
    assert np.array_equal(trace.user_mode, draws.mode)


def test_passing_times_agree_with_speed_and_spacing() -> None:
    streets = line_streets([[30.0] * 6])
    model = flat_model([[20.0], [20.0], [20.0]], 1, 1)
    draws = draw_users(model, start_ns=T0_NS, n_steps=3600, rng=np.random.default_rng(2))
    trace = trace_users(streets, draws)
    full = (trace.leave_step < 3599) & (draws.arrive_s[trace.user] < 3400)
    speed = draws.speed_mps[trace.user[full]]
    dwell = trace.leave_step[full] - trace.enter_step[full]
    assert np.all(np.abs(dwell - 30.0 / speed) <= 1.0)  # every zone is 30 m long
    # Walkers take ~21 s per 30 m zone, drivers ~2.5 s.
    walk = draws.mode[trace.user[full]] == Mode.WALK
    assert 18 <= dwell[walk].mean() <= 24 and dwell[~walk].mean() < 8
    # Zones touch: each next lamp is entered when the last is left (to a step).
    same_user = trace.user[1:] == trace.user[:-1]
    assert np.all(np.abs(trace.enter_step[1:][same_user] - trace.leave_step[:-1][same_user]) <= 1)
    # Speeds within each mode's band.
    for mode, (lo, hi) in enumerate([(1.1, 1.7), (4.0, 6.0), (11.0, 13.0)]):
        chosen = draws.speed_mps[draws.mode == mode]
        assert chosen.size and chosen.min() >= lo and chosen.max() <= hi


# --- detection ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_trace() -> RoadUserTrace:
    streets = line_streets([[30.0] * 9] * 20)
    model = flat_model([[200.0], [200.0], [200.0]], streets.n_streets, 1)
    draws = draw_users(model, start_ns=T0_NS, n_steps=3600, rng=np.random.default_rng(11))
    return trace_users(streets, draws, demand=model)


def test_detection_miss_rate_per_mode(busy_trace: RoadUserTrace) -> None:
    sensors = SensorModel(miss_prob=(0.05, 0.1, 0.3), latency_s=0.0, latency_jitter_s=0.0)
    triggers = detect(busy_trace, np.random.default_rng(0), sensors=sensors)
    assert isinstance(triggers, Triggers)
    assert triggers.step.dtype == np.int64 and triggers.lamp.dtype == np.int32
    assert np.all(np.diff(triggers.step) >= 0)
    # Trace the detections back to passages: with no latency they start on the entry step.
    passages: dict[tuple[int, int], list[int]] = {}
    for r in range(busy_trace.n_records):
        key = (int(busy_trace.enter_step[r]), int(busy_trace.lamp[r]))
        passages.setdefault(key, []).append(int(busy_trace.user_mode[busy_trace.user[r]]))
    unique = {k: v[0] for k, v in passages.items() if len(v) == 1}
    seen = {(int(s), int(lamp)) for s, lamp in zip(triggers.step, triggers.lamp, strict=True)}
    for mode, miss in enumerate((0.05, 0.1, 0.3)):
        keys = [k for k, m in unique.items() if m == mode]
        missed = 1.0 - np.mean([k in seen for k in keys])
        assert abs(missed - miss) < 4 * math.sqrt(miss * (1 - miss) / len(keys)), mode


def test_latency_is_applied_and_sensor_subsets_give_subsets(busy_trace: RoadUserTrace) -> None:
    exact = SensorModel(miss_prob=(0.0, 0.0, 0.0), latency_s=5.0, latency_jitter_s=0.0)
    triggers = detect(busy_trace, np.random.default_rng(1), sensors=exact)
    expected = sorted(
        (int(s) + 5, int(lamp))
        for s, lamp in zip(busy_trace.enter_step, busy_trace.lamp, strict=True)
        if s + 5 < busy_trace.n_steps
    )
    assert list(zip(triggers.step.tolist(), triggers.lamp.tolist(), strict=True)) == expected
    jittered = SensorModel(latency_s=3.0, latency_jitter_s=1.0)
    every = detect(busy_trace, np.random.default_rng(2), sensors=jittered)
    half = np.arange(0, busy_trace.streets.n_lamps, 2)
    some = detect(busy_trace, np.random.default_rng(2), sensors=jittered, sensor_lamps=half)
    all_set = set(zip(every.step.tolist(), every.lamp.tolist(), strict=True))
    some_set = set(zip(some.step.tolist(), some.lamp.tolist(), strict=True))
    assert some_set < all_set and set(some.lamp.tolist()) <= set(half.tolist())


def test_retrigger_repeats_while_in_the_zone() -> None:
    streets = line_streets([[30.0]])
    draws = UserDraws(
        street=np.array([0], np.int32),
        arrive_s=np.array([10.0]),
        forward=np.array([True]),
        mode=np.array([0], np.int8),
        speed_mps=np.array([1.5]),
        start_ns=T0_NS,
        step_s=1.0,
        n_steps=600,
    )
    trace = trace_users(streets, draws)
    assert trace.enter_step.tolist() == [10, 30] and trace.leave_step.tolist() == [30, 50]
    sensors = SensorModel(
        miss_prob=(0.0, 0.0, 0.0), latency_s=1.0, latency_jitter_s=0.0, retrigger_s=10.0
    )
    triggers = detect(trace, np.random.default_rng(0), sensors=sensors)
    first, second = streets.lamp.tolist()
    assert list(zip(triggers.step.tolist(), triggers.lamp.tolist(), strict=True)) == sorted(
        [(11, first), (21, first), (31, first), (31, second), (41, second), (51, second)]
    )


# --- zone demand -------------------------------------------------------------------------------


def test_zone_demand_counts_entries_exactly() -> None:
    streets = line_streets([[30.0, 30.0, 30.0, 30.0]])
    zone = np.empty(5, dtype=np.int64)
    zone[streets.lamp] = [0, 0, 1, 1, 0]  # in street order: zone 0 is entered twice per user
    draws = UserDraws(
        street=np.array([0, 0], np.int32),
        arrive_s=np.array([10.0, 950.0]),
        forward=np.array([True, False]),
        mode=np.array([0, 2], np.int8),
        speed_mps=np.array([1.5, 12.0]),
        start_ns=T0_NS,
        step_s=1.0,
        n_steps=1500,
    )
    trace = trace_users(streets, draws)
    got = demand_per_h(trace, zone, interval_s=900.0, n_zones=3)
    # Interval 0 (900 s): the walker enters zone 0 twice and zone 1 once. Interval 1 is 600 s.
    assert got[:, 0].tolist() == [8.0, 4.0, 0.0]
    assert got[:, 1].tolist() == [12.0, 6.0, 0.0]
    middle = np.empty(5, dtype=np.int64)
    middle[streets.lamp] = [-1, -1, 0, 0, -1]
    ignored = demand_per_h(trace, middle, interval_s=900.0)
    assert ignored.shape == (1, 2) and ignored[0].tolist() == [4.0, 6.0]


def test_zone_demand_from_trace_matches_the_rates(busy_trace: RoadUserTrace) -> None:
    streets = busy_trace.streets
    assert busy_trace.demand is not None
    zone = (streets.street_of_lamp() // 4).astype(np.int64)  # 5 zones of 4 streets
    counted = demand_per_h(busy_trace, zone, interval_s=600.0)
    expected = demand_per_h(
        busy_trace.demand, zone, interval_s=600.0, streets=streets, start_ns=T0_NS, n_steps=3600
    )
    assert expected.shape == counted.shape == (5, 6) and expected.dtype == np.float32
    assert np.allclose(expected, 4 * 600.0)
    # Each street lies in one zone, so entries are arrivals: ~Poisson(400) per zone-interval.
    assert np.abs(counted - expected).max() < 5 * math.sqrt(400.0) * 6
    assert abs(counted.mean() - 2400.0) < 5 * math.sqrt(400.0) * 6 / math.sqrt(30)


def test_zone_demand_is_nan_where_counts_had_gaps() -> None:
    streets = line_streets([[30.0, 30.0], [30.0], [30.0]])
    counts = HourlyCounts(
        ("A",),
        T0_NS + np.arange(3, dtype=np.int64) * NS_PER_H,
        np.array([[60.0, np.nan, 30.0]]),
        "footfall",
        "Europe/London",
    )
    actual = DemandModel.from_counts(counts, [0, 0, -1], [1.0, 0.5, 1.0])
    zone = np.full(streets.n_lamps, -1)
    zone[streets.lamp[streets.street_ptr[0] : streets.street_ptr[1]]] = 0
    zone[streets.lamp[streets.street_ptr[2]]] = 1
    rates = demand_per_h(actual, zone, streets=streets, start_ns=T0_NS, n_steps=3 * 3600)
    assert rates.shape == (2, 12)
    assert rates[0, :4].tolist() == [60.0] * 4 and np.isnan(rates[0, 4:8]).all()
    assert rates[0, 8:].tolist() == [30.0] * 4
    assert rates[1].tolist() == [0.0] * 12  # street 2 has no counts site, so no gap either
    filled = actual.with_gaps_filled(flat_model([[20.0] * 3, [0.0] * 3, [0.0] * 3], 3, 3))
    trace, _ = simulate_night(filled, streets, start_ns=T0_NS, n_steps=3 * 3600, seed=4)
    counted = demand_per_h(trace, zone)
    assert np.isnan(counted[0, 4:8]).all() and not np.isnan(counted[0, :4]).any()
    assert not np.isnan(counted[1]).any()
    # A window past the model's end has no data either.
    beyond = demand_per_h(
        actual, zone, streets=streets, start_ns=T0_NS + 2 * NS_PER_H, n_steps=7200
    )
    assert np.isnan(beyond[0, 4:]).all()


# --- the whole night ---------------------------------------------------------------------------


def test_same_seed_same_night_and_triggers_drive_run_night() -> None:
    streets = line_streets([[30.0] * 5, [25.0] * 3, [40.0] * 2])
    model = DemandModel.synthetic(
        streets.n_streets,
        start_ns=T0_NS,
        n_hours=2,
        tz="Europe/London",
        footfall_peak_per_h=[40.0, 20.0, 10.0],
        traffic_peak_per_h=15.0,
    )
    a = simulate_night(model, streets, start_ns=T0_NS, n_steps=1800, seed=9)
    b = simulate_night(model, streets, start_ns=T0_NS, n_steps=1800, seed=9)
    c = simulate_night(model, streets, start_ns=T0_NS, n_steps=1800, seed=10)
    for name in ("user", "lamp", "enter_step", "leave_step", "user_mode", "user_street"):
        assert np.array_equal(getattr(a[0], name), getattr(b[0], name))
    assert np.array_equal(a[1].step, b[1].step) and np.array_equal(a[1].lamp, b[1].lamp)
    assert not np.array_equal(a[0].enter_step, c[0].enter_step)

    trace, triggers = a
    rng = np.random.default_rng(0)
    program = random_program(rng, n_lamps=streets.n_lamps, n_steps=1800, n_zones=2)
    demand = demand_per_h(trace, program.lamp_zone, interval_s=300.0, n_zones=2)
    steps = adaptive_steps(demand, [30.0, 10.0], [40.0, 15.0])
    result = run_night(
        program,
        random_electrics(rng, program.n_lamps),
        triggers=triggers,
        adaptive_steps=steps,
        adaptive_interval_s=300.0,
    )
    assert result.energy_wh.shape[0] == streets.n_lamps and np.all(result.energy_wh >= 0)


def test_bristol_winter_night() -> None:
    if not BRISTOL_CSV.is_file():
        pytest.skip(f"shared data set missing: {BRISTOL_CSV} (see ../shared/data/README.md)")
    inventory, _ = import_csv(BRISTOL_CSV, ColumnMapping(council_id="bristol"))
    streets = StreetGeometry.from_inventory(inventory)
    assert streets.n_lamps == 49_451 and streets.n_streets == len(inventory.street_names)
    model = DemandModel.synthetic(
        streets.n_streets,
        start_ns=T0_NS,
        n_hours=17,
        tz="Europe/London",
        footfall_peak_per_h=1.0,
        traffic_peak_per_h=0.6,
    )
    start_ns, n_steps = T0_NS + 30 * 60 * 10**9, 15 * 3600 + 1800  # 16:30 to 08:00 GMT
    trace, triggers = simulate_night(model, streets, start_ns=start_ns, n_steps=n_steps, seed=1)
    assert 80_000 < trace.n_users < 150_000
    assert trace.n_records > 3 * trace.n_users
    assert len(triggers) > 0.6 * trace.n_records
    assert np.all(trace.enter_step <= trace.leave_step)

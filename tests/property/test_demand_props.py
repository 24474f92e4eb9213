"""Invariants of road-user traces, thinning and detection over random towns (Hypothesis)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulation.demand import (
    DemandModel,
    SensorModel,
    StreetGeometry,
    UserDraws,
    demand_per_h,
    detect,
    draw_users,
    trace_users,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0_NS = 1_734_278_400 * 10**9  # 2024-12-15 16:00 UTC
STEP_S = 1.0

spacings = st.lists(
    st.lists(st.sampled_from([0.0, 5.0, 12.5, 30.0, 41.0, 80.0]), max_size=6),
    min_size=1,
    max_size=5,
)


def town(gaps: list[list[float]], seed: int) -> StreetGeometry:
    """Streets along random headings, lamps handed over in shuffled order."""
    rng = np.random.default_rng(seed)
    xs, ys, street, order = [], [], [], []
    for s, street_gaps in enumerate(gaps):
        heading = rng.uniform(0, 2 * np.pi)
        along = np.concatenate(([0.0], np.cumsum(street_gaps)))
        xs += (500.0 * s + along * np.cos(heading)).tolist()
        ys += (along * np.sin(heading)).tolist()
        street += [s] * len(along)
        order += (10 * np.arange(len(along))).tolist()  # gaps in the order numbers are fine
    shuffle = rng.permutation(len(xs))
    return StreetGeometry.from_xy(
        np.array(xs)[shuffle],
        np.array(ys)[shuffle],
        np.array(street)[shuffle],
        np.array(order)[shuffle],
    )


def random_rates(rng: np.random.Generator, n_streets: int, n_hours: int) -> np.ndarray:
    rate = rng.uniform(0, 120, size=(3, n_streets, n_hours))
    rate[rng.random(rate.shape) < 0.3] = 0.0
    return rate


def model(rate: np.ndarray) -> DemandModel:
    return DemandModel(T0_NS, rate, np.zeros(rate.shape[1:], dtype=np.bool_))


@SETTINGS
@given(gaps=spacings, seed=st.integers(0, 2**31), n_steps=st.integers(1, 5400))
def test_users_move_monotonically_through_their_own_street(
    gaps: list[list[float]], seed: int, n_steps: int
) -> None:
    streets = town(gaps, seed)
    rng = np.random.default_rng(seed)
    demand = model(random_rates(rng, streets.n_streets, 2))
    draws = draw_users(demand, start_ns=T0_NS, n_steps=n_steps, step_s=STEP_S, rng=rng)
    trace = trace_users(streets, draws)
    assert np.all(trace.enter_step <= trace.leave_step)
    assert np.all((trace.enter_step >= 0) & (trace.leave_step < n_steps))
    assert np.all(streets.street_of_lamp()[trace.lamp] == trace.user_street[trace.user])
    position = np.empty(streets.n_lamps, dtype=np.int64)
    position[streets.lamp] = np.arange(streets.n_lamps)
    pos = position[trace.lamp]
    same_user = trace.user[1:] == trace.user[:-1]
    assert np.all(np.diff(trace.user) >= 0)
    step = np.diff(pos)[same_user]
    direction = np.where(draws.forward[trace.user[1:]][same_user], 1, -1)
    # One lamp at a time, in the user's direction; entry times never go backwards.
    assert np.all(step == direction)
    assert np.all(np.diff(trace.enter_step)[same_user] >= 0)
    if trace.n_records == 0:
        return
    # A user enters at the end it came from, when it arrives.
    first = np.concatenate(([True], ~same_user))
    ends = np.where(
        draws.forward[trace.user[first]],
        streets.street_ptr[trace.user_street[trace.user[first]]],
        streets.street_ptr[trace.user_street[trace.user[first]] + 1] - 1,
    )
    assert np.array_equal(pos[first], ends)
    assert np.array_equal(
        trace.enter_step[first], np.floor(draws.arrive_s[trace.user[first]]).astype(np.int64)
    )


@SETTINGS
@given(
    n_streets=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    headroom=st.floats(1.0, 3.0),
)
def test_more_rate_never_gives_fewer_users(n_streets: int, seed: int, headroom: float) -> None:
    rng = np.random.default_rng(seed)
    low = random_rates(rng, n_streets, 3)
    high = low + random_rates(rng, n_streets, 3)
    cap = high.sum(axis=0).max(axis=1) * headroom

    def draw(rate: np.ndarray) -> UserDraws:
        return draw_users(
            model(rate),
            start_ns=T0_NS + 600 * 10**9,
            n_steps=7200,
            rng=np.random.default_rng(seed),
            cap_per_h=cap,
        )

    few, many = draw(low), draw(high)
    assert few.n_users <= many.n_users
    # Thinning with one cap and seed: every user of the quieter night is there on the busier.
    key_few = set(
        zip(few.street.tolist(), few.arrive_s.tolist(), few.forward.tolist(), strict=True)
    )
    key_many = set(
        zip(many.street.tolist(), many.arrive_s.tolist(), many.forward.tolist(), strict=True)
    )
    assert key_few <= key_many
    assert np.all(few.mode <= 2)


@SETTINGS
@given(
    gaps=spacings,
    seed=st.integers(0, 2**31),
    miss=st.tuples(*[st.floats(0.0, 1.0)] * 3),
    extra=st.tuples(*[st.floats(0.0, 1.0)] * 3),
    sensor_share=st.floats(0.0, 1.0),
)
def test_fewer_sensors_or_more_misses_never_add_detections(
    gaps: list[list[float]],
    seed: int,
    miss: tuple[float, float, float],
    extra: tuple[float, float, float],
    sensor_share: float,
) -> None:
    streets = town(gaps, seed)
    rng = np.random.default_rng(seed)
    demand = model(random_rates(rng, streets.n_streets, 1))
    trace = trace_users(streets, draw_users(demand, start_ns=T0_NS, n_steps=1800, rng=rng))
    worse = (
        min(1.0, miss[0] + extra[0]),
        min(1.0, miss[1] + extra[1]),
        min(1.0, miss[2] + extra[2]),
    )
    some = rng.random(streets.n_lamps) < sensor_share

    def found(
        miss_prob: tuple[float, float, float], sensor_lamps: np.ndarray | None = None
    ) -> Counter[tuple[int, int]]:
        sensors = SensorModel(miss_prob=miss_prob, latency_s=2.0, latency_jitter_s=1.0)
        triggers = detect(
            trace, np.random.default_rng(seed + 1), sensors=sensors, sensor_lamps=sensor_lamps
        )
        assert np.all(np.diff(triggers.step) >= 0) and np.all(triggers.step < 1800)
        return Counter(zip(triggers.step.tolist(), triggers.lamp.tolist(), strict=True))

    base = found(miss)
    assert not found(worse) - base
    assert not found(miss, some) - base


@SETTINGS
@given(gaps=spacings, seed=st.integers(0, 2**31), interval_s=st.sampled_from([60.0, 300.0, 900.0]))
def test_zone_demand_counts_each_user_once_per_street_zone(
    gaps: list[list[float]], seed: int, interval_s: float
) -> None:
    streets = town(gaps, seed)
    rng = np.random.default_rng(seed)
    demand = model(random_rates(rng, streets.n_streets, 1))
    n_steps = 2000
    trace = trace_users(streets, draw_users(demand, start_ns=T0_NS, n_steps=n_steps, rng=rng))
    zone = streets.street_of_lamp() % 2  # whole streets in zones 0 and 1
    got = demand_per_h(trace, zone, interval_s=interval_s, n_zones=2)
    assert got.dtype == np.float32 and np.all(got >= 0) and not np.isnan(got).any()
    length_h = (
        np.minimum(np.arange(1, got.shape[1] + 1) * interval_s, n_steps)
        - np.arange(got.shape[1]) * interval_s
    ) / 3600.0
    entries = np.rint(got.astype(np.float64) * length_h).sum()
    assert entries == len(np.unique(trace.user))

"""Per-kind value ranges, time bounds relative to the receive time, clock skew, configuration."""

from __future__ import annotations

import pytest

from domain.records import ReadingKind as K
from sensor_ingest.config import IngestConfig
from sensor_ingest.validate import (
    Limits,
    Rejection,
    RejectReason,
    SkewTracker,
    check_rows,
    check_value,
)

S = 1_000_000_000
NOW = 1_767_225_600 * S
LIMITS = Limits.from_config(IngestConfig())


def _one(kind: K, value: float, time_ns: int = NOW) -> list[Rejection]:
    good, rejected = check_rows([kind], [value], [time_ns], NOW, LIMITS)
    assert len(good) + len(rejected) == 1
    return rejected


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (K.LEVEL_FRAC, 0.0),
        (K.LEVEL_FRAC, 1.0),
        (K.POWER_W, 0.0),
        (K.POWER_W, 5000.0),
        (K.ENERGY_WH, 0.0),
        (K.ENERGY_WH, 1e12),
        (K.PRESENCE, 1.0),
        (K.FOOTFALL_COUNT, 0.0),
        (K.TRAFFIC_COUNT, 100_000.0),
        (K.STATUS, 0.0),
        (K.STATUS, 31.0),
    ],
)
def test_values_at_the_edges_of_their_ranges_are_accepted(kind: K, value: float) -> None:
    assert _one(kind, value) == []
    assert check_value(kind, value, LIMITS) is None


@pytest.mark.parametrize(
    ("kind", "value", "reason", "message"),
    [
        (K.LEVEL_FRAC, 1.5, RejectReason.LEVEL_RANGE, "level_frac 1.5 is outside 0..1"),
        (K.LEVEL_FRAC, -0.01, RejectReason.LEVEL_RANGE, "level_frac -0.01 is outside 0..1"),
        (K.POWER_W, 5000.5, RejectReason.POWER_RANGE, "power_w 5000.5 is outside 0..5000 W"),
        (K.POWER_W, -1.0, RejectReason.POWER_RANGE, "power_w -1.0 is outside 0..5000 W"),
        (
            K.ENERGY_WH,
            -3.0,
            RejectReason.ENERGY_RANGE,
            "energy_wh -3.0 is negative (the meter is cumulative)",
        ),
        (K.PRESENCE, 2.0, RejectReason.PRESENCE_VALUE, "presence 2.0 must be 1 (one detection)"),
        (K.PRESENCE, 0.0, RejectReason.PRESENCE_VALUE, "presence 0.0 must be 1 (one detection)"),
        (
            K.FOOTFALL_COUNT,
            -1.0,
            RejectReason.COUNT_RANGE,
            "footfall_count -1.0 is outside 0..100000",
        ),
        (
            K.TRAFFIC_COUNT,
            100_001.0,
            RejectReason.COUNT_RANGE,
            "traffic_count 100001.0 is outside 0..100000",
        ),
        (
            K.FOOTFALL_COUNT,
            2.5,
            RejectReason.COUNT_WHOLE,
            "footfall_count 2.5 is not a whole number",
        ),
        (
            K.STATUS,
            32.0,
            RejectReason.STATUS_BITS,
            "status 32.0 is not a combination of the defined bits 0..4 (0..31)",
        ),
        (
            K.STATUS,
            1.5,
            RejectReason.STATUS_BITS,
            "status 1.5 is not a combination of the defined bits 0..4 (0..31)",
        ),
        (
            K.STATUS,
            -1.0,
            RejectReason.STATUS_BITS,
            "status -1.0 is not a combination of the defined bits 0..4 (0..31)",
        ),
    ],
)
def test_out_of_range_values_are_refused_with_reason_and_message(
    kind: K, value: float, reason: RejectReason, message: str
) -> None:
    assert _one(kind, value) == [Rejection(0, reason, f"readings[0]: {message}")]
    assert check_value(kind, value, LIMITS) == (reason, message)


def test_time_bounds_are_relative_to_the_receive_time() -> None:
    skew = 300 * S
    age = 7 * 86_400 * S
    assert _one(K.LEVEL_FRAC, 0.5, NOW + skew) == []
    assert _one(K.LEVEL_FRAC, 0.5, NOW - age) == []
    assert _one(K.LEVEL_FRAC, 0.5, NOW + skew + 1) == [
        Rejection(
            0,
            RejectReason.FUTURE,
            f"readings[0]: time_ns {NOW + skew + 1} is 300.0 s ahead of the receive time; "
            "at most 300 s is accepted",
        )
    ]
    assert _one(K.LEVEL_FRAC, 0.5, NOW - age - S) == [
        Rejection(
            0,
            RejectReason.TOO_OLD,
            f"readings[0]: time_ns {NOW - age - S} is 604801.0 s older than the receive time; "
            "readings older than 604800 s are refused (the de-duplication window)",
        )
    ]


def test_time_is_checked_before_value_and_good_rows_keep_their_order() -> None:
    kinds = [K.LEVEL_FRAC, K.LEVEL_FRAC, K.POWER_W, K.STATUS, K.PRESENCE]
    values = [0.2, 7.0, 10.0, 4.0, 1.0]
    times = [NOW, NOW - 8 * 86_400 * S, NOW, NOW, NOW]
    good, rejected = check_rows(kinds, values, times, NOW, LIMITS)
    assert good == [0, 2, 3, 4]
    assert [(r.index, r.reason) for r in rejected] == [(1, RejectReason.TOO_OLD)]


def test_limits_follow_the_configuration() -> None:
    limits = Limits.from_config(IngestConfig(max_power_w=100.0, max_count=10.0))
    assert check_value(K.POWER_W, 150.0, limits) == (
        RejectReason.POWER_RANGE,
        "power_w 150.0 is outside 0..100 W",
    )
    assert check_value(K.FOOTFALL_COUNT, 11.0, limits) == (
        RejectReason.COUNT_RANGE,
        "footfall_count 11.0 is outside 0..10",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_age_s": 0}, "IngestConfig.max_age_s must be a positive number, got 0"),
        (
            {"max_future_skew_s": float("nan")},
            "IngestConfig.max_future_skew_s must be a positive number, got nan",
        ),
        ({"prune_interval_s": -1}, "IngestConfig.prune_interval_s must be >= 0, got -1"),
        (
            {"max_uplink_bytes": 5 * 1024 * 1024},
            "IngestConfig.max_uplink_bytes must be 1..4194304 (the protocol's limit), got 5242880",
        ),
        (
            {"prefix": "a/+/b"},
            "IngestConfig.prefix: prefix 'a/+/b' must be non-empty topic levels without + # or "
            "empty levels (no leading or trailing /), e.g. streetlight/v1",
        ),
    ],
)
def test_bad_configuration_is_refused_at_construction(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        IngestConfig(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_clock_skew_per_gateway() -> None:
    tracker = SkewTracker(warn_s=30.0)
    assert tracker.observe("gw-1", NOW, NOW + 2 * S) == 2 * S
    tracker.observe("gw-1", NOW, NOW + 4 * S)
    for _ in range(50):
        tracker.observe("gw-2", NOW, NOW - 60 * S)  # a gateway clock a minute ahead
    report = tracker.report()
    one = report["gw-1"]
    assert (one.last_ns, one.min_ns, one.max_ns, one.samples) == (4 * S, 2 * S, 4 * S, 2)
    assert one.mean_ns == pytest.approx(2.2 * S)
    assert not one.exceeds_warn
    two = report["gw-2"]
    assert two.mean_ns == pytest.approx(-60 * S) and two.exceeds_warn
    with pytest.raises(ValueError, match=r"^warn_s must be > 0, got 0$"):
        SkewTracker(0)

"""Demand windows: rolling hourly counts per zone, late and unknown readings, presence events."""

from __future__ import annotations

import numpy as np
import pytest

from domain.records import Lamp, Reading, Sensor, SensorKind
from domain.records import ReadingKind as K
from sensor_ingest.windows import COUNT_KINDS, DemandWindows, zones_from_inventory

S = 1_000_000_000
MIN = 60 * S
T0 = 1_767_225_600 * S  # a whole hour
ZONES = {"CAM-1": "high-street", "CAM-2": "high-street", "RAD-1": "ring-road", "PIR-1": "mill-lane"}


def test_counts_per_hour_roll_with_the_window() -> None:
    w = DemandWindows(ZONES)
    w.add(
        [
            Reading("CAM-1", K.FOOTFALL_COUNT, 30.0, T0 + 1 * MIN),
            Reading("CAM-2", K.FOOTFALL_COUNT, 12.0, T0 + 30 * MIN),
            Reading("RAD-1", K.TRAFFIC_COUNT, 100.0, T0 + 30 * MIN),
            Reading("PIR-1", K.PRESENCE, 1.0, T0 + 59 * MIN),
            Reading("PIR-1", K.PRESENCE, 1.0, T0 + 59 * MIN + S),
            Reading("CAM-1", K.LEVEL_FRAC, 0.5, T0),  # not demand: ignored
        ]
    )
    now = T0 + 60 * MIN - 1
    assert w.counts_per_hour("high-street", now_ns=now) == 42.0
    assert w.counts_per_hour("high-street", now_ns=now, kind=K.TRAFFIC_COUNT) == 0.0
    assert w.counts_per_hour("ring-road", now_ns=now, kind=K.TRAFFIC_COUNT) == 100.0
    assert w.counts_per_hour("mill-lane", now_ns=now, kind=K.PRESENCE) == 2.0
    # 61 minutes on, the first minute's bucket has left the window.
    assert w.counts_per_hour("high-street", now_ns=T0 + 61 * MIN) == 12.0
    assert w.counts_per_hour("high-street", now_ns=T0 + 120 * MIN) == 0.0
    assert w.counters() == {"added": 5, "late": 0, "unknown_sensor": 0}


def test_snapshot_gives_every_zone_with_columns_in_count_kind_order() -> None:
    w = DemandWindows(ZONES, window_s=1800, bucket_s=60)
    w.add_rows(
        [
            ("CAM-1", K.FOOTFALL_COUNT, 10.0, T0),
            ("RAD-1", K.TRAFFIC_COUNT, 20.0, T0),
            ("PIR-1", K.PRESENCE, 1.0, T0),
        ]
    )
    zones, counts = w.snapshot(T0 + MIN)
    assert zones == ("high-street", "mill-lane", "ring-road")
    assert COUNT_KINDS == (K.FOOTFALL_COUNT, K.TRAFFIC_COUNT, K.PRESENCE)
    # A 30-minute window scaled to one hour.
    np.testing.assert_array_equal(counts, [[20.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 40.0, 0.0]])
    assert counts.dtype == np.float64 and counts.flags.c_contiguous


def test_late_readings_land_in_their_bucket_or_are_counted_as_late() -> None:
    w = DemandWindows(ZONES, window_s=600, bucket_s=60, ahead_s=0)
    w.add_rows([("CAM-1", K.FOOTFALL_COUNT, 1.0, T0 + 20 * MIN)])
    w.add_rows([("CAM-1", K.FOOTFALL_COUNT, 2.0, T0 + 15 * MIN)])  # late but within the ring
    w.add_rows([("CAM-1", K.FOOTFALL_COUNT, 4.0, T0 + 10 * MIN)])  # its slot holds minute 20
    assert w.counts_per_hour("high-street", now_ns=T0 + 20 * MIN) == 3.0 * 6
    assert w.late == 1


def test_readings_ahead_of_now_do_not_evict_buckets_still_in_the_window() -> None:
    w = DemandWindows(ZONES, window_s=600, bucket_s=60, ahead_s=300)
    w.add_rows([("CAM-1", K.FOOTFALL_COUNT, 5.0, T0 + 1 * MIN)])
    w.add_rows([("CAM-1", K.FOOTFALL_COUNT, 7.0, T0 + 14 * MIN)])  # 4 minutes ahead of "now"
    now = T0 + 10 * MIN
    assert w.counts_per_hour("high-street", now_ns=now) == 5.0 * 6  # the future one not yet
    assert w.counts_per_hour("high-street", now_ns=T0 + 14 * MIN) == 7.0 * 6
    assert w.late == 0


def test_presence_events_go_to_the_callback_once_per_batch_even_without_a_zone() -> None:
    batches: list[list[tuple[str, int]]] = []
    w = DemandWindows(ZONES, on_presence=batches.append)
    counted = w.add_rows(
        [
            ("PIR-1", K.PRESENCE, 1.0, T0),
            ("PIR-9", K.PRESENCE, 1.0, T0 + S),
            ("CAM-1", K.FOOTFALL_COUNT, 2.0, T0),
        ]
    )
    assert counted == 2
    assert batches == [[("PIR-1", T0), ("PIR-9", T0 + S)]]
    assert w.unknown_sensor == 1
    w.add_rows([("CAM-1", K.FOOTFALL_COUNT, 2.0, T0)])
    assert len(batches) == 1  # no presence, no call


def test_zones_from_the_inventory_use_the_street_of_the_sensors_lamps() -> None:
    lamps = [
        Lamp("L-1", "c1", 0.0, 0.0, 40.0, street="High Street"),
        Lamp("L-2", "c1", 0.0, 0.0, 40.0, street=""),
        Lamp("L-3", "c1", 0.0, 0.0, 40.0, street="Mill Lane"),
    ]
    sensors = [
        Sensor("CAM-1", "c1", SensorKind.FOOTFALL, 0.0, 0.0, ("L-2", "L-1")),
        Sensor("PIR-1", "c1", SensorKind.PRESENCE, 0.0, 0.0, ("L-3",)),
        Sensor("PIR-2", "c1", SensorKind.PRESENCE, 0.0, 0.0, ("L-2",)),
    ]
    assert zones_from_inventory(sensors, lamps) == {"CAM-1": "High Street", "PIR-1": "Mill Lane"}
    assert zones_from_inventory(sensors, lamps, default_zone="c1")["PIR-2"] == "c1"


def test_bad_arguments_say_what_to_fix() -> None:
    with pytest.raises(
        ValueError, match=r"^need 0 < bucket_s <= window_s, got bucket_s=0, window_s=3600$"
    ):
        DemandWindows(ZONES, bucket_s=0, window_s=3600)
    with pytest.raises(
        ValueError, match=r"^window_s \(100\) must be a whole number of buckets of 30 s$"
    ):
        DemandWindows(ZONES, window_s=100, bucket_s=30)
    w = DemandWindows(ZONES)
    with pytest.raises(
        KeyError, match="unknown zone 'nowhere'; zones: high-street, mill-lane, ring-road"
    ):
        w.counts_per_hour("nowhere", now_ns=T0)
    with pytest.raises(
        ValueError, match="is not a demand kind; use one of footfall_count, traffic_count, presence"
    ):
        w.counts_per_hour("high-street", now_ns=T0, kind=K.POWER_W)

"""The embedded historian: latest state, series, energy from the meter, counts, compaction into
day tables, retention, de-duplication state, threads, errors."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from domain.records import Reading
from domain.records import ReadingKind as K
from sensor_ingest.dedup import DedupRecord
from sensor_ingest.errors import HistorianError
from sensor_ingest.historian import EmbeddedHistorian, LampTelemetry

S = 1_000_000_000
DAY = 86_400 * S
T0 = 20_454 * DAY  # 2026-01-01T00:00:00Z


@pytest.fixture(params=["memory", "file"])
def historian(request: pytest.FixtureRequest, tmp_path: Path) -> EmbeddedHistorian:
    path = ":memory:" if request.param == "memory" else tmp_path / "h.db"
    h = EmbeddedHistorian(path, hot_rows=1_000)
    request.addfinalizer(h.close)
    return h


def test_latest_keeps_the_newest_value_of_each_kind(historian: EmbeddedHistorian) -> None:
    historian.write(
        [
            Reading("L-1", K.LEVEL_FRAC, 0.5, T0 + 10 * S),
            Reading("L-1", K.POWER_W, 40.0, T0 + 10 * S),
            Reading("L-1", K.LEVEL_FRAC, 0.7, T0 + 20 * S),
            Reading("L-2", K.STATUS, 5.0, T0 + 5 * S),
            Reading("CAM-1", K.FOOTFALL_COUNT, 3.0, T0 + 5 * S),
        ]
    )
    # A late reading (older than the stored one) must not overwrite it; a newer one must.
    historian.write(
        [
            Reading("L-1", K.LEVEL_FRAC, 0.1, T0 + 15 * S),
            Reading("L-1", K.ENERGY_WH, 12.5, T0 + 30 * S),
        ]
    )
    assert historian.latest(["L-1", "L-2", "CAM-1", "nobody"]) == {
        "L-1": LampTelemetry("L-1", 0.7, 40.0, 12.5, None, T0 + 30 * S),
        "L-2": LampTelemetry("L-2", None, None, None, 5, T0 + 5 * S),
    }
    assert historian.latest([]) == {}
    assert isinstance(historian.latest(["L-2"])["L-2"].status, int)


def test_series_is_ordered_and_half_open_across_hot_and_day_tables(
    historian: EmbeddedHistorian,
) -> None:
    times = [T0 - 2 * S, T0 - S, T0, T0 + S, T0 + DAY]  # three UTC days
    historian.write([Reading("L-1", K.POWER_W, float(i), t) for i, t in enumerate(times)])
    assert historian.compact() == 5
    historian.write([Reading("L-1", K.POWER_W, 9.0, T0 + 2 * S)])  # stays hot
    assert historian.stats()["day_tables"] == 3 and historian.stats()["hot_rows"] == 1
    assert historian.series("L-1", K.POWER_W, T0 - S, T0 + DAY) == [
        (T0 - S, 1.0),
        (T0, 2.0),
        (T0 + S, 3.0),
        (T0 + 2 * S, 9.0),
    ]
    assert historian.series("L-1", K.LEVEL_FRAC, T0 - DAY, T0 + DAY) == []
    assert historian.series("nobody", K.POWER_W, T0 - DAY, T0 + DAY) == []
    assert historian.series("L-1", K.POWER_W, T0, T0) == []
    with pytest.raises(ValueError, match=r"^end_ns \(0\) is before start_ns \(1\)$"):
        historian.series("L-1", K.POWER_W, 1, 0)


def test_compaction_runs_when_the_hot_table_is_full(historian: EmbeddedHistorian) -> None:
    historian.write([Reading(f"L-{i}", K.LEVEL_FRAC, 0.5, T0 + i) for i in range(999)])
    assert historian.stats()["hot_rows"] == 999
    historian.write([Reading("L-x", K.LEVEL_FRAC, 0.5, T0)])
    stats = historian.stats()
    assert (stats["hot_rows"], stats["settled_rows"], stats["sources"]) == (0, 1000, 1000)
    assert historian.series("L-998", K.LEVEL_FRAC, T0, T0 + DAY) == [(T0 + 998, 0.5)]


def test_energy_is_the_sum_of_positive_meter_steps(historian: EmbeddedHistorian) -> None:
    meter = [100.0, 102.0, 105.5, 0.5, 1.5]  # a reset between 105.5 and 0.5
    historian.write([Reading("L-1", K.ENERGY_WH, e, T0 + i * 60 * S) for i, e in enumerate(meter)])
    historian.write([Reading("L-2", K.ENERGY_WH, 7.0, T0)])
    historian.compact()
    historian.write([Reading("L-1", K.ENERGY_WH, 4.0, T0 + 5 * 60 * S)])  # hot, after compaction
    assert historian.energy_wh(["L-1", "L-2", "L-3"], T0, T0 + DAY) == pytest.approx(
        {"L-1": 2.0 + 3.5 + 1.0 + 2.5, "L-2": 0.0}
    )
    # Half-open range: the first two readings only.
    assert historian.energy_wh(["L-1"], T0, T0 + 61 * S) == {"L-1": 2.0}
    assert historian.energy_wh([], T0, T0 + DAY) == {}


def test_counts_per_bucket(historian: EmbeddedHistorian) -> None:
    historian.write(
        [
            Reading("CAM-1", K.FOOTFALL_COUNT, 3.0, T0),
            Reading("CAM-1", K.FOOTFALL_COUNT, 4.0, T0 + 59 * S),
            Reading("CAM-1", K.FOOTFALL_COUNT, 5.0, T0 + 60 * S),
            Reading("CAM-2", K.FOOTFALL_COUNT, 1.0, T0 + 150 * S),
            Reading("CAM-2", K.FOOTFALL_COUNT, 8.0, T0 + 180 * S),  # at end_ns: not counted
            Reading("PIR-1", K.PRESENCE, 1.0, T0 + 10 * S),
        ]
    )
    got = historian.counts(["CAM-2", "CAM-1", "CAM-9"], K.FOOTFALL_COUNT, T0, T0 + 180 * S, 60)
    assert got.source_ids == ("CAM-2", "CAM-1", "CAM-9")
    assert got.counts.tolist() == [[0.0, 0.0, 1.0], [7.0, 5.0, 0.0], [0.0, 0.0, 0.0]]
    assert got.starts_ns.tolist() == [T0, T0 + 60 * S, T0 + 120 * S]
    presence = historian.counts(["PIR-1"], K.PRESENCE, T0, T0 + 100 * S, 60)
    assert presence.counts.tolist() == [[1.0, 0.0]]
    with pytest.raises(
        ValueError,
        match=r"^counts\(\) sums count kinds \(presence, footfall_count, traffic_count\), "
        r"not power_w$",
    ):
        historian.counts(["L-1"], K.POWER_W, T0, T0 + S, 60)
    with pytest.raises(ValueError, match=r"^bucket_s must be a positive number of seconds, got 0$"):
        historian.counts(["CAM-1"], K.FOOTFALL_COUNT, T0, T0 + S, 0)


def test_retention_drops_whole_days_and_trims_the_boundary_day(
    historian: EmbeddedHistorian,
) -> None:
    times = [T0 - DAY, T0 - DAY + S, T0, T0 + 12 * 3600 * S, T0 + DAY]
    historian.write([Reading("L-1", K.POWER_W, float(i), t) for i, t in enumerate(times)])
    historian.compact()
    historian.write([Reading("L-1", K.POWER_W, 9.0, T0 + S)])  # hot
    removed = historian.delete_older_than(T0 + 6 * 3600 * S)
    assert removed == 4  # the whole first day (2), T0 (settled) and T0 + 1 s (hot)
    assert historian.series("L-1", K.POWER_W, 0, T0 + 2 * DAY) == [
        (T0 + 12 * 3600 * S, 3.0),
        (T0 + DAY, 4.0),
    ]
    assert historian.stats()["day_tables"] == 2
    assert historian.retain(0.5, now_ns=T0 + 2 * DAY) == 2
    assert historian.series("L-1", K.POWER_W, 0, T0 + 2 * DAY) == []
    assert historian.latest(["L-1"])["L-1"].power_w == 4.0  # the latest state stays
    with pytest.raises(ValueError, match=r"^days must be a positive number, got 0$"):
        historian.retain(0, now_ns=T0)


def test_the_readings_view_joins_every_table_for_sql_users(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with EmbeddedHistorian(path) as historian:
        historian.write(
            [Reading("L-1", K.POWER_W, 1.0, T0), Reading("L-1", K.POWER_W, 2.0, T0 + DAY)]
        )
        historian.compact()
        historian.write([Reading("CAM-1", K.PRESENCE, 1.0, T0 + S)])
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT * FROM readings_all ORDER BY time_ns").fetchall()
    assert rows == [
        ("L-1", "power_w", T0, 1.0),
        ("CAM-1", "presence", T0 + S, 1.0),
        ("L-1", "power_w", T0 + DAY, 2.0),
    ]


def test_dedup_state_is_written_with_the_readings_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    record = DedupRecord(messages=(("gw-1", "e1", 7, T0),), ids=(("CAM-1#5", T0 - S),))
    with EmbeddedHistorian(path) as historian:
        historian.write_rows([("CAM-1", K.FOOTFALL_COUNT, 2.0, T0 - S)], dedup=record)
    with EmbeddedHistorian(path) as historian:
        assert historian.accepted_messages() == [("gw-1", "e1", 7, T0)]
        assert historian.known_ids(["CAM-1#5", "CAM-1#6"]) == {"CAM-1#5"}
        assert historian.known_ids([]) == set()
        assert historian.prune_dedup(T0, T0) == 1  # the id's reading is older than T0
        assert historian.prune_dedup(T0 + 1, T0) == 1
        assert historian.stats()["dedup_messages"] == historian.stats()["dedup_ids"] == 0


def test_a_failed_write_stores_nothing(tmp_path: Path) -> None:
    with EmbeddedHistorian(tmp_path / "h.db") as historian:
        with pytest.raises(KeyError):
            historian.write_rows([("L-1", K.POWER_W, 1.0, T0), ("L-2", "bogus", 1.0, T0)])  # type: ignore[list-item]
        assert historian.stats()["hot_rows"] == 0
        assert historian.latest(["L-1"]) == {}
        historian.write([Reading("L-1", K.POWER_W, 2.0, T0)])
        assert historian.series("L-1", K.POWER_W, T0, T0 + 1) == [(T0, 2.0)]


def test_readers_in_other_threads_see_committed_writes(tmp_path: Path) -> None:
    with EmbeddedHistorian(tmp_path / "h.db", hot_rows=500) as historian:
        stop = threading.Event()
        seen: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                while not stop.is_set():
                    seen.append(len(historian.series("L-1", K.POWER_W, T0, T0 + DAY)))
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for batch in range(20):
            historian.write(
                [Reading("L-1", K.POWER_W, 1.0, T0 + batch * 100 + i) for i in range(100)]
            )
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert seen and all(n % 100 == 0 for n in seen)  # whole transactions only
        assert len(historian.series("L-1", K.POWER_W, T0, T0 + DAY)) == 2000


def test_closed_and_incompatible_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    historian = EmbeddedHistorian(path)
    historian.close()
    historian.close()  # idempotent
    with pytest.raises(HistorianError, match=r"^historian .*h\.db: the historian is closed$"):
        historian.latest(["L-1"])
    with pytest.raises(HistorianError, match="the historian is closed"):
        historian.write([Reading("L-1", K.POWER_W, 1.0, T0)])
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(HistorianError, match=r"schema version 99 is newer than this code \(1\)$"):
        EmbeddedHistorian(path)
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistorianError, match="DatabaseError: file is not a database"):
        EmbeddedHistorian(tmp_path / "junk.db")
    with pytest.raises(ValueError, match=r"^hot_rows must be >= 1, got 0$"):
        EmbeddedHistorian(":memory:", hot_rows=0)


def test_counts_array_is_float_and_sized_by_buckets(historian: EmbeddedHistorian) -> None:
    got = historian.counts(["CAM-1"], K.TRAFFIC_COUNT, T0, T0 + 3601 * S, 3600)
    assert got.counts.dtype == np.float64 and got.counts.shape == (1, 2)


def test_columns_must_have_equal_lengths(historian: EmbeddedHistorian) -> None:
    with pytest.raises(
        ValueError, match=r"^source_ids, kinds, values and times_ns must have equal lengths$"
    ):
        historian.write_columns(["L-1"], [K.POWER_W], [1.0, 2.0], [T0])
    assert historian.write_columns([], [], [], []) == 0
    assert historian.write_rows([("L-1", K.POWER_W, 1.0, T0)]) == 1

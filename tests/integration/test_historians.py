"""The InfluxDB-compatible sink against real servers: VictoriaMetrics through influxdb-client's v2
write API, InfluxDB 1.6 through the v1 write path (with and without authentication), read back
through each server's own query API; retries, back-pressure and counted drops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from domain.protocol import encode_uplink
from domain.records import Reading
from domain.records import ReadingKind as K
from sensor_ingest.historian import EmbeddedHistorian, ReadingRow
from sensor_ingest.influx import InfluxSettings, InfluxSink
from sensor_ingest.pipeline import IngestPipeline
from tests.integration import historian_servers as servers
from tests.integration.conftest import free_port
from tests.integration.historian_servers import (
    HttpServer,
    influx_query,
    make_victoria_metrics,
    vm_export,
)

# The server fixtures, made visible to pytest in this module.
influxdb = servers.influxdb
influxdb_auth = servers.influxdb_auth
victoria_metrics = servers.victoria_metrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

S = 1_000_000_000
MS = 1_000_000


def _rows(now_ns: int) -> list[ReadingRow]:
    t = now_ns - now_ns % MS  # VictoriaMetrics keeps milliseconds
    return [
        ("L-0001", K.LEVEL_FRAC, 0.5, t),
        ("L-0001", K.POWER_W, 31.5, t),
        ("L-0001", K.ENERGY_WH, 1200.25, t),
        ("L-0001", K.STATUS, 5.0, t),
        ("L 2,x", K.POWER_W, 12.0, t + MS),  # an id that needs escaping
        ("CAM-01", K.FOOTFALL_COUNT, 7.0, t),
        ("PIR-07", K.PRESENCE, 1.0, t + 2 * MS),
    ]


def test_victoria_metrics_receives_v2_writes_and_answers_queries(
    victoria_metrics: HttpServer,
) -> None:
    now = time.time_ns()
    rows = _rows(now)
    settings = InfluxSettings(url=victoria_metrics.url, council="bristol", flush_interval_s=0.05)
    with InfluxSink(settings) as sink:
        sink.submit("gw-17", rows)
        assert sink.flush(10)
        assert (sink.counters.written, sink.counters.dropped, sink.counters.batches) == (7, 0, 1)
    t_ms = rows[0][3] // MS
    series = {
        (s["metric"]["__name__"], s["metric"].get("lamp_id") or s["metric"].get("sensor_id")): s
        for s in vm_export(victoria_metrics, '{__name__=~"lamp_.*|sensor_.*"}')
    }
    assert {k: (v["values"], v["timestamps"]) for k, v in series.items()} == {
        ("lamp_level_frac", "L-0001"): ([0.5], [t_ms]),
        ("lamp_power_w", "L-0001"): ([31.5], [t_ms]),
        ("lamp_energy_wh", "L-0001"): ([1200.25], [t_ms]),
        ("lamp_status", "L-0001"): ([5], [t_ms]),
        ("lamp_power_w", "L 2,x"): ([12.0], [t_ms + 1]),
        ("sensor_value", "CAM-01"): ([7.0], [t_ms]),
        ("sensor_value", "PIR-07"): ([1.0], [t_ms + 2]),
    }
    assert series[("lamp_power_w", "L-0001")]["metric"] == {
        "__name__": "lamp_power_w",
        "council": "bristol",
        "gateway": "gw-17",
        "lamp_id": "L-0001",
    }
    assert series[("sensor_value", "CAM-01")]["metric"]["kind"] == "footfall_count"
    # What a Grafana panel asks (MetricsQL), at the points' time. VictoriaMetrics answers an
    # instant query from its caches, which may lag a moment behind a write just made.
    query = {
        "query": 'sum by (gateway) (lamp_power_w{council="bristol"})',
        "time": f"{t_ms / 1000 + 1:.3f}",
    }
    deadline = time.monotonic() + 15
    result: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        result = victoria_metrics.get("/api/v1/query", query)["data"]["result"]
        if result and result[0]["value"][1] == "43.5":  # type: ignore[index]
            break
        time.sleep(0.2)
    assert [(r["metric"], r["value"][1]) for r in result] == [({"gateway": "gw-17"}, "43.5")]  # type: ignore[index]


def test_influxdb_1_6_receives_v1_writes_and_answers_influxql(influxdb: HttpServer) -> None:
    now = time.time_ns()
    rows = _rows(now)
    settings = InfluxSettings(
        url=influxdb.url, api="v1", database="streetlight", flush_interval_s=0.05
    )
    with InfluxSink(settings) as sink:
        sink.submit("gw-17", rows)
        assert sink.flush(10)
        assert (sink.counters.written, sink.counters.dropped) == (7, 0)
    lamp = influx_query(
        influxdb,
        "SELECT level_frac, power_w, energy_wh, status FROM lamp WHERE lamp_id = 'L-0001'",
        "streetlight",
    )
    assert lamp[0]["columns"] == ["time", "level_frac", "power_w", "energy_wh", "status"]
    assert lamp[0]["values"] == [[rows[0][3], 0.5, 31.5, 1200.25, 5]]
    escaped = influx_query(
        influxdb, "SELECT power_w FROM lamp WHERE lamp_id = 'L 2,x'", "streetlight"
    )
    assert escaped[0]["values"] == [[rows[4][3], 12]]
    counts = influx_query(
        influxdb,
        "SELECT sum(value) FROM sensor WHERE kind = 'footfall_count' GROUP BY sensor_id",
        "streetlight",
    )
    assert [(s["tags"], s["values"][0][1]) for s in counts] == [({"sensor_id": "CAM-01"}, 7)]
    keys = influx_query(influxdb, "SHOW FIELD KEYS FROM lamp", "streetlight")
    assert sorted(map(tuple, keys[0]["values"])) == [
        ("energy_wh", "float"),
        ("level_frac", "float"),
        ("power_w", "float"),
        ("status", "integer"),
    ]


def test_influxdb_1_6_refuses_the_v2_path_and_the_drop_is_counted(influxdb: HttpServer) -> None:
    settings = InfluxSettings(url=influxdb.url, bucket="streetlight", flush_interval_s=0.05)
    with InfluxSink(settings) as sink:
        sink.submit("gw-17", _rows(time.time_ns()))
        assert sink.flush(10)
        c = sink.counters
        assert (c.written, c.dropped_rejected, c.retries, c.errors) == (0, 7, 0, {404: 1})
        assert c.last_error.startswith("HTTP 404")


def test_influxdb_with_authentication(influxdb_auth: HttpServer) -> None:
    good = InfluxSettings(
        url=influxdb_auth.url,
        api="v1",
        username="admin",
        password="s3cret-db",
        flush_interval_s=0.05,
    )
    with InfluxSink(good) as sink:
        sink.submit("gw-17", _rows(time.time_ns()))
        assert sink.flush(10) and sink.counters.written == 7
    bad = InfluxSettings(
        url=influxdb_auth.url, api="v1", username="admin", password="wrong", flush_interval_s=0.05
    )
    with InfluxSink(bad) as sink:
        sink.submit("gw-17", _rows(time.time_ns()))
        assert sink.flush(10)
        assert (sink.counters.written, sink.counters.dropped_rejected) == (0, 7)
        assert sink.counters.errors == {401: 1}
    # InfluxDB merges the four fields of L-0001 at one time into one point.
    points = influx_query(influxdb_auth, "SELECT * FROM lamp", "streetlight")[0]["values"]
    assert [p[3] for p in points] == ["L-0001", "L 2,x"]  # the refused batch is not there


def _many(n: int, now_ns: int) -> list[ReadingRow]:
    return [(f"L-{i:04d}", K.POWER_W, float(i), now_ns - now_ns % MS + i * MS) for i in range(n)]


def test_submit_waits_while_the_server_is_down_and_nothing_is_lost(tmp_path: Path) -> None:
    server = make_victoria_metrics(tmp_path, free_port())  # not started yet
    settings = InfluxSettings(
        url=server.url,
        batch_points=50,
        max_buffer_points=100,
        flush_interval_s=0.05,
        block_timeout_s=60,
        max_retries=None,
        retry_initial_s=0.05,
        retry_max_s=0.2,
    )
    rows = _many(300, time.time_ns())
    try:
        with InfluxSink(settings) as sink:
            producer = threading.Thread(target=sink.submit, args=("gw-1", rows))
            producer.start()
            deadline = time.monotonic() + 10
            while sink.counters.retries < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert producer.is_alive()  # back-pressure: the pipeline waits
            assert sink.counters.written == 0 and sink.counters.retries >= 3
            assert sink.counters.errors.keys() == {None}  # no answer at all
            server.start()
            producer.join(30)
            assert not producer.is_alive()
            assert sink.flush(30)
            c = sink.counters
            assert (c.submitted, c.written, c.dropped) == (300, 300, 0)
            assert c.blocked_s > 0
        exported = vm_export(server, '{__name__="lamp_power_w"}')
        assert sorted(v for s in exported for v in s["values"]) == [float(i) for i in range(300)]
    finally:
        server.stop()


def test_what_cannot_wait_or_be_sent_is_counted(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = InfluxSettings(
        url=dead,
        batch_points=100,
        max_buffer_points=100,
        flush_interval_s=0.05,
        block_timeout_s=0.2,
        max_retries=None,
        retry_initial_s=0.05,
        retry_max_s=0.1,
    )
    sink = InfluxSink(settings)
    now = time.time_ns()
    sink.submit("gw-1", _many(100, now))
    deadline = time.monotonic() + 10
    while sink.counters.retries < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.buffered == 100  # taken as a batch, in flight
    sink.submit("gw-1", _many(150, now))  # 100 fit in the buffer, 50 wait 0.2 s and are dropped
    assert sink.counters.dropped_full == 50
    assert sink.counters.last_error == "buffer full (100 points) for 0.2 s: dropped 50 points"
    sink.close(timeout_s=0.3)
    c = sink.counters
    assert (c.submitted, c.written, c.dropped_full, c.dropped_on_close) == (250, 0, 50, 200)
    sink.submit("gw-1", _many(5, now))  # after close: counted, not lost silently
    assert sink.counters.dropped_on_close == 205

    gives_up = InfluxSink(
        InfluxSettings(url=dead, max_retries=2, retry_initial_s=0.01, flush_interval_s=0.01)
    )
    gives_up.submit("gw-1", _many(10, now))
    assert gives_up.flush(10)
    assert (gives_up.counters.retries, gives_up.counters.dropped_retries) == (2, 10)
    gives_up.close()


def test_the_pipeline_feeds_the_sink_with_accepted_readings_only(
    victoria_metrics: HttpServer,
) -> None:
    now = time.time_ns()
    t = now - now % MS - S
    message = encode_uplink(
        [
            Reading("L-1", K.POWER_W, 30.0, t),
            Reading("L-1", K.POWER_W, -5.0, t + MS),  # refused: never reaches the sink
            Reading("CAM-1", K.FOOTFALL_COUNT, 4.0, t),
        ],
        gateway_id="gw-3",
        epoch="e1",
        seq=1,
        sent_ns=now,
    )
    settings = InfluxSettings(url=victoria_metrics.url, flush_interval_s=0.05)
    with EmbeddedHistorian() as historian, InfluxSink(settings) as sink:
        pipeline = IngestPipeline(historian, sinks=[sink])
        assert pipeline.handle("streetlight/v1/gw-3/uplink", message, now).accepted == 2
        assert pipeline.handle("streetlight/v1/gw-3/uplink", message, now).duplicate_message
        assert sink.flush(10) and sink.counters.written == 2
    exported = vm_export(victoria_metrics, '{gateway="gw-3"}')
    assert sorted((s["metric"]["__name__"], s["values"]) for s in exported) == [
        ("lamp_power_w", [30.0]),
        ("sensor_value", [4.0]),
    ]

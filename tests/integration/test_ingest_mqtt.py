"""Ingest against a real mosquitto: uplinks encoded by the protocol module, published by a client,
consumed into the embedded historian and the demand windows; the fuzz set; restarts."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import aiomqtt
import pytest

from domain.protocol import (
    MAX_UPLINK_BYTES,
    AckStatus,
    CommandAck,
    GatewayState,
    GatewayStatus,
    GatewayTopics,
    encode_ack,
    encode_status,
    encode_uplink,
)
from domain.records import Reading, ReadingKind
from sensor_ingest.consumer import IngestConsumer
from sensor_ingest.historian import EmbeddedHistorian
from sensor_ingest.pipeline import IngestPipeline
from sensor_ingest.windows import DemandWindows
from tests.integration.conftest import Broker, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PREFIX = "streetlight/v1"
S = 1_000_000_000
GW = GatewayTopics(PREFIX, "gw-17")


async def _publish(
    broker: Broker, messages: list[tuple[str, bytes]], *, retain: bool = False
) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-publisher") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


def _uplink(seq: int, readings: list[Reading], *, gw: str = "gw-17", epoch: str = "q1") -> bytes:
    return encode_uplink(readings, gateway_id=gw, epoch=epoch, seq=seq, sent_ns=time.time_ns())


def _lamp_readings(lamp: str, now_ns: int, energy_wh: float) -> list[Reading]:
    return [
        Reading(lamp, ReadingKind.LEVEL_FRAC, 0.5, now_ns - 3 * S),
        Reading(lamp, ReadingKind.POWER_W, 31.5, now_ns - 3 * S),
        Reading(lamp, ReadingKind.ENERGY_WH, energy_wh, now_ns - 3 * S),
        Reading(lamp, ReadingKind.STATUS, 0.0, now_ns - 3 * S),
    ]


def _stack(
    path: Path | str = ":memory:",
) -> tuple[EmbeddedHistorian, DemandWindows, IngestPipeline, list[list[tuple[str, int]]]]:
    events: list[list[tuple[str, int]]] = []
    historian = EmbeddedHistorian(path)
    windows = DemandWindows(
        {"CAM-01": "high-street", "PIR-07": "high-street", "CAM-02": "mill-lane"},
        on_presence=events.append,
    )
    return historian, windows, IngestPipeline(historian, windows), events


def test_uplinks_status_and_acks_reach_the_historian_windows_and_callbacks(
    mosquitto: Broker,
) -> None:
    historian, windows, pipeline, events = _stack()
    acks: list[CommandAck] = []
    pipeline.on_ack = acks.append
    now = time.time_ns()
    first = [
        *_lamp_readings("L-0001", now, 100.0),
        Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 12.0, now - 2 * S, "CAM-01#881"),
        Reading("PIR-07", ReadingKind.PRESENCE, 1.0, now - 1 * S),
    ]
    second = [
        Reading("L-0001", ReadingKind.ENERGY_WH, 104.5, now - 1 * S),
        Reading("CAM-02", ReadingKind.TRAFFIC_COUNT, 40.0, now - 1 * S),
    ]
    status = encode_status(GatewayStatus("gw-17", GatewayState.ONLINE, now, {"queue_len": 0}))
    ack = encode_ack(CommandAck("c-1", "gw-17", AckStatus.APPLIED, now))

    async def scenario() -> None:
        consumer = IngestConsumer(pipeline, port=mosquitto.port, client_id="ingest-a")
        async with consumer:
            await consumer.wait_connected(10)
            await _publish(mosquitto, [(GW.status, status)], retain=True)
            await _publish(
                mosquitto,
                [(GW.uplink, _uplink(1, first)), (GW.uplink, _uplink(2, second)), (GW.ack, ack)],
            )
            await until(lambda: consumer.counters.received == 4, 10)
            await consumer.drain(10)

    asyncio.run(scenario())
    counters = pipeline.counters()
    assert counters["readings_accepted"] == 8
    assert counters["uplinks"] == 2
    assert counters["statuses"] == 1
    assert counters["acks"] == 1
    assert sum(v for k, v in counters.items() if k.startswith(("rejected_", "malformed_"))) == 0
    lamp = historian.latest(["L-0001"])["L-0001"]
    assert (lamp.level_frac, lamp.power_w, lamp.energy_wh, lamp.status) == (0.5, 31.5, 104.5, 0)
    assert lamp.time_ns == now - 1 * S
    assert historian.energy_wh(["L-0001"], now - 60 * S, now) == {"L-0001": 4.5}
    assert historian.series("CAM-01", ReadingKind.FOOTFALL_COUNT, now - 60 * S, now) == [
        (now - 2 * S, 12.0)
    ]
    assert windows.counts_per_hour("high-street", now_ns=now) == 13.0  # 12 people + 1 detection
    assert windows.counts_per_hour("mill-lane", now_ns=now, kind=ReadingKind.TRAFFIC_COUNT) == 40
    assert events == [[("PIR-07", now - 1 * S)]]
    assert [a.cmd_id for a in acks] == ["c-1"]
    view = pipeline.gateways()["gw-17"]
    assert view.state is GatewayState.ONLINE and view.counters == {"queue_len": 0}
    assert pipeline.clock_skew()["gw-17"].samples == 2
    historian.close()


def test_the_fuzz_set_is_refused_and_counted_while_good_readings_are_kept(
    mosquitto: Broker,
) -> None:
    historian, _windows, pipeline, _events = _stack()
    now = time.time_ns()
    day = 86_400 * S
    good = _uplink(1, _lamp_readings("L-0001", now, 10.0))
    mixed = _uplink(
        2,
        [
            Reading("L-0002", ReadingKind.LEVEL_FRAC, 0.4, now - S),  # kept
            Reading("L-0002", ReadingKind.LEVEL_FRAC, 1.5, now - S),  # out of range
            Reading("L-0002", ReadingKind.STATUS, 32.0, now - S),  # reserved bit
            Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 2.5, now - S),  # not whole
            Reading("L-0002", ReadingKind.POWER_W, 20.0, now - 8 * day),  # stale
            Reading("L-0002", ReadingKind.POWER_W, 20.0, now + 3600 * S),  # future-dated
            Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 3.0, now - S, "CAM-01#5"),  # kept
        ],
    )
    explicit_again = _uplink(
        3, [Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 3.0, now - S, "CAM-01#5")]
    )
    malformed = [
        (GW.uplink, b"{not json"),
        (GW.uplink, b'{"v":2,"gw":"gw-17","epoch":"q1","seq":9,"sent_ns":1,"readings":[]}'),
        (GW.uplink, b'{"v":1,"gw":"gw-99","epoch":"q1","seq":9,"sent_ns":1,"readings":[]}'),
        (GW.uplink, b'{"v":1,"gw":"gw-17","epoch":"q1","seq":9,"sent_ns":1,"readings":[[1]]}'),
        (GW.uplink, b"x" * (MAX_UPLINK_BYTES + 1)),
        (f"{PREFIX}/bad gw/uplink", good),
        (GW.status, b'{"v":1,"gw":"gw-17","state":"sleeping","ts_ns":1}'),
    ]
    published = [
        (GW.uplink, good),
        (GW.uplink, good),  # duplicate (QoS 1 re-send)
        (GW.uplink, mixed),
        (GW.uplink, explicit_again),  # its only row's explicit id was accepted in `mixed`
        *malformed,
    ]

    async def scenario() -> None:
        async with IngestConsumer(pipeline, port=mosquitto.port, client_id="ingest-f") as c:
            await c.wait_connected(10)
            await _publish(mosquitto, published)
            await until(lambda: c.counters.received == len(published), 20)
            await c.drain(10)

    asyncio.run(scenario())
    counters = pipeline.counters()
    nonzero = {k: v for k, v in counters.items() if v and k not in {"messages", "uplinks"}}
    assert nonzero == {
        "readings_accepted": 4 + 2,
        "readings_duplicate": 4 + 1,
        "messages_duplicate": 1,
        "rejected_level_out_of_range": 1,
        "rejected_status_bits": 1,
        "rejected_count_not_whole": 1,
        "rejected_too_old": 1,
        "rejected_future": 1,
        "malformed_json": 1,
        "malformed_version": 1,
        "malformed_gateway_mismatch": 1,
        "malformed_schema": 2,  # the bad row, and the status with an unknown state
        "malformed_oversized": 1,
        "malformed_topic": 1,
    }
    assert counters["messages"] == len(published)
    assert historian.latest(["L-0002"])["L-0002"].level_frac == 0.4
    assert historian.series("CAM-01", ReadingKind.FOOTFALL_COUNT, now - 60 * S, now) == [
        (now - S, 3.0)
    ]
    historian.close()


def test_deduplication_survives_a_restart_of_the_ingest_process(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """Messages re-sent while the ingest was down, queued by the broker for its persistent
    session, are recognised from the historian file by a fresh process."""
    path = tmp_path / "historian.db"
    now = time.time_ns()
    messages = {
        seq: _uplink(
            seq,
            [
                Reading(f"L-{seq:04d}", ReadingKind.ENERGY_WH, 10.0 * seq, now - S),
                Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 1.0, now - S, f"CAM-01#{seq}"),
            ],
        )
        for seq in range(1, 5)
    }

    async def first_run() -> None:
        historian, _w, pipeline, _e = _stack(path)
        async with IngestConsumer(pipeline, port=mosquitto.port, client_id="ingest-r") as c:
            await c.wait_connected(10)
            await _publish(mosquitto, [(GW.uplink, messages[s]) for s in (1, 2, 3)])
            await until(lambda: c.counters.received == 3, 10)
        assert pipeline.counters()["readings_accepted"] == 6
        historian.close()

    async def while_down() -> None:
        # The gateway re-sends 2 and 3 (no PUBACK seen), then 4; a sensor repeats event #1.
        again = _uplink(
            9, [Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 1.0, now - S, "CAM-01#1")]
        )
        await _publish(
            mosquitto,
            [
                (GW.uplink, messages[2]),
                (GW.uplink, messages[3]),
                (GW.uplink, messages[4]),
                (GW.uplink, again),
            ],
        )

    async def second_run() -> dict[str, int]:
        historian, _w, pipeline, _e = _stack(path)
        assert pipeline.dedup.restored_messages == 3
        async with IngestConsumer(pipeline, port=mosquitto.port, client_id="ingest-r") as c:
            await until(lambda: c.counters.received == 4, 10)
        counters = pipeline.counters()
        assert historian.counts(
            ["CAM-01"], ReadingKind.FOOTFALL_COUNT, now - 60 * S, now, 60
        ).counts.tolist() == [[4.0]]
        historian.close()
        return counters

    asyncio.run(first_run())
    asyncio.run(while_down())
    counters = asyncio.run(second_run())
    assert counters["messages_duplicate"] == 2
    assert counters["readings_accepted"] == 2  # message 4's two rows; the rest were duplicates
    assert counters["readings_duplicate"] == 2 * 2 + 1


def test_the_consumer_reconnects_after_the_broker_restarts(mosquitto: Broker) -> None:
    historian, _w, pipeline, _e = _stack()
    now = time.time_ns()

    async def scenario() -> None:
        consumer = IngestConsumer(
            pipeline, port=mosquitto.port, client_id="ingest-b", backoff_s=(0.1, 0.5)
        )
        async with consumer:
            await consumer.wait_connected(10)
            await _publish(mosquitto, [(GW.uplink, _uplink(1, _lamp_readings("L-1", now, 1.0)))])
            await until(lambda: pipeline.counters()["readings_accepted"] == 4, 10)
            await asyncio.to_thread(mosquitto.restart)
            await until(lambda: consumer.counters.disconnects == 1, 10)
            await consumer.wait_connected(10)
            await _publish(mosquitto, [(GW.uplink, _uplink(2, _lamp_readings("L-2", now, 1.0)))])
            await until(lambda: pipeline.counters()["readings_accepted"] == 8, 10)
            assert consumer.counters.connects == 2

    asyncio.run(scenario())
    assert set(historian.latest(["L-1", "L-2"])) == {"L-1", "L-2"}
    historian.close()


def test_the_consumer_speaks_tls_with_a_password(
    mosquitto_tls: tuple[Broker, dict[str, Path]],
) -> None:
    broker, certs = mosquitto_tls
    historian, _w, pipeline, _e = _stack()
    now = time.time_ns()

    async def scenario() -> None:
        consumer = IngestConsumer(
            pipeline,
            port=broker.port,
            username="gw-1",
            password="s3cret-gw",
            ca_file=str(certs["ca"]),
            client_id="ingest-tls",
        )
        async with consumer:
            await consumer.wait_connected(10)
            tls = ssl.create_default_context(cafile=str(certs["ca"]))
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, username="gw-1", password="s3cret-gw", tls_context=tls
            ) as client:
                await client.publish(GW.uplink, _uplink(1, _lamp_readings("L-1", now, 1.0)), qos=1)
            await until(lambda: pipeline.counters()["readings_accepted"] == 4, 10)

    asyncio.run(scenario())
    historian.close()


def test_a_wrong_password_is_reported_and_retried(
    mosquitto_tls: tuple[Broker, dict[str, Path]],
) -> None:
    broker, certs = mosquitto_tls
    historian, _w, pipeline, _e = _stack()

    async def scenario() -> None:
        consumer = IngestConsumer(
            pipeline,
            port=broker.port,
            username="gw-1",
            password="wrong",
            ca_file=str(certs["ca"]),
            backoff_s=(0.05, 0.1),
        )
        async with consumer:
            await until(lambda: "Not authorized" in consumer.counters.last_error, 10)
            await asyncio.sleep(0.5)
            assert not consumer.connected and consumer.counters.connects == 0

    asyncio.run(scenario())
    historian.close()

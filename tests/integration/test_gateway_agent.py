"""The gateway agent end to end, against a real mosquitto and real asyncua servers.

The lamp controller here speaks vendor-style string node ids (``Acme.Cabinet7.Luminaire[...]``)
that appear nowhere in the gateway's code: they reach it only through the TOML point map.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from asyncua import ua

from domain.protocol import AckStatus, DownlinkCommand, decode_ack, decode_uplink, encode_downlink
from domain.records import LampCommand
from gateways.agent import GatewayAgent
from gateways.config import load_gateway_config
from tests.integration.conftest import Broker, free_port, until
from tests.integration.test_opcua_controller import LAMPS, start_server

pytestmark = pytest.mark.timeout(180)
#: The gateway's lamps: three on the OPC-UA controller, one MQTT lamp node.
ALL_LAMPS = (*LAMPS, "N-0201")
ROOT = Path(__file__).resolve().parents[2]


def gateway_toml(
    tmp: Path, broker_port: int, opc_port: int, *, batch_interval_s: float = 0.2
) -> Path:
    lamps = ", ".join(f'{{ lamp_id = "{x}" }}' for x in LAMPS)
    text = f"""
schema_version = 1
dev_mode = true

[gateway]
id = "gw-test"
council_id = "test"
tz = "Europe/London"
lat_deg = 51.45
lon_deg = -2.58

[broker]
host = "127.0.0.1"
port = {broker_port}
keepalive_s = 5

[uplink]
batch_interval_s = {batch_interval_s}
batch_max_readings = 200

[queue]
path = "{tmp / "queue.db"}"

[autonomy]
uplink_timeout_s = 3600

[point_maps.acme-lumi]
schema_version = 1
[[point_maps.acme-lumi.points]]
key = "setpoint"
node_id = "ns=2;s=Acme.Cabinet7.Luminaire[{{lamp}}].DimCommand_pct"
unit = "%"
[[point_maps.acme-lumi.points]]
key = "level"
node_id = "ns=2;s=Acme.Cabinet7.Luminaire[{{lamp}}].DimActual_pct"
unit = "%"
[[point_maps.acme-lumi.points]]
key = "power"
node_id = "ns=2;s=Acme.Cabinet7.Luminaire[{{lamp}}].ActivePower_W"
unit = "W"

[[opcua_controllers]]
name = "acme-7"
endpoint = "opc.tcp://127.0.0.1:{opc_port}/acme/"
point_map = "acme-lumi"
lamps = [{lamps}]

[[mqtt_lamps]]
name = "pole-nodes"
lamps = [{{ lamp_id = "N-0201", substitutions = {{ lamp = "node-0201" }} }}]
[mqtt_lamps.setpoint]
topic = "nodes/{{lamp}}/set"
level_field = "$.dim"
level_unit = "%"
ramp_field = "$.fade_ms"
ramp_unit = "ms"
[mqtt_lamps.telemetry]
topic = "nodes/{{lamp}}/state"
fields = [{{ kind = "level_frac", path = "$.dim", scale = 0.01 }}, {{ kind = "power_w", path = "$.p" }}]

[[mqtt_sensors]]
name = "pir"
topic = "sensors/{{sensor_id}}/presence"
lamps = {{ "pir-1" = ["L-0001", "L-0002"] }}
[mqtt_sensors.payload]
kind = "presence"
value = "$.presence"
time = "$.t"
time_unit = "ms"
"""
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


class Central:
    """The central side as the protocol document says: subscribe, refuse spoofing, de-duplicate."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.readings: dict[str, tuple[str, str, float, int]] = {}
        self.duplicates = 0
        self.acks: list[object] = []

    async def run(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier="central-test", clean_session=False
        ) as c:
            await c.subscribe("streetlight/v1/+/uplink", qos=1)
            await c.subscribe("streetlight/v1/+/ack", qos=1)
            ready.set()
            async for m in c.messages:
                topic = str(m.topic)
                gw = topic.split("/")[2]
                if topic.endswith("/uplink"):
                    batch = decode_uplink(bytes(m.payload), topic_gateway_id=gw)  # type: ignore[arg-type]
                    for r in batch.readings:
                        if r.message_id in self.readings:
                            self.duplicates += 1
                        self.readings[r.message_id] = (
                            r.source_id,
                            r.kind.value,
                            r.value,
                            r.time_ns,
                        )
                else:
                    self.acks.append(decode_ack(bytes(m.payload), topic_gateway_id=gw))  # type: ignore[arg-type]


def test_vendor_controller_downlink_acks_and_sensor_readings(
    mosquitto: Broker, tmp_path: Path
) -> None:
    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        config = load_gateway_config(gateway_toml(tmp_path, mosquitto.port, opc_port))
        central = Central(mosquitto.port)
        ready = asyncio.Event()
        central_task = asyncio.create_task(central.run(ready))
        await ready.wait()
        try:
            async with GatewayAgent(config) as agent:
                await agent.link.wait_connected(10)  # type: ignore[union-attr]
                await agent.controllers[0].wait_connected(10)
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
                    cmd = DownlinkCommand(
                        "cmd-1",
                        time.time_ns(),
                        (
                            LampCommand("L-0001", 0.5, 2.0),
                            LampCommand("L-0003", 0.25),
                            LampCommand("L-9999", 1.0),
                        ),
                    )
                    await c.publish("streetlight/v1/gw-test/downlink", encode_downlink(cmd), qos=1)
                    await until(lambda: len(central.acks) == 1, 10)
                    ack = central.acks[0]
                    assert ack.status is AckStatus.PARTIAL  # type: ignore[attr-defined]
                    assert [f.lamp_id for f in ack.failed] == ["L-9999"]  # type: ignore[attr-defined]
                    assert await nodes["L-0001.DimCommand_pct"].read_value() == pytest.approx(50.0)  # type: ignore[attr-defined]
                    assert await nodes["L-0003.DimCommand_pct"].read_value() == pytest.approx(25.0)  # type: ignore[attr-defined]
                    # The same command again (a QoS 1 duplicate): acked again, not applied twice.
                    await c.publish("streetlight/v1/gw-test/downlink", encode_downlink(cmd), qos=1)
                    await until(lambda: len(central.acks) == 2, 10)
                    assert agent.counters.downlinks_duplicate == 1
                    # Garbage on the downlink is counted, never fatal.
                    await c.publish("streetlight/v1/gw-test/downlink", b"{not json", qos=1)
                    # Sensor events: good ones become readings, malformed ones are counted.
                    now_ms = int(time.time() * 1000)
                    await c.publish(
                        "sensors/pir-1/presence",
                        json.dumps({"presence": 1, "t": now_ms}).encode(),
                        qos=1,
                    )
                    await c.publish("sensors/pir-1/presence", b"\xff\xfe", qos=1)
                    await c.publish(
                        "sensors/pir-1/presence",
                        json.dumps({"presence": "yes", "t": now_ms}).encode(),
                        qos=1,
                    )
                    await c.publish(
                        "sensors/pir-1/presence",
                        json.dumps({"presence": 1, "t": now_ms + 1}).encode(),
                        qos=1,
                    )
                # An MQTT lamp node: commanded in its own payload layout, its telemetry mapped.
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
                    await c.subscribe("nodes/+/set", qos=1)
                    cmd2 = DownlinkCommand(
                        "cmd-2", time.time_ns(), (LampCommand("N-0201", 0.3, 1.5),)
                    )
                    await c.publish("streetlight/v1/gw-test/downlink", encode_downlink(cmd2), qos=1)
                    async for m in c.messages:
                        assert str(m.topic) == "nodes/node-0201/set"
                        assert json.loads(bytes(m.payload)) == {"dim": 30.0, "fade_ms": 1500.0}  # type: ignore[arg-type]
                        break
                    await c.publish("nodes/node-0201/state", b'{"dim": 30, "p": 12.5}', qos=1)
                    await c.publish("nodes/node-0201/state", b'{"dim": "bright"}', qos=1)
                await until(
                    lambda: len(central.acks) == 3 and central.acks[2].status is AckStatus.APPLIED,
                    10,
                )  # type: ignore[attr-defined]
                # Telemetry from the vendor nodes, in domain units.
                await nodes["L-0002.DimActual_pct"].write_value(40.0)  # type: ignore[attr-defined]
                await nodes["L-0002.ActivePower_W"].write_value(33.5)  # type: ignore[attr-defined]

                def seen(source: str, kind: str, value: float) -> bool:
                    return any(r[:3] == (source, kind, value) for r in central.readings.values())

                await until(
                    lambda: seen("L-0002", "level_frac", 0.4) and seen("L-0002", "power_w", 33.5),
                    10,
                )
                await until(
                    lambda: seen("N-0201", "level_frac", 0.3) and seen("N-0201", "power_w", 12.5),
                    10,
                )
                assert agent.counters.telemetry_rejected == 1  # {"dim": "bright"}
                await until(
                    lambda: sum(1 for r in central.readings.values() if r[1] == "presence") == 2, 10
                )
                assert agent.counters.sensor_messages_rejected == 2
                assert agent.counters.downlinks_rejected == 1
                assert central.duplicates == 0
                assert agent.status()["mode"] == "central"
        finally:
            central_task.cancel()
            await server.stop()

    asyncio.run(scenario())


class ReconnectingCentral(Central):
    """A central subscriber with a persistent session that rides out broker restarts."""

    async def run(self, ready: asyncio.Event) -> None:
        while True:
            try:
                await super().run(ready)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


def _start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streetlight.cli", "gateway", "--config", str(config)],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_store_and_forward_through_broker_outage_and_sigkill(
    mosquitto_persistent: Broker, tmp_path: Path
) -> None:
    """Numbered readings flow while the broker is down for 10 s and the gateway is SIGKILLed
    once; afterwards every reading reached the central side exactly once after de-duplication."""
    broker = mosquitto_persistent
    log = tmp_path / "gateway.log"

    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        config = gateway_toml(tmp_path, broker.port, opc_port, batch_interval_s=0.1)
        central = ReconnectingCentral(broker.port)
        ready = asyncio.Event()
        central_task = asyncio.create_task(central.run(ready))
        await ready.wait()
        gw = _start_gateway(config, log)
        power = nodes["L-0001.ActivePower_W"]
        produced: list[float] = []

        async def produce(count: int) -> None:
            for _ in range(count):
                n = float(len(produced) + 1)
                await power.write_value(n)  # type: ignore[attr-defined]
                produced.append(n)
                await asyncio.sleep(0.2)

        def received() -> list[tuple[str, str, float, int]]:
            return [r for r in central.readings.values() if r[0] == "L-0001" and r[1] == "power_w"]

        try:
            await until(lambda: any(r[1] == "power_w" for r in central.readings.values()), 20)
            await produce(10)
            await asyncio.to_thread(broker.stop)
            down_at = time.monotonic()
            await produce(20)  # 4 s of readings with no broker: they wait on disk
            await asyncio.sleep(0.5)  # let the last ones be sealed into the queue
            gw.send_signal(signal.SIGKILL)
            gw.wait(10)
            gw = _start_gateway(config, log)
            await asyncio.sleep(3.0)  # the new agent connects to its controller
            await produce(15)
            while time.monotonic() - down_at < 10.5:
                await asyncio.sleep(0.1)
            await asyncio.to_thread(broker.start)
            await produce(10)
            await until(lambda: {r[2] for r in received()} >= set(produced), 30)
        finally:
            gw.terminate()
            gw.wait(10)
            central_task.cancel()
            await server.stop()
        values = sorted(r[2] for r in received())
        # De-duplicated by message id (the protocol's rule) and by (lamp, kind, source time):
        # a re-started agent reports the controller's current value again, with its old time.
        natural = {
            (r[0], r[1], r[3]): r[2]
            for r in central.readings.values()
            if r[0] == "L-0001" and r[1] == "power_w"
        }
        # (0.0 is the controller's value before the numbered readings began.)
        assert sorted(v for v in natural.values() if v > 0) == produced, (
            f"missing or repeated: {sorted(set(produced) ^ set(values))}"
        )

    try:
        asyncio.run(scenario())
    except BaseException:
        print(log.read_text()[-4000:])
        raise


def _night_clock(local_time: str) -> tuple[int, object]:
    """A clock that reads ``local_time`` (London, December: UTC) now and runs at real speed."""
    target = int(np.datetime64(local_time, "ns").astype(np.int64))
    offset = target - time.time_ns()
    return target, lambda: time.time_ns() + offset


def _schedule(tmp: Path, night: str) -> Path:
    from controller.edge_schedule import save_schedule
    from controller.policy import compile_night, validate_policy
    from domain.inventory import InventoryArrays
    from domain.records import Lamp

    inventory = InventoryArrays.from_lamps(
        [Lamp(x, "test", -2.58 + k * 1e-4, 51.45, 50.0) for k, x in enumerate(ALL_LAMPS)]
    )
    policy = validate_policy(ROOT / "streetlight" / "samples" / "policy_part_night.yaml")
    program = compile_night(policy, inventory, night, "Europe/London")
    return save_schedule(tmp / "edge-schedule.npz", list(ALL_LAMPS), [program])


@pytest.mark.parametrize("with_schedule", [True, False])
def test_cut_uplink_at_night_lamps_follow_the_schedule_or_fail_safe(
    mosquitto: Broker, tmp_path: Path, with_schedule: bool
) -> None:
    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        path = gateway_toml(tmp_path, mosquitto.port, opc_port)
        text = path.read_text().replace("uplink_timeout_s = 3600", "uplink_timeout_s = 2")
        if with_schedule:
            schedule = _schedule(tmp_path, "2026-12-21")
            text = text.replace(
                "uplink_timeout_s = 2", f'uplink_timeout_s = 2\nschedule_path = "{schedule}"'
            )
        path.write_text(text)
        _, clock = _night_clock("2026-12-21T23:00")  # part-night policy: 75 % until midnight
        try:
            async with GatewayAgent(load_gateway_config(path), clock=clock) as agent:  # type: ignore[arg-type]
                await agent.controllers[0].wait_connected(10)
                assert agent.status()["mode"] == "central"
                # Nobody speaks for the central service: after 2 s the gateway drives on its own.
                expected = 75.0 if with_schedule else 100.0
                deadline = time.monotonic() + 10
                while True:
                    values = [await nodes[f"{x}.DimCommand_pct"].read_value() for x in LAMPS]  # type: ignore[attr-defined]
                    if all(v == pytest.approx(expected) for v in values):
                        break
                    assert time.monotonic() < deadline, f"setpoints {values}, expected {expected}"
                    await asyncio.sleep(0.2)
                assert agent.status()["mode"] == ("schedule" if with_schedule else "fail_safe")
                assert all(v > 0 for v in values)  # never dark at night
                # The central service speaks again: it drives, the local loop stands back.
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
                    await c.publish("streetlight/v1/central/heartbeat", b'{"v": 1}', qos=1)
                await until(lambda: agent.status()["mode"] == "central", 5)
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_sensor_burst_around_a_downlink_and_its_duplicate(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """Sensor messages are handled as they arrive and commands one at a time in arrival order:
    every reading reaches the uplink once, the command is applied once and acked twice."""
    n_messages = 2_000

    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        config = load_gateway_config(gateway_toml(tmp_path, mosquitto.port, opc_port))
        central = Central(mosquitto.port)
        ready = asyncio.Event()
        central_task = asyncio.create_task(central.run(ready))
        await ready.wait()
        now_ms = int(time.time() * 1000)
        cmd = DownlinkCommand(
            "cmd-burst",
            time.time_ns(),
            (LampCommand("L-0001", 0.5), LampCommand("L-0002", 0.75)),
        )

        def presence_times() -> list[int]:
            return sorted(r[3] for r in central.readings.values() if r[1] == "presence")

        try:
            async with GatewayAgent(config) as agent:
                assert agent.link is not None
                await agent.link.wait_connected(10)
                await agent.controllers[0].wait_connected(10)
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
                    for k in range(n_messages):
                        if k in (n_messages // 3, n_messages // 3 + 1):
                            await c.publish(
                                "streetlight/v1/gw-test/downlink", encode_downlink(cmd), qos=1
                            )
                        payload = json.dumps({"presence": 1, "t": now_ms - k}).encode()
                        await c.publish("sensors/pir-1/presence", payload, qos=1)
                await until(lambda: len(presence_times()) >= n_messages, 30)
                await until(lambda: len(central.acks) == 2, 10)
                assert presence_times() == sorted((now_ms - k) * 10**6 for k in range(n_messages))
                assert central.duplicates == 0
                assert [a.status for a in central.acks] == [AckStatus.APPLIED] * 2  # type: ignore[attr-defined]
                assert agent.counters.downlinks_duplicate == 1
                assert agent.counters.setpoints_written == 2  # two lamps, written once
                assert await nodes["L-0002.DimCommand_pct"].read_value() == pytest.approx(75.0)  # type: ignore[attr-defined]
                assert (
                    agent.counters.sensor_messages,
                    agent.counters.sensor_messages_rejected,
                ) == (
                    n_messages,
                    0,
                )
                assert (
                    agent.link.counters.handler_errors,
                    agent.link.counters.messages_dropped,
                ) == (
                    0,
                    0,
                )
        finally:
            central_task.cancel()
            await server.stop()

    asyncio.run(scenario())


def test_a_reading_the_uplink_cannot_carry_is_dropped_and_counted(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """A controller that stamps a value before 1970 (the protocol carries no negative times)
    costs that one reading: the rest of its batch and every later batch still go out."""

    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        # A long batch interval: the bad reading shares its batch with the good ones below.
        path = gateway_toml(tmp_path, mosquitto.port, opc_port, batch_interval_s=2.0)
        config = load_gateway_config(path)
        central = Central(mosquitto.port)
        ready = asyncio.Event()
        central_task = asyncio.create_task(central.run(ready))
        await ready.wait()
        power = nodes["L-0002.ActivePower_W"]

        def powers() -> list[float]:
            return [r[2] for r in central.readings.values() if r[:2] == ("L-0002", "power_w")]

        try:
            async with GatewayAgent(config) as agent:
                await agent.controllers[0].wait_connected(10)
                await until(lambda: powers() == [0.0], 10)  # the value at subscription
                old = ua.DateTime(1960, 1, 1, tzinfo=dt.UTC)
                await power.write_value(  # type: ignore[attr-defined]
                    ua.DataValue(ua.Variant(7.0, ua.VariantType.Double), SourceTimestamp=old)
                )
                await asyncio.sleep(0.3)
                await power.write_value(8.0)  # type: ignore[attr-defined]
                await until(lambda: 8.0 in powers(), 10)
                await power.write_value(9.0)  # type: ignore[attr-defined]
                await until(lambda: 9.0 in powers(), 10)
                assert powers() == [0.0, 8.0, 9.0]
                assert agent.counters.readings_rejected == 1
                assert agent.status()["recent_errors"][-1] == (
                    "reading of 'L-0002' not sent: readings[0].time_ns: "
                    "-315619200000000000 is outside 0..9223372036854775807"
                )
        finally:
            central_task.cancel()
            await server.stop()

    asyncio.run(scenario())


def _presence_schedule(tmp: Path, night: str) -> Path:
    """The presence policy for the gateway's lamps, P4 along one street."""
    from controller.edge_schedule import save_schedule
    from controller.policy import compile_night, validate_policy
    from domain.inventory import InventoryArrays
    from domain.records import Lamp, LightingClass

    inventory = InventoryArrays.from_lamps(
        [
            Lamp(
                x,
                "test",
                -2.58 + k * 2e-3,  # about 140 m apart: no lamp is a neighbour
                51.45,
                50.0,
                lighting_class=LightingClass.P4,
                street="Test Road",
                order_on_street=k,
            )
            for k, x in enumerate(ALL_LAMPS)
        ]
    )
    policy = validate_policy(ROOT / "streetlight" / "samples" / "policy_presence_adaptive.yaml")
    program = compile_night(policy, inventory, night, "Europe/London")
    return save_schedule(tmp / "edge-schedule.npz", list(ALL_LAMPS), [program])


def test_presence_raises_lamps_at_once_when_on_its_own(mosquitto: Broker, tmp_path: Path) -> None:
    """On the edge schedule, a detection is answered by the presence task within moments, not
    at the next control tick (here 8 s apart)."""

    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        path = gateway_toml(tmp_path, mosquitto.port, opc_port)
        schedule = _presence_schedule(tmp_path, "2026-12-21")
        text = path.read_text().replace(
            "uplink_timeout_s = 3600", f'uplink_timeout_s = 1\nschedule_path = "{schedule}"'
        )
        path.write_text(text)
        _, clock = _night_clock("2026-12-21T23:00")  # after 22:00: a 50 % base
        tick_s = 8.0

        async def setpoints() -> list[float]:
            return [await nodes[f"{x}.DimCommand_pct"].read_value() for x in LAMPS]  # type: ignore[attr-defined]

        try:
            async with GatewayAgent(
                load_gateway_config(path),
                clock=clock,  # type: ignore[arg-type]
                control_interval_s=tick_s,
            ) as agent:
                await agent.controllers[0].wait_connected(10)
                deadline = time.monotonic() + 4 * tick_s
                while await setpoints() != pytest.approx([50.0] * 3):
                    assert time.monotonic() < deadline, f"setpoints {await setpoints()}"
                    await asyncio.sleep(0.05)
                assert agent.status()["mode"] == "schedule"
                published = time.monotonic()
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
                    payload = json.dumps({"presence": 1, "t": clock() // 10**6}).encode()  # type: ignore[operator]
                    await c.publish("sensors/pir-1/presence", payload, qos=1)
                while not all(v > 50.0 for v in (await setpoints())[:2]):
                    assert time.monotonic() - published < tick_s / 2, f"{await setpoints()}"
                    await asyncio.sleep(0.02)
                assert (await setpoints())[2] == pytest.approx(50.0)  # pir-1 covers L-1, L-2
        finally:
            await server.stop()

    asyncio.run(scenario())

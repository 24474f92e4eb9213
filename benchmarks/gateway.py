"""Gateway benchmark: sensor throughput, batched setpoint writes, event-to-setpoint latency.

Every figure is printed against a baseline measured in the same run, on the same broker and
the same OPC-UA server:

1. **Sensor messages per second** one gateway process sustains end to end. A publisher in its
   own process (a minimal MQTT 3.1.1 client on a raw socket, far faster than any consumer here)
   publishes ``N`` presence messages (QoS 1) from 1,000 sensors as fast as the broker takes them.
   Baseline: a bare aiomqtt subscriber in its own process that counts the ``N`` messages.
   Measured: ``streetlight gateway`` in its own process (central mode, 1,000 lamps on one
   controller, sensors mapped 1:1 to lamps), counted by a central subscriber when all ``N``
   readings have arrived in its uplink messages: decoded, validated, buffered, sealed into the
   disk queue and sent. Both rates are ``N`` / (last message consumed - first message published);
   the CPU time per message of both processes is printed too. The full size runs each twice, in
   the order bare, gateway, gateway, bare, and averages. Target: >= 5,000/s and >= 0.8x the bare
   subscriber.
2. **OPC-UA setpoints per second** written to 1,000 lamps (Double nodes) on a server in another
   process. Baseline: asyncua ``Client.write_values`` of all 1,000 nodes, repeated. Measured:
   :meth:`gateways.opcua.OpcUaController.write` of ``{(lamp, "setpoint"): Variant}`` for the same
   1,000 lamps, repeated. The two alternate batch by batch so drift hits both. Target: >= 0.9x.
3. **Latency from a sensor event published on MQTT to the setpoint written on the lamp
   controller**, at 200 events/s, p50 and p99. One process runs the OPC-UA server and the
   publisher, so the publish time and the server's ``PostWrite`` callback read one monotonic
   clock. Each event is for a lamp at its 50 % base level (one lamp per event, never repeated
   within a run; the policy holds a boost for 60 s). Measured: ``streetlight gateway
   --clock-start 2026-12-21T23:00`` on its own (``uplink_timeout_s`` = 1 s, no central
   service) driving the lamps from an edge schedule compiled from
   ``streetlight/samples/policy_presence_adaptive.yaml`` (P4 lamps along one street, a
   detection raises its own lamp). Baseline: a bare relay in its own process, an aiomqtt
   subscriber that writes each event's setpoint with asyncua. Target: p99 <= 50 ms.

    python -m benchmarks.gateway                  # full size (about 2 minutes)
    python -m benchmarks.gateway --quick --json   # < 60 s, one JSON object
    python -m benchmarks.gateway --quick --profile gw.prof   # the gateway under cProfile

Everything listens on 127.0.0.1 (free ports), and every process stops by itself: the
children have a lifetime and the parent terminates them in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import math
import multiprocessing as mp
import os
import pstats
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.server.server import Server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.integration.conftest import free_port, wait_for_port  # noqa: E402

# The project's own modules (pydantic models, numba kernels) are imported inside the functions
# that run in the parent: the spawned child processes import this module and need none of them.

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SENSOR_TOPIC = "bench/{sensor_id}/presence"
SENSOR_SUBSCRIPTION = "bench/+/presence"
SENSOR_QOS = 1  # publisher, bare subscriber, relay and gateway alike
UPLINK_PREFIX = "streetlight/v1"
CLOCK_START = "2026-12-21T23:00"  # London in December is UTC; the policy idles at 50 % after 22:00
NIGHT = "2026-12-21"
POLICY = ROOT / "streetlight" / "samples" / "policy_presence_adaptive.yaml"
BASE_LEVEL_FRAC = 0.5
EVENT_RATE_PER_S = 200.0
SETPOINT_LAMPS = 1_000
SENSORS = 1_000
LAMP_SPACING_M = 30.0
UPLINK_BATCH_READINGS = 500
UPLINK_BATCH_INTERVAL_S = 0.2  # the last partial batch waits at most this long
TARGETS = {
    "sensor_msgs_per_s": 5_000.0,
    "sensor_ratio_vs_bare": 0.8,
    "setpoint_ratio_vs_asyncua": 0.9,
    "event_to_setpoint_p99_ms": 50.0,
}


@dataclass(frozen=True, slots=True)
class Sizes:
    sensor_messages: int
    sensor_pairs: int  # bare and gateway runs, in the order bare, gateway, gateway, bare, ...
    setpoint_s: float
    latency_s: float

    @property
    def latency_events(self) -> int:
        return round(self.latency_s * EVENT_RATE_PER_S)

    @property
    def lamps(self) -> int:
        """Lamps on the benchmark's controller: enough that no latency event repeats a lamp."""
        return max(SETPOINT_LAMPS, self.latency_events)


QUICK = Sizes(sensor_messages=20_000, sensor_pairs=1, setpoint_s=3.0, latency_s=3.0)
FULL = Sizes(sensor_messages=100_000, sensor_pairs=2, setpoint_s=10.0, latency_s=10.0)


def lamp_id(k: int) -> str:
    return f"L-{k:04d}"


def sensor_id(k: int) -> str:
    return f"S-{k:04d}"


def setpoint_identifier(k: int) -> str:
    return f"Bench.{lamp_id(k)}.Setpoint"


def setpoint_node_id(k: int) -> str:
    return f"ns=2;s={setpoint_identifier(k)}"


def quiet_asyncua() -> None:
    """asyncua warns about every unencrypted session: noise here, where that is the point."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile_ms(samples_ns: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(samples_ns, dtype=np.float64), q)) / 1e6


# --- the broker ---------------------------------------------------------------------------------


class Mosquitto:
    """A mosquitto on a free loopback port with a throw-away configuration; a context manager."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            # A burst of N QoS 1 messages waits in the broker for a slower subscriber.
            "max_queued_messages 1000000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot read workdir
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Mosquitto:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, process=self.process)
        except (RuntimeError, TimeoutError):
            self.__exit__()
            raise RuntimeError(f"mosquitto did not start; log:\n{_tail(self.log)}") from None
        return self

    def cpu_s(self) -> float:
        assert self.process is not None
        return cpu_s(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM (a clean stop: the gateway seals its buffer, cProfile writes its file), then kill."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- a raw MQTT publisher (child process) -------------------------------------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def mqtt_connect(client_id: str, keepalive_s: int = 60) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session."""
    body = _utf8("MQTT") + bytes([4, 0x02]) + keepalive_s.to_bytes(2, "big") + _utf8(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def mqtt_publish_qos1(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _utf8(topic) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _remaining_length(len(body)) + body


def sensor_payload(time_ms: int) -> bytes:
    return b'{"presence":1,"t":%d}' % time_ms


def raw_publisher(port: int, n_messages: int, results: Any, lifetime_s: float) -> None:
    """Publish ``n_messages`` QoS 1 sensor messages, pipelined, and wait for every PUBACK.

    Puts ``{"t0_ns", "sent_ns", "acked_ns", "acked"}`` (monotonic ns) on ``results``. A bare
    socket publishes several times faster than any Python MQTT client, so the consumers, not
    the publisher, set the rates measured downstream.
    """
    now_ms = time.time_ns() // 1_000_000
    packets = [
        mqtt_publish_qos1(
            SENSOR_TOPIC.format(sensor_id=sensor_id(k % SENSORS)),
            sensor_payload(now_ms),
            k % 65_535 + 1,
        )
        for k in range(n_messages)
    ]
    chunks = [b"".join(packets[i : i + 1_000]) for i in range(0, n_messages, 1_000)]
    acked = 0
    acked_ns = 0
    with socket.create_connection(("127.0.0.1", port), timeout=lifetime_s) as sock:
        sock.sendall(mqtt_connect(f"bench-raw-publisher-{os.getpid()}"))
        connack = sock.recv(4)
        if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
            raise RuntimeError(f"the broker refused the publisher: {connack!r}")

        def read_pubacks() -> None:
            nonlocal acked, acked_ns
            received = 0
            while received < 4 * n_messages:
                data = sock.recv(65_536)
                if not data:
                    break
                received += len(data)
            acked = received // 4  # only 4-byte PUBACKs come back: no subscriptions, no pings
            acked_ns = time.monotonic_ns()

        reader = threading.Thread(target=read_pubacks, name="pubacks", daemon=True)
        reader.start()
        t0_ns = time.monotonic_ns()
        for chunk in chunks:
            sock.sendall(chunk)
        sent_ns = time.monotonic_ns()
        reader.join(lifetime_s)
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")  # DISCONNECT
    results.put({"t0_ns": t0_ns, "sent_ns": sent_ns, "acked_ns": acked_ns, "acked": acked})


# --- the bare subscriber (child process) --------------------------------------------------------


def bare_subscriber(
    port: int, n_messages: int, ready: Any, results: Any, lifetime_s: float
) -> None:
    asyncio.run(_bare_subscriber(port, n_messages, ready, results, lifetime_s))


async def _bare_subscriber(
    port: int, n_messages: int, ready: Any, results: Any, lifetime_s: float
) -> None:
    count = 0
    cpu_start_s = 0.0
    with contextlib.suppress(TimeoutError):
        async with (
            asyncio.timeout(lifetime_s),
            aiomqtt.Client("127.0.0.1", port, identifier="bench-bare-subscriber") as client,
        ):
            await client.subscribe(SENSOR_SUBSCRIPTION, qos=SENSOR_QOS)
            cpu_start_s = time.process_time()
            ready.set()
            async for _message in client.messages:
                count += 1
                if count == n_messages:
                    break
    done_ns = time.monotonic_ns()
    results.put({"done_ns": done_ns, "count": count, "cpu_s": time.process_time() - cpu_start_s})


# --- the bare relay (child process) -------------------------------------------------------------


def bare_relay(broker_port: int, opc_url: str, n_lamps: int, ready: Any, lifetime_s: float) -> None:
    quiet_asyncua()
    asyncio.run(_bare_relay(broker_port, opc_url, n_lamps, ready, lifetime_s))


async def _bare_relay(
    broker_port: int, opc_url: str, n_lamps: int, ready: Any, lifetime_s: float
) -> None:
    """The least a gateway can do: each presence message becomes one setpoint write."""
    full = ua.DataValue(ua.Variant(1.0, ua.VariantType.Double))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(lifetime_s), Client(opc_url) as opc:
            nodes = {sensor_id(k): opc.get_node(setpoint_node_id(k)) for k in range(n_lamps)}
            async with aiomqtt.Client("127.0.0.1", broker_port, identifier="bench-relay") as mq:
                await mq.subscribe(SENSOR_SUBSCRIPTION, qos=SENSOR_QOS)
                ready.set()
                async for message in mq.messages:
                    node = nodes.get(str(message.topic).split("/")[1])
                    doc = json.loads(message.payload)
                    if node is not None and doc.get("presence"):
                        await node.write_value(full)


# --- the lamp controller and the event publisher (one child process) ----------------------------


@dataclass
class WriteRecorder:
    """Server-side view of setpoint writes (an asyncua ``PostWrite`` callback)."""

    n_lamps: int
    last_frac: list[float] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    latency_ns: list[int] = field(default_factory=list)
    values_written: int = 0

    def __post_init__(self) -> None:
        self._index = {setpoint_identifier(k): k for k in range(self.n_lamps)}
        self.last_frac = [0.0] * self.n_lamps  # the nodes' initial value
        self.sent_ns = [0] * self.n_lamps

    def reset(self) -> None:
        self.sent_ns = [0] * self.n_lamps
        self.latency_ns = []

    @property
    def pending(self) -> int:
        return sum(1 for t in self.sent_ns if t)

    def on_write(self, event: ServerItemCallback, _dispatcher: object) -> None:
        now = time.monotonic_ns()
        for write, status in zip(
            event.request_params.NodesToWrite, event.response_params, strict=True
        ):
            k = self._index.get(write.NodeId.Identifier)
            if k is None or not status.is_good():
                continue
            value = float(write.Value.Value.Value)
            self.values_written += 1
            self.last_frac[k] = value
            sent = self.sent_ns[k]
            # The event's answer: the lamp raised above its base (later fade steps are not).
            if sent and value > BASE_LEVEL_FRAC + 0.01:
                self.latency_ns.append(now - sent)
                self.sent_ns[k] = 0


def lamp_controller(opc_port: int, n_lamps: int, conn: Connection, lifetime_s: float) -> None:
    quiet_asyncua()
    asyncio.run(_lamp_controller(opc_port, n_lamps, conn, lifetime_s))


async def _lamp_controller(
    opc_port: int, n_lamps: int, conn: Connection, lifetime_s: float
) -> None:
    """An OPC-UA server with ``n_lamps`` Double setpoint nodes that obeys the parent's commands:
    ``("latency", kwargs)`` runs :func:`_publish_events` and answers its result; ``("stop",
    None)`` (or the end of ``lifetime_s``) stops it."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{opc_port}/bench/")
    ns = await server.register_namespace("urn:streetlight:bench")
    if ns != 2:
        raise RuntimeError(f"the benchmark's node ids say ns=2; the server gave ns={ns}")
    folder = await server.nodes.objects.add_object(ua.NodeId.from_string("ns=2;s=Bench"), "Bench")
    for k in range(n_lamps):
        var = await folder.add_variable(
            ua.NodeId.from_string(setpoint_node_id(k)),
            f"{lamp_id(k)}.Setpoint",
            ua.Variant(0.0, ua.VariantType.Double),
        )
        await var.set_writable()
    recorder = WriteRecorder(n_lamps)
    server.subscribe_server_callback(CallbackType.PostWrite, recorder.on_write)
    await server.start()
    try:
        conn.send(("ready", None))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(lifetime_s):
                while True:
                    while not conn.poll():
                        await asyncio.sleep(0.05)
                    command, kwargs = conn.recv()
                    if command == "stop":
                        break
                    if command == "latency":
                        conn.send(("latency", await _publish_events(recorder, **kwargs)))
    finally:
        await server.stop()


async def _publish_events(
    recorder: WriteRecorder,
    *,
    broker_port: int,
    n_events: int,
    wait_for_base: bool,
    clock_offset_ns: int,
) -> dict[str, Any]:
    """Publish ``n_events`` presence events at :data:`EVENT_RATE_PER_S`, event ``k`` from sensor
    ``k`` for lamp ``k``; the recorder times each lamp's first raised setpoint."""
    if wait_for_base:
        # The gateway has taken over when every lamp was written its 50 % base level.
        deadline = time.monotonic() + 30.0
        while any(abs(v - BASE_LEVEL_FRAC) > 1e-6 for v in recorder.last_frac):
            if time.monotonic() > deadline:
                return {"error": "the gateway did not write the base level to every lamp"}
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    recorder.reset()
    period_ns = round(1e9 / EVENT_RATE_PER_S)
    late_ns = 0
    async with aiomqtt.Client("127.0.0.1", broker_port, identifier="bench-events") as client:
        start_ns = time.monotonic_ns() + 50_000_000
        for k in range(n_events):
            target_ns = start_ns + k * period_ns
            wait_ns = target_ns - time.monotonic_ns()
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            payload = sensor_payload((time.time_ns() + clock_offset_ns) // 1_000_000)
            sent = time.monotonic_ns()
            late_ns = max(late_ns, sent - target_ns)
            recorder.sent_ns[k] = sent
            await client.publish(SENSOR_TOPIC.format(sensor_id=sensor_id(k)), payload, qos=1)
        published_s = (time.monotonic_ns() - start_ns) / 1e9
        deadline = time.monotonic() + 2.0
        while recorder.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    return {
        "latency_ns": list(recorder.latency_ns),
        "missed": recorder.pending,
        "events": n_events,
        "events_per_s": n_events / published_s,
        "max_publish_late_ms": late_ns / 1e6,
    }


class LampController:
    """The parent's handle on the :func:`lamp_controller` child."""

    def __init__(self, context: Any, n_lamps: int, lifetime_s: float) -> None:
        self.port = free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/bench/"
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=lamp_controller,
            args=(self.port, n_lamps, child, lifetime_s),
            name="bench-lamp-controller",
            daemon=True,
        )

    def start(self) -> None:
        self.process.start()

    async def _reply(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll():
            if time.monotonic() > deadline or not self.process.is_alive():
                raise RuntimeError("the lamp controller process did not answer")
            await asyncio.sleep(0.05)
        return self._conn.recv()[1]

    async def ready(self, timeout_s: float = 60.0) -> None:
        await self._reply(timeout_s)

    async def latency(self, **kwargs: Any) -> dict[str, Any]:
        self._conn.send(("latency", kwargs))
        result: dict[str, Any] = await self._reply(60.0 + kwargs["n_events"] / EVENT_RATE_PER_S)
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("stop", None))
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# --- the gateway under test ---------------------------------------------------------------------


def gateway_toml(
    workdir: Path,
    *,
    gateway_id: str,
    broker_port: int,
    opc_url: str,
    n_lamps: int,
    uplink_timeout_s: float,
    schedule: Path | None = None,
) -> Path:
    """A gateway configuration: one controller of ``n_lamps``, sensor ``S-k`` over lamp ``L-k``."""
    lamps = ", ".join(f'{{ lamp_id = "{lamp_id(k)}" }}' for k in range(n_lamps))
    sensor_lamps = "\n".join(f'{sensor_id(k)} = ["{lamp_id(k)}"]' for k in range(n_lamps))
    schedule_line = f'schedule_path = "{schedule}"' if schedule is not None else ""
    text = f"""
schema_version = 1
dev_mode = true

[gateway]
id = "{gateway_id}"
council_id = "bench"
tz = "Europe/London"
lat_deg = 51.45
lon_deg = -2.58

[broker]
host = "127.0.0.1"
port = {broker_port}
keepalive_s = 30

[uplink]
topic_prefix = "{UPLINK_PREFIX}"
batch_max_readings = {UPLINK_BATCH_READINGS}
batch_interval_s = {UPLINK_BATCH_INTERVAL_S}

[queue]
path = "{workdir / f"{gateway_id}-queue.db"}"

[autonomy]
uplink_timeout_s = {uplink_timeout_s}
{schedule_line}

[point_maps.bench-lamp]
schema_version = 1
[[point_maps.bench-lamp.points]]
key = "setpoint"
node_id = "ns=2;s=Bench.{{lamp}}.Setpoint"
unit = "frac"

[[opcua_controllers]]
name = "bench-cabinet"
endpoint = "{opc_url}"
point_map = "bench-lamp"
lamps = [{lamps}]

[[mqtt_sensors]]
name = "pir"
topic = "{SENSOR_TOPIC}"
qos = {SENSOR_QOS}
[mqtt_sensors.payload]
kind = "presence"
value = "$.presence"
time = "$.t"
time_unit = "ms"
[mqtt_sensors.lamps]
{sensor_lamps}
"""
    path = workdir / f"{gateway_id}.toml"
    path.write_text(text)
    return path


def edge_schedule(workdir: Path, n_lamps: int) -> Path:
    """The presence-adaptive policy compiled for ``n_lamps`` P4 lamps along one street."""
    from controller.edge_schedule import save_schedule
    from controller.policy import compile_night, validate_policy
    from domain.inventory import InventoryArrays
    from domain.records import Lamp, LightingClass

    lat_deg = 51.45
    deg_per_m = 1.0 / (111_320.0 * math.cos(math.radians(lat_deg)))
    inventory = InventoryArrays.from_lamps(
        [
            Lamp(
                lamp_id(k),
                "bench",
                -2.58 + k * LAMP_SPACING_M * deg_per_m,
                lat_deg,
                50.0,
                lighting_class=LightingClass.P4,
                street="Bench Road",
                order_on_street=k,
            )
            for k in range(n_lamps)
        ]
    )
    program = compile_night(validate_policy(POLICY), inventory, NIGHT, "Europe/London")
    lamps = [lamp_id(k) for k in range(n_lamps)]
    return save_schedule(workdir / "edge-schedule.npz", lamps, [program])


def run_profiled_gateway(config: str, output: str) -> None:
    """The agent as ``streetlight gateway`` runs it, under cProfile from SIGUSR1 to SIGTERM
    (so start-up and imports stay out of the profile)."""
    from gateways.agent import GatewayAgent
    from gateways.config import load_gateway_config

    profiler = cProfile.Profile()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with GatewayAgent(load_gateway_config(config)):
            await stop.wait()
            profiler.disable()

    asyncio.run(serve())
    profiler.dump_stats(output)


def start_gateway(
    config: Path, log: Path, *, clock_start: str | None = None, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    if profile is None:
        command = [sys.executable, "-m", "streetlight.cli", "gateway", "--config", str(config)]
    elif clock_start is not None:
        raise ValueError("the profiled gateway runs on the real clock; give no clock_start")
    else:
        run = (
            "import sys; from benchmarks.gateway import run_profiled_gateway as r; r(*sys.argv[1:])"
        )
        command = [sys.executable, "-c", run, str(config), str(profile)]
    if clock_start is not None:
        command += ["--clock-start", clock_start]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


class Central:
    """The central side of one gateway: its retained status, and the readings in its uplink
    messages (each message counted once by epoch and seq, as the protocol says)."""

    def __init__(self, broker_port: int, gateway_id: str, target_readings: int = 0) -> None:
        self.broker_port = broker_port
        self.gateway_id = gateway_id
        self.target = target_readings
        self.readings = 0
        self.done_ns = 0
        self.subscribed = asyncio.Event()
        self.online = asyncio.Event()
        self.done = asyncio.Event()
        self._seen: set[tuple[str, int]] = set()

    async def run(self) -> None:
        from domain.protocol import GatewayState, GatewayTopics, decode_status, decode_uplink

        topics = GatewayTopics(UPLINK_PREFIX, self.gateway_id)
        async with aiomqtt.Client(
            "127.0.0.1", self.broker_port, identifier=f"bench-central-{self.gateway_id}"
        ) as client:
            await client.subscribe(topics.uplink, qos=1)
            await client.subscribe(topics.status, qos=1)
            self.subscribed.set()
            async for message in client.messages:
                payload = bytes(message.payload)
                if str(message.topic) == topics.status:
                    status = decode_status(payload, topic_gateway_id=self.gateway_id)
                    if status.state is GatewayState.ONLINE:
                        self.online.set()
                    continue
                batch = decode_uplink(payload, topic_gateway_id=self.gateway_id)
                if (batch.epoch, batch.seq) in self._seen:
                    continue
                self._seen.add((batch.epoch, batch.seq))
                self.readings += len(batch.readings)
                if self.target and self.readings >= self.target and not self.done_ns:
                    self.done_ns = time.monotonic_ns()
                    self.done.set()


@contextlib.asynccontextmanager
async def running_gateway(
    config: Path,
    log: Path,
    central: Central,
    *,
    clock_start: str | None = None,
    profile: Path | None = None,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Start the gateway subprocess and yield once it announced itself online; stop it after."""
    watcher = asyncio.create_task(central.run(), name="central")
    process: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.wait_for(central.subscribed.wait(), 10.0)
        process = start_gateway(config, log, clock_start=clock_start, profile=profile)
        online = asyncio.create_task(central.online.wait())
        deadline = time.monotonic() + 60.0
        while not online.done():
            if process.poll() is not None or time.monotonic() > deadline:
                online.cancel()
                raise RuntimeError(f"the gateway did not come online; log:\n{_tail(log)}")
            await asyncio.sleep(0.05)
        yield process
    finally:
        if process is not None:
            await asyncio.to_thread(stop_process, process)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await watcher


def _tail(log: Path, n_chars: int = 3_000) -> str:
    return log.read_text(errors="replace")[-n_chars:] if log.exists() else ""


# --- the measurements ---------------------------------------------------------------------------


async def _child_result(process: Any, results: Any, timeout_s: float) -> dict[str, Any]:
    """What ``process`` put on ``results``; fails at once if it died without an answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(queue.Empty):
            result: dict[str, Any] = await asyncio.to_thread(results.get, True, 0.1)
            return result
        if not process.is_alive() and results.empty():
            raise RuntimeError(f"{process.name} exited with code {process.exitcode} and no result")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} gave no result within {timeout_s:.0f} s")


@contextlib.contextmanager
def child(context: Any, target: Callable[..., None], *args: Any) -> Iterator[Any]:
    process = context.Process(target=target, args=args, name=target.__name__, daemon=True)
    process.start()
    try:
        yield process
    finally:
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join(5)


async def publish_burst(context: Any, broker_port: int, n_messages: int) -> dict[str, Any]:
    results = context.Queue()
    lifetime_s = 60.0 + n_messages / 1_000
    with child(context, raw_publisher, broker_port, n_messages, results, lifetime_s) as proc:
        burst = await _child_result(proc, results, lifetime_s + 30)
    if burst["acked"] != n_messages:
        raise RuntimeError(f"the broker acknowledged {burst['acked']} of {n_messages} messages")
    return burst


async def bare_subscriber_rate(context: Any, broker: Mosquitto, n_messages: int) -> dict[str, Any]:
    ready, results = context.Event(), context.Queue()
    lifetime_s = 60.0 + n_messages / 1_000
    with child(
        context, bare_subscriber, broker.port, n_messages, ready, results, lifetime_s
    ) as proc:
        if not await asyncio.to_thread(ready.wait, 30.0):
            raise RuntimeError("the bare subscriber did not subscribe")
        broker_cpu_s = broker.cpu_s()
        burst = await publish_burst(context, broker.port, n_messages)
        done = await _child_result(proc, results, lifetime_s + 30)
        broker_cpu_s = broker.cpu_s() - broker_cpu_s
    elapsed_s = (done["done_ns"] - burst["t0_ns"]) / 1e9
    return {
        "count": done["count"],
        "msgs_per_s": done["count"] / elapsed_s,
        "cpu_us_per_msg": 1e6 * done["cpu_s"] / max(done["count"], 1),
        "broker_cpu_frac": broker_cpu_s / elapsed_s,
        "publish_msgs_per_s": n_messages / ((burst["acked_ns"] - burst["t0_ns"]) / 1e9),
    }


async def gateway_sensor_rate(
    context: Any,
    broker: Mosquitto,
    opc_url: str,
    workdir: Path,
    n_messages: int,
    profile: Path | None,
    run: int = 0,
) -> dict[str, Any]:
    gateway_id = f"gw-bench-sensors-{run}"
    config = gateway_toml(
        workdir,
        gateway_id=gateway_id,
        broker_port=broker.port,
        opc_url=opc_url,
        n_lamps=SENSORS,
        uplink_timeout_s=3600.0,  # the central service is "there": central mode throughout
    )
    central = Central(broker.port, gateway_id, target_readings=n_messages)
    log = workdir / f"{gateway_id}.log"
    async with running_gateway(config, log, central, profile=profile) as process:
        await asyncio.sleep(1.0)  # let it finish connecting to its controller
        if profile is not None:
            process.send_signal(signal.SIGUSR1)
        gateway_cpu_s, broker_cpu_s = cpu_s(process.pid), broker.cpu_s()
        burst = await publish_burst(context, broker.port, n_messages)
        # Generous bound: 500 messages/s would be a tenth of the target.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(central.done.wait(), 30.0 + n_messages / 500)
        end_ns = central.done_ns or time.monotonic_ns()
        gateway_cpu_s = cpu_s(process.pid) - gateway_cpu_s
        broker_cpu_s = broker.cpu_s() - broker_cpu_s
    elapsed_s = (end_ns - burst["t0_ns"]) / 1e9
    count = min(central.readings, n_messages)
    return {
        "count": central.readings,
        "complete": central.readings >= n_messages,
        "msgs_per_s": count / elapsed_s,
        "cpu_us_per_msg": 1e6 * gateway_cpu_s / max(count, 1),
        "cpu_frac": gateway_cpu_s / elapsed_s,
        "broker_cpu_frac": broker_cpu_s / elapsed_s,
    }


async def _interleaved_rates(
    writers: dict[str, Callable[[float], Awaitable[None]]], n_values: int, duration_s: float
) -> dict[str, float]:
    """Values per second of each writer, timing one batch of each in turn (the order swapped
    every turn) for ``duration_s`` in all: both see the same machine at nearly the same time,
    which matters on a shared 2-core machine where rates drift by 20 % within seconds."""
    busy_s = dict.fromkeys(writers, 0.0)
    batches = dict.fromkeys(writers, 0)
    for write in writers.values():
        await write(0.1)  # warm-up, not timed
    names = list(writers)
    deadline = time.perf_counter() + duration_s
    turn = 0
    while time.perf_counter() < deadline:
        for name in names if turn % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            await writers[name](0.3 if turn % 2 else 0.7)
            busy_s[name] += time.perf_counter() - start
            batches[name] += 1
        turn += 1
    return {name: batches[name] * n_values / busy_s[name] for name in writers}


async def setpoint_rates(opc_url: str, n_lamps: int, duration_s: float) -> dict[str, float]:
    from gateways.opcua import LampNodes, OpcUaController

    lamps = [lamp_id(k) for k in range(n_lamps)]
    controller = OpcUaController(
        endpoint=opc_url,
        lamps=[
            LampNodes(lamp_id(k), {"setpoint": setpoint_node_id(k)}, {}) for k in range(n_lamps)
        ],
        on_telemetry=lambda *_: None,
    )
    async with Client(opc_url) as client, controller:
        await controller.wait_connected(30.0)
        nodes = [client.get_node(setpoint_node_id(k)) for k in range(n_lamps)]

        async def asyncua_write_values(level_frac: float) -> None:
            values = [ua.DataValue(ua.Variant(level_frac, ua.VariantType.Double)) for _ in nodes]
            await client.write_values(nodes, values)

        async def controller_write(level_frac: float) -> None:
            batch = {
                (lamp, "setpoint"): ua.Variant(level_frac, ua.VariantType.Double) for lamp in lamps
            }
            failures = await controller.write(batch)
            if failures:
                raise RuntimeError(f"setpoint writes failed: {list(failures.items())[:3]}")

        return await _interleaved_rates(
            {"asyncua": asyncua_write_values, "controller": controller_write},
            n_lamps,
            duration_s,
        )


def _latency_figures(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        raise RuntimeError(result["error"])
    samples = result["latency_ns"]  # in the order the events were answered
    tenth = max(len(samples) // 10, 1)
    return {
        "p50_first_tenth_ms": percentile_ms(samples[:tenth], 50) if samples else math.nan,
        "p50_last_tenth_ms": percentile_ms(samples[-tenth:], 50) if samples else math.nan,
        "p50_ms": percentile_ms(samples, 50) if samples else math.nan,
        "p99_ms": percentile_ms(samples, 99) if samples else math.nan,
        "max_ms": max(samples) / 1e6 if samples else math.nan,
        "answered": len(samples),
        "missed": result["missed"],
        "events_per_s": result["events_per_s"],
        "max_publish_late_ms": result["max_publish_late_ms"],
    }


async def relay_latency(
    context: Any, broker_port: int, lamps: LampController, n_events: int
) -> dict[str, Any]:
    ready = context.Event()
    lifetime_s = 60.0 + n_events / EVENT_RATE_PER_S
    with child(context, bare_relay, broker_port, lamps.url, n_events, ready, lifetime_s) as proc:
        if not await asyncio.to_thread(ready.wait, 30.0):
            raise RuntimeError("the bare relay did not start")
        result = await lamps.latency(
            broker_port=broker_port, n_events=n_events, wait_for_base=False, clock_offset_ns=0
        )
        proc.terminate()
    return _latency_figures(result)


async def gateway_latency(
    broker_port: int,
    lamps: LampController,
    workdir: Path,
    schedule: Path,
    *,
    n_lamps: int,
    n_events: int,
) -> dict[str, Any]:
    gateway_id = "gw-bench-latency"
    config = gateway_toml(
        workdir,
        gateway_id=gateway_id,
        broker_port=broker_port,
        opc_url=lamps.url,
        n_lamps=n_lamps,
        uplink_timeout_s=1.0,  # nobody speaks for the central service: on its own after 1 s
        schedule=schedule,
    )
    central = Central(broker_port, gateway_id)
    log = workdir / f"{gateway_id}.log"
    offset_ns = int(np.datetime64(CLOCK_START, "ns").astype(np.int64)) - time.time_ns()
    async with running_gateway(config, log, central, clock_start=CLOCK_START) as process:
        cpu_start_s, start = cpu_s(process.pid), time.perf_counter()
        result = await lamps.latency(
            broker_port=broker_port,
            n_events=n_events,
            wait_for_base=True,
            clock_offset_ns=offset_ns,
        )
        cpu_frac = (cpu_s(process.pid) - cpu_start_s) / (time.perf_counter() - start)
    if "error" in result:
        raise RuntimeError(f"{result['error']}; gateway log:\n{_tail(log)}")
    return {**_latency_figures(result), "cpu_frac": cpu_frac}


def profile_summary(path: Path, n_rows: int = 25) -> str:
    """The gateway's hottest functions by own time, as % of the time it was not idle."""
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    wait = "<method 'poll' of 'select.epoll' objects>"  # the event loop waiting: idle
    idle = sum(row[2] for func, row in table.items() if func[2] == wait)
    total = sum(row[2] for row in table.values())
    busy = max(total - idle, 1e-9)
    rows = sorted(
        ((func, row) for func, row in table.items() if func[2] != wait),
        key=lambda item: item[1][2],
        reverse=True,
    )
    out = io.StringIO()
    out.write(f"gateway busy {busy:.2f} s of {total:.2f} s profiled (epoll wait {idle:.2f} s)\n")
    out.write("  own %  cum %     calls  function\n")

    def write(selected: list[tuple[Any, Any]]) -> None:
        for (file, line, name), (_cc, calls, own_s, cum_s, _callers) in selected:
            where = f"{Path(file).name}:{line}" if line else file
            out.write(
                f"  {100 * own_s / busy:5.1f}  {100 * cum_s / busy:5.1f}  {calls:8d}  "
                f"{name} ({where})\n"
            )

    write(rows[:n_rows])
    ours = tuple(str(ROOT / package) for package in ("gateways", "controller", "domain"))
    mine = [item for item in rows if item[0][0].startswith(ours)]
    out.write("the project's own functions, by cumulative time:\n  own %  cum %     calls\n")
    write(sorted(mine, key=lambda item: item[1][3], reverse=True)[:n_rows])
    return out.getvalue()


async def run(sizes: Sizes, profile: Path | None) -> dict[str, Any]:
    context = mp.get_context("spawn")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp,
        Mosquitto(Path(tmp)) as broker,
    ):
        workdir = Path(tmp)
        lamps = LampController(context, sizes.lamps, lifetime_s=600.0)
        lamps.start()
        try:
            schedule = await asyncio.to_thread(edge_schedule, workdir, sizes.lamps)
            await lamps.ready()
            bare_runs, gateway_runs = [], []
            for pair in range(sizes.sensor_pairs):
                # ABBA order: a linear drift of the machine's speed hits both alike.
                for step in ("bare", "gateway") if pair % 2 == 0 else ("gateway", "bare"):
                    if step == "bare":
                        bare_runs.append(
                            await bare_subscriber_rate(context, broker, sizes.sensor_messages)
                        )
                    else:
                        gateway_runs.append(
                            await gateway_sensor_rate(
                                context,
                                broker,
                                lamps.url,
                                workdir,
                                sizes.sensor_messages,
                                profile if pair == 0 else None,
                                run=pair,
                            )
                        )
            bare, gateway = _mean_runs(bare_runs), _mean_runs(gateway_runs)
            setpoints = await setpoint_rates(lamps.url, SETPOINT_LAMPS, sizes.setpoint_s)
            relay = await relay_latency(context, broker.port, lamps, sizes.latency_events)
            edge = await gateway_latency(
                broker.port,
                lamps,
                workdir,
                schedule,
                n_lamps=sizes.lamps,
                n_events=sizes.latency_events,
            )
        finally:
            lamps.stop()
    out: dict[str, Any] = {
        "quick": sizes is QUICK,
        "profiled": profile is not None,
        "sensor_messages": sizes.sensor_messages,
        "sensor_msgs_per_s": gateway["msgs_per_s"],
        "sensor_readings_complete": gateway["complete"],
        "bare_subscriber_msgs_per_s": bare["msgs_per_s"],
        "sensor_msgs_per_s_runs": gateway["runs"],
        "bare_subscriber_msgs_per_s_runs": bare["runs"],
        "publisher_msgs_per_s": bare["publish_msgs_per_s"],
        "sensor_ratio_vs_bare": gateway["msgs_per_s"] / bare["msgs_per_s"],
        "gateway_cpu_us_per_msg": gateway["cpu_us_per_msg"],
        "gateway_cpu_frac": gateway["cpu_frac"],
        "bare_subscriber_cpu_us_per_msg": bare["cpu_us_per_msg"],
        "broker_cpu_frac_gateway_run": gateway["broker_cpu_frac"],
        "broker_cpu_frac_bare_run": bare["broker_cpu_frac"],
        "setpoint_lamps": SETPOINT_LAMPS,
        "setpoints_per_s": setpoints["controller"],
        "asyncua_write_values_per_s": setpoints["asyncua"],
        "setpoint_ratio_vs_asyncua": setpoints["controller"] / setpoints["asyncua"],
        "latency_events": sizes.latency_events,
        "latency_events_per_s": edge["events_per_s"],
        "event_to_setpoint_p50_ms": edge["p50_ms"],
        "event_to_setpoint_p99_ms": edge["p99_ms"],
        "event_to_setpoint_max_ms": edge["max_ms"],
        "event_to_setpoint_missed": edge["missed"],
        "event_to_setpoint_p50_first_tenth_ms": edge["p50_first_tenth_ms"],
        "event_to_setpoint_p50_last_tenth_ms": edge["p50_last_tenth_ms"],
        "event_gateway_cpu_frac": edge["cpu_frac"],
        "baseline_relay_p50_ms": relay["p50_ms"],
        "baseline_relay_p99_ms": relay["p99_ms"],
        "baseline_relay_missed": relay["missed"],
        "wall_s": time.perf_counter() - started,
    }
    out["targets_met"] = targets_met(out)
    return out


def _mean_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers averaged over repeated runs; ``complete`` only if every run was."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in runs)
        else:
            out[key] = sum(r[key] for r in runs) / len(runs)
    out["runs"] = [r["msgs_per_s"] for r in runs]
    return out


def targets_met(out: dict[str, Any]) -> dict[str, bool]:
    return {
        key: bool(out[key] <= target if key == "event_to_setpoint_p99_ms" else out[key] >= target)
        for key, target in TARGETS.items()
    }


def report(out: dict[str, Any]) -> str:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    met = out["targets_met"]
    sensor_ok, ratio_ok = met["sensor_msgs_per_s"], met["sensor_ratio_vs_bare"]
    setpoint_ok, p99_ok = met["setpoint_ratio_vs_asyncua"], met["event_to_setpoint_p99_ms"]
    lines = [
        f"Gateway benchmark ({'quick' if out['quick'] else 'full'}), {out['wall_s']:.0f} s",
        f"  sensor messages ({out['sensor_messages']:,}, QoS {SENSOR_QOS}, "
        f"broker took them at {out['publisher_msgs_per_s']:,.0f}/s)",
        f"    gateway, end to end (uplink)   : {out['sensor_msgs_per_s']:9,.0f} msg/s   "
        f"target >= 5,000  {mark(sensor_ok)}",
        f"    bare aiomqtt subscriber        : {out['bare_subscriber_msgs_per_s']:9,.0f} msg/s",
        f"    CPU per message, gateway / bare: {out['gateway_cpu_us_per_msg']:6.0f} / "
        f"{out['bare_subscriber_cpu_us_per_msg']:.0f} us  (gateway busy "
        f"{100 * out['gateway_cpu_frac']:.0f} % of a core; broker "
        f"{100 * out['broker_cpu_frac_gateway_run']:.0f} % / "
        f"{100 * out['broker_cpu_frac_bare_run']:.0f} %)",
        f"    gateway / bare                 : {out['sensor_ratio_vs_bare']:9.2f}x        "
        f"target >= 0.8x   {mark(ratio_ok)}",
        f"  setpoints to {out['setpoint_lamps']:,} lamps",
        f"    OpcUaController.write          : {out['setpoints_per_s']:9,.0f} values/s",
        f"    asyncua write_values           : {out['asyncua_write_values_per_s']:9,.0f} values/s",
        f"    controller / asyncua           : {out['setpoint_ratio_vs_asyncua']:9.2f}x        "
        f"target >= 0.9x   {mark(setpoint_ok)}",
        f"  event -> setpoint ({out['latency_events']:,} events at "
        f"{out['latency_events_per_s']:.0f}/s)",
        f"    gateway p50 / p99 / max        : {out['event_to_setpoint_p50_ms']:6.1f} / "
        f"{out['event_to_setpoint_p99_ms']:.1f} / {out['event_to_setpoint_max_ms']:.1f} ms   "
        f"target p99 <= 50 ms  {mark(p99_ok)}  (unanswered {out['event_to_setpoint_missed']})",
        f"    gateway p50, first / last tenth: {out['event_to_setpoint_p50_first_tenth_ms']:6.1f} / "
        f"{out['event_to_setpoint_p50_last_tenth_ms']:.1f} ms   (gateway busy "
        f"{100 * out['event_gateway_cpu_frac']:.0f} % of a core)",
        f"    bare relay p50 / p99           : {out['baseline_relay_p50_ms']:6.1f} / "
        f"{out['baseline_relay_p99_ms']:.1f} ms   (unanswered {out['baseline_relay_missed']})",
    ]
    if len(out["sensor_msgs_per_s_runs"]) > 1:
        lines.insert(
            4,
            "    runs (msg/s), gateway / bare   : "
            + ", ".join(f"{x:,.0f}" for x in out["sensor_msgs_per_s_runs"])
            + " / "
            + ", ".join(f"{x:,.0f}" for x in out["bare_subscriber_msgs_per_s_runs"]),
        )
    if out["profiled"]:
        lines.append("  NOTE: the first gateway ran under cProfile; its sensor figures are slowed")
    if not out["sensor_readings_complete"]:
        lines.append("  WARNING: not every sensor reading reached the central side")
    return "\n".join(lines)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, finishes in < 60 s")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    ap.add_argument(
        "--profile",
        type=Path,
        help="run the sensor-throughput gateway under cProfile, write the stats here and "
        "print its hottest functions (to stderr)",
    )
    args = ap.parse_args(argv)
    quiet_asyncua()
    profile = args.profile.resolve() if args.profile else None
    out = asyncio.run(run(QUICK if args.quick else FULL, profile))
    if args.json:
        print(json.dumps(_rounded(out)))
    else:
        print(report(out))
    if profile is not None and profile.exists():
        print(profile_summary(profile), file=sys.stderr)
    return out


if __name__ == "__main__":
    main()

"""Ingest benchmark: readings per second from gateway uplinks through a real mosquitto into the
embedded historian and the demand windows.

What is measured, against a baseline from the same run, on the same broker and messages:

* **Ingest** (``readings_per_s``). ``N`` readings, encoded by ``domain.protocol.encode_uplink``
  into uplink messages of ``B`` rows from 4 gateways (lamp telemetry from 20,000 lamps, counts
  from 400 sensors, a tenth of them with explicit event ids, presence events), are published
  QoS 1 by a raw-socket publisher in its own process, as fast as the broker takes them. The
  benchmark process runs the real stack: :class:`sensor_ingest.consumer.IngestConsumer`
  (aiomqtt, persistent session) -> :class:`~sensor_ingest.pipeline.IngestPipeline` (decode,
  validate, de-duplicate) -> :class:`~sensor_ingest.historian.EmbeddedHistorian` (a SQLite
  file in a temporary directory, WAL) and :class:`~sensor_ingest.windows.DemandWindows`. The
  rate is ``N`` / (the last reading stored - the first message published), both on the
  machine's monotonic clock. Every reading must be accepted once (checked). Target: >= 50,000.
* **Baseline** (``bare_readings_per_s``): a bare aiomqtt subscriber in its own process counts
  the same messages from the same publisher; its message rate times ``B`` is the rate at which
  the broker relays readings to a Python client that does nothing with them.
* ``pipeline_only_readings_per_s``: the same messages through ``handle_many`` in-process, no
  MQTT, into a fresh historian: what the ingest stage costs without the network.
* ``api_p99_ms``: API latency under 50 concurrent clients from ``benchmarks/api_latency.py``
  when that module exists, else ``null``.

    python -m benchmarks.ingest                  # 1,000,000 readings, two pairs (about 1 min)
    python -m benchmarks.ingest --quick --json   # 200,000 readings, one pair, < 60 s

Everything listens on 127.0.0.1 (free ports); child processes have a lifetime and are stopped
in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import multiprocessing as mp
import os
import pickle
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.gateway import Mosquitto  # noqa: E402  (the same throw-away broker)

PREFIX = "streetlight/v1"
GATEWAYS = 4
LAMPS = 20_000
SENSORS = 400
ZONES = 50
BATCH_READINGS = 500
TARGET_READINGS_PER_S = 50_000.0
S = 1_000_000_000


# --- workload -----------------------------------------------------------------------------------


def make_messages(n_readings: int, batch: int, now_ns: int) -> list[tuple[str, bytes]]:
    """Uplinks of ``batch`` rows from ``GATEWAYS`` gateways: per ten readings, eight lamp
    telemetry values (level, power, energy, status in turn), one count, one presence."""
    from domain.protocol import encode_uplink
    from domain.records import Reading, ReadingKind

    lamp_kinds = (
        ReadingKind.LEVEL_FRAC,
        ReadingKind.POWER_W,
        ReadingKind.ENERGY_WH,
        ReadingKind.STATUS,
    )
    lamp_values = {
        ReadingKind.LEVEL_FRAC: 0.5,
        ReadingKind.POWER_W: 31.5,
        ReadingKind.STATUS: 0.0,
    }
    start_ns = now_ns - 60 * S  # a minute ago: well inside the accepted time window
    messages = []
    seq = [0] * GATEWAYS
    for first in range(0, n_readings, batch):
        readings = []
        for i in range(first, min(first + batch, n_readings)):
            t = start_ns + i * 1_000
            slot = i % 10
            if slot < 8:
                kind = lamp_kinds[(i // 10 * 8 + slot) % 4]
                lamp = f"L-{(i // 40) % LAMPS:05d}"
                value = lamp_values.get(kind, float(i // 40))
                readings.append(Reading(lamp, kind, value, t))
            elif slot == 8:
                sensor = f"CAM-{i % SENSORS:03d}"
                kind = ReadingKind.FOOTFALL_COUNT if i % 2 else ReadingKind.TRAFFIC_COUNT
                explicit = f"{sensor}#{i}" if i % 100 < 10 else ""
                readings.append(Reading(sensor, kind, float(i % 7), t, explicit))
            else:
                readings.append(Reading(f"PIR-{i % SENSORS:03d}", ReadingKind.PRESENCE, 1.0, t))
        g = (first // batch) % GATEWAYS
        seq[g] += 1
        gw = f"gw-{g:02d}"
        payload = encode_uplink(readings, gateway_id=gw, epoch="bench", seq=seq[g], sent_ns=now_ns)
        messages.append((f"{PREFIX}/{gw}/uplink", payload))
    return messages


def zones() -> dict[str, str]:
    out = {f"CAM-{k:03d}": f"street-{k % ZONES:02d}" for k in range(SENSORS)}
    out.update({f"PIR-{k:03d}": f"street-{k % ZONES:02d}" for k in range(SENSORS)})
    return out


# --- the raw publisher (child process) ----------------------------------------------------------


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


def raw_publisher(port: int, messages_file: str, go: Any, results: Any, lifetime_s: float) -> None:
    """Publish every message QoS 1, pipelined on a bare socket (far faster than any consumer
    here), then wait for the PUBACKs. Puts ``{"t0_ns", "acked"}`` (monotonic ns) on
    ``results``."""
    with open(messages_file, "rb") as f:
        messages: list[tuple[str, bytes]] = pickle.load(f)
    packets = []
    for k, (topic, payload) in enumerate(messages):
        body = _utf8(topic) + (k % 65_535 + 1).to_bytes(2, "big") + payload
        packets.append(b"\x32" + _remaining_length(len(body)) + body)
    connect = _utf8("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big")
    connect += _utf8(f"bench-publisher-{os.getpid()}")
    acked = 0
    with socket.create_connection(("127.0.0.1", port), timeout=lifetime_s) as sock:
        sock.sendall(b"\x10" + _remaining_length(len(connect)) + connect)
        if sock.recv(4)[3:4] != b"\x00":
            raise RuntimeError("the broker refused the publisher")

        def read_pubacks() -> None:
            nonlocal acked
            received = 0
            while received < 4 * len(packets):
                data = sock.recv(65_536)
                if not data:
                    break
                received += len(data)
            acked = received // 4

        reader = threading.Thread(target=read_pubacks, daemon=True)
        reader.start()
        go.wait(lifetime_s)
        t0_ns = time.monotonic_ns()
        for packet in packets:
            sock.sendall(packet)
        reader.join(lifetime_s)
        with contextlib.suppress(OSError):
            sock.sendall(b"\xe0\x00")
    results.put({"t0_ns": t0_ns, "acked": acked})


# --- the bare subscriber (child process) --------------------------------------------------------


def bare_subscriber(
    port: int, n_messages: int, ready: Any, results: Any, lifetime_s: float
) -> None:
    asyncio.run(_bare_subscriber(port, n_messages, ready, results, lifetime_s))


async def _bare_subscriber(
    port: int, n_messages: int, ready: Any, results: Any, lifetime_s: float
) -> None:
    count = 0
    with contextlib.suppress(TimeoutError):
        async with (
            asyncio.timeout(lifetime_s),
            aiomqtt.Client("127.0.0.1", port, identifier="bench-bare") as client,
        ):
            await client.subscribe(f"{PREFIX}/+/uplink", qos=1)
            ready.set()
            async for _message in client.messages:
                count += 1
                if count == n_messages:
                    break
    results.put({"done_ns": time.monotonic_ns(), "count": count})


# --- runs ---------------------------------------------------------------------------------------


def run_bare(broker: Mosquitto, messages_file: Path, n_messages: int, lifetime_s: float) -> float:
    """Messages per second a bare aiomqtt subscriber receives."""
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    sub = ctx.Process(
        target=bare_subscriber, args=(broker.port, n_messages, ready, results, lifetime_s)
    )
    pub = ctx.Process(
        target=raw_publisher, args=(broker.port, str(messages_file), go, results, lifetime_s)
    )
    try:
        sub.start()
        if not ready.wait(30):
            raise RuntimeError("the bare subscriber did not subscribe")
        pub.start()
        go.set()
        got = [results.get(timeout=lifetime_s) for _ in range(2)]
    finally:
        for p in (pub, sub):
            p.join(10)
            if p.is_alive():
                p.kill()
    t0_ns = int(next(r["t0_ns"] for r in got if "t0_ns" in r))
    done = next(r for r in got if "done_ns" in r)
    if done["count"] != n_messages:
        raise RuntimeError(f"the bare subscriber got {done['count']} of {n_messages} messages")
    return n_messages / ((int(done["done_ns"]) - t0_ns) / S)


def run_ingest(
    broker: Mosquitto, messages_file: Path, n_readings: int, workdir: Path, lifetime_s: float
) -> dict[str, Any]:
    return asyncio.run(_run_ingest(broker, messages_file, n_readings, workdir, lifetime_s))


async def _run_ingest(
    broker: Mosquitto, messages_file: Path, n_readings: int, workdir: Path, lifetime_s: float
) -> dict[str, Any]:
    from sensor_ingest.consumer import IngestConsumer
    from sensor_ingest.historian import EmbeddedHistorian
    from sensor_ingest.pipeline import IngestPipeline
    from sensor_ingest.windows import DemandWindows

    path = workdir / f"historian-{time.monotonic_ns()}.db"
    presence_events = 0

    def on_presence(events: list[tuple[str, int]]) -> None:
        nonlocal presence_events
        presence_events += len(events)

    historian = EmbeddedHistorian(path)
    windows = DemandWindows(zones(), on_presence=on_presence)
    pipeline = IngestPipeline(historian, windows)
    ctx = mp.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    pub = ctx.Process(
        target=raw_publisher, args=(broker.port, str(messages_file), go, results, lifetime_s)
    )
    try:
        async with IngestConsumer(
            pipeline, port=broker.port, client_id=f"bench-ingest-{os.getpid()}"
        ) as consumer:
            await consumer.wait_connected(10)
            pub.start()
            cpu0 = time.process_time()
            go.set()
            async with asyncio.timeout(lifetime_s):
                while pipeline.counters()["readings_accepted"] < n_readings:
                    await asyncio.sleep(0.002)
            done_ns = time.monotonic_ns()
            cpu_s = time.process_time() - cpu0
        published = await asyncio.to_thread(results.get, True, lifetime_s)
    finally:
        pub.join(10)
        if pub.is_alive():
            pub.kill()
    counters = pipeline.counters()
    stats = historian.stats()
    historian.close()
    problems = {
        k: v
        for k, v in counters.items()
        if v and k.startswith(("rejected_", "malformed_", "readings_duplicate", "callback"))
    }
    stored = stats["hot_rows"] + stats["settled_rows"]
    if problems or stored != n_readings or counters["readings_accepted"] != n_readings:
        raise RuntimeError(f"ingest lost or refused readings: {problems}, stored {stored}")
    return {
        "readings_per_s": n_readings / ((done_ns - published["t0_ns"]) / S),
        "cpu_us_per_reading": cpu_s / n_readings * 1e6,
        "windows_added": windows.added,
        "presence_events": presence_events,
        "batches": consumer.counters.batches,
        "day_tables": stats["day_tables"],
    }


def run_pipeline_only(messages: list[tuple[str, bytes]], n_readings: int, workdir: Path) -> float:
    from sensor_ingest.historian import EmbeddedHistorian
    from sensor_ingest.pipeline import IngestPipeline
    from sensor_ingest.windows import DemandWindows

    historian = EmbeddedHistorian(workdir / "pipeline-only.db")
    pipeline = IngestPipeline(historian, DemandWindows(zones()))
    now = time.time_ns()
    t0 = time.perf_counter()
    for i in range(0, len(messages), 100):
        pipeline.handle_many([(t, p, now) for t, p in messages[i : i + 100]])
    elapsed = time.perf_counter() - t0
    historian.close()
    assert pipeline.counters()["readings_accepted"] == n_readings
    return n_readings / elapsed


def api_latency_p99_ms(quick: bool) -> float | None:
    """``api_p99_ms`` from ``benchmarks.api_latency.measure`` (another engineer's module), or
    ``None`` when that module is not there."""
    try:
        module = importlib.import_module("benchmarks.api_latency")
    except ModuleNotFoundError:
        return None
    result = module.measure(quick=quick)
    return float(result["api_p99_ms"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 readings, one pair")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--readings", type=int, default=None)
    parser.add_argument("--batch", type=int, default=BATCH_READINGS)
    parser.add_argument(
        "--no-api", action="store_true", help="skip benchmarks.api_latency (api_p99_ms: null)"
    )
    args = parser.parse_args(argv)
    n_readings = args.readings or (200_000 if args.quick else 1_000_000)
    pairs = 1 if args.quick else 2
    lifetime_s = 120.0
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    report: dict[str, Any] = {}
    try:
        messages = make_messages(n_readings, args.batch, time.time_ns())
        messages_file = workdir / "messages.pickle"
        messages_file.write_bytes(pickle.dumps(messages))
        ingest_runs: list[dict[str, Any]] = []
        bare_runs: list[float] = []
        with Mosquitto(workdir) as broker:
            for pair in range(pairs):
                # Alternate the order (bare, ingest, ingest, bare) so drift hits both.
                order = ("bare", "ingest") if pair % 2 == 0 else ("ingest", "bare")
                for which in order:
                    if which == "bare":
                        bare_runs.append(
                            run_bare(broker, messages_file, len(messages), lifetime_s) * args.batch
                        )
                    else:
                        # Each run has its own historian, so the same messages are new to it.
                        ingest_runs.append(
                            run_ingest(broker, messages_file, n_readings, workdir, lifetime_s)
                        )
        pipeline_only = run_pipeline_only(messages, n_readings, workdir)
        ingest_s = time.monotonic() - started
        rates = [r["readings_per_s"] for r in ingest_runs]
        readings_per_s = sum(rates) / len(rates)
        bare = sum(bare_runs) / len(bare_runs)
        api_p99 = None if args.no_api else api_latency_p99_ms(args.quick)
        report = {
            "readings": n_readings,
            "batch_readings": args.batch,
            "messages": len(messages),
            "readings_per_s": round(readings_per_s),
            "readings_per_s_runs": [round(r) for r in rates],
            "bare_readings_per_s": round(bare),
            "bare_readings_per_s_runs": [round(r) for r in bare_runs],
            "ratio_vs_bare": round(readings_per_s / bare, 3),
            "pipeline_only_readings_per_s": round(pipeline_only),
            "cpu_us_per_reading": round(
                sum(r["cpu_us_per_reading"] for r in ingest_runs) / len(ingest_runs), 2
            ),
            "target_readings_per_s": TARGET_READINGS_PER_S,
            "target_met": readings_per_s >= TARGET_READINGS_PER_S,
            "api_p99_ms": api_p99,
            "ingest_part_s": round(ingest_s, 1),
            "wall_s": round(time.monotonic() - started, 1),
            "loadavg": os.getloadavg(),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
    return report


if __name__ == "__main__":
    main()

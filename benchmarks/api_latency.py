"""API latency benchmark: live status and overrides under 50 concurrent clients.

What is measured, against a baseline from the same run, on the same server:

* A real uvicorn serving :func:`api.app.create_app` runs in its own process on a free loopback
  port, over a SQLite store seeded with one council, one group of ``LAMPS`` lamps and an API
  key, and an :class:`~sensor_ingest.historian.EmbeddedHistorian` file holding each lamp's
  latest level, power, energy and status.
* 50 clients (``httpx.AsyncClient``, one event loop in this process, one connection each)
  send their requests back to back; each request's latency is the time from sending it to
  having read the whole response (``time.perf_counter``).
* **Baseline**: ``GET /api/v1/health`` (no authentication, no store). Measured:
  **live status**, ``GET /api/v1/live/lamps?limit=50`` at random offsets (authentication, a
  page of lamps from the store, their telemetry from the historian, the overrides in force and
  open alarms), and **override**, ``POST /api/v1/overrides`` for a random lamp (authentication,
  validation, one write transaction with its audit entry). The baseline is measured before and
  after the two, pooled, so drift of the machine hits both.
* Printed: p50 and p99 per call, and each call's p50 and p99 as a ratio to the baseline's.

    python -m benchmarks.api_latency                 # 50 clients x 40 requests per call
    python -m benchmarks.api_latency --quick --json  # 50 clients x 10 requests, one JSON object

Other benchmarks call :func:`measure` (``benchmarks.ingest`` does, for ``api_p99_ms``). The
server process has a lifetime and is terminated in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

CLIENTS = 50
LAMPS = 2000
_SECRET = "benchmark-secret-0123456789abcdefghijklmnopqrstuvwxyz"
_COUNCIL = "bench"


@dataclass(frozen=True)
class CallStats:
    """Latency of one call under concurrent load, milliseconds."""

    call: str
    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_s: float


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(database_url: str, telemetry_path: Path, lamps: int) -> str:
    """One council, one group of lamps with telemetry, an engineer API key (returned)."""
    from api.db import (
        ApiKey,
        Group,
        LampRow,
        Role,
        create_schema,
        make_engine,
        make_session_factory,
    )
    from api.security import Passwords, api_key_hash, new_api_key
    from api.seed import create_council_with_admin
    from domain.records import DimmingCurve, LightingClass, Reading, ReadingKind
    from sensor_ingest.historian import EmbeddedHistorian

    engine = make_engine(database_url)
    create_schema(engine)
    now_ns = time.time_ns()
    key = new_api_key()
    with make_session_factory(engine)() as session:
        create_council_with_admin(
            session,
            _COUNCIL,
            "Benchmark Council",
            "bench-admin",
            "benchmark-password",
            passwords=Passwords(time_cost=1, memory_kib=64),
        )
        group = Group(council_id=_COUNCIL, name="all", description="", created_ns=now_ns)
        session.add(group)
        session.flush()
        session.add_all(
            LampRow(
                council_id=_COUNCIL,
                lamp_id=f"B-{k:05d}",
                lon_deg=-2.59 + 1e-4 * (k % 100),
                lat_deg=51.45 + 1e-4 * (k // 100),
                rated_power_w=35.0,
                lighting_class=LightingClass.P4,
                dimming_curve=DimmingCurve.DALI,
                group_id=group.id,
                gateway_id=f"gw-{k % 4}",
                created_ns=now_ns,
                updated_ns=now_ns,
            )
            for k in range(lamps)
        )
        session.add(
            ApiKey(
                council_id=_COUNCIL,
                name="bench",
                prefix=key[:10],
                key_hash=api_key_hash(key),
                role=Role.ENGINEER,
                created_by="system:benchmark",
                created_ns=now_ns,
            )
        )
        session.commit()
    engine.dispose()
    with EmbeddedHistorian(telemetry_path) as historian:
        readings = []
        for k in range(lamps):
            lamp = f"B-{k:05d}"
            readings += [
                Reading(lamp, ReadingKind.LEVEL_FRAC, 0.5, now_ns),
                Reading(lamp, ReadingKind.POWER_W, 18.0, now_ns),
                Reading(lamp, ReadingKind.ENERGY_WH, 1000.0 + k, now_ns),
                Reading(lamp, ReadingKind.STATUS, 0.0, now_ns),
            ]
        historian.write(readings)
        historian.compact()
    return key


def _serve(database_url: str, telemetry_path: str, port: int, lifetime_s: float) -> None:
    """The server process: uvicorn on 127.0.0.1:``port`` for at most ``lifetime_s``."""
    import threading

    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from sensor_ingest.historian import EmbeddedHistorian

    historian = EmbeddedHistorian(telemetry_path)
    settings = ApiSettings(environment="test", secret_key=_SECRET, database_url=database_url)
    app = create_app(settings, telemetry=historian)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    # A lifetime, so the process ends even if the parent dies without stopping it.
    threading.Timer(lifetime_s, lambda: setattr(server, "should_exit", True)).start()
    server.run()
    historian.close()


async def _wait_ready(url: str, process: mp.process.BaseProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < deadline:
            if not process.is_alive():
                raise RuntimeError(f"the API server exited with code {process.exitcode}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/api/v1/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"the API server did not answer at {url} within {timeout_s} s")


async def _load(
    url: str, call: str, headers: dict[str, str], clients: int, per_client: int, lamps: int
) -> CallStats:
    """``clients`` concurrent clients each sending ``per_client`` requests of one call."""
    latencies_s: list[float] = []
    rng = random.Random(f"{call}-{clients}-{per_client}")

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in range(per_client):
            if call == "health":
                request = client.build_request("GET", "/api/v1/health")
            elif call == "live_status":
                offset = rng.randrange(0, max(1, lamps - 50))
                request = client.build_request(
                    "GET", "/api/v1/live/lamps", params={"limit": 50, "offset": offset}
                )
            else:
                lamp = f"B-{rng.randrange(lamps):05d}"
                body = {"lamp_id": lamp, "level_frac": 0.7, "duration_s": 600.0}
                request = client.build_request("POST", "/api/v1/overrides", json=body)
            t0 = time.perf_counter()
            response = await client.send(request)
            await response.aread()
            latencies_s.append(time.perf_counter() - t0)
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{call}: {response.status_code} {response.text[:300]}")

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60.0)
            )
            for _ in range(clients)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for client in pool))
        wall_s = time.perf_counter() - started
    ms = np.asarray(latencies_s) * 1000.0
    return CallStats(
        call=call,
        requests=len(ms),
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        requests_per_s=len(ms) / wall_s,
    )


def _pooled(a: CallStats, b: CallStats, latencies: tuple[float, float]) -> CallStats:
    return CallStats(
        call=a.call,
        requests=a.requests + b.requests,
        p50_ms=latencies[0],
        p99_ms=latencies[1],
        mean_ms=(a.mean_ms * a.requests + b.mean_ms * b.requests) / (a.requests + b.requests),
        requests_per_s=(a.requests_per_s + b.requests_per_s) / 2,
    )


async def _measure_async(
    url: str, key: str, clients: int, per_client: int, lamps: int
) -> dict[str, Any]:
    headers = {"X-API-Key": key}
    # Warm up every path (imports, caches, connection set-up) outside the measurement.
    for call in ("health", "live_status", "override"):
        await _load(url, call, headers, min(clients, 10), 2, lamps)
    before = await _load(url, "health", headers, clients, per_client // 2 or 1, lamps)
    live = await _load(url, "live_status", headers, clients, per_client, lamps)
    override = await _load(url, "override", headers, clients, per_client, lamps)
    after = await _load(url, "health", headers, clients, per_client - per_client // 2 or 1, lamps)
    # Pool the baseline's two halves by their percentiles weighted by size (both halves are
    # large samples of the same distribution when the machine is steady).
    weight = before.requests / (before.requests + after.requests)
    health = _pooled(
        before,
        after,
        (
            weight * before.p50_ms + (1 - weight) * after.p50_ms,
            weight * before.p99_ms + (1 - weight) * after.p99_ms,
        ),
    )
    return {
        "clients": clients,
        "requests_per_client": per_client,
        "lamps": lamps,
        "health": asdict(health),
        "live_status": asdict(live),
        "override": asdict(override),
        "live_p50_ratio": live.p50_ms / health.p50_ms,
        "live_p99_ratio": live.p99_ms / health.p99_ms,
        "override_p50_ratio": override.p50_ms / health.p50_ms,
        "override_p99_ratio": override.p99_ms / health.p99_ms,
        "health_before_after_p50_ms": [before.p50_ms, after.p50_ms],
        # The worse of the two API calls, for benchmarks that quote one figure.
        "api_p99_ms": max(live.p99_ms, override.p99_ms),
    }


def measure(
    *,
    quick: bool = False,
    clients: int = CLIENTS,
    requests_per_client: int | None = None,
    lamps: int = LAMPS,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return its figures as a dict.

    ``api_p99_ms`` is the worse p99 of live status and override; every figure is in
    milliseconds, ratios are to the health endpoint's figure of the same run.
    """
    per_client = requests_per_client or (10 if quick else 40)
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    process: mp.process.BaseProcess | None = None
    try:
        database_url = f"sqlite:///{workdir / 'api.db'}"
        telemetry = workdir / "telemetry.db"
        key = _seed(database_url, telemetry, lamps)
        port = _free_port()
        process = mp.get_context("spawn").Process(
            target=_serve,
            args=(database_url, str(telemetry), port, 600.0),
            name="api-latency-server",
            daemon=True,
        )
        process.start()
        url = f"http://127.0.0.1:{port}"

        async def run() -> dict[str, Any]:
            assert process is not None
            await _wait_ready(url, process)
            return await _measure_async(url, key, clients, per_client, lamps)

        result = asyncio.run(run())
        result["load_average"] = list(os.getloadavg())
        return result
    finally:
        if process is not None and process.is_alive():
            process.terminate()
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        shutil.rmtree(workdir, ignore_errors=True)


def _print(result: dict[str, Any]) -> None:
    print(
        f"API latency, {result['clients']} concurrent clients x "
        f"{result['requests_per_client']} requests per call, {result['lamps']} lamps "
        f"(load average {result['load_average'][0]:.2f})"
    )
    print(
        f"{'call':<14}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'p50 x':>8}{'p99 x':>8}"
    )
    health = result["health"]
    for name in ("health", "live_status", "override"):
        row = result[name]
        print(
            f"{name:<14}{row['requests']:>9}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['requests_per_s']:>9.0f}{row['p50_ms'] / health['p50_ms']:>8.2f}"
            f"{row['p99_ms'] / health['p99_ms']:>8.2f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 requests per client and call")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--requests", type=int, default=None, help="requests per client and call")
    parser.add_argument("--lamps", type=int, default=LAMPS)
    args = parser.parse_args(argv)
    result = measure(
        quick=args.quick, clients=args.clients, requests_per_client=args.requests, lamps=args.lamps
    )
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return result


if __name__ == "__main__":
    main()

"""Fixtures that start real time-series servers (Debian's ``victoria-metrics`` and ``influxdb``
1.6) on free loopback ports with temporary data directories, and stop them afterwards.

Import the fixtures into a test module: ``from tests.integration.historian_servers import
influxdb, victoria_metrics``. A server whose binary is missing skips its tests with a message
that says how to install it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import free_port, wait_for_port

VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


@dataclass
class HttpServer:
    """A server process on 127.0.0.1:``port``; ``start``/``stop`` may be called again."""

    name: str
    argv: list[str]
    port: int
    log: Path
    health_path: str
    process: subprocess.Popen[bytes] | None = None
    auth: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, timeout_s=30, process=self.process)
            deadline = time.monotonic() + 30
            while True:  # listening is not yet serving: wait for the health endpoint
                try:
                    with urllib.request.urlopen(self.url + self.health_path, timeout=1):
                        break
                except (urllib.error.URLError, ConnectionError):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.name} never became healthy") from None
                    time.sleep(0.05)
        except (RuntimeError, TimeoutError) as err:
            self.stop()
            raise RuntimeError(f"{err}; {self.name} log:\n{self.log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``path`` and decode the JSON answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self._request(path + query), timeout=10) as answer:
            return json.loads(answer.read() or b"null")

    def post(self, path: str, params: dict[str, str]) -> bytes:
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(self._request(path, data), timeout=10) as answer:
            return bytes(answer.read())

    def _request(self, path: str, data: bytes | None = None) -> urllib.request.Request:
        request = urllib.request.Request(self.url + path, data=data)
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return request


def make_victoria_metrics(tmp: Path, port: int | None = None) -> HttpServer:
    """A VictoriaMetrics server (not started). ``-search.latencyOffset=0s`` makes points
    visible to queries at once."""
    if not Path(VICTORIA_METRICS).exists():
        pytest.skip(
            "victoria-metrics is not installed (/usr/bin/victoria-metrics): run `make setup` "
            "(it installs the Debian package)"
        )
    port = port or free_port()
    data = tmp / "vm-data"
    data.mkdir(exist_ok=True)
    return HttpServer(
        "victoria-metrics",
        [
            VICTORIA_METRICS,
            f"-storageDataPath={data}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=WARN",
        ],
        port,
        tmp / "victoria-metrics.log",
        "/health",
    )


def vm_export(server: HttpServer, match: str) -> list[dict[str, Any]]:
    """Every raw sample of the series matching ``match``, after flushing VictoriaMetrics'
    in-memory buffers (one JSON object per series: metric, values, timestamps in ms)."""
    urllib.request.urlopen(server.url + "/internal/force_flush", timeout=10).close()
    # The default end of an export is "now" rounded down: ask up to a day ahead instead, so
    # points written a moment ago are all there.
    query = urllib.parse.urlencode(
        {"match[]": match, "start": "0", "end": f"{time.time() + 86_400:.3f}"}
    )
    with urllib.request.urlopen(f"{server.url}/api/v1/export?{query}", timeout=10) as answer:
        text = answer.read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_influxdb(tmp: Path, *, auth: bool = False) -> HttpServer:
    """An InfluxDB 1.x server (not started) with its own meta/data/wal directories and both
    its ports (HTTP, and the RPC port it always opens) on free loopback ports."""
    if not Path(INFLUXD).exists():
        pytest.skip(
            "influxd is not installed (/usr/bin/influxd): run `make setup` (it installs the "
            "Debian package influxdb)"
        )
    http_port, rpc_port = free_port(), free_port()
    root = tmp / "influxdb"
    config = tmp / "influxdb.conf"
    config.write_text(
        "\n".join(
            [
                "reporting-disabled = true",
                f'bind-address = "127.0.0.1:{rpc_port}"',
                "[meta]",
                f'  dir = "{root}/meta"',
                "[data]",
                f'  dir = "{root}/data"',
                f'  wal-dir = "{root}/wal"',
                "  query-log-enabled = false",
                "[monitor]",
                "  store-enabled = false",
                "[continuous_queries]",
                "  enabled = false",
                "[http]",
                f'  bind-address = "127.0.0.1:{http_port}"',
                f"  auth-enabled = {'true' if auth else 'false'}",
                "  log-enabled = false",
                "",
            ]
        )
    )
    return HttpServer(
        "influxdb",
        [INFLUXD, "run", "-config", str(config)],
        http_port,
        tmp / "influxd.log",
        "/ping",
    )


def influx_query(server: HttpServer, q: str, db: str = "") -> Any:
    """Run InfluxQL; the first statement's series (``[]`` when none)."""
    params = {"q": q, "epoch": "ns"}
    if db:
        params["db"] = db
    answer = json.loads(server.post("/query", params))
    result = answer["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxQL error: {result['error']}")
    return result.get("series", [])


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[HttpServer]:
    """A real VictoriaMetrics (single node) for one test."""
    server = make_victoria_metrics(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[HttpServer]:
    """A real InfluxDB 1.6 without authentication, with database ``streetlight``."""
    server = make_influxdb(tmp_path)
    server.start()
    try:
        influx_query(server, "CREATE DATABASE streetlight")
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxdb_auth(tmp_path: Path) -> Iterator[HttpServer]:
    """A real InfluxDB 1.6 with authentication: admin ``admin`` / ``s3cret-db`` (created while
    the server has no users, which InfluxDB allows), database ``streetlight``."""
    server = make_influxdb(tmp_path, auth=True)
    server.start()
    try:
        influx_query(server, "CREATE USER admin WITH PASSWORD 's3cret-db' WITH ALL PRIVILEGES")
        server.auth = ("admin", "s3cret-db")
        influx_query(server, "CREATE DATABASE streetlight")
        yield server
    finally:
        server.stop()

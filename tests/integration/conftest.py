"""Fixtures that start real servers on free loopback ports and stop them afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout_s: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the server exited with code {process.returncode} before listening on {port}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Broker:
    """A real mosquitto on 127.0.0.1:``port``; ``restart`` stops it and starts it again."""

    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    username: str | None = None
    password: str | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, process=self.process)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"{err}; mosquitto log:\n{self.log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _mosquitto(
    tmp: Path,
    *,
    password: tuple[str, str] | None = None,
    persistent: bool = False,
    tls: dict[str, Path] | None = None,
) -> Broker:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: run `make setup` (it installs the Debian package)")
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "max_queued_messages 100000"]
    if tls is not None:
        lines += [
            f"cafile {tls['ca']}",
            f"certfile {tls['server']}",
            f"keyfile {tls['server_key']}",
        ]
    if persistent:
        # Sessions and queued QoS 1 messages survive a broker restart (saved on a clean stop).
        lines += ["persistence true", f"persistence_location {tmp}/", "autosave_interval 1"]
    else:
        lines.append("persistence false")
    if os.geteuid() == 0:
        # As root, mosquitto drops to the 'mosquitto' user, which cannot read pytest's 0700 dirs.
        lines.append("user root")
    if password is None:
        lines.append("allow_anonymous true")
    else:
        pwfile = tmp / "passwd"
        pwfile.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(pwfile), *password], check=True)
        lines += ["allow_anonymous false", f"password_file {pwfile}"]
    config = tmp / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    broker = Broker(port, config, tmp / "mosquitto.log")
    if password is not None:
        broker.username, broker.password = password
    broker.start()
    return broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real, anonymous mosquitto broker for one test."""
    broker = _mosquitto(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_auth(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto that refuses anonymous clients; user ``gw-1``, password ``s3cret-gw``."""
    broker = _mosquitto(tmp_path, password=("gw-1", "s3cret-gw"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_persistent(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto that keeps persistent sessions across its own restarts."""
    broker = _mosquitto(tmp_path, persistent=True)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[tuple[Broker, dict[str, Path]]]:
    """A real mosquitto that speaks only TLS, with a throw-away CA; yields (broker, cert paths)."""
    from tests.integration.tls_certs import make_ca_and_server

    certs = make_ca_and_server(tmp_path)
    broker = _mosquitto(tmp_path, password=("gw-1", "s3cret-gw"), tls=certs)
    try:
        yield broker, certs
    finally:
        broker.stop()


async def until(condition: Callable[[], object], timeout_s: float, what: str = "condition") -> None:
    """Wait until ``condition()`` (a value, or an awaitable of one) is truthy; polls every 50 ms
    and fails with ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout_s} s")
        await asyncio.sleep(0.05)

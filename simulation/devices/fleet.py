"""A fleet of virtual devices from one ``devices.toml``: the controllers, then the sensors.

:class:`DeviceFleet` starts every controller of the file (each its own OPC-UA server) and the
sensor groups (one MQTT connection), and stops them in reverse order. Its :meth:`manifest`
lists what a gateway needs to talk to them: endpoints, security, server certificates and each
lamp's node ids. :func:`run_devices` is what ``streetlight devices --config devices.toml`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from simulation.devices.config import DEVICES_SCHEMA_VERSION, DevicesConfig, Security, load_devices
from simulation.devices.mqtt_sensors import MqttSensors, SimClock
from simulation.devices.opcua_lamps import VirtualController

Clock = Callable[[], float]


class DeviceFleet:
    """Every controller and sensor of ``config``, as one async context manager.

    ``cert_dir`` overrides the file's ``cert_dir``; when neither is set and a controller needs
    certificates, they go into a temporary folder removed at exit. ``cache_dir`` holds the
    asyncua address space shelf (default ``~/.cache/streetlight``). ``clock`` (monotonic
    seconds) drives the fades, ``sim_clock`` the sensors (default: from ``[clock]``).
    """

    def __init__(
        self,
        config: DevicesConfig,
        *,
        cert_dir: Path | None = None,
        cache_dir: Path | None = None,
        clock: Clock = time.monotonic,
        sim_clock: SimClock | None = None,
    ) -> None:
        self.config = config
        self._cert_dir = cert_dir or (config.path(config.cert_dir) if config.cert_dir else None)
        self._cache_dir = cache_dir
        self._clock = clock
        self._sim_clock = sim_clock
        self._controllers: dict[str, VirtualController] = {}
        self.sensors: MqttSensors | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        config = self.config
        cert_dir = self._cert_dir
        if cert_dir is None and any(c.security is not Security.NONE for c in config.controllers):
            cert_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sl-certs-")))
        for c in config.controllers:
            trusted = config.path(c.trusted_clients_dir) if c.trusted_clients_dir else None
            controller = VirtualController(
                c,
                scheme=config.scheme_of(c),
                cert_dir=cert_dir,
                trusted_clients_dir=trusted,
                cache_dir=self._cache_dir,
                clock=self._clock,
                wall_ns=self._sim_clock.now_ns if self._sim_clock is not None else time.time_ns,
            )
            self._controllers[c.name] = await stack.enter_async_context(controller)
        if config.sensors:
            assert config.broker is not None  # the config guarantees it
            sim_clock = self._sim_clock or SimClock.from_config(config.clock)
            sensors = MqttSensors(
                config.sensors,
                broker=config.broker,
                clock=sim_clock,
                tz=config.clock.tz,
                seed=config.clock.seed,
                base_dir=Path(config.base_dir) if config.base_dir else None,
            )
            self.sensors = await stack.enter_async_context(sensors)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    @property
    def controllers(self) -> Mapping[str, VirtualController]:
        return dict(self._controllers)

    def controller(self, name: str) -> VirtualController:
        try:
            return self._controllers[name]
        except KeyError:
            raise KeyError(
                f"no controller {name!r}; the fleet has {sorted(self._controllers)}"
            ) from None

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: c.endpoint for name, c in self._controllers.items()}

    def manifest(self) -> dict[str, Any]:
        """What a gateway needs, as JSON-ready data (endpoints, certificates, node ids)."""
        controllers = []
        for c in self._controllers.values():
            controllers.append(
                {
                    "name": c.name,
                    "endpoint": c.endpoint,
                    "security": str(c.config.security),
                    "server_certificate": str(c.certificate_path) if c.certificate_path else None,
                    "application_uri": c.application_uri,
                    "scheme": c.scheme.name,
                    "namespace_uri": c.scheme.namespace_uri,
                    "namespace_index": c.namespace_index,
                    "lamps": c.node_ids,
                }
            )
        sensors = self.sensors
        return {
            "schema_version": DEVICES_SCHEMA_VERSION,
            "controllers": controllers,
            "sensors": {
                "broker": f"{self.config.broker.host}:{self.config.broker.port}"
                if self.config.broker
                else None,
                "topics": {sid: sensors.topic_of(sid) for sid in sensors.sensor_ids}
                if sensors
                else {},
            },
        }

    def describe(self) -> list[str]:
        """One line per controller and sensor group, for people."""
        lines = []
        for c in self._controllers.values():
            first = c.lamp_ids[0]
            lines.append(
                f"controller {c.name}: {c.endpoint} ({c.config.security}, {len(c.lamp_ids)} lamps, "
                f"scheme {c.scheme.name}; e.g. {c.node_ids[first]['setpoint']})"
            )
        if self.sensors is not None and self.config.broker is not None:
            b = self.config.broker
            for group in self.sensors.groups:
                lines.append(
                    f"sensors {group.kind} x{group.count} -> mqtt://{b.host}:{b.port}/"
                    f"{group.topic} (speed-up x{self.sensors.clock.speedup:g})"
                )
        return lines


async def run_devices(
    config_path: str | Path,
    *,
    manifest_path: str | Path | None = None,
    out: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Start the fleet of ``config_path``, print its endpoints, run until ``stop`` or cancelled.

    ``manifest_path`` receives :meth:`DeviceFleet.manifest` as JSON once everything is up.
    Raises :class:`~simulation.devices.config.DeviceConfigError` for a bad file and
    :class:`~simulation.devices.config.DeviceError` subclasses when a device cannot start.
    """
    config = load_devices(config_path)
    started = time.perf_counter()
    async with DeviceFleet(config) as fleet:
        for line in fleet.describe():
            out(line)
        out(f"devices up in {time.perf_counter() - started:.2f} s; Ctrl-C stops them")
        if manifest_path is not None:
            Path(manifest_path).write_text(json.dumps(fleet.manifest(), indent=2) + "\n")
            out(f"manifest written to {manifest_path}")
        await (stop or asyncio.Event()).wait()

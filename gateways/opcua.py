"""OPC-UA lamp controllers: telemetry subscriptions, batched setpoint writes, reconnection.

Theory of operation
-------------------
One :class:`OpcUaController` per controller endpoint. A supervisor task owns the connection:
connect (with the configured security), resolve the configured node ids, create one
subscription for every telemetry node, then probe the server every ``probe_interval_s``. On
any failure (the server restarted, the network dropped, a probe timed out) it discards the
client, waits with a capped exponential backoff and starts again from scratch, so the
subscription is re-created on every reconnect: existing gateways are known to keep a dead
subscription and fall silent here. Telemetry values arrive through ``on_telemetry`` with the
lamp id and point key they were configured under; the mapping from raw values to domain units
is the point map's job (pure code), not this module's.

Setpoints are written in batches with one ``write_values`` call per batch (several thousand
values per second where single writes manage about a thousand). A write while disconnected
raises :class:`ControllerUnavailable`; the caller keeps the desired state and writes again
after the reconnect (``on_connected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaError

from domain.errors import StreetlightError

_log = logging.getLogger(__name__)

TelemetryCallback = Callable[[str, str, Any, int], None]
"""``(lamp_id, point_key, raw_value, source_time_ns)``."""


class ControllerUnavailable(StreetlightError):
    """The controller is not connected; the write did not happen."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"OPC-UA controller {endpoint} is not connected")


@dataclass(frozen=True, slots=True)
class LampNodes:
    """Addresses of one lamp's points by key: node ids, or browse paths from the root."""

    lamp_id: str
    writable: Mapping[str, str]
    telemetry: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Security:
    """``policy`` None or Basic256Sha256; ``mode`` Sign or SignAndEncrypt (PEM/DER files)."""

    policy: str = "None"
    mode: str = "None"
    certificate: str = ""
    private_key: str = ""
    server_certificate: str = ""
    username: str = ""
    password: str = ""
    #: Must match the URI in the gateway's certificate (servers check it).
    application_uri: str = "urn:streetlight:gateway"

    def __post_init__(self) -> None:
        if self.policy not in ("None", "Basic256Sha256"):
            raise ValueError(f"security policy must be None or Basic256Sha256, got {self.policy!r}")
        if self.mode not in ("None", "Sign", "SignAndEncrypt"):
            raise ValueError(
                f"security mode must be None, Sign or SignAndEncrypt, got {self.mode!r}"
            )
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                "security policy and mode go together: both None, or Basic256Sha256 with Sign/SignAndEncrypt"
            )
        if self.policy != "None" and not (self.certificate and self.private_key):
            raise ValueError("Basic256Sha256 needs certificate and private_key files")

    def string(self) -> str | None:
        """asyncua's ``set_security_string`` form, or None for no security."""
        if self.policy == "None":
            return None
        parts = [self.policy, self.mode, self.certificate, self.private_key]
        if self.server_certificate:
            parts.append(self.server_certificate)
        return ",".join(parts)


@dataclass
class ControllerCounters:
    connects: int = 0
    disconnects: int = 0
    telemetry_values: int = 0
    values_written: int = 0
    write_errors: int = 0
    last_error: str = ""
    connected_since_ns: int = 0


class _Handler:
    """Subscription callbacks: hands data changes to the controller (asyncua calls these)."""

    def __init__(
        self,
        by_node: dict[str, tuple[str, str]],
        sink: TelemetryCallback,
        counters: ControllerCounters,
    ) -> None:
        self._by_node = by_node
        self._sink = sink
        self._counters = counters

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        key = self._by_node.get(node.nodeid.to_string())
        if key is None:
            return
        stamp = getattr(getattr(data, "monitored_item", None), "Value", None)
        source = getattr(stamp, "SourceTimestamp", None)
        time_ns = int(source.timestamp() * 1e9) if source is not None else time.time_ns()
        self._counters.telemetry_values += 1
        self._sink(key[0], key[1], val, time_ns)

    def status_change_notification(self, status: Any) -> None:
        _log.info("subscription status changed: %s", status)


@dataclass
class OpcUaController:
    """An async context manager keeping one controller connected and subscribed."""

    endpoint: str
    lamps: Sequence[LampNodes]
    on_telemetry: TelemetryCallback
    security: Security = field(default_factory=Security)
    on_connected: Callable[[], Awaitable[None]] | None = None
    publishing_interval_ms: float = 100.0
    probe_interval_s: float = 1.0
    request_timeout_s: float = 2.0
    backoff_s: tuple[float, float] = (0.25, 2.0)
    counters: ControllerCounters = field(default_factory=ControllerCounters)

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("opc.tcp://"):
            raise ValueError(f"endpoint must be an opc.tcp:// URL, got {self.endpoint!r}")
        if not 0 < self.backoff_s[0] <= self.backoff_s[1]:
            raise ValueError("backoff_s must be (first, cap) with 0 < first <= cap")
        ids = [lamp.lamp_id for lamp in self.lamps]
        if len(set(ids)) != len(ids):
            raise ValueError("lamp ids must be unique per controller")
        self._client: Client | None = None
        self._writable: dict[tuple[str, str], Node] = {}
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def __aenter__(self) -> OpcUaController:
        self._task = asyncio.create_task(
            self._supervise(), name=f"opcua-supervisor {self.endpoint}"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    # --- the supervisor ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.backoff_s[0]
        while not self._stopping:
            try:
                await self._connect()
                delay = self.backoff_s[0]
                if self.on_connected is not None:
                    await self.on_connected()
                while True:
                    await asyncio.sleep(self.probe_interval_s)
                    assert self._client is not None
                    # A read of the server's state proves the session and channel are alive.
                    await asyncio.wait_for(
                        self._client.nodes.server_state.read_value(), self.request_timeout_s
                    )
            except asyncio.CancelledError:
                raise
            except Exception as err:  # any failure means: start again from a fresh client
                self.counters.last_error = f"{type(err).__name__}: {err}"
                if self._connected.is_set():
                    self.counters.disconnects += 1
                    _log.warning("lost OPC-UA controller %s: %s", self.endpoint, err)
                await self._drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])

    async def _connect(self) -> None:
        client = Client(self.endpoint, timeout=self.request_timeout_s)
        client.application_uri = self.security.application_uri
        security = self.security.string()
        if security is not None:
            await client.set_security_string(security)
        if self.security.username:
            client.set_user(self.security.username)
            client.set_password(self.security.password)
        self._client = client
        await client.connect()
        by_node: dict[str, tuple[str, str]] = {}
        telemetry_nodes = []
        writable: dict[tuple[str, str], Node] = {}
        for lamp in self.lamps:
            for key, address in lamp.telemetry.items():
                node = await self._node(client, address)
                by_node[node.nodeid.to_string()] = (lamp.lamp_id, key)
                telemetry_nodes.append(node)
            for key, address in lamp.writable.items():
                writable[(lamp.lamp_id, key)] = await self._node(client, address)
        if telemetry_nodes:
            handler = _Handler(by_node, self.on_telemetry, self.counters)
            subscription = await client.create_subscription(self.publishing_interval_ms, handler)
            # One call for all nodes; a node id missing on the server fails here, loudly.
            results = await subscription.subscribe_data_change(telemetry_nodes)
            bad = [
                str(n.nodeid.to_string())
                for n, r in zip(telemetry_nodes, results, strict=True)
                if not isinstance(r, int)
            ]
            if bad:
                raise ValueError(
                    f"controller {self.endpoint} has no nodes {bad[:5]} (check the point map)"
                )
        self._writable = writable
        self.counters.connects += 1
        self.counters.connected_since_ns = time.time_ns()
        self._connected.set()
        _log.info("connected to OPC-UA controller %s (%d lamps)", self.endpoint, len(self.lamps))

    @staticmethod
    async def _node(client: Client, address: str) -> Node:
        """A node by node id (``ns=2;s=...``, ``i=85``) or by browse path from the root
        (``0:Objects/2:Cabinet/2:Lamp1/2:Level``), resolved on the server at each connect."""
        if address.startswith(("ns=", "i=", "s=", "g=", "b=")):
            return client.get_node(address)
        try:
            return await client.nodes.root.get_child(address.split("/"))
        except UaError as err:
            raise ValueError(
                f"browse path {address!r} does not exist on the server (check the point map)"
            ) from err

    async def _drop(self) -> None:
        self._connected.clear()
        client, self._client = self._client, None
        self._writable = {}
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), self.request_timeout_s)
            except Exception:  # the connection is already gone; nothing to tidy
                _log.debug("disconnect from %s failed", self.endpoint, exc_info=True)

    # --- writes -------------------------------------------------------------------------------

    async def write(
        self, values: Mapping[tuple[str, str], ua.Variant]
    ) -> dict[tuple[str, str], str]:
        """Write ``{(lamp_id, key): variant}`` in one batch; returns failures by (lamp, key).

        Raises :class:`ControllerUnavailable` when disconnected (nothing was written).
        """
        client = self._client
        if client is None or not self._connected.is_set():
            raise ControllerUnavailable(self.endpoint)
        failures: dict[tuple[str, str], str] = {}
        nodes, data = [], []
        for target, variant in values.items():
            node = self._writable.get(target)
            if node is None:
                failures[target] = f"no writable point {target[1]!r} for lamp {target[0]!r}"
                continue
            nodes.append(node)
            data.append(ua.DataValue(variant))
        if not nodes:
            return failures
        try:
            results = await asyncio.wait_for(
                client.write_values(nodes, data, raise_on_partial_error=False),
                self.request_timeout_s,
            )
        except (OSError, TimeoutError, UaError) as err:
            self.counters.write_errors += len(nodes)
            raise ControllerUnavailable(self.endpoint) from err
        targets = [t for t in values if t not in failures]
        for target, status in zip(targets, results, strict=True):
            if not status.is_good():
                failures[target] = status.name
        self.counters.values_written += len(nodes) - sum(1 for t in targets if t in failures)
        self.counters.write_errors += sum(1 for t in targets if t in failures)
        return failures

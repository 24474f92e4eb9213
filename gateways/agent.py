"""The edge gateway agent: the one place that wires connectors, codecs, queue and autonomy.

Theory of operation
-------------------
Southbound, one :class:`~gateways.opcua.OpcUaController` per configured controller keeps a
subscription to every lamp's telemetry and takes batched setpoint writes; MQTT sensors arrive
on the gateway's :class:`~gateways.mqtt.MqttLink`. Every reading (telemetry, sensor events) is
appended to a buffer that is sealed into an uplink message at least every
``uplink.batch_interval_s`` or at ``uplink.batch_max_readings`` and stored in the on-disk
:class:`~gateways.queue.DiskQueue` *before* anything is sent. A pump sends stored messages
oldest first (QoS 1, up to :data:`UPLINK_WINDOW` awaiting their PUBACK at once) and deletes each
only after the broker's PUBACK, so readings survive broker outages and agent crashes; message
ids are stable across retries, so the central side keeps each reading once.

Northbound commands (downlink) are applied by writing setpoints (and ramp times) to the
controllers, then acknowledged (applied / partial / rejected); a repeated command is re-acked
from a cache, never applied twice, and an older command never overrides a newer one. Any
downlink message or central heartbeat counts as hearing from the central service; after
``autonomy.uplink_timeout_s`` of silence :class:`~gateways.autonomy.LocalAutonomy` drives the
lamps from the stored edge schedule with the shared kernel (presence handled at once), or at
the fail-safe level when no schedule covers now. Malformed messages are counted and their
reasons kept (the last few), never raised.

*The sensor path is the hot one* (thousands of messages a second). The link hands each message
over synchronously (see :mod:`gateways.mqtt`); its topic is matched to a route once (remembered
per topic), each sensor spec is prepared once as a :class:`~gateways.codecs.SensorDecoder`, and
readings go straight into the uplink buffer. Only work that must wait returns an awaitable:
downlink commands (applied in arrival order by the link), and local light on demand, which
presence detections request by setting one event that a control task answers, one pass for
all the detections seen since its last pass.

Time comes from ``clock`` (UTC epoch ns) so tests can reason about it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from asyncua import ua

from controller.edge_schedule import EdgeSchedule, ScheduleError, load_schedule
from domain.protocol import (
    AckStatus,
    CodecError,
    CommandAck,
    DownlinkCommand,
    EncodeError,
    GatewayState,
    GatewayStatus,
    LampFailure,
    decode_downlink,
    encode_ack,
    encode_readings,
    encode_status,
    frame_uplink,
)
from domain.records import LampCommand, Reading, ReadingKind
from gateways.acks import AckCache, LatestCommandFilter
from gateways.autonomy import LocalAutonomy, Mode
from gateways.codecs import (
    MAX_CACHED_TOPICS,
    SensorDecoder,
    TopicTemplate,
    decode_lamp_telemetry,
    encode_lamp_setpoint,
)
from gateways.config import GatewayConfig
from gateways.mqtt import BrokerSettings, LinkDown, MqttLink, stop_tasks
from gateways.opcua import ControllerUnavailable, LampNodes, OpcUaController, Security
from gateways.pointmap import PointMap, PointValueError
from gateways.queue import DiskQueue, QueuedMessage

_log = logging.getLogger(__name__)

#: Topic on which the central service announces itself (payload: any; JSON ``{"v": 1, ...}``).
CENTRAL_HEARTBEAT = "{prefix}/central/heartbeat"

#: Uplink messages awaiting their PUBACK at once (paho's own default allows 20 in flight).
UPLINK_WINDOW = 16

#: What the agent does with a message on one topic: ``(topic, payload, received_ns)`` -> None
#: when done, or an awaitable for the link to await.
_Route = Callable[[str, bytes, int], Awaitable[None] | None]


@dataclass
class AgentCounters:
    readings_buffered: int = 0
    readings_rejected: int = 0
    uplink_messages_stored: int = 0
    uplink_messages_rejected_full: int = 0
    uplink_messages_sent: int = 0
    sensor_messages: int = 0
    sensor_messages_rejected: int = 0
    telemetry_rejected: int = 0
    downlinks: int = 0
    downlinks_rejected: int = 0
    downlinks_duplicate: int = 0
    setpoints_written: int = 0
    setpoint_failures: int = 0
    local_control_steps: int = 0
    errors: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


@dataclass(frozen=True, slots=True)
class _LampRoute:
    """Where a lamp's commands go: an OPC-UA controller (with its point map) or an MQTT
    lamp-node group (with the values that fill its topic templates)."""

    controller: int | None = None
    point_map: PointMap | None = None
    mqtt_group: int | None = None
    topic_values: tuple[tuple[str, str], ...] = ()


class GatewayAgent:
    """Run with ``async with GatewayAgent(config) as agent: ...`` (or :meth:`run_forever`)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Callable[[], int] = time.time_ns,
        control_interval_s: float = 1.0,
        deadband_frac: float = 0.005,
        status_interval_s: float = 10.0,
    ) -> None:
        if control_interval_s <= 0 or status_interval_s <= 0:
            raise ValueError("control_interval_s and status_interval_s must be > 0")
        self.config = config
        self.clock = clock
        self.counters = AgentCounters()
        self._control_interval_s = control_interval_s
        self._deadband = deadband_frac
        self._status_interval_s = status_interval_s
        self._topics = config.topics
        prefix = config.uplink.topic_prefix
        self._heartbeat_topic = CENTRAL_HEARTBEAT.format(prefix=prefix)
        self._downlink_topic = self._topics.downlink
        self._uplink_topic = self._topics.uplink
        self._buffer: list[Reading] = []
        self._buffer_event = asyncio.Event()
        self._queue_event = asyncio.Event()
        self._uplink_sends: set[asyncio.Task[None]] = set()
        self._uplink_failed = False
        self._presence_event = asyncio.Event()
        self._topic_routes: dict[str, _Route] = {}
        self._routes: dict[str, _LampRoute] = {}
        self._status: dict[str, int] = {}
        self._written: dict[str, float] = {}
        self._desired: dict[
            str, tuple[float, float]
        ] = {}  # lamp -> (level_frac, ramp_s) from central
        self._acks = AckCache()
        self._latest = LatestCommandFilter()
        self._sensors = [(s, TopicTemplate.parse(s.topic)) for s in config.mqtt_sensors]
        # Built once, not per message: a group with a lamp map accepts only the sensors in it.
        self._sensor_decoders = [
            SensorDecoder(s, known_sensors=frozenset(s.lamps) if s.lamps else None)
            for s in config.mqtt_sensors
        ]
        self.controllers: list[OpcUaController] = []
        for k, ctl in enumerate(config.opcua_controllers):
            point_map = config.point_map(ctl.point_map)
            lamps = []
            for resolved in config.resolved_lamps(ctl):
                self._routes[resolved.lamp_id] = _LampRoute(controller=k, point_map=point_map)
                lamps.append(LampNodes(resolved.lamp_id, resolved.writable(), resolved.telemetry()))
            security = Security(
                policy=ctl.security_policy,
                mode=ctl.security_mode,
                certificate=str(ctl.certificate or ""),
                private_key=str(ctl.private_key or ""),
                server_certificate=str(ctl.server_certificate or ""),
                username=ctl.username,
                password=ctl.password.get_secret_value(),
            )
            self.controllers.append(
                OpcUaController(
                    endpoint=ctl.endpoint,
                    lamps=lamps,
                    on_telemetry=self._on_telemetry,
                    security=security,
                    publishing_interval_ms=ctl.publishing_interval_ms,
                    on_connected=self._controller_connected_hook(k),
                )
            )
        self._lamp_telemetry: list[tuple[int, TopicTemplate, dict[str, str]]] = []
        for g, group in enumerate(config.mqtt_lamps):
            names: dict[str, str] = {}
            for binding in group.lamps:
                values = binding.values()
                self._routes[binding.lamp_id] = _LampRoute(
                    mqtt_group=g, topic_values=tuple(values.items())
                )
                names[values["lamp"]] = binding.lamp_id
            if group.telemetry is not None:
                self._lamp_telemetry.append((g, TopicTemplate.parse(group.telemetry.topic), names))
        self.lamp_ids = tuple(self._routes)
        self.autonomy = LocalAutonomy(
            lamp_ids=self.lamp_ids,
            schedule=self._load_schedule(),
            uplink_timeout_s=config.autonomy.uplink_timeout_s,
            fail_safe_frac=config.autonomy.fail_safe_level_frac,
            lat_deg=config.gateway.lat_deg,
            lon_deg=config.gateway.lon_deg,
            daylight_elevation_deg=config.autonomy.daylight_elevation_deg,
            started_ns=clock(),
        )
        self.queue: DiskQueue | None = None
        self.link: MqttLink | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- start and stop -----------------------------------------------------------------------

    def _load_schedule(self) -> EdgeSchedule | None:
        path = self.config.autonomy.schedule_path
        if path is None:
            return None
        try:
            schedule = load_schedule(Path(path))
        except ScheduleError as err:
            self._note(f"edge schedule: {err}; the fail-safe level applies when on our own")
            return None
        if schedule.lamp_ids != self.lamp_ids:
            self._note(
                "edge schedule is for other lamps; ignored (fail-safe level applies when on our own)"
            )
            return None
        return schedule

    def _broker_settings(self) -> BrokerSettings:
        b = self.config.broker
        tls = b.tls
        return BrokerSettings(
            host=b.host,
            port=b.port,
            username=b.username or None,
            password=b.password.get_secret_value() or None,
            client_id=self.config.mqtt_client_id,
            keepalive_s=b.keepalive_s,
            ca_file=str(tls.ca_file) if tls and tls.ca_file else None,
            cert_file=str(tls.cert_file) if tls and tls.cert_file else None,
            key_file=str(tls.key_file) if tls and tls.key_file else None,
            tls_insecure=bool(tls and tls.insecure),
        )

    async def __aenter__(self) -> GatewayAgent:
        q = self.config.queue
        Path(q.path).parent.mkdir(parents=True, exist_ok=True)
        self.queue = DiskQueue(
            q.path, max_messages=q.max_messages, when_full=q.when_full, synchronous=q.synchronous
        )
        offline = encode_status(
            GatewayStatus(self.config.gateway.id, GatewayState.OFFLINE, self.clock())
        )
        subscriptions = [(self._topics.downlink, 1), (self._heartbeat_topic, 0)]
        subscriptions += [(template.subscription, s.qos) for s, template in self._sensors]
        subscriptions += [
            (template.subscription, self.config.mqtt_lamps[g].qos)
            for g, template, _ in self._lamp_telemetry
        ]
        self.link = MqttLink(
            self._broker_settings(),
            subscriptions=subscriptions,
            on_message=self._on_message,
            on_connected=self._link_connected,
            will=aiomqtt.Will(self._topics.status, offline, qos=1, retain=True),
        )
        self._stack = contextlib.AsyncExitStack()
        await self._stack.enter_async_context(self.link)
        for controller in self.controllers:
            await self._stack.enter_async_context(controller)
        for name, coro in (
            ("sealer", self._seal_loop()),
            ("uplink", self._uplink_loop()),
            ("control", self._control_loop()),
            ("presence", self._presence_loop()),
            ("status", self._status_loop()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=f"gateway {name}"))
        # Start-up leaves ~120k objects (modules, configuration, controller node tables) that
        # the collector has not walked yet: its first full collection, 0.1-0.3 s, would fall on
        # the first burst of traffic (stalling a presence answer). Pay for it now.
        gc.collect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_tasks([*self._tasks, *self._uplink_sends])
        self._tasks.clear()
        self._seal()  # readings still in memory go to disk, not away
        if self._stack is not None:
            await self._stack.aclose()
        if self.queue is not None:
            self.queue.close()

    async def run_forever(self) -> None:
        async with self:
            await asyncio.Event().wait()

    # --- readings northbound ------------------------------------------------------------------

    def _note(self, message: str) -> None:
        self.counters.errors.append(message)
        _log.warning("%s", message)

    def _buffer_readings(self, readings: list[Reading]) -> None:
        self._buffer.extend(readings)
        self.counters.readings_buffered += len(readings)
        if len(self._buffer) >= self.config.uplink.batch_max_readings:
            self._buffer_event.set()

    def _seal(self) -> None:
        """Store buffered readings on disk as uplink messages (before any attempt to send)."""
        if self.queue is None:
            return
        size = self.config.uplink.batch_max_readings
        while self._buffer:
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            body = self._encode(batch)
            if body is None:
                continue
            if self.queue.put(body) is None:
                self.counters.uplink_messages_rejected_full += 1
            else:
                self.counters.uplink_messages_stored += 1
        self._queue_event.set()

    def _encode(self, batch: list[Reading]) -> bytes | None:
        """The stored form of ``batch``. A reading the protocol cannot carry (a time before 1970
        from a controller's clock, an id too long) is dropped, counted and named; before, it
        failed its whole batch and stopped the sealing task for good."""
        try:
            return encode_readings(batch)  # one call per batch: far cheaper than per reading
        except EncodeError:
            pass
        good = []
        for reading in batch:
            try:
                encode_readings((reading,))
            except EncodeError as err:
                self.counters.readings_rejected += 1
                self._note(f"reading of {reading.source_id[:64]!r} not sent: {err.reason}")
            else:
                good.append(reading)
        return encode_readings(good) if good else None

    async def _seal_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._buffer_event.wait(), self.config.uplink.batch_interval_s
                )
            self._buffer_event.clear()
            self._seal()

    async def _uplink_loop(self) -> None:
        """Send stored messages oldest first, up to :data:`UPLINK_WINDOW` awaiting their PUBACK
        at once. One at a time, a gateway sends one message per round trip: during a burst the
        broker's PUBACK waits behind every sensor message already on its way to us, and after
        an outage a backlog drains at one message per network round trip."""
        assert self.queue is not None and self.link is not None
        sent_up_to = 0  # the newest message handed to the link since the last failure
        while True:
            await self._queue_event.wait()
            self._queue_event.clear()
            if self._uplink_failed:
                # The link went down under some sends: once none is left in flight, start
                # again from the oldest message still stored.
                if self._uplink_sends:
                    await asyncio.wait(self._uplink_sends)
                self._uplink_failed = False
                sent_up_to = 0
            room = UPLINK_WINDOW - len(self._uplink_sends)
            if not self.link.connected or room <= 0:
                continue
            for message in self.queue.peek(room, after_id=sent_up_to):
                sent_up_to = message.id
                # Tasks start in creation order, so messages reach the link oldest first.
                task = asyncio.create_task(self._send_uplink(message), name="gateway uplink send")
                self._uplink_sends.add(task)
                task.add_done_callback(self._uplink_sends.discard)

    async def _send_uplink(self, message: QueuedMessage) -> None:
        assert self.queue is not None and self.link is not None
        payload = frame_uplink(
            message.payload,
            gateway_id=self.config.gateway.id,
            epoch=self.queue.epoch,
            seq=message.id,
            sent_ns=self.clock(),
        )
        try:
            await self.link.publish(self._uplink_topic, payload, qos=self.config.uplink.qos)
        except LinkDown:
            self._uplink_failed = True  # sent again after the next on_connected
        else:
            # Deleted only once the broker has acknowledged it (PUBACK).
            self.queue.ack([message.id])
            self.counters.uplink_messages_sent += 1
        finally:
            self._queue_event.set()  # room in the window, or a failure to handle

    async def _link_connected(self) -> None:
        assert self.link is not None
        online = encode_status(
            GatewayStatus(
                self.config.gateway.id, GatewayState.ONLINE, self.clock(), self.counters.as_dict()
            )
        )
        with contextlib.suppress(LinkDown):
            await self.link.publish(self._topics.status, online, qos=1, retain=True)
        self._queue_event.set()

    async def _status_loop(self) -> None:
        assert self.link is not None
        while True:
            await asyncio.sleep(self._status_interval_s)
            if self.link.connected:
                status = GatewayStatus(
                    self.config.gateway.id,
                    GatewayState.ONLINE,
                    self.clock(),
                    self.counters.as_dict(),
                )
                with contextlib.suppress(LinkDown):
                    await self.link.publish(
                        self._topics.status, encode_status(status), qos=1, retain=True
                    )

    # --- southbound telemetry -----------------------------------------------------------------

    def _on_telemetry(self, lamp_id: str, key: str, raw: Any, time_ns: int) -> None:
        route = self._routes.get(lamp_id)
        if route is None or route.point_map is None:
            return
        try:
            reading = route.point_map.reading(
                key, lamp_id, raw, time_ns, previous_status=self._status.get(lamp_id, 0)
            )
        except (PointValueError, ValueError) as err:
            self.counters.telemetry_rejected += 1
            self._note(f"telemetry {lamp_id}.{key}={raw!r}: {err}")
            return
        if reading.kind is ReadingKind.STATUS:
            self._status[lamp_id] = int(reading.value)
        elif reading.kind is ReadingKind.LEVEL_FRAC:
            self.autonomy.observed_levels({lamp_id: reading.value})
        self._buffer_readings([reading])

    # --- MQTT messages ------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> Awaitable[None] | None:
        route = self._topic_routes.get(topic)
        if route is None:
            route = self._route(topic)
            if len(self._topic_routes) >= MAX_CACHED_TOPICS:
                self._topic_routes.clear()  # a bound, not a cache policy: see MAX_CACHED_TOPICS
            self._topic_routes[topic] = route
        return route(topic, payload, self.clock())

    def _route(self, topic: str) -> _Route:
        """What to do with messages on ``topic``, found once per topic (first match wins)."""
        if topic == self._downlink_topic:
            return self._on_downlink_message
        if topic == self._heartbeat_topic:
            return self._on_heartbeat
        for decoder, (spec, template) in zip(self._sensor_decoders, self._sensors, strict=True):
            if template.match(topic) is not None:
                return functools.partial(self._on_sensor, decoder, spec.lamps)
        for g, template, names in self._lamp_telemetry:
            if template.match(topic) is not None:
                return functools.partial(self._on_lamp_node, g, names)
        return _ignore

    def _on_downlink_message(self, _topic: str, payload: bytes, now: int) -> Awaitable[None]:
        self.autonomy.heard_from_central(now)
        return self._on_downlink(payload, now)

    def _on_heartbeat(self, _topic: str, _payload: bytes, now: int) -> None:
        self.autonomy.heard_from_central(now)

    def _on_sensor(
        self,
        decoder: SensorDecoder,
        covered: dict[str, tuple[str, ...]],
        topic: str,
        payload: bytes,
        now: int,
    ) -> None:
        self.counters.sensor_messages += 1
        try:
            readings = decoder.decode(topic, payload, received_ns=now)
        except CodecError as err:
            self.counters.sensor_messages_rejected += 1
            self._note(f"sensor message on {topic}: {err.reason}")
            return
        self._buffer_readings(readings)
        lamps = [
            lamp
            for r in readings
            if r.kind is ReadingKind.PRESENCE and r.value > 0
            for lamp in covered.get(r.source_id, ())
        ]
        if lamps:
            self.autonomy.presence(lamps)
            if self.autonomy.mode(now) is Mode.SCHEDULE:
                self._presence_event.set()  # light on demand at once, not at the next tick

    def _on_lamp_node(
        self, group: int, names: dict[str, str], topic: str, payload: bytes, now: int
    ) -> None:
        spec = self.config.mqtt_lamps[group].telemetry
        assert spec is not None
        try:
            readings = decode_lamp_telemetry(topic, payload, spec, received_ns=now, lamp_ids=names)
        except CodecError as err:
            self.counters.telemetry_rejected += 1
            self._note(f"lamp node message on {topic}: {err.reason}")
            return
        for r in readings:
            if r.kind is ReadingKind.LEVEL_FRAC:
                self.autonomy.observed_levels({r.source_id: r.value})
        self._buffer_readings(readings)

    async def _on_downlink(self, payload: bytes, now: int) -> None:
        assert self.link is not None
        self.counters.downlinks += 1
        try:
            command = decode_downlink(payload)
        except CodecError as err:
            self.counters.downlinks_rejected += 1
            self._note(f"downlink rejected: {err.reason}")
            return
        cached = self._acks.get(command.cmd_id)
        if cached is not None:
            self.counters.downlinks_duplicate += 1
            await self._publish_ack(cached)
            return
        ack = await self._apply_command(command, now)
        self._acks.remember(ack)
        await self._publish_ack(ack)

    async def _apply_command(self, command: DownlinkCommand, now: int) -> CommandAck:
        gw = self.config.gateway.id
        if command.expired(now):
            return CommandAck(
                command.cmd_id, gw, AckStatus.REJECTED, now, reason="expired before it arrived"
            )
        failed: list[LampFailure] = []
        wanted: dict[str, tuple[float, float]] = {}
        for c in command.commands:
            if c.lamp_id not in self._routes:
                failed.append(LampFailure(c.lamp_id, "not a lamp of this gateway"))
            elif not self._latest.accept(c.lamp_id, command.issued_ns):
                failed.append(LampFailure(c.lamp_id, "a newer command for this lamp was applied"))
            else:
                wanted[c.lamp_id] = (c.level_frac, c.ramp_s)
        self._desired.update(wanted)
        failed += [
            LampFailure(lamp, reason) for lamp, reason in (await self._write(wanted)).items()
        ]
        if not failed:
            return CommandAck(command.cmd_id, gw, AckStatus.APPLIED, self.clock())
        status = AckStatus.REJECTED if len(failed) == len(command.commands) else AckStatus.PARTIAL
        return CommandAck(command.cmd_id, gw, status, self.clock(), failed=tuple(failed))

    async def _publish_ack(self, ack: CommandAck) -> None:
        assert self.link is not None
        with contextlib.suppress(LinkDown):
            await self.link.publish(self._topics.ack, encode_ack(ack), qos=1)

    # --- setpoints southbound -----------------------------------------------------------------

    async def _write(self, levels: dict[str, tuple[float, float]]) -> dict[str, str]:
        """Write ``{lamp: (level_frac, ramp_s)}``; returns ``{lamp: reason}`` for failures."""
        per_controller: dict[int, dict[tuple[str, str], ua.Variant]] = {}
        failures: dict[str, str] = {}
        for lamp, (level, ramp_s) in levels.items():
            route = self._routes[lamp]
            if route.mqtt_group is not None:
                reason = await self._publish_setpoint(route, lamp, level, ramp_s)
                if reason:
                    failures[lamp] = reason
                continue
            assert route.controller is not None and route.point_map is not None
            points = {p.key.value: p for p in route.point_map.points}
            try:
                batch = per_controller.setdefault(route.controller, {})
                if "ramp_time" in points:
                    p = points["ramp_time"]
                    batch[(lamp, "ramp_time")] = ua.Variant(
                        p.encode(ramp_s), ua.VariantType[p.data_type]
                    )
                p = points["setpoint"]
                batch[(lamp, "setpoint")] = ua.Variant(p.encode(level), ua.VariantType[p.data_type])
            except (PointValueError, ValueError) as err:
                failures[lamp] = str(err)
        for k, batch in per_controller.items():
            try:
                result = await self.controllers[k].write(batch)
            except ControllerUnavailable as err:
                for lamp, _key in batch:
                    failures[lamp] = str(err)
                continue
            for (lamp, key), reason in result.items():
                failures[lamp] = f"{key}: {reason}"
        ok = [lamp for lamp in levels if lamp not in failures]
        for lamp in ok:
            self._written[lamp] = levels[lamp][0]
        self.counters.setpoints_written += len(ok)
        self.counters.setpoint_failures += len(failures)
        return failures

    async def _publish_setpoint(
        self, route: _LampRoute, lamp: str, level: float, ramp_s: float
    ) -> str:
        """Command an MQTT lamp node; returns the reason it failed, or ''."""
        assert self.link is not None and route.mqtt_group is not None
        group = self.config.mqtt_lamps[route.mqtt_group]
        topic, payload = encode_lamp_setpoint(
            LampCommand(lamp, level, ramp_s), group.setpoint, topic_values=dict(route.topic_values)
        )
        try:
            await self.link.publish(topic, payload, qos=group.qos, retain=group.setpoint.retain)
        except LinkDown as err:
            return str(err)
        return ""

    def _controller_connected_hook(self, k: int) -> Callable[[], Any]:
        async def hook() -> None:
            # A controller that restarted may have lost its setpoints: write what we want again.
            mine = {
                lamp: v for lamp, v in self._desired.items() if self._routes[lamp].controller == k
            }
            for lamp in [lamp for lamp, r in self._routes.items() if r.controller == k]:
                self._written.pop(lamp, None)
            if mine:
                await self._write(mine)

        return hook

    async def _apply_local(self, now: int) -> None:
        levels = self.autonomy.levels(now)
        if levels is None:
            return
        self.counters.local_control_steps += 1
        changed = {
            lamp: (level, 0.0)
            for lamp, level in levels.items()
            if abs(level - self._written.get(lamp, -1.0)) > self._deadband
        }
        if changed:
            await self._write(changed)

    async def _control_loop(self) -> None:
        while True:
            await asyncio.sleep(self._control_interval_s)
            await self._apply_local(self.clock())

    async def _presence_loop(self) -> None:
        # One pass answers every detection since the last one: a burst of presence messages
        # costs one level computation and one batched write, not one each.
        while True:
            await self._presence_event.wait()
            self._presence_event.clear()
            await self._apply_local(self.clock())

    def status(self) -> dict[str, Any]:
        """A snapshot for operators: mode, counters, queue depth, connections, recent errors."""
        now = self.clock()
        return {
            "mode": self.autonomy.mode(now).value,
            "counters": self.counters.as_dict(),
            "queue": None
            if self.queue is None
            else {"depth": len(self.queue), **dataclasses.asdict(self.queue.counters)},
            "mqtt_connected": bool(self.link and self.link.connected),
            "controllers": {c.endpoint: c.connected for c in self.controllers},
            "recent_errors": list(self.counters.errors)[-10:],
        }


def _ignore(_topic: str, _payload: bytes, _now: int) -> None:
    """Route of a topic that fits a subscription but no template (``a/{x}/{x}`` subscribes as
    ``a/+/+``, which ``a/1/2`` also fits)."""


def heartbeat_payload(now_ns: int) -> bytes:
    """What the central service publishes on :data:`CENTRAL_HEARTBEAT`."""
    return json.dumps({"v": 1, "ts_ns": now_ns}).encode()

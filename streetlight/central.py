"""The central service: ingest, live control, lamp health and the API, wired together.

Theory of operation
-------------------
This module is the composition root's wiring of the central stages; each stage stays
ignorant of the others (import-linter checks it):

``sensor_ingest``  :class:`IngestConsumer` feeds :class:`IngestPipeline` from the broker on a
                   worker thread; it stores readings in the :class:`EmbeddedHistorian`, counts
                   demand in :class:`DemandWindows` and hands accepted rows to the sinks below.
``controller``     one :class:`CouncilControl` per council: a :class:`LiveController` (the
                   kernel tick, deadband, overrides, presence, demand) and a
                   :class:`HealthMonitor` (alarms from telemetry against commands).
``downlink``       :class:`DownlinkPublisher` sends each gateway its commands and follows acks.
``api``            the FastAPI app over the configuration store, reading the same historian;
                   the loop re-reads active policies and overrides from that store every
                   ``reload_s`` and writes alarms and gateway states back to it.

Threads: the ingest pipeline runs on its own thread, so everything it reports (accepted rows,
gateway statuses, acks) is posted to the event loop (:meth:`CentralService._post`) and
applied there at the start of the next tick; the controllers are only touched on the loop.
A presence event wakes the loop at once, so light on demand does not wait for the tick.

Safety: a group without an active policy, or whose policy no longer validates, is driven by
the controller's fail-bright fallback (full output from dusk to dawn); a policy that fails to
compile for tonight is logged and its lamps fall back too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import (
    Council,
    active_overrides,
    active_policies,
    inventory_lamps,
    lamp_gateways,
    record_alarm,
    record_gateway_status,
)
from api.feed import AlarmEvent, LevelsEvent, LiveFeed, PresenceEvent
from controller.health import Alarm, HealthMonitor
from controller.live import ActiveProgram, Clock, LiveConfig, LiveController
from controller.policy.calendar import zone
from controller.policy.compile import compile_night_full
from domain.errors import StreetlightError
from domain.inventory import InventoryArrays
from domain.neighbours import NeighbourGraph, build_neighbour_graph
from domain.protocol import CommandAck, GatewayState, GatewayStatus
from domain.records import Lamp, LampCommand, Reading, ReadingKind, Sensor
from sensor_ingest.historian import ReadingRow
from streetlight.downlink import DownlinkError, DownlinkPublisher

__all__ = ["CentralConfig", "CentralService", "CouncilControl", "night_of"]

_log = logging.getLogger(__name__)
NS_PER_S = 1_000_000_000
_LAMP_KINDS = frozenset(
    {ReadingKind.LEVEL_FRAC, ReadingKind.POWER_W, ReadingKind.ENERGY_WH, ReadingKind.STATUS}
)


def night_of(now_ns: int, tz: str) -> dt.date:
    """The local date on which the night containing ``now_ns`` started (nights run noon-noon)."""
    local = dt.datetime.fromtimestamp(now_ns / NS_PER_S, tz=zone(tz))
    return local.date() if local.hour >= 12 else local.date() - dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CentralConfig:
    """How the central loop runs (the broker and the stores are configured by the caller)."""

    tick_s: float = 1.0
    deadband_frac: float = 0.02
    reload_s: float = 2.0  # re-read policies and overrides from the store this often
    health_every_s: float = 5.0
    sensors: tuple[Sensor, ...] = ()  # sensor -> lamps, for light on demand

    def __post_init__(self) -> None:
        for name in ("tick_s", "reload_s", "health_every_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0 s, got {value!r}")


class CouncilControl:
    """One council's live controller and health monitor over its current inventory."""

    def __init__(
        self,
        council_id: str,
        tz: str,
        lamps: Sequence[Lamp],
        gateway_of: dict[str, str],
        *,
        config: CentralConfig,
        now_ns: int,
    ) -> None:
        self.council_id = council_id
        self.tz = tz
        self.lamps = tuple(lamps)
        self.gateway_of = dict(gateway_of)
        self.inventory = InventoryArrays.from_lamps(list(self.lamps), council_id)
        self.neighbours = _graph(self.inventory) if len(self.lamps) > 1 else None
        lamp_ids = {lamp.lamp_id for lamp in self.lamps}
        sensors = [s for s in config.sensors if any(i in lamp_ids for i in s.lamp_ids)]
        self.sensor_lamps = {
            s.sensor_id: tuple(i for i in s.lamp_ids if i in lamp_ids) for s in sensors
        }
        live_config = LiveConfig(tick_s=config.tick_s, deadband_frac=config.deadband_frac)
        self.controller = LiveController(
            self.inventory,
            self.gateway_of,
            config=live_config,
            sensors=[
                Sensor(
                    s.sensor_id,
                    council_id,
                    s.kind,
                    s.lon_deg,
                    s.lat_deg,
                    self.sensor_lamps[s.sensor_id],
                )
                for s in sensors
            ],
            neighbours=self.neighbours,
        )
        self.health = HealthMonitor(self.inventory, self.gateway_of, started_ns=now_ns)
        self.signature: tuple[Any, ...] = ()
        self.night: dt.date | None = None
        self.programs_key: tuple[Any, ...] = ()

    def load_programs(self, session: Session, now_ns: int) -> None:
        """Compile tonight's program of every active policy (again when anything changed)."""
        night = night_of(now_ns, self.tz)
        policies = active_policies(session, self.council_id)
        key = (night, tuple((p.activation_id, p.lamp_ids) for p in policies))
        if key == self.programs_key:
            return
        index = {lamp.lamp_id: k for k, lamp in enumerate(self.lamps)}
        programs = []
        for active in policies:
            members = [index[i] for i in active.lamp_ids if i in index]
            if active.policy is None or not members:
                if active.policy is None:
                    _log.error(
                        "council %s group %s: policy %s v%d no longer validates; its lamps "
                        "run the fail-bright fallback",
                        self.council_id,
                        active.group_name,
                        active.policy_name,
                        active.version,
                    )
                continue
            subset = self.inventory.subset(np.asarray(members, dtype=np.int64))
            try:
                compiled = compile_night_full(
                    active.policy,
                    subset,
                    night,
                    self.tz,
                    step_s=1.0,
                    neighbours=_graph(subset) if len(members) > 1 else None,
                )
            except StreetlightError as err:
                _log.error(
                    "council %s group %s: cannot compile %s v%d for the night of %s (%s); "
                    "its lamps run the fail-bright fallback",
                    self.council_id,
                    active.group_name,
                    active.policy_name,
                    active.version,
                    night,
                    err,
                )
                continue
            programs.append(
                ActiveProgram(
                    tuple(self.lamps[m].lamp_id for m in members),
                    compiled,
                    name=f"{active.policy_name} v{active.version}",
                )
            )
        self.controller.set_programs(programs)
        self.programs_key = key
        self.night = night

    def load_overrides(self, session: Session, now_ns: int) -> None:
        self.controller.set_overrides(active_overrides(session, self.council_id, now_ns))


def _graph(inventory: InventoryArrays) -> NeighbourGraph:
    return build_neighbour_graph(
        inventory.lon_deg,
        inventory.lat_deg,
        street_index=inventory.street_index,
        order_on_street=inventory.order_on_street,
    )


@dataclass
class CentralService:
    """The central loop over every council in the store (see the module docstring).

    ``sessions`` is the configuration store's session factory (the API's); ``publisher``
    sends downlinks; ``windows_snapshot`` (optional) gives the demand per zone and hour.
    Call :meth:`sink`, :meth:`on_status` and :meth:`on_ack` from the ingest pipeline (any
    thread); run :meth:`run` on the event loop.
    """

    sessions: sessionmaker[Session]
    publisher: DownlinkPublisher
    clock: Clock
    config: CentralConfig = field(default_factory=CentralConfig)
    feed: LiveFeed | None = None
    demand: Callable[[int], dict[str, float]] | None = None
    councils: dict[str, CouncilControl] = field(default_factory=dict)
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            [
                "ticks",
                "commands",
                "send_failures",
                "alarms_raised",
                "alarms_cleared",
                "presence",
                "telemetry",
                "reloads",
            ],
            0,
        )
    )

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: list[tuple[str, Any]] = []
        self._inbox_lock = threading.Lock()
        self._wake = asyncio.Event()
        self._council_of_lamp: dict[str, str] = {}
        self._council_of_gateway: dict[str, str] = {}
        self._sensor_council: dict[str, str] = {}
        self._unplaced_status: dict[str, tuple[GatewayStatus, int]] = {}

    # --- from the ingest thread -----------------------------------------------------------------

    def _post(self, kind: str, item: Any, *, wake: bool = False) -> None:
        with self._inbox_lock:
            self._inbox.append((kind, item))
        loop = self._loop
        if wake and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def submit(self, gateway_id: str, rows: Sequence[ReadingRow]) -> None:
        """The ingest pipeline's sink: accepted rows of one gateway."""
        presence = [r for r in rows if r[1] is ReadingKind.PRESENCE]
        telemetry = [r for r in rows if r[1] in _LAMP_KINDS]
        if telemetry:
            self._post("telemetry", telemetry)
        if presence:
            self._post("presence", presence, wake=True)

    def on_status(self, status: GatewayStatus) -> None:
        self._post("status", (status, self.clock.now_ns()))

    def on_ack(self, ack: CommandAck) -> None:
        self._post("ack", ack)

    # --- the loop ---------------------------------------------------------------------------------

    def reload(self, now_ns: int) -> None:
        """Re-read every council's inventory, policies and overrides from the store."""
        self.counters["reloads"] += 1
        with self.sessions() as session:
            councils = session.scalars(select(Council)).all()
            for council in councils:
                lamps = inventory_lamps(session, council.id)
                gateway_of = lamp_gateways(session, council.id)
                controlled = [lamp for lamp in lamps if lamp.lamp_id in gateway_of]
                signature = tuple(
                    (
                        lamp.lamp_id,
                        lamp.lon_deg,
                        lamp.lat_deg,
                        lamp.lighting_class,
                        lamp.group,
                        gateway_of[lamp.lamp_id],
                        lamp.rated_power_w,
                    )
                    for lamp in controlled
                )
                control = self.councils.get(council.id)
                if control is None or control.signature != signature:
                    if not controlled:
                        self.councils.pop(council.id, None)
                        continue
                    control = CouncilControl(
                        council.id,
                        council.tz,
                        controlled,
                        gateway_of,
                        config=self.config,
                        now_ns=now_ns,
                    )
                    control.signature = signature
                    self.councils[council.id] = control
                control.load_programs(session, now_ns)
                control.load_overrides(session, now_ns)
        self._council_of_lamp = {
            lamp.lamp_id: c.council_id for c in self.councils.values() for lamp in c.lamps
        }
        self._council_of_gateway = {
            g: c.council_id for c in self.councils.values() for g in c.gateway_of.values()
        }
        self._sensor_council = {
            s: c.council_id for c in self.councils.values() for s in c.sensor_lamps
        }
        for gateway_id in [g for g in self._unplaced_status if g in self._council_of_gateway]:
            self._status(*self._unplaced_status.pop(gateway_id))

    def _apply_inbox(self, now_ns: int) -> None:
        with self._inbox_lock:
            items, self._inbox = self._inbox, []
        for kind, item in items:
            if kind == "telemetry":
                self._telemetry(item)
            elif kind == "presence":
                self._presence(item)
            elif kind == "status":
                self._status(*item)
            elif kind == "ack":
                self.publisher.on_ack(item)

    def _telemetry(self, rows: list[ReadingRow]) -> None:
        by_council: dict[str, list[Reading]] = {}
        levels: dict[str, dict[str, float]] = {}
        for source_id, kind, value, time_ns in rows:
            council = self._council_of_lamp.get(source_id)
            if council is None:
                continue
            by_council.setdefault(council, []).append(Reading(source_id, kind, value, time_ns))
            if kind is ReadingKind.LEVEL_FRAC:
                levels.setdefault(council, {})[source_id] = value
        for council, readings in by_council.items():
            self.counters["telemetry"] += self.councils[council].health.telemetry(readings)
        if self.feed is not None:
            for council, measured in levels.items():
                newest_ns = max(r.time_ns for r in by_council[council])
                self.feed.publish(council, LevelsEvent(newest_ns, measured))

    def _presence(self, rows: list[ReadingRow]) -> None:
        for source_id, _kind, _value, time_ns in rows:
            council = self._sensor_council.get(source_id) or self._council_of_lamp.get(source_id)
            if council is None:
                continue
            control = self.councils[council]
            self.counters["presence"] += 1
            control.controller.presence(source_id, time_ns)
            if self.feed is not None:
                lamps = control.sensor_lamps.get(source_id, (source_id,))
                self.feed.publish(council, PresenceEvent(time_ns, source_id, tuple(lamps)))

    def _status(self, status: GatewayStatus, received_ns: int) -> None:
        council = self._council_of_gateway.get(status.gateway_id)
        if council is None:
            # A gateway can report before any lamp in the store names it (a retained status
            # arrives at once): keep its latest status until the inventory knows it.
            self._unplaced_status[status.gateway_id] = (status, received_ns)
            return
        online = status.state is GatewayState.ONLINE
        # An offline last will carries the session's start time: use the receive time.
        self.councils[council].health.gateway_status(
            status.gateway_id, online, status.ts_ns if online else received_ns
        )
        with self.sessions() as session:
            record_gateway_status(
                session,
                council,
                status.gateway_id,
                status.state.value,
                received_ns,
                dict(status.counters),
            )
            session.commit()

    async def _send(self, council: CouncilControl, batches: dict[str, list[LampCommand]]) -> None:
        async def deliver(gateway_id: str, commands: list[LampCommand]) -> None:
            try:
                await self.publisher.send(gateway_id, commands)
            except DownlinkError as err:
                self.counters["send_failures"] += 1
                council.controller.forget_sent(c.lamp_id for c in commands)
                _log.warning("%s", err)
                return
            self.counters["commands"] += len(commands)
            council.health.commanded(commands)

        await asyncio.gather(*(deliver(g, c) for g, c in batches.items()))
        if self.feed is not None:
            levels = {c.lamp_id: c.level_frac for cs in batches.values() for c in cs}
            if levels:
                self.feed.publish(council.council_id, LevelsEvent(self.clock.now_ns(), levels))

    def _record_alarms(self, council: CouncilControl, alarms: list[Alarm], now_ns: int) -> None:
        if not alarms:
            return
        with self.sessions() as session:
            for alarm in alarms:
                is_lamp = alarm.scope.value == "lamp"
                record_alarm(
                    session,
                    council.council_id,
                    alarm_id=alarm.alarm_id,
                    kind=alarm.kind.value,
                    started_ns=alarm.started_ns,
                    ended_ns=alarm.ended_ns,
                    detail=alarm.detail,
                    lamp_id=alarm.source_id if is_lamp else None,
                    gateway_id=None if is_lamp else alarm.source_id,
                )
                key = "alarms_raised" if alarm.ended_ns is None else "alarms_cleared"
                self.counters[key] += 1
            session.commit()
        if self.feed is not None:
            for alarm in alarms:
                self.feed.publish(council.council_id, AlarmEvent.of(alarm, now_ns))

    async def step(self, now_ns: int) -> None:
        """One tick: apply what ingest reported, step every council, send, record alarms."""
        self._apply_inbox(now_ns)
        demand = self.demand(now_ns) if self.demand is not None else None
        for council in list(self.councils.values()):
            if demand:
                council.controller.demand(demand, now_ns)
            batches = council.controller.step(now_ns)
            if batches:
                await self._send(council, batches)
        self.counters["ticks"] += 1

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        tick_ns = round(self.config.tick_s * NS_PER_S)
        reload_ns = round(self.config.reload_s * NS_PER_S)
        health_ns = round(self.config.health_every_s * NS_PER_S)
        next_reload = next_health = self.clock.now_ns()
        while not stop.is_set():
            now = self.clock.now_ns()
            if now >= next_reload:
                await asyncio.to_thread(self.reload, now)
                next_reload = now + reload_ns
            await self.step(now)
            if now >= next_health:
                for council in list(self.councils.values()):
                    alarms = council.health.evaluate(now)
                    await asyncio.to_thread(self._record_alarms, council, alarms, now)
                next_health = now + health_ns
            self._wake.clear()
            sleeper = asyncio.create_task(self.clock.sleep_until((now // tick_ns + 1) * tick_ns))
            waker = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({sleeper, waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeper, waker, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

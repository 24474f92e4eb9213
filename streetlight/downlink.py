"""The central side of the downlink: lamp commands out to gateways, acks in, retries on silence.

Theory of operation
-------------------
The live controller hands each gateway's commands to a :class:`domain.records.CommandSink`;
:meth:`DownlinkPublisher.sink` is that sink. Each batch becomes one downlink message
(docs/gateway-protocol.md) with a fresh ``cmd_id`` and an expiry ``command_ttl_s`` after it was
issued (a command that could not be delivered in time must not move a lamp later: the controller
will have decided something newer by then). The publisher publishes it QoS 1 and hands it to a
:class:`gateways.acks.CommandLedger`, the table-driven tracker that says when to publish again
(no ack within its timeout) and when to give up. Acks arrive through :meth:`on_ack` from the
central MQTT consumer. :meth:`poll` does whatever the ledger says is due; :meth:`run` calls it
on a clock.

A publish that fails because the broker is unreachable raises :class:`DownlinkError` (a
:class:`StreetlightError`): the live loop then resends those lamps' levels on its next tick
instead of losing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from domain.errors import StreetlightError
from domain.protocol import CommandAck, DownlinkCommand, GatewayTopics, encode_downlink
from domain.records import LampCommand
from gateways.acks import Action, ActionKind, CommandLedger, CommandState, RetryPolicy
from gateways.agent import CENTRAL_HEARTBEAT, heartbeat_payload

__all__ = ["DownlinkCounters", "DownlinkError", "DownlinkPublisher", "Publisher"]

NS_PER_S = 1_000_000_000


class DownlinkError(StreetlightError):
    """A downlink command could not be published (the broker is unreachable)."""


class Publisher(Protocol):
    """What the publisher needs of an MQTT link (``gateways.mqtt.MqttLink`` fits)."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None: ...


@dataclass
class DownlinkCounters:
    commands: int = 0  # downlink messages created
    lamp_commands: int = 0
    publishes: int = 0  # including re-publishes
    publish_failures: int = 0
    acked: int = 0
    partial: int = 0
    failed: int = 0
    expired: int = 0
    failed_lamps: int = 0  # lamps listed as failed in partial/rejected acks


@dataclass
class _Sent:
    topic: str
    payload: bytes
    gateway_id: str
    n_lamps: int


@dataclass
class DownlinkPublisher:
    """Publishes commands per gateway and follows each to its ack (one per central service)."""

    link: Publisher
    prefix: str
    now_ns: Callable[[], int]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    command_ttl_s: float = 60.0
    instance: str = "central"
    counters: DownlinkCounters = field(default_factory=DownlinkCounters)

    def __post_init__(self) -> None:
        if not self.command_ttl_s > 0:
            raise ValueError(f"command_ttl_s must be > 0, got {self.command_ttl_s!r}")
        self._ledger = CommandLedger(self.policy)
        self._sent: dict[str, _Sent] = {}
        self._numbers = itertools.count(1)
        self._topics: dict[str, str] = {}
        self.outcomes: list[tuple[str, str, CommandState]] = []  # (cmd_id, gateway, final state)

    def sink(self, gateway_id: str) -> _GatewaySink:
        return _GatewaySink(self, gateway_id)

    def _topic(self, gateway_id: str) -> str:
        topic = self._topics.get(gateway_id)
        if topic is None:
            topic = self._topics[gateway_id] = GatewayTopics(self.prefix, gateway_id).downlink
        return topic

    async def send(self, gateway_id: str, commands: Sequence[LampCommand]) -> str:
        """Publish one downlink command with ``commands``; returns its ``cmd_id``."""
        now = self.now_ns()
        cmd_id = f"{self.instance}-{now}-{next(self._numbers)}"
        expires_ns = now + round(self.command_ttl_s * NS_PER_S)
        message = DownlinkCommand(
            cmd_id=cmd_id, issued_ns=now, commands=tuple(commands), expires_ns=expires_ns
        )
        sent = _Sent(self._topic(gateway_id), encode_downlink(message), gateway_id, len(commands))
        # Track before publishing: on a local broker the ack can come back before publish()
        # returns. A command the broker never took is not in flight: drop it, and the live loop
        # resends its lamps on the next tick.
        self._sent[cmd_id] = sent
        actions = self._ledger.submit(cmd_id, now, expires_ns=expires_ns)
        try:
            await self._publish(sent)
        except DownlinkError:
            self._sent.pop(cmd_id, None)
            self._ledger.discard(cmd_id)
            raise
        self.counters.commands += 1
        self.counters.lamp_commands += len(commands)
        self._do(actions, publish_now=False)
        return cmd_id

    async def _publish(self, sent: _Sent) -> None:
        try:
            await self.link.publish(sent.topic, sent.payload, qos=1)
        except StreetlightError as err:
            self.counters.publish_failures += 1
            raise DownlinkError(f"downlink to {sent.gateway_id} not published: {err}") from err
        self.counters.publishes += 1

    def on_ack(self, ack: CommandAck) -> None:
        """An ack from the central MQTT consumer (duplicates and late acks change nothing)."""
        if ack.cmd_id in self._sent and ack.failed:
            self.counters.failed_lamps += len(ack.failed)
        self._do(self._ledger.on_ack(ack, self.now_ns()), publish_now=False)

    def _do(self, actions: Sequence[Action], *, publish_now: bool) -> list[_Sent]:
        """Book-keep the ledger's actions; returns what must be published again."""
        again: list[_Sent] = []
        for action in actions:
            kind, cmd_id, state = action.kind, action.cmd_id, action.state
            if kind is ActionKind.PUBLISH and publish_now and cmd_id in self._sent:
                again.append(self._sent[cmd_id])
            elif kind in (ActionKind.COMPLETE, ActionKind.GIVE_UP):
                sent = self._sent.pop(cmd_id, None)
                gateway = sent.gateway_id if sent is not None else ""
                self.outcomes.append((cmd_id, gateway, state))
                del self.outcomes[:-1000]  # recent history only
                if state is CommandState.ACKED:
                    self.counters.acked += 1
                elif state is CommandState.PARTIAL:
                    self.counters.partial += 1
                elif state is CommandState.EXPIRED:
                    self.counters.expired += 1
                else:
                    self.counters.failed += 1
        self._ledger.forget_finished()
        return again

    async def poll(self) -> None:
        """Fire the ledger's due timers: re-publish unacknowledged commands, give up on others."""
        for sent in self._do(self._ledger.poll(self.now_ns()), publish_now=True):
            # A failure is counted; the ledger's next timeout retries or gives up.
            with contextlib.suppress(DownlinkError):
                await self._publish(sent)

    @property
    def in_flight(self) -> int:
        return len(self._ledger)

    async def heartbeat(self) -> None:
        """Tell every gateway the central service is alive (QoS 0; a lost one costs nothing).

        A gateway that hears neither a heartbeat nor a downlink for its
        ``autonomy.uplink_timeout_s`` drives its lamps from its stored schedule.
        """
        payload = heartbeat_payload(self.now_ns())
        with contextlib.suppress(StreetlightError):
            await self.link.publish(CENTRAL_HEARTBEAT.format(prefix=self.prefix), payload, qos=0)

    async def run(
        self, stop: asyncio.Event, *, period_s: float = 0.5, heartbeat_s: float = 10.0
    ) -> None:
        """Retry and expire commands every ``period_s``; heartbeat every ``heartbeat_s``."""
        next_beat = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if loop.time() >= next_beat:
                await self.heartbeat()
                next_beat = loop.time() + heartbeat_s
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)


@dataclass(frozen=True)
class _GatewaySink:
    """:class:`domain.records.CommandSink` for one gateway."""

    publisher: DownlinkPublisher
    gateway_id: str

    async def send(self, commands: list[LampCommand]) -> None:
        await self.publisher.send(self.gateway_id, commands)

"""An MQTT session that stays up: reconnection with capped backoff, re-subscription, counters.

Theory of operation
-------------------
:class:`MqttLink` owns one aiomqtt client at a time. A supervisor task connects, subscribes to
every configured filter, announces the link (``on_connected``) and then reads messages,
handing each to ``on_message`` with its topic and payload bytes. When the broker goes away
(restart, network, keep-alive timeout) the read loop fails with ``MqttError``; the supervisor
waits with exponential backoff (capped) and connects again with a fresh client, subscribing
again. Publishing while disconnected raises :class:`LinkDown` at once, so callers that must not
lose data (the uplink) keep it in their own store and retry after the next ``on_connected``.

QoS 1 publishes return once the broker acknowledged them (PUBACK). A handler that raises is
counted and logged and never stops the link: bad input must not take the gateway down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiomqtt

from domain.errors import StreetlightError

_log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None] | None]


class LinkDown(StreetlightError):
    """The MQTT link is not connected; nothing was published."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where and how to connect. ``ca_file`` enables TLS (server verified unless ``tls_insecure``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    keepalive_s: int = 30
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"broker port must be 1..65535, got {self.port}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")

    def tls_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.tls_insecure:
            context.check_hostname = False
        return context


@dataclass
class LinkCounters:
    connects: int = 0
    disconnects: int = 0
    messages_in: int = 0
    handler_errors: int = 0
    published: int = 0
    last_error: str = ""


@dataclass
class MqttLink:
    """An async context manager keeping one MQTT session alive."""

    settings: BrokerSettings
    subscriptions: Sequence[tuple[str, int]] = ()
    on_message: MessageHandler | None = None
    on_connected: Callable[[], Awaitable[None]] | None = None
    will: aiomqtt.Will | None = None
    backoff_s: tuple[float, float] = (0.2, 5.0)
    counters: LinkCounters = field(default_factory=LinkCounters)

    def __post_init__(self) -> None:
        if not 0 < self.backoff_s[0] <= self.backoff_s[1]:
            raise ValueError("backoff_s must be (first, cap) with 0 < first <= cap")
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MqttLink:
        name = self.settings.client_id or "mqtt"
        self._task = asyncio.create_task(self._supervise(), name=f"mqtt-link {name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            raise LinkDown(f"MQTT link to {self.settings.host}:{self.settings.port} is down")
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout_s)
        except aiomqtt.MqttError as err:
            raise LinkDown(f"publish to {topic} failed: {err}") from err
        self.counters.published += 1

    def _client_for(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id or None,
            keepalive=s.keepalive_s,
            will=self.will,
            tls_context=s.tls_context(),
            tls_insecure=s.tls_insecure if s.ca_file else None,
            max_queued_incoming_messages=100_000,
            timeout=10.0,
        )

    async def _supervise(self) -> None:
        delay = self.backoff_s[0]
        while True:
            try:
                async with self._client_for() as client:
                    self._client = client
                    for topic, qos in self.subscriptions:
                        await client.subscribe(topic, qos=qos)
                    self._connected.set()
                    self.counters.connects += 1
                    delay = self.backoff_s[0]
                    if self.on_connected is not None:
                        await self.on_connected()
                    async for message in client.messages:
                        self.counters.messages_in += 1
                        await self._handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as err:
                self.counters.last_error = f"{type(err).__name__}: {err}"
                if self._connected.is_set():
                    self.counters.disconnects += 1
                    _log.warning(
                        "MQTT link to %s:%s lost: %s", self.settings.host, self.settings.port, err
                    )
            finally:
                self._connected.clear()
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])

    async def _handle(self, topic: str, payload: object) -> None:
        if self.on_message is None:
            return
        data = (
            payload
            if isinstance(payload, bytes)
            else str(payload).encode()
            if payload is not None
            else b""
        )
        try:
            result = self.on_message(topic, data)
            if result is not None:
                await result
        except Exception as err:  # a bad message must never stop the link; it is counted
            self.counters.handler_errors += 1
            self.counters.last_error = f"handler: {type(err).__name__}: {err}"
            _log.warning("MQTT handler failed on %s: %s", topic, err)

"""An MQTT session that stays up: reconnection with capped backoff, re-subscription, counters.

Theory of operation
-------------------
:class:`MqttLink` owns one aiomqtt client at a time. A supervisor task connects, subscribes to
every configured filter, announces the link (``on_connected``) and then waits on the client
until the connection fails. When the broker goes away (restart, network, keep-alive timeout)
aiomqtt raises ``MqttError``; the supervisor waits with exponential backoff (capped) and
connects again with a fresh client, subscribing again. Publishing while disconnected raises
:class:`LinkDown` at once, so callers that must not lose data (the uplink) keep it in their own
store and retry after the next ``on_connected``.

*Incoming messages are handed over, not queued.* aiomqtt's default is to put each message on
an ``asyncio.Queue`` and wake a reader for it: a task and an ``asyncio.wait`` per message,
several event-loop passes, which cost a sensor gateway more than decoding the message does.
The link gives aiomqtt its own queue class instead (aiomqtt's public ``queue_type`` option)
whose ``put_nowait`` calls ``on_message`` at once, in arrival order, from the socket reader.
So a handler must not block; it returns None when it is done, or an awaitable for work that
must wait (writing to a controller, publishing an answer), which the link's handler task
awaits one at a time, in arrival order. Messages that arrive before ``on_connected`` has
returned are held and handed over right after it, so a handler can always publish. At most
:data:`MAX_BACKLOG` messages are held, and as many awaitables wait; beyond that they are
dropped and counted (``messages_dropped``).

QoS 1 publishes return once the broker acknowledged them (PUBACK). A handler that raises (or
whose awaitable raises) is counted and logged and never stops the link: bad input must not take
the gateway down.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiomqtt

from domain.errors import StreetlightError

_log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None] | None]

#: Messages held until ``on_connected`` returns, and awaitables waiting for the handler task,
#: at most (each). The bound aiomqtt's own queue had here before.
MAX_BACKLOG: Final = 100_000


async def stop_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and return once every one has ended; failures are logged.

    A task still running after a cancellation is cancelled again: on Python 3.11
    ``asyncio.wait_for`` can lose a cancellation that arrives as its inner call completes
    (gh-86296), and a service loop that lost one waits for its next event forever.
    """
    running = list(tasks)
    while running:
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=1.0)
        for task in running:
            if task.done() and not task.cancelled() and task.exception() is not None:
                _log.error("task %s failed", task.get_name(), exc_info=task.exception())
        running = [task for task in running if not task.done()]


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
    messages_dropped: int = 0
    published: int = 0
    last_error: str = ""


class _Handoff:
    """One connection's incoming messages: held until :meth:`open`, then delivered at once."""

    def __init__(self, deliver: Callable[[aiomqtt.Message], None], counters: LinkCounters) -> None:
        self._deliver = deliver
        self._counters = counters
        self._held: list[aiomqtt.Message] | None = []

    def put(self, message: aiomqtt.Message) -> None:
        held = self._held
        if held is None:
            self._deliver(message)
        elif len(held) < MAX_BACKLOG:
            held.append(message)
        else:
            self._counters.messages_dropped += 1

    def open(self) -> None:
        held, self._held = self._held or [], None
        for message in held:
            self._deliver(message)

    def queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """A queue class for aiomqtt's ``queue_type`` whose ``put_nowait`` is :meth:`put`."""
        put = self.put

        class HandoffQueue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                put(item)

        return HandoffQueue


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
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: collections.deque[tuple[str, Awaitable[None]]] = collections.deque()
        self._pending_event = asyncio.Event()

    async def __aenter__(self) -> MqttLink:
        name = self.settings.client_id or "mqtt"
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"mqtt-link {name}"),
            asyncio.create_task(self._await_handlers(), name=f"mqtt-link {name} handlers"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_tasks(self._tasks)
        self._tasks.clear()
        while self._pending:
            _topic, awaitable = self._pending.popleft()
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: no "was never awaited" warning

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

    def _client_for(self, handoff: _Handoff) -> aiomqtt.Client:
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
            queue_type=handoff.queue_type(),
            timeout=10.0,
        )

    async def _supervise(self) -> None:
        delay = self.backoff_s[0]
        while True:
            handoff = _Handoff(self._deliver, self.counters)
            try:
                async with self._client_for(handoff) as client:
                    self._client = client
                    for topic, qos in self.subscriptions:
                        await client.subscribe(topic, qos=qos)
                    self._connected.set()
                    self.counters.connects += 1
                    delay = self.backoff_s[0]
                    if self.on_connected is not None:
                        await self.on_connected()
                    handoff.open()
                    # Nothing is ever queued (the hand-off takes every message), so this only
                    # waits: aiomqtt ends it with MqttError when the connection is lost.
                    async for _message in client.messages:
                        pass
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

    def _deliver(self, message: aiomqtt.Message) -> None:
        """Hand one message to ``on_message`` (called from aiomqtt's socket reader)."""
        self.counters.messages_in += 1
        if self.on_message is None:
            return
        topic = message.topic.value
        payload = message.payload
        data = (
            payload
            if isinstance(payload, bytes)
            else str(payload).encode()
            if payload is not None
            else b""
        )
        try:
            result = self.on_message(topic, data)
        except Exception as err:  # a bad message must never stop the link; it is counted
            self._handler_failed(topic, err)
            return
        if result is None:
            return
        if len(self._pending) >= MAX_BACKLOG:
            self.counters.messages_dropped += 1
            if inspect.iscoroutine(result):
                result.close()
            return
        self._pending.append((topic, result))
        self._pending_event.set()

    async def _await_handlers(self) -> None:
        """Await the handlers' awaitables one at a time, in the order their messages came."""
        while True:
            await self._pending_event.wait()
            self._pending_event.clear()
            while self._pending:
                topic, awaitable = self._pending.popleft()
                try:
                    await awaitable
                except Exception as err:  # as in _deliver: counted, never fatal
                    self._handler_failed(topic, err)

    def _handler_failed(self, topic: str, err: Exception) -> None:
        self.counters.handler_errors += 1
        self.counters.last_error = f"handler: {type(err).__name__}: {err}"
        _log.warning("MQTT handler failed on %s: %s", topic, err)

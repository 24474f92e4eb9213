"""The MQTT side of ingest: subscribe to every gateway's uplink, status and ack, feed the pipeline.

Theory of operation
-------------------
Two named tasks in a ``TaskGroup``:

* ``ingest-mqtt`` keeps one aiomqtt session up: it connects (user/password, TLS), subscribes
  to ``{prefix}/+/uplink``, ``+/status`` and ``+/ack`` at QoS 1 and appends each message,
  stamped with the receive time, to an in-memory list. When the broker goes away it connects
  again after a capped exponential backoff. With ``persistent_session`` (the default; a fixed
  ``client_id`` and ``clean_session = false``) the broker keeps the subscriptions and queues
  QoS 1 uplinks while the consumer is away, as the protocol recommends.
* ``ingest-pipeline`` wakes when messages are waiting and hands *all* of them (up to
  ``max_batch_messages``) to :meth:`IngestPipeline.handle_many` in one call, so the historian
  writes one transaction per wake-up rather than one per message. The pipeline runs on one
  dedicated worker thread: SQLite and a blocked sink (back-pressure) never stall the event
  loop, and the MQTT keep-alive keeps going while the pipeline catches up.

The MQTT client acknowledges a QoS 1 message when it arrives, not when it is stored (paho has
no manual acks through aiomqtt). Messages received but not yet handled are the ``backlog``
counter; :meth:`IngestConsumer.drain` waits for it to reach zero. A pipeline failure (the
historian's disk) ends the task group and surfaces from ``async with``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import aiomqtt

from domain.protocol import Channel, TopicError, gateway_subscription
from sensor_ingest.pipeline import IngestPipeline

__all__ = ["ConsumerCounters", "IngestConsumer"]

_log = logging.getLogger(__name__)


@dataclass
class ConsumerCounters:
    connects: int = 0
    disconnects: int = 0
    received: int = 0
    handled: int = 0
    batches: int = 0
    last_error: str = ""

    @property
    def backlog(self) -> int:
        """Messages received and not yet through the pipeline."""
        return self.received - self.handled


class IngestConsumer:
    """An async context manager that feeds ``pipeline`` from an MQTT broker.

    All options are keyword-only and checked here, so a bad configuration fails at start-up
    with a message that says what to fix.
    """

    def __init__(
        self,
        pipeline: IngestPipeline,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "streetlight-ingest",
        persistent_session: bool = True,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls_insecure: bool = False,
        keepalive_s: int = 30,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        max_batch_messages: int = 200,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not host:
            raise ValueError("host must name the broker (e.g. 127.0.0.1)")
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, got {port!r}")
        self.prefix = prefix if prefix is not None else pipeline.config.prefix
        if self.prefix != pipeline.config.prefix:
            raise ValueError(
                f"prefix {self.prefix!r} differs from the pipeline's {pipeline.config.prefix!r}: "
                "the pipeline would refuse every topic"
            )
        try:
            self.subscriptions = tuple(
                gateway_subscription(self.prefix, c)
                for c in (Channel.UPLINK, Channel.STATUS, Channel.ACK)
            )
        except TopicError as err:
            raise ValueError(err.reason) from err
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        if persistent_session and not client_id:
            raise ValueError("a persistent session needs a fixed client_id")
        if (cert_file is None) != (key_file is None):
            raise ValueError("a TLS client certificate needs both cert_file and key_file")
        if (cert_file is not None or tls_insecure) and ca_file is None:
            raise ValueError("cert_file and tls_insecure need TLS: give ca_file")
        for name, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"{name} {path!r} is not a readable file")
        if not keepalive_s > 0:
            raise ValueError(f"keepalive_s must be > 0, got {keepalive_s!r}")
        if not 0 < backoff_s[0] <= backoff_s[1]:
            raise ValueError(
                f"backoff_s must be (first, cap) with 0 < first <= cap, got {backoff_s}"
            )
        if max_batch_messages < 1:
            raise ValueError(f"max_batch_messages must be >= 1, got {max_batch_messages!r}")
        self.pipeline = pipeline
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.client_id = client_id
        self.persistent_session = persistent_session
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.tls_insecure = tls_insecure
        self.keepalive_s = keepalive_s
        self.backoff_s = backoff_s
        self.max_batch_messages = max_batch_messages
        self.clock = clock
        self.counters = ConsumerCounters()
        self._pending: deque[tuple[str, bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> IngestConsumer:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-pipeline")
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._tasks = [
            self._group.create_task(self._work(), name="ingest-pipeline"),
            self._group.create_task(self._supervise(), name="ingest-mqtt"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                # A clean exit hands what was already received to the pipeline first.
                try:
                    await self.drain(timeout_s=30.0)
                except TimeoutError:
                    _log.error(
                        "ingest: stopping with %d received messages not yet stored",
                        self.counters.backlog,
                    )
            for task in self._tasks:
                task.cancel()
            if self._group is not None:
                await self._group.__aexit__(exc_type, exc, tb)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until subscribed to every topic; ``TimeoutError`` otherwise."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def drain(self, timeout_s: float) -> None:
        """Wait until every message received so far went through the pipeline."""
        async with asyncio.timeout(timeout_s):
            while self.counters.backlog:
                self._idle.clear()
                if not self.counters.backlog:
                    break
                await self._idle.wait()

    # --- tasks ----------------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        tls: ssl.SSLContext | None = None
        if self.ca_file is not None:
            tls = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None and self.key_file is not None:
                tls.load_cert_chain(self.cert_file, self.key_file)
            if self.tls_insecure:
                tls.check_hostname = False
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id or None,
            clean_session=not self.persistent_session,
            keepalive=self.keepalive_s,
            tls_context=tls,
            tls_insecure=self.tls_insecure if tls is not None else None,
            timeout=10.0,
        )

    async def _supervise(self) -> None:
        delay = self.backoff_s[0]
        pending = self._pending
        clock = self.clock
        counters = self.counters
        while True:
            try:
                async with self._client() as client:
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    counters.connects += 1
                    self._connected.set()
                    delay = self.backoff_s[0]
                    async for message in client.messages:
                        payload = message.payload
                        data = (
                            payload
                            if isinstance(payload, bytes)
                            else bytes(payload)
                            if isinstance(payload, bytearray)
                            else str(payload).encode()
                            if payload is not None
                            else b""
                        )
                        pending.append((message.topic.value, data, clock()))
                        counters.received += 1
                        self._wake.set()
            except aiomqtt.MqttError as err:
                counters.last_error = f"{type(err).__name__}: {err}"
                if self._connected.is_set():
                    counters.disconnects += 1
                    _log.warning("ingest: MQTT %s:%s lost: %s", self.host, self.port, err)
                else:
                    _log.warning("ingest: cannot connect to %s:%s: %s", self.host, self.port, err)
            finally:
                self._connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending:
                n = min(len(pending), self.max_batch_messages)
                batch = [pending.popleft() for _ in range(n)]
                await loop.run_in_executor(self._executor, self.pipeline.handle_many, batch)
                self.counters.handled += n
                self.counters.batches += 1
            self._idle.set()

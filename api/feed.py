"""Live events for the dashboard: an in-process publish/subscribe hub, one channel per council.

Theory of operation
-------------------
The central service calls :meth:`LiveFeed.publish` with a council id and an event (lamp levels
changed, a presence detection, an alarm raised or cleared). Every open dashboard stream of that
council holds a :class:`Subscription`: a bounded buffer of events and a wake-up signal.

Rules:

* **Publishing never waits.** ``publish`` (one event) and ``publish_many`` (a batch, e.g. one
  control tick, delivered together) append to each subscriber's buffer and return; they do
  no I/O. A subscriber whose browser is slow does not hold up the control loop: when its
  buffer is full the *oldest* event is dropped (the newest state matters most on a live map)
  and counted, per subscriber (:attr:`Subscription.dropped`, and :meth:`Subscription.take_dropped`
  so the stream can tell the browser to reload) and for the whole feed (:attr:`LiveFeed.dropped`).
* **Councils are isolated by construction.** A subscription belongs to one council and only
  events published to that council reach it; nothing is broadcast across channels.
* **Order is kept** per subscriber: events arrive in the order they were published.
* **Any thread may publish.** The central service publishes from its event loop; tests and
  threaded producers publish from other threads. A subscription remembers the event loop of the
  task reading it; a publish from that loop sets the wake-up signal directly, a publish from
  another thread hands it to that loop with ``call_soon_threadsafe``. Buffers are guarded by a
  lock held only for a deque operation.
* :meth:`LiveFeed.close` ends every subscription (their readers see the end of the stream), so
  a server can finish its open streams before it stops.

Events are frozen dataclasses whose :meth:`as_json` gives a JSON-ready dict with a ``type``
field. Times are UTC epoch nanoseconds, levels fractions of full output (0..1).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal

from controller.health import Alarm

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "AlarmEvent",
    "LevelsEvent",
    "LiveEvent",
    "LiveFeed",
    "PresenceEvent",
    "Subscription",
]

#: Events a subscriber may have waiting before the oldest is dropped. A browser reads an event
#: in well under a millisecond, so this only fills when a connection stalls.
DEFAULT_MAX_QUEUED = 256


def _check_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (UTC epoch ns), got {value!r}")


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True, slots=True)
class LevelsEvent:
    """Lamp levels changed (commanded by the controller or measured by the lamps).

    ``levels`` maps lamp id to level, a fraction of full output in [0, 1] (0 = off).
    """

    time_ns: int
    levels: Mapping[str, float]
    type: ClassVar[str] = "levels"

    def __post_init__(self) -> None:
        _check_time("time_ns", self.time_ns)
        if not isinstance(self.levels, Mapping):
            raise ValueError(f"levels must map lamp id to level, got {type(self.levels).__name__}")
        copied: dict[str, float] = {}
        for lamp_id, level in self.levels.items():
            _check_id("a lamp id in levels", lamp_id)
            if (
                isinstance(level, bool)
                or not isinstance(level, int | float)
                or not math.isfinite(level)
                or not 0.0 <= level <= 1.0
            ):
                raise ValueError(
                    f"level of lamp {lamp_id!r} is {level!r}; levels are fractions of full "
                    "output within [0, 1]"
                )
            copied[lamp_id] = float(level)
        # A private copy: the publisher may keep mutating its own dict after publishing.
        object.__setattr__(self, "levels", copied)

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "time_ns": self.time_ns, "levels": dict(self.levels)}


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A presence detection by ``source_id`` (a sensor or a lamp-mounted detector) that raised
    ``lamp_ids`` (the detecting lamp and the neighbours the policy boosts)."""

    time_ns: int
    source_id: str
    lamp_ids: tuple[str, ...]
    type: ClassVar[str] = "presence"

    def __post_init__(self) -> None:
        _check_time("time_ns", self.time_ns)
        _check_id("source_id", self.source_id)
        if isinstance(self.lamp_ids, str) or not isinstance(self.lamp_ids, tuple | list):
            raise ValueError(f"lamp_ids must be a tuple of lamp ids, got {self.lamp_ids!r}")
        for lamp_id in self.lamp_ids:
            _check_id("a lamp id in lamp_ids", lamp_id)
        object.__setattr__(self, "lamp_ids", tuple(self.lamp_ids))

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "time_ns": self.time_ns,
            "source_id": self.source_id,
            "lamp_ids": list(self.lamp_ids),
        }


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm raised (``ended_ns`` None) or cleared on a lamp or a gateway, as the live
    controller's health monitor reports it (:class:`controller.health.Alarm`)."""

    time_ns: int
    alarm_id: str
    kind: str
    scope: Literal["lamp", "gateway"]
    source_id: str
    started_ns: int
    ended_ns: int | None = None
    detail: str = ""
    type: ClassVar[str] = "alarm"

    def __post_init__(self) -> None:
        _check_time("time_ns", self.time_ns)
        _check_id("alarm_id", self.alarm_id)
        _check_id("kind", self.kind)
        _check_id("source_id", self.source_id)
        if self.scope not in ("lamp", "gateway"):
            raise ValueError(f"scope must be 'lamp' or 'gateway', got {self.scope!r}")
        _check_time("started_ns", self.started_ns)
        if self.ended_ns is not None:
            _check_time("ended_ns", self.ended_ns)
            if self.ended_ns < self.started_ns:
                raise ValueError(
                    f"alarm {self.alarm_id!r} ends at {self.ended_ns} ns, before it started at "
                    f"{self.started_ns} ns"
                )
        if not isinstance(self.detail, str):
            raise ValueError(f"detail must be a string, got {self.detail!r}")

    @classmethod
    def of(cls, alarm: Alarm, time_ns: int) -> AlarmEvent:
        """The event for a health-monitor alarm, published at ``time_ns``."""
        return cls(
            time_ns=time_ns,
            alarm_id=alarm.alarm_id,
            kind=alarm.kind.value,
            scope="lamp" if alarm.scope.value == "lamp" else "gateway",
            source_id=alarm.source_id,
            started_ns=alarm.started_ns,
            ended_ns=alarm.ended_ns,
            detail=alarm.detail,
        )

    @property
    def open(self) -> bool:
        return self.ended_ns is None

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "time_ns": self.time_ns,
            "alarm_id": self.alarm_id,
            "kind": self.kind,
            "scope": self.scope,
            "source_id": self.source_id,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "detail": self.detail,
            "open": self.open,
        }


LiveEvent = LevelsEvent | PresenceEvent | AlarmEvent
_EVENT_TYPES = (LevelsEvent, PresenceEvent, AlarmEvent)


class Subscription:
    """One reader of one council's events; made by :meth:`LiveFeed.subscribe`.

    Read with ``await sub.get(timeout_s)`` or ``async for event in sub``; leave with ``async
    with``/``with`` or :meth:`close`.
    """

    def __init__(self, feed: LiveFeed, council_id: str, max_queued: int) -> None:
        self.council_id = council_id
        self.max_queued = max_queued
        self._feed = feed
        self._buffer: deque[LiveEvent] = deque()
        self._lock = threading.Lock()
        # Bound to the reader's loop on its first wait (asyncio.Event takes no loop here).
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._dropped = 0
        self._unreported = 0

    @property
    def closed(self) -> bool:
        """True once the subscription or its feed was closed (buffered events stay readable)."""
        return self._closed

    @property
    def dropped(self) -> int:
        """Events dropped because this subscriber's buffer was full."""
        return self._dropped

    @property
    def queued(self) -> int:
        return len(self._buffer)

    def take_dropped(self) -> int:
        """Events dropped since the last call (0 if none): the reader missed them."""
        with self._lock:
            n, self._unreported = self._unreported, 0
        return n

    def _offer(self, events: Sequence[LiveEvent]) -> int:
        """Buffer ``events`` together (dropping the oldest when full) and wake the reader once;
        returns the number of events dropped."""
        with self._lock:
            if self._closed:
                return 0
            overflow = max(0, len(self._buffer) + len(events) - self.max_queued)
            # The oldest go: first those already waiting, then the head of the batch.
            from_buffer = min(overflow, len(self._buffer))
            for _ in range(from_buffer):
                self._buffer.popleft()
            self._buffer.extend(events[overflow - from_buffer :])
            self._dropped += overflow
            self._unreported += overflow
            loop = self._loop
        self._wake(loop)
        return overflow

    def _wake(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if loop is None:
            return  # no reader has waited yet; get() looks at the buffer before it waits
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
            return
        try:
            loop.call_soon_threadsafe(self._wakeup.set)
        except RuntimeError:
            # The reader's loop has closed, so the reader is gone; its subscription is removed
            # when its stream is torn down, and there is no one left to wake.
            return

    async def get(self, timeout_s: float | None = None) -> LiveEvent | None:
        """The next event, waiting up to ``timeout_s`` (None: forever).

        Returns None when the wait times out, or when the subscription is closed and its
        buffer is empty (then :attr:`closed` is True).
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                self._loop = loop
                if self._buffer:
                    return self._buffer.popleft()
                if self._closed:
                    return None
                # Cleared under the lock: a publish after this point sets it again.
                self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout_s)
            except TimeoutError:
                return None

    def close(self) -> None:
        """Stop receiving events and leave the feed (idempotent)."""
        with self._lock:
            already = self._closed
            self._closed = True
            loop = self._loop
        if not already:
            self._feed._remove(self)
        self._wake(loop)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LiveEvent:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LiveFeed:
    """Publish/subscribe of :data:`LiveEvent` per council; see the module docstring."""

    def __init__(self, *, max_queued: int = DEFAULT_MAX_QUEUED) -> None:
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ValueError(
                f"max_queued must be a positive int (events per subscriber), got {max_queued!r}"
            )
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = {}
        self._closed = False
        self._published = 0
        self._dropped = 0

    @property
    def published(self) -> int:
        """Events published so far (to any council, with or without subscribers)."""
        return self._published

    @property
    def dropped(self) -> int:
        """Events dropped so far across all subscribers because a buffer was full."""
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribers(self, council_id: str) -> int:
        """Open subscriptions of ``council_id``."""
        with self._lock:
            return len(self._subscribers.get(council_id, ()))

    def subscribe(self, council_id: str, *, max_queued: int | None = None) -> Subscription:
        """A new subscription to ``council_id``'s events, receiving from now on.

        On a closed feed the subscription is already closed (its reader sees the end at once).
        """
        _check_id("council_id", council_id)
        limit = self.max_queued if max_queued is None else max_queued
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_queued must be a positive int, got {limit!r}")
        sub = Subscription(self, council_id, limit)
        with self._lock:
            if self._closed:
                sub._closed = True
            else:
                self._subscribers.setdefault(council_id, set()).add(sub)
        return sub

    def publish(self, council_id: str, event: LiveEvent) -> int:
        """Deliver ``event`` to every subscriber of ``council_id``; never blocks.

        Returns the number of subscribers it reached. Safe to call from the event loop or any
        thread; does nothing on a closed feed.
        """
        return self.publish_many(council_id, (event,))

    def publish_many(self, council_id: str, events: Sequence[LiveEvent]) -> int:
        """Deliver ``events`` in order, as one batch: each subscriber gets them together (a
        reader never sees half a control tick) with one wake-up. See :meth:`publish`."""
        _check_id("council_id", council_id)
        batch = tuple(events)
        for event in batch:
            if not isinstance(event, _EVENT_TYPES):
                raise ValueError(
                    "event must be a LevelsEvent, PresenceEvent or AlarmEvent, got "
                    f"{type(event).__name__}"
                )
        with self._lock:
            if self._closed or not batch:
                return 0
            self._published += len(batch)
            subs = tuple(self._subscribers.get(council_id, ()))
        dropped = sum(sub._offer(batch) for sub in subs)
        if dropped:
            with self._lock:
                self._dropped += dropped
        return len(subs)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.council_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.council_id]

    def close(self) -> None:
        """End every subscription; later publishes do nothing and later subscriptions start
        closed. Call it before stopping the web server so open streams finish."""
        with self._lock:
            self._closed = True
            subs = [s for group in self._subscribers.values() for s in group]
        for sub in subs:
            sub.close()

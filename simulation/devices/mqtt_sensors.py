"""Virtual MQTT sensors: presence detectors and footfall/traffic counters driven by demand models.

Theory of operation
-------------------
Time is simulated: :class:`SimClock` runs ``speedup`` simulated seconds per real second from a
configured start, so a night can pass in minutes. Payload timestamps ``t`` are simulated epoch
milliseconds (with ``speedup = 1`` and ``start = "now"`` they are wall-clock time).

*Presence* (:class:`PresenceSource`, sans-io): the group's sensors stand ``spacing_m`` apart
along ``streets`` straight streets. Road users come from
:meth:`simulation.demand.DemandModel.synthetic` (the documented default hourly shapes scaled to
the group's peaks), walk, cycle or drive along a street and are detected by every sensor they
pass, with the default PIR miss probabilities and latency (:func:`simulation.demand.simulate_night`
does all of it, the same code the planner runs). Detections are made chunk by chunk; each chunk
starts a street-crossing earlier than it is kept, so users already on a street when a chunk
begins are detected too and the detection rate has no dips at chunk boundaries.

*Counters* (:class:`CountSource`, sans-io): at the end of every whole ``interval_s`` of
simulated time (intervals on the epoch grid, e.g. on the minute; the first is the first one
counted completely) each counter reports a Poisson count whose mean is the demand model's rate
integrated over the interval (footfall: people on foot and cycling; traffic: vehicles).

:class:`MqttSensors` publishes both with aiomqtt (one connection, reconnecting with back-off;
events that fall due while the broker is away are counted as dropped, as a real sensor without
a buffer would lose them). It can also publish a burst of N messages as fast as the client
goes (benchmarks) and malformed payloads of every kind in :data:`MALFORMED` (robustness tests).

Payloads (JSON, UTF-8)::

    presence: {"id": "pir-001", "t": 1766336400123, "presence": 1}
    counts:   {"id": "ff-001", "count": 17, "interval_s": 60.0, "t": 1766336460000}
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import aiomqtt
import numpy as np
import numpy.typing as npt

from domain.records import SensorKind
from simulation.demand import (
    RESIDENTIAL_FOOTFALL_SHAPE,
    DemandModel,
    ModeSpeeds,
    StreetGeometry,
    simulate_night,
)
from simulation.devices.config import (
    BrokerConfig,
    ClockConfig,
    CountingSensors,
    DeviceError,
    PresenceSensors,
    sensor_ids,
)

_log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
#: A QoS 0 publish waits only when the socket is full; give up (and count a drop) after this.
_PUBLISH_TIMEOUT_S = 5.0
I64 = npt.NDArray[np.int64]
Clock = Callable[[], float]


class BrokerError(DeviceError):
    """The MQTT broker cannot be reached or refused the sensors; ``host`` and ``port`` say where."""

    def __init__(self, message: str, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(message)


# --- time --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SimClock:
    """Simulated UTC epoch ns: ``start_ns + (monotonic() - origin_s) * speedup``."""

    start_ns: int
    speedup: float = 1.0
    origin_s: float = 0.0
    monotonic: Clock = time.monotonic

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speedup) and self.speedup > 0):
            raise ValueError(f"speedup must be > 0, got {self.speedup!r}")

    @classmethod
    def from_config(
        cls,
        config: ClockConfig,
        *,
        monotonic: Clock = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> SimClock:
        start_ns = wall_ns() if config.start == "now" else int(config.start.timestamp()) * NS_PER_S
        return cls(start_ns, config.speedup, monotonic(), monotonic)

    def now_ns(self) -> int:
        return self.start_ns + round((self.monotonic() - self.origin_s) * self.speedup * NS_PER_S)

    def real_s_until(self, sim_ns: int) -> float:
        """Real seconds until the simulated clock reads ``sim_ns`` (negative if past)."""
        return (sim_ns - self.now_ns()) / NS_PER_S / self.speedup


# --- payloads (pure) ---------------------------------------------------------------------------


def _json(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def presence_payload(sensor_id: str, time_ns: int) -> bytes:
    """``{"id": sensor_id, "t": epoch_ms, "presence": 1}``."""
    return _json({"id": sensor_id, "t": time_ns // 1_000_000, "presence": 1})


def count_payload(sensor_id: str, count: int, interval_s: float, time_ns: int) -> bytes:
    """``{"id", "count", "interval_s", "t"}``; ``t`` is the end of the counted interval."""
    return _json(
        {"id": sensor_id, "count": int(count), "interval_s": interval_s, "t": time_ns // 1_000_000}
    )


def topic_for(template: str, sensor_id: str, kind: str) -> str:
    return template.format(sensor_id=sensor_id, kind=kind)


#: Malformed payloads a robust consumer must reject (and survive), by name.
MALFORMED: Mapping[str, Callable[[str, int], bytes]] = {
    "empty": lambda sid, t: b"",
    "truncated_json": lambda sid, t: presence_payload(sid, t)[:-7],
    "not_an_object": lambda sid, t: b"[1, 2, 3]",
    "missing_id": lambda sid, t: _json({"t": t // 1_000_000, "presence": 1}),
    "missing_time": lambda sid, t: _json({"id": sid, "presence": 1}),
    "wrong_types": lambda sid, t: _json({"id": 42, "t": "soon", "presence": "yes"}),
    "non_finite": lambda sid, t: f'{{"id":"{sid}","t":NaN,"presence":Infinity}}'.encode(),
    "negative_count": lambda sid, t: _json(
        {"id": sid, "count": -5, "interval_s": 60, "t": t // 1_000_000}
    ),
    "not_utf8": lambda sid, t: b"\xff\xfe\x00\x81presence",
    "unknown_sensor": lambda sid, t: presence_payload("no-such-sensor", t),
    "far_future": lambda sid, t: presence_payload(sid, t + 10 * 365 * 86_400 * NS_PER_S),
    "oversized": lambda sid, t: _json(
        {"id": sid, "t": t // 1_000_000, "presence": 1, "pad": "x" * 300_000}
    ),
}


# --- event sources (sans-io) -------------------------------------------------------------------


def _hour_floor(ns: int) -> int:
    return ns - ns % (3600 * NS_PER_S)


class PresenceSource:
    """Presence detections of one group in time order (see the module doc).

    ``take_until(t)`` returns every detection at or before ``t`` not returned before, as
    ``(time_ns, sensor_index)``; sensor indices follow :func:`sensor_ids`.
    """

    def __init__(
        self,
        group: PresenceSensors,
        *,
        start_ns: int,
        tz: str,
        seed: int,
        chunk_s: int = 900,
    ) -> None:
        self.group = group
        self._tz = tz
        self._seed = seed
        self._chunk_s = chunk_s
        n = group.count
        street = np.repeat(np.arange(group.streets), group.per_street)
        order = np.tile(np.arange(group.per_street), group.streets)
        self._streets = StreetGeometry.from_xy(
            order * group.spacing_m, street * 10_000.0, street, order, n_streets=group.streets
        )
        speeds = ModeSpeeds()
        slowest_mps = min(m - j for m, j in zip(speeds.mean_mps, speeds.jitter_mps, strict=True))
        street_m = group.per_street * group.spacing_m + 30.0
        # Users who entered up to one street-crossing earlier are still being detected.
        self._lead_s = math.ceil(street_m / slowest_mps) + 5
        self._n_sensors = n
        self._chunk = 0
        self._generated_to_ns = start_ns
        self._times: I64 = np.zeros(0, dtype=np.int64)
        self._sensors: I64 = np.zeros(0, dtype=np.int64)

    def _generate(self) -> None:
        start = self._generated_to_ns
        early = start - self._lead_s * NS_PER_S
        n_steps = self._lead_s + self._chunk_s
        model_start = _hour_floor(early)
        n_hours = math.ceil((start + self._chunk_s * NS_PER_S - model_start) / (3600 * NS_PER_S))
        g = self.group
        demand = DemandModel.synthetic(
            g.streets,
            start_ns=model_start,
            n_hours=n_hours,
            tz=self._tz,
            footfall_peak_per_h=g.footfall_peak_per_h,
            traffic_peak_per_h=g.traffic_peak_per_h,
            footfall_shape=g.footfall_shape or RESIDENTIAL_FOOTFALL_SHAPE,
        )
        seq = np.random.SeedSequence((self._seed, self._chunk))
        _, triggers = simulate_night(
            demand,
            self._streets,
            start_ns=early,
            n_steps=n_steps,
            seed=int(seq.generate_state(1)[0]),
        )
        keep = triggers.step >= self._lead_s
        step = triggers.step[keep].astype(np.int64)
        jitter = np.random.default_rng(seq.spawn(1)[0]).integers(0, NS_PER_S, len(step))
        times = early + step * NS_PER_S + jitter
        order = np.argsort(times, kind="stable")
        self._times = np.concatenate((self._times, times[order]))
        self._sensors = np.concatenate((self._sensors, triggers.lamp[keep].astype(np.int64)[order]))
        self._generated_to_ns = start + self._chunk_s * NS_PER_S
        self._chunk += 1

    def take_until(self, until_ns: int) -> tuple[I64, I64]:
        while self._generated_to_ns <= until_ns:
            self._generate()
        cut = int(np.searchsorted(self._times, until_ns, side="right"))
        out = self._times[:cut], self._sensors[:cut]
        self._times, self._sensors = self._times[cut:], self._sensors[cut:]
        return out

    def next_time_ns(self) -> int:
        """Time of the next detection, or the end of what is generated if there is none yet."""
        if len(self._times) == 0:
            self._generate()
        return int(self._times[0]) if len(self._times) else self._generated_to_ns


class CountSource:
    """Counts of one footfall or traffic group (see the module doc); deterministic per seed."""

    def __init__(
        self, group: CountingSensors, *, start_ns: int, tz: str, seed: int, span_h: int = 48
    ) -> None:
        self.group = group
        self._tz = tz
        self._span_h = span_h
        self._rng = np.random.default_rng(seed)
        self._model = self._build(_hour_floor(start_ns))

    def _build(self, model_start_ns: int) -> DemandModel:
        g = self.group
        return DemandModel.synthetic(
            g.count,
            start_ns=model_start_ns,
            n_hours=self._span_h,
            tz=self._tz,
            footfall_peak_per_h=g.peak_per_h if g.kind == SensorKind.FOOTFALL.value else 0.0,
            traffic_peak_per_h=g.peak_per_h if g.kind == SensorKind.TRAFFIC.value else 0.0,
            footfall_shape=g.footfall_shape or RESIDENTIAL_FOOTFALL_SHAPE,
        )

    def mean(self, start_ns: int, end_ns: int) -> npt.NDArray[np.float64]:
        """Expected count per sensor in ``[start_ns, end_ns)``: the rate integrated exactly."""
        if start_ns < self._model.start_ns or end_ns > self._model.end_ns:
            self._model = self._build(_hour_floor(start_ns))
        model = self._model
        slot_ns = model.slot_ns
        first = (start_ns - model.start_ns) // slot_ns
        last = (end_ns - 1 - model.start_ns) // slot_ns
        total = np.zeros(model.n_streets)
        rate = model.total_rate_per_h
        for k in range(first, last + 1):
            lo = max(start_ns, model.start_ns + k * slot_ns)
            hi = min(end_ns, model.start_ns + (k + 1) * slot_ns)
            total += rate[:, k] * ((hi - lo) / NS_PER_S / 3600.0)
        return total

    def counts(self, start_ns: int, end_ns: int) -> I64:
        return self._rng.poisson(self.mean(start_ns, end_ns)).astype(np.int64)


# --- the publisher -----------------------------------------------------------------------------


@dataclasses.dataclass
class SensorStats:
    """Running totals of what the sensors sent (and could not send)."""

    presence: int = 0
    counts: int = 0
    dropped: int = 0
    malformed: int = 0
    burst: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class BurstResult:
    messages: int
    elapsed_s: float

    @property
    def per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else math.inf


@dataclasses.dataclass(frozen=True, slots=True)
class _Sensor:
    sensor_id: str
    kind: str
    topic: str
    qos: int


class MqttSensors:
    """Virtual sensors publishing to an MQTT broker (see the module doc).

    ``base_dir`` resolves relative TLS file paths. The first connection is made in
    ``__aenter__``, which raises :class:`BrokerError` if the broker refuses or cannot be
    reached; later losses are retried in the background with back-off.
    """

    def __init__(
        self,
        groups: Sequence[PresenceSensors | CountingSensors],
        *,
        broker: BrokerConfig,
        clock: SimClock,
        tz: str = "Europe/London",
        seed: int = 42,
        base_dir: Path | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.groups = tuple(groups)
        self.broker = broker
        self.clock = clock
        self._tz = tz
        self._seed = seed
        self._connect_timeout_s = connect_timeout_s
        self._password = _password(broker)
        self._tls = _tls_params(broker, base_dir)
        self._sensors: dict[str, _Sensor] = {}
        for group in self.groups:
            for sid in sensor_ids(group):
                topic = topic_for(group.topic, sid, group.kind)
                self._sensors[sid] = _Sensor(sid, group.kind, topic, group.qos)
        self.stats = SensorStats()
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def sensor_ids(self) -> tuple[str, ...]:
        return tuple(self._sensors)

    def topic_of(self, sensor_id: str) -> str:
        return self._sensor(sensor_id).topic

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- lifecycle --

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self._first_connect = asyncio.get_running_loop().create_future()
            self._tasks = [tasks.create_task(self._connection(), name="mqtt-sensors-connection")]
            await asyncio.wait_for(
                asyncio.shield(self._first_connect), self._connect_timeout_s + 2.0
            )
            seeds = np.random.SeedSequence(self._seed).spawn(len(self.groups))
            start_ns = self.clock.now_ns()
            for k, (group, seq) in enumerate(zip(self.groups, seeds, strict=True)):
                seed = int(seq.generate_state(1)[0])
                name = f"mqtt-sensors-{k}-{group.kind}"
                if isinstance(group, PresenceSensors):
                    source = PresenceSource(group, start_ns=start_ns, tz=self._tz, seed=seed)
                    self._tasks.append(tasks.create_task(self._presence_loop(source), name=name))
                else:
                    counts = CountSource(group, start_ns=start_ns, tz=self._tz, seed=seed)
                    self._tasks.append(
                        tasks.create_task(self._count_loop(counts, start_ns), name=name)
                    )
        except TimeoutError:
            await self._abort(stack)
            raise BrokerError(
                f"no answer from the MQTT broker at {self._where} within "
                f"{self._connect_timeout_s:g} s; is it running, and are broker.host/port right?",
                host=self.broker.host,
                port=self.broker.port,
            ) from None
        except BaseException:
            await self._abort(stack)
            raise
        self._stack = stack
        return self

    async def _abort(self, stack: contextlib.AsyncExitStack) -> None:
        await self._stop_tasks()
        await stack.aclose()

    async def _stop_tasks(self) -> None:
        """Publishers first, while the connection still carries their last messages.

        Cancelled again until they end: on Python 3.11 ``asyncio.wait_for`` (inside aiomqtt's
        publish) can swallow a cancellation that arrives as the publish completes.
        """
        self._closing = True
        connection, publishers = self._tasks[:1], self._tasks[1:]
        for tasks in (publishers, connection):
            for _ in range(100):
                pending = [task for task in tasks if not task.done()]
                if not pending:
                    break
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=0.1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._stop_tasks()
        stack, self._stack = self._stack, None
        if stack is not None:
            # Not the body's exception: a TaskGroup would wrap it in an ExceptionGroup. Only a
            # failed background task raises here (it is also why the body was cancelled).
            await stack.aclose()
        return None

    @property
    def _where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def _new_client(self) -> aiomqtt.Client:
        b = self.broker
        return aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=self._password,
            identifier=b.client_id,
            keepalive=b.keepalive_s,
            tls_params=self._tls,
            tls_insecure=b.tls.insecure if b.tls is not None else None,
            timeout=self._connect_timeout_s,
        )

    async def _connection(self) -> None:
        assert self._first_connect is not None
        backoff_s = 0.2
        while True:
            try:
                async with self._new_client() as client:
                    self._client = client
                    self._connected.set()
                    backoff_s = 0.2
                    if not self._first_connect.done():
                        self._first_connect.set_result(None)
                        _log.info("sensors connected to %s", self._where)
                    # Nothing is subscribed: the iterator only ends, with MqttError, on a
                    # disconnection. That is how aiomqtt reports a lost connection.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as err:
                if not self._first_connect.done():
                    self._first_connect.set_exception(
                        BrokerError(
                            f"cannot connect to the MQTT broker at {self._where}: {err}; check "
                            "broker.host/port, username/password and tls in the devices file",
                            host=self.broker.host,
                            port=self.broker.port,
                        )
                    )
                    return
                _log.warning("sensors lost the broker at %s (%s); reconnecting", self._where, err)
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 5.0)

    # -- publishing --

    def _sensor(self, sensor_id: str) -> _Sensor:
        try:
            return self._sensors[sensor_id]
        except KeyError:
            raise KeyError(
                f"no sensor {sensor_id!r}; known: {list(self._sensors)[:5]}..."
            ) from None

    async def _send(self, topic: str, payload: bytes, qos: int) -> bool:
        client = self._client
        if client is None:
            self.stats.dropped += 1
            return False
        try:
            await client.publish(topic, payload, qos=qos, timeout=_PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError:
            self.stats.dropped += 1
            return False
        return True

    def _require_client(self) -> aiomqtt.Client:
        if self._client is None:
            raise BrokerError(
                f"not connected to the MQTT broker at {self._where} (reconnecting)",
                host=self.broker.host,
                port=self.broker.port,
            )
        return self._client

    async def publish_presence(self, sensor_id: str, *, time_ns: int | None = None) -> None:
        """One presence event now (or at simulated ``time_ns``), outside the demand model."""
        sensor = self._sensor(sensor_id)
        client = self._require_client()
        t = self.clock.now_ns() if time_ns is None else time_ns
        await client.publish(sensor.topic, presence_payload(sensor_id, t), qos=sensor.qos)
        self.stats.presence += 1

    async def publish_burst(
        self, n: int, *, sensor_id: str | None = None, qos: int = 0
    ) -> BurstResult:
        """``n`` presence events to one sensor's topic as fast as the client goes."""
        if n < 1:
            raise ValueError(f"a burst needs n >= 1 messages, got {n}")
        sensor = self._sensor(sensor_id or self._first_sensor())
        client = self._require_client()
        t0_ns = self.clock.now_ns()
        start = time.perf_counter()
        for k in range(n):
            await client.publish(
                sensor.topic, presence_payload(sensor.sensor_id, t0_ns + k * 1_000_000), qos=qos
            )
        elapsed = time.perf_counter() - start
        self.stats.burst += n
        return BurstResult(n, elapsed)

    async def publish_malformed(
        self, kinds: Sequence[str] | None = None, *, sensor_id: str | None = None
    ) -> tuple[str, ...]:
        """One payload of each kind in :data:`MALFORMED` (default all) on a sensor's topic."""
        chosen = tuple(MALFORMED) if kinds is None else tuple(kinds)
        unknown = sorted(set(chosen) - set(MALFORMED))
        if unknown:
            raise ValueError(f"unknown malformed kinds {unknown}; known: {sorted(MALFORMED)}")
        sensor = self._sensor(sensor_id or self._first_sensor())
        client = self._require_client()
        t = self.clock.now_ns()
        for kind in chosen:
            await client.publish(sensor.topic, MALFORMED[kind](sensor.sensor_id, t), qos=sensor.qos)
        self.stats.malformed += len(chosen)
        return chosen

    def _first_sensor(self) -> str:
        if not self._sensors:
            raise ValueError("no sensors are configured; give sensor_id of a configured sensor")
        return next(iter(self._sensors))

    async def _presence_loop(self, source: PresenceSource) -> None:
        ids = sensor_ids(source.group)
        sensors = [self._sensors[sid] for sid in ids]
        while not self._closing:
            times, which = source.take_until(self.clock.now_ns())
            for t, k in zip(times.tolist(), which.tolist(), strict=True):
                if self._closing:
                    return
                sensor = sensors[k]
                if await self._send(
                    sensor.topic, presence_payload(sensor.sensor_id, t), sensor.qos
                ):
                    self.stats.presence += 1
            wait_s = self.clock.real_s_until(source.next_time_ns())
            await asyncio.sleep(min(max(wait_s, 0.001), 0.5))

    async def _count_loop(self, source: CountSource, start_ns: int) -> None:
        group = source.group
        assert isinstance(group, CountingSensors)
        sensors = [self._sensors[sid] for sid in sensor_ids(group)]
        interval_ns = round(group.interval_s * NS_PER_S)
        # Counters report on a grid of whole intervals (epoch multiples), the first one that
        # they counted completely.
        end_ns = -(-(start_ns + interval_ns) // interval_ns) * interval_ns
        while not self._closing:
            await asyncio.sleep(max(self.clock.real_s_until(end_ns), 0.0))
            behind = (self.clock.now_ns() - end_ns) // interval_ns
            if behind > 100:  # the loop stalled for long: skip ahead instead of flooding
                _log.warning("counters %s skip %d intervals", group.id_prefix, behind)
                end_ns += behind * interval_ns
            counts = source.counts(end_ns - interval_ns, end_ns)
            for sensor, count in zip(sensors, counts.tolist(), strict=True):
                if self._closing:
                    return
                payload = count_payload(sensor.sensor_id, count, group.interval_s, end_ns)
                if await self._send(sensor.topic, payload, sensor.qos):
                    self.stats.counts += 1
            end_ns += interval_ns


def _password(broker: BrokerConfig) -> str | None:
    if broker.password_env is None:
        return broker.password
    value = os.environ.get(broker.password_env)
    if value is None:
        raise ValueError(
            f"broker.password_env names {broker.password_env!r}, which is not set; "
            "export it or give broker.password (development only)"
        )
    return value


def _tls_params(broker: BrokerConfig, base_dir: Path | None) -> aiomqtt.TLSParameters | None:
    tls = broker.tls
    if tls is None:
        return None

    def resolve(path: str | None) -> str | None:
        if path is None:
            return None
        p = Path(path)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.is_file():
            raise ValueError(f"broker.tls file {p} does not exist")
        return str(p)

    return aiomqtt.TLSParameters(
        ca_certs=resolve(tls.ca_file),
        certfile=resolve(tls.cert_file),
        keyfile=resolve(tls.key_file),
        cert_reqs=ssl.CERT_REQUIRED,
    )

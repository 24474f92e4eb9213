"""A second home for readings: any InfluxDB-compatible time-series server.

Theory of operation
-------------------
*Servers.* ``api="v2"`` writes through ``influxdb-client``'s write API (``/api/v2/write``):
InfluxDB 2.x, 3.x and Cloud; InfluxDB 1.8+ through its v2 compatibility endpoint (bucket
``"database/retention_policy"``, token ``"user:password"``); VictoriaMetrics (it accepts the
v2 write unchanged). ``api="v1"`` POSTs line protocol to ``/write?db=...&precision=ns`` for
older InfluxDB 1.x (Debian's 1.6 answers 404 on ``/api/v2/write``).

*Schema* (``docs/historian.md``). Lamp telemetry goes to measurement ``lamp`` with tags
``council`` (if configured), ``gateway``, ``lamp_id`` and one field per kind: ``level_frac``,
``power_w``, ``energy_wh`` (floats) and ``status`` (integer bits). Sensor readings go to
measurement ``sensor`` with tags ``council``, ``gateway``, ``kind``, ``sensor_id`` and the
float field ``value``. Times are nanoseconds. VictoriaMetrics names the series
``lamp_level_frac``, ``sensor_value`` and so on.

*Delivery.* :meth:`InfluxSink.submit` turns rows into lines and appends them to a bounded
buffer; a writer thread sends batches of ``batch_points`` (or whatever is there after
``flush_interval_s``). A failed batch is retried with capped exponential backoff (honouring
``Retry-After``) when the failure may pass (no answer, 429, 5xx), at most ``max_retries``
times (``None``: forever). Meanwhile the buffer fills, and ``submit`` *waits* for room: the
ingest pipeline slows down instead of losing data. Only when it has waited
``block_timeout_s`` does it drop the points it was given. Every point ends in exactly one
counter: ``written``, ``dropped_full``, ``dropped_rejected`` (the server refused them: they
would never succeed), ``dropped_retries`` (gave up), or ``dropped_on_close`` (still unsent when
:meth:`InfluxSink.close` ran out of time). Nothing is dropped silently: each drop is counted
and logged.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlencode, urlsplit

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from domain.records import ReadingKind
from sensor_ingest.errors import SinkWriteError
from sensor_ingest.historian import ReadingRow

__all__ = [
    "InfluxSettings",
    "InfluxSink",
    "SinkCounters",
    "escape_key",
    "escape_measurement",
    "to_lines",
]

_log = logging.getLogger(__name__)

LAMP_MEASUREMENT: Final = "lamp"
SENSOR_MEASUREMENT: Final = "sensor"
_LAMP_FIELDS: Final = frozenset(
    {ReadingKind.LEVEL_FRAC, ReadingKind.POWER_W, ReadingKind.ENERGY_WH, ReadingKind.STATUS}
)
_RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_PARTIAL_DROPPED_RE: Final = re.compile(r"dropped=(\d+)")


# --- line protocol (pure) -----------------------------------------------------------------------


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (commas, equals signs, spaces)."""
    return text.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", r"\,").replace(" ", r"\ ")


def to_lines(rows: Sequence[ReadingRow], *, gateway_id: str, council: str = "") -> list[str]:
    """Line protocol for ``rows`` (see the module docstring for the schema). Tags are written
    in key order, as InfluxDB stores them."""
    prefix = f",council={escape_key(council)}" if council else ""
    gateway = escape_key(gateway_id)
    lamp_head = f"{LAMP_MEASUREMENT}{prefix},gateway={gateway},lamp_id="
    sensor_head = f"{SENSOR_MEASUREMENT}{prefix},gateway={gateway},kind="
    lines = []
    for source_id, kind, value, time_ns in rows:
        source = escape_key(source_id)
        if kind in _LAMP_FIELDS:
            if kind is ReadingKind.STATUS:
                lines.append(f"{lamp_head}{source} status={int(value)}i {time_ns}")
            else:
                lines.append(f"{lamp_head}{source} {kind.value}={float(value)!r} {time_ns}")
        else:
            lines.append(
                f"{sensor_head}{kind.value},sensor_id={source} value={float(value)!r} {time_ns}"
            )
    return lines


# --- settings and counters ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfluxSettings:
    """Where and how to write; see the module docstring. ``url`` is the server's base URL
    (``http://host:8086`` for InfluxDB, ``http://host:8428`` for VictoriaMetrics)."""

    url: str
    api: Literal["v2", "v1"] = "v2"
    bucket: str = "streetlight"  # v2
    org: str = ""  # v2 (InfluxDB 2/Cloud); ignored by VictoriaMetrics and 1.8
    token: str = ""  # v2; "user:password" for InfluxDB 1.8 with authentication
    database: str = "streetlight"  # v1
    retention_policy: str = ""  # v1
    username: str = ""  # v1
    password: str = ""  # v1
    council: str = ""  # the ``council`` tag on every point; empty: no tag
    batch_points: int = 5_000
    flush_interval_s: float = 1.0
    max_buffer_points: int = 100_000
    block_timeout_s: float = 10.0
    max_retries: int | None = 8
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"url must be http(s)://host:port, got {self.url!r}")
        if self.api not in {"v2", "v1"}:
            raise ValueError(f"api must be 'v2' or 'v1', got {self.api!r}")
        if self.api == "v2" and not self.bucket:
            raise ValueError("the v2 write API needs a bucket")
        if self.api == "v1" and not self.database:
            raise ValueError("the v1 write API needs a database")
        if self.password and not self.username:
            raise ValueError("a password needs a username")
        for name in ("flush_interval_s", "retry_initial_s", "retry_max_s", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.block_timeout_s < 0:
            raise ValueError(f"block_timeout_s must be >= 0, got {self.block_timeout_s!r}")
        if not 0 < self.batch_points <= self.max_buffer_points:
            raise ValueError(
                f"need 0 < batch_points <= max_buffer_points, got {self.batch_points} and "
                f"{self.max_buffer_points}"
            )
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 or None, got {self.max_retries!r}")


@dataclass
class SinkCounters:
    """Where every submitted point went; ``submitted`` equals the sum of the other point
    counters plus what is still buffered or in flight."""

    submitted: int = 0
    written: int = 0
    dropped_full: int = 0
    dropped_rejected: int = 0
    dropped_retries: int = 0
    dropped_on_close: int = 0
    batches: int = 0
    retries: int = 0
    blocked_s: float = 0.0
    last_error: str = ""
    errors: dict[int | None, int] = field(default_factory=dict)  # HTTP status -> failures

    @property
    def dropped(self) -> int:
        return (
            self.dropped_full + self.dropped_rejected + self.dropped_retries + self.dropped_on_close
        )


# --- the sink -----------------------------------------------------------------------------------


class InfluxSink:
    """Batching, retrying, back-pressuring writer to one server (a context manager; the writer
    thread starts on construction). Implements :class:`sensor_ingest.pipeline.Sink`."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.counters = SinkCounters()
        self._buffer: deque[str] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._flush_now = False
        self._abort = threading.Event()
        self._client: InfluxDBClient | None = None
        self._http: urllib3.PoolManager | None = None
        if settings.api == "v2":
            self._client = InfluxDBClient(
                url=settings.url,
                token=settings.token or None,  # type: ignore[arg-type]
                org=settings.org or "-",  # required by the client; ignored by VM and 1.8
                timeout=int(settings.timeout_s * 1000),
                retries=False,  # retries are ours: counted, with back-pressure
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        else:
            self._http = urllib3.PoolManager(retries=False)
        self._thread = threading.Thread(target=self._run, name="influx-sink", daemon=True)
        self._thread.start()

    def __enter__(self) -> InfluxSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- producer side --------------------------------------------------------------------------

    def submit(self, gateway_id: str, rows: Sequence[ReadingRow]) -> None:
        """Queue rows for writing; waits (up to ``block_timeout_s``) while the buffer is full,
        then drops and counts what does not fit. Never raises for a slow or dead server."""
        if not rows:
            return
        lines = to_lines(rows, gateway_id=gateway_id, council=self.settings.council)
        limit = self.settings.max_buffer_points
        with self._cond:
            self.counters.submitted += len(lines)
            if self._closing:
                self.counters.dropped_on_close += len(lines)
                return
            start = time.monotonic()
            deadline = start + self.settings.block_timeout_s
            offset = 0
            while offset < len(lines):
                room = limit - len(self._buffer)
                if room > 0:
                    take = lines[offset : offset + room]
                    self._buffer.extend(take)
                    offset += len(take)
                    self._cond.notify_all()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    dropped = len(lines) - offset
                    self.counters.dropped_full += dropped
                    self.counters.last_error = (
                        f"buffer full ({limit} points) for {self.settings.block_timeout_s:g} s: "
                        f"dropped {dropped} points"
                    )
                    _log.error("influx sink %s: %s", self.settings.url, self.counters.last_error)
                    break
                self._cond.wait(remaining)
            self.counters.blocked_s += time.monotonic() - start

    @property
    def buffered(self) -> int:
        """Points waiting in the buffer or being written."""
        with self._cond:
            return len(self._buffer) + self._in_flight

    def flush(self, timeout_s: float) -> bool:
        """Send what is buffered now; ``True`` once everything submitted so far was written
        or counted as dropped, ``False`` if that took longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush_now = True
            self._cond.notify_all()
            while self._buffer or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._flush_now = False
            return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered (waiting up to ``timeout_s``), then stop; whatever could not
        be written by then is counted in ``dropped_on_close``. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()  # stop retrying; the writer counts what it still holds
            with self._cond:
                self._cond.notify_all()
            self._thread.join()
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a pool must not hide the counters
                self._client.close()  # type: ignore[no-untyped-call]
            self._client = None
        if self._http is not None:
            self._http.clear()
            self._http = None

    # --- writer thread --------------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        while True:
            with self._cond:
                while not self._buffer and not self._closing:
                    self._cond.wait()
                if not self._buffer:
                    return  # closing and empty
                deadline = time.monotonic() + s.flush_interval_s
                while (
                    len(self._buffer) < s.batch_points
                    and not (self._closing or self._flush_now)
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._cond.wait(remaining)
                n = min(len(self._buffer), s.batch_points)
                batch = [self._buffer.popleft() for _ in range(n)]
                self._in_flight = n
                self._cond.notify_all()  # room in the buffer: waiting submitters go on
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    if self._abort.is_set() and self._buffer:
                        self.counters.dropped_on_close += len(self._buffer)
                        self._buffer.clear()
                    self._cond.notify_all()

    def _deliver(self, batch: list[str]) -> None:
        s = self.settings
        body = "\n".join(batch).encode()
        attempt = 0
        while True:
            try:
                written = self._write(body, len(batch))
            except SinkWriteError as err:
                with self._cond:
                    self.counters.last_error = str(err)
                    self.counters.errors[err.status] = self.counters.errors.get(err.status, 0) + 1
                if not err.retryable:
                    with self._cond:
                        self.counters.dropped_rejected += len(batch)
                    _log.error("influx sink %s: dropped %d points: %s", s.url, len(batch), err)
                    return
                attempt += 1
                if self._abort.is_set():
                    with self._cond:
                        self.counters.dropped_on_close += len(batch)
                    return
                if s.max_retries is not None and attempt > s.max_retries:
                    with self._cond:
                        self.counters.dropped_retries += len(batch)
                    _log.error(
                        "influx sink %s: gave up on %d points after %d attempts: %s",
                        s.url,
                        len(batch),
                        attempt,
                        err,
                    )
                    return
                with self._cond:
                    self.counters.retries += 1
                delay = min(s.retry_max_s, s.retry_initial_s * 2 ** (attempt - 1))
                retry_after = getattr(err, "retry_after_s", None)
                if retry_after is not None:
                    delay = min(s.retry_max_s, max(delay, retry_after))
                _log.warning("influx sink %s: %s; retry %d in %.1f s", s.url, err, attempt, delay)
                if self._abort.wait(delay):
                    with self._cond:
                        self.counters.dropped_on_close += len(batch)
                    return
                continue
            with self._cond:
                self.counters.written += written
                self.counters.dropped_rejected += len(batch) - written
                self.counters.batches += 1
            return

    def _write(self, body: bytes, points: int) -> int:
        """Send one batch; returns how many points the server kept."""
        return (
            self._write_v2(body, points)
            if self._client is not None
            else self._write_v1(body, points)
        )

    def _write_v2(self, body: bytes, points: int) -> int:
        s = self.settings
        try:
            self._write_api.write(
                bucket=s.bucket,
                # The client insists on an org; VictoriaMetrics and InfluxDB 1.8 ignore it.
                org=s.org or "-",
                record=body,
                # The library's own constant is a str where its signature says WritePrecision.
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as err:
            raise _http_error(err.status, str(err.body or err.reason), err.headers) from err
        except urllib3.exceptions.HTTPError as err:
            raise SinkWriteError(
                f"no answer from {s.url}: {type(err).__name__}: {err}", status=None, retryable=True
            ) from err
        except Exception as err:
            # Anything else the client library raises (bad settings it checks late): the batch
            # will never go, and the writer thread must survive to count it.
            raise SinkWriteError(
                f"influxdb-client failed: {type(err).__name__}: {err}", status=None, retryable=False
            ) from err
        return points

    def _write_v1(self, body: bytes, points: int) -> int:
        s = self.settings
        assert self._http is not None
        params = {"db": s.database, "precision": "ns"}
        if s.retention_policy:
            params["rp"] = s.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if s.username:
            token = base64.b64encode(f"{s.username}:{s.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            response = self._http.request(
                "POST",
                f"{s.url.rstrip('/')}/write?{urlencode(params)}",
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=s.timeout_s),
            )
        except urllib3.exceptions.HTTPError as err:
            raise SinkWriteError(
                f"no answer from {s.url}: {type(err).__name__}: {err}", status=None, retryable=True
            ) from err
        if response.status == 204:
            return points
        text = response.data.decode("utf-8", "replace").strip()
        if response.status == 400 and "partial write" in text:
            # InfluxDB 1.x kept the rest of the batch: count exactly what it dropped.
            found = _PARTIAL_DROPPED_RE.search(text)
            dropped = int(found.group(1)) if found else points
            _log.error("influx sink %s: %s", s.url, text)
            self.counters.last_error = f"HTTP 400 from {s.url}: {text}"
            return points - dropped
        raise _http_error(response.status, text, response.headers)


def _http_error(status: int | None, text: str, headers: object) -> SinkWriteError:
    retryable = status is None or status in _RETRYABLE_STATUS or status >= 500
    error = SinkWriteError(f"HTTP {status}: {text[:300]}", status=status, retryable=retryable)
    retry_after = None
    if headers is not None and hasattr(headers, "get"):
        value = headers.get("Retry-After")
        with contextlib.suppress(TypeError, ValueError):
            retry_after = float(value) if value is not None else None
    error.retry_after_s = retry_after  # type: ignore[attr-defined]
    return error

"""Pure codecs of southbound MQTT payloads: sensor events and MQTT lamp nodes.

Theory of operation
-------------------
Vendors' sensors and lamp nodes speak their own JSON on their own topics. A declarative spec
(topic template with ``{placeholders}``, JSON paths for each field, units and time formats)
maps each of them onto :class:`domain.records.Reading` records, and level setpoints back onto
the node's payload, so a new device model is configuration, not code. Every function here takes
bytes or records and returns records or bytes; none reads a clock, a socket or a global: the
receive time is an argument. The northbound protocol (gateway <-> central service) lives in
:mod:`domain.protocol`, shared with the central side.

*Decoding is hostile-input safe*: size first, strict JSON, typed and ranged fields, and only
:class:`SensorDecodeError` / :class:`LampTelemetryDecodeError` escape, with a located reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from controller.dimming.dali import level_to_arc
from domain.protocol import (
    EARLIEST_TIME_NS,
    LATEST_TIME_NS,
    MAX_ID_CHARS,
    TOPIC_LEVEL_RE,
    CodecError,
    EncodeError,
    FieldCheck,
    TopicError,
    dump_json,
    is_clean_text,
    json_kind,
    load_json,
)
from domain.records import LampCommand, Reading, ReadingKind
from gateways.pointmap import FlagName, flags_to_status

__all__ = [
    "MAX_CACHED_TOPICS",
    "MAX_SENSOR_BYTES",
    "MAX_SENSOR_ITEMS",
    "LampFieldMap",
    "LampSetpointSpec",
    "LampTelemetryDecodeError",
    "LampTelemetrySpec",
    "SensorDecodeError",
    "SensorDecoder",
    "SensorPayloadSpec",
    "SensorSpec",
    "TopicTemplate",
    "decode_lamp_telemetry",
    "decode_sensor",
    "encode_lamp_setpoint",
    "parse_json_path",
]

MAX_SENSOR_BYTES: Final = 64 * 1024
MAX_SENSOR_ITEMS: Final = 1_000


class SensorDecodeError(CodecError):
    what = "sensor payload"


class LampTelemetryDecodeError(CodecError):
    what = "lamp telemetry"


_PLACEHOLDER_RE: Final = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """An MQTT topic with ``{name}`` placeholders, each filling one whole topic level.

    ``sensors/{sensor_id}/events`` subscribes as ``sensors/+/events`` and matches
    ``sensors/S17/events`` with ``{"sensor_id": "S17"}``.
    """

    template: str
    levels: tuple[str, ...]
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> TopicTemplate:
        return _parse_topic_template(template)

    @property
    def subscription(self) -> str:
        return "/".join("+" if _PLACEHOLDER_RE.match(level) else level for level in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """Placeholder values if ``topic`` fits the template, else None."""
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return None
        values: dict[str, str] = {}
        for level, part in zip(self.levels, parts, strict=True):
            m = _PLACEHOLDER_RE.match(level)
            if m is None:
                if level != part:
                    return None
                continue
            if not part or values.get(m.group(1), part) != part:
                return None
            values[m.group(1)] = part
        return values

    def format(self, values: Mapping[str, str]) -> str:
        """The topic for ``values``; :class:`TopicError` if one is missing or not a level."""
        out = []
        for level in self.levels:
            m = _PLACEHOLDER_RE.match(level)
            if m is None:
                out.append(level)
                continue
            name = m.group(1)
            if name not in values:
                raise TopicError(f"{self.template!r} needs a value for {{{name}}}")
            value = values[name]
            if not TOPIC_LEVEL_RE.match(value):
                raise TopicError(
                    f"{{{name}}} = {value!r} cannot be an MQTT topic level (empty, / + or #)"
                )
            out.append(value)
        return "/".join(out)


@functools.lru_cache(maxsize=256)
def _parse_topic_template(template: str) -> TopicTemplate:
    levels = tuple(template.split("/"))
    fields = []
    for level in levels:
        m = _PLACEHOLDER_RE.match(level)
        if m is not None:
            fields.append(m.group(1))
        elif not level or "{" in level or "}" in level:
            raise TopicError(
                f"topic template {template!r}: level {level!r} must be text or one whole "
                "placeholder such as {sensor_id} (placeholders cannot share a level)"
            )
        elif not TOPIC_LEVEL_RE.match(level):
            raise TopicError(
                f"topic template {template!r}: write placeholders, not MQTT wildcards + or #"
            )
    if len(template.encode()) > 65535:
        raise TopicError("topic template is longer than MQTT allows")
    return TopicTemplate(template=template, levels=levels, fields=tuple(fields))


def _valid_topic_template(template: str) -> str:
    try:
        _parse_topic_template(template)
    except TopicError as err:
        raise ValueError(err.reason) from err
    return template


TopicTemplateText = Annotated[str, AfterValidator(_valid_topic_template)]


# --- JSON paths ---------------------------------------------------------------------------------

_SEGMENT_RE: Final = re.compile(r"^[^.\[\]]+$")


def parse_json_path(path: str) -> tuple[str, tuple[str, ...]]:
    """``("$" or "@", segments)`` of ``$.a.b.0`` (from the payload's root) or ``@.a`` (from
    the current item of ``items``). A segment of digits indexes an array."""
    if not path or path[0] not in "$@":
        raise ValueError(f"path {path!r} must start with $ (payload) or @ (current item)")
    root, rest = path[0], path[1:]
    if not rest:
        return root, ()
    if not rest.startswith("."):
        raise ValueError(f"path {path!r}: write fields after a dot, e.g. $.data.count")
    segments = tuple(rest[1:].split("."))
    if any(not _SEGMENT_RE.match(s) for s in segments):
        raise ValueError(f"path {path!r} has an empty field or brackets; write $.events.0.count")
    return root, segments


def _valid_path(path: str) -> str:
    parse_json_path(path)
    return path


JsonPath = Annotated[str, AfterValidator(_valid_path)]

_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class _Path:
    """A JSON path parsed once (:func:`parse_json_path`): its text, whether it starts at the
    payload's root, and each segment with its array index (-1: not an index)."""

    text: str
    from_root: bool
    segments: tuple[tuple[str, int], ...]

    def find(self, root: Any, item: Any) -> Any:
        """The value at this path, or ``_MISSING``."""
        node = root if self.from_root else item
        for key, index in self.segments:
            if isinstance(node, dict):
                node = node.get(key, _MISSING)
            elif index >= 0 and isinstance(node, list):
                node = node[index] if index < len(node) else _MISSING
            else:
                return _MISSING
            if node is _MISSING:
                return _MISSING
        return node


def _array_index(segment: str) -> int:
    if not segment.isdigit():
        return -1
    try:
        return int(segment)
    except ValueError:  # digits int() does not read, such as superscripts: a key, never an index
        return -1


@functools.lru_cache(maxsize=1024)
def _path(path: str) -> _Path:
    # Cached: specs hold a handful of paths, and parsing one costs more than following it.
    start, segments = parse_json_path(path)
    return _Path(path, start == "$", tuple((s, _array_index(s)) for s in segments))


def _lookup(root: Any, item: Any, path: str) -> Any:
    """The value at ``path``, or ``_MISSING``."""
    return _path(path).find(root, item)


def _time_ns(value: object, unit: str, where: str, fail: Callable[[str, str], NoReturn]) -> int:
    if unit == "iso8601":
        if not isinstance(value, str):
            fail(where, f"must be an ISO 8601 time text, got {json_kind(value)}")
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            fail(where, f"{value!r} is not an ISO 8601 time")
        if stamp.tzinfo is None:
            fail(where, f"{value!r} has no UTC offset; add Z or +01:00")
        delta = stamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(where, f"must be a number of {unit} since 1970, got {json_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            fail(where, "must be a finite number")
        scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        ns = value * scale if isinstance(value, int) else round(value * scale)
    if not EARLIEST_TIME_NS <= ns < LATEST_TIME_NS:
        fail(
            where,
            f"{value!r} read as {unit} is not between 2000 and 2100; check time_unit "
            "(s, ms, us, ns or iso8601)",
        )
    return int(ns)


#: How far a device's time may run ahead of the gateway's receive time, s.
DEFAULT_MAX_FUTURE_S: Final = 300.0
#: How old a device's reading may be when it arrives (sensors that buffer while offline), s.
DEFAULT_MAX_AGE_S: Final = 7 * 86_400.0


def _check_clock(
    time_ns: int,
    received_ns: int,
    max_future_s: float,
    max_age_s: float | None,
    where: str,
    fail: Callable[[str, str], NoReturn],
) -> None:
    ahead_s = (time_ns - received_ns) / 1e9
    if ahead_s > max_future_s:
        fail(where, f"is {ahead_s:.0f} s after the receive time; is the device's clock right?")
    if max_age_s is not None and -ahead_s > max_age_s:
        fail(where, f"is {-ahead_s:.0f} s before the receive time (limit {max_age_s:.0f} s)")


TimeUnit = Literal["s", "ms", "us", "ns", "iso8601"]
SensorReadingKind = Literal["presence", "footfall_count", "traffic_count"]


# --- sensor payloads ----------------------------------------------------------------------------


class SensorPayloadSpec(BaseModel):
    """How to read readings out of a sensor's JSON payload.

    Paths are ``$.a.b`` from the payload's root or ``@.a`` from the current entry of
    ``items`` (when the payload carries a list of readings). ``kind`` is one constant kind, or
    ``kind_path`` reads it (mapped through ``kind_values`` when the sensor has its own names).
    Without ``value`` a message is one event (value 1); without ``time`` the gateway's receive
    time is used; ``event_id`` (the sensor's own event number) makes the reading's message id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: JsonPath | None = None
    sensor_id: JsonPath | None = None
    kind: SensorReadingKind | None = None
    kind_path: JsonPath | None = None
    kind_values: dict[str, SensorReadingKind] = Field(default_factory=dict)
    value: JsonPath | None = None
    time: JsonPath | None = None
    time_unit: TimeUnit = "ms"
    event_id: JsonPath | None = None

    @model_validator(mode="after")
    def _check(self) -> SensorPayloadSpec:
        if (self.kind is None) == (self.kind_path is None):
            raise ValueError("give exactly one of kind (a constant) or kind_path (read it)")
        if self.kind_values and self.kind_path is None:
            raise ValueError("kind_values maps the text at kind_path; add kind_path")
        paths = (self.sensor_id, self.kind_path, self.value, self.time, self.event_id)
        if self.items is None and any(p is not None and p.startswith("@") for p in paths):
            raise ValueError("@ paths read the current entry of items; add items or use $")
        return self


class SensorSpec(BaseModel):
    """A sensor topic template and the mapping of its payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: TopicTemplateText
    payload: SensorPayloadSpec

    @model_validator(mode="after")
    def _check_id_source(self) -> SensorSpec:
        if (
            self.payload.sensor_id is None
            and "sensor_id" not in TopicTemplate.parse(self.topic).fields
        ):
            raise ValueError(
                "say where the sensor id comes from: a {sensor_id} level in topic or "
                "payload.sensor_id"
            )
        return self


def _id_text(value: object, where: str, fail: Callable[[str, str], NoReturn]) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        fail(where, f"must be non-empty text or a whole number, got {json_kind(value)}")
    if len(value) > MAX_ID_CHARS or not is_clean_text(value):
        fail(where, f"must be printable text of at most {MAX_ID_CHARS} characters")
    return value


_SCALE_NS: Final = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
#: Topics a :class:`SensorDecoder` remembers the match of. Sensors publish on a bounded set of
#: topics; a publisher inventing new ids costs a topic match each, never unbounded memory.
MAX_CACHED_TOPICS: Final = 8192
_SENSOR_CHECK: Final = FieldCheck(SensorDecodeError)


class SensorDecoder:
    """:func:`decode_sensor` for one spec, prepared once for a stream of messages.

    The spec's topic template, JSON paths, reading kind and time scale are worked out here,
    not per message, and the placeholder values of each topic are remembered (at most
    :data:`MAX_CACHED_TOPICS` topics, then the memory starts again). ``decode`` returns what
    :func:`decode_sensor` returns for the same arguments and raises the same errors.
    """

    __slots__ = (
        "_event_id",
        "_item_path",
        "_kind",
        "_kind_path",
        "_known",
        "_max_age_s",
        "_max_bytes",
        "_max_future_s",
        "_max_items",
        "_sensor_path",
        "_template",
        "_time_path",
        "_time_scale",
        "_topic_id",
        "_topics",
        "_value_path",
        "spec",
    )

    def __init__(
        self,
        spec: SensorSpec,
        *,
        known_sensors: Collection[str] | None = None,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
        max_age_s: float | None = DEFAULT_MAX_AGE_S,
        max_bytes: int = MAX_SENSOR_BYTES,
        max_items: int = MAX_SENSOR_ITEMS,
    ) -> None:
        p = spec.payload
        self.spec = spec
        self._template = TopicTemplate.parse(spec.topic)
        self._known = known_sensors
        self._max_future_s = max_future_s
        self._max_age_s = max_age_s
        self._max_bytes = max_bytes
        self._max_items = max_items
        self._item_path = None if p.items is None else _path(p.items)
        self._sensor_path = None if p.sensor_id is None else _path(p.sensor_id)
        self._kind = None if p.kind is None else ReadingKind(p.kind)
        self._kind_path = None if p.kind_path is None else _path(p.kind_path)
        self._value_path = None if p.value is None else _path(p.value)
        self._time_path = None if p.time is None else _path(p.time)
        self._time_scale = _SCALE_NS.get(p.time_unit, 0)  # 0: ISO 8601 text
        self._event_id = None if p.event_id is None else _path(p.event_id)
        # The sensor id is the topic's only when the payload does not name the sensor.
        self._topic_id = p.sensor_id is None
        self._topics: dict[str, dict[str, str]] = {}

    def topic_values(self, topic: str) -> dict[str, str]:
        """The placeholder values in ``topic`` (do not change the dict: it is remembered);
        :class:`SensorDecodeError` if the topic does not fit the spec's template or, when the
        sensor id comes from the topic, the id is not one the uplink can carry."""
        values = self._topics.get(topic)
        if values is None:
            values = self._template.match(topic)
            if values is None:
                raise SensorDecodeError(f"topic {topic!r} does not match {self.spec.topic!r}")
            if self._topic_id:
                # Checked as an id in a payload is: a topic level may be long or hold control
                # characters, and one such reading would make a whole uplink batch unsendable.
                _id_text(values["sensor_id"], "topic", _SENSOR_CHECK.fail)
            if len(self._topics) >= MAX_CACHED_TOPICS:
                self._topics.clear()
            self._topics[topic] = values
        return values

    def decode(self, topic: str, payload: bytes, *, received_ns: int) -> list[Reading]:
        """Readings in one sensor message; raises only :class:`SensorDecodeError`."""
        from_topic = self._topics.get(topic) or self.topic_values(topic)
        root = load_json(payload, self._max_bytes, SensorDecodeError)
        items = self._item_path
        if items is None:
            reading = self._entry(root, root, "", -1, from_topic, received_ns)
            return [] if reading is None else [reading]
        found = items.find(root, root)
        if found is _MISSING:
            _SENSOR_CHECK.fail(items.text, "is missing")
        readings = []
        for i, item in enumerate(_SENSOR_CHECK.array(found, items.text, self._max_items)):
            reading = self._entry(root, item, f"{items.text}.{i}: ", i, from_topic, received_ns)
            if reading is not None:
                readings.append(reading)
        return readings

    def _get(self, path: _Path, root: Any, item: Any, where: str) -> Any:
        value = path.find(root, item)
        if value is _MISSING:
            _SENSOR_CHECK.fail(f"{where}{path.text}", "is missing")
        return value

    # The hot path below is written out for the common message (a number and a whole-unit
    # time, both present): a sensor gateway runs it thousands of times a second, and each
    # function call or location text built for an error that does not happen costs about as
    # much as a check. Anything unusual takes the general checks, which give the reasons.

    def _entry(
        self,
        root: Any,
        item: Any,
        where: str,
        index: int,
        from_topic: dict[str, str],
        received_ns: int,
    ) -> Reading | None:
        """The reading of one entry (the payload, or entry ``index`` of ``items``), or None for
        "nothing detected". Checks run in a fixed order, so a message breaking several rules
        is always refused for the same one."""

        fail = _SENSOR_CHECK.fail if not where else functools.partial(_fail_in_entry, where)
        sensor_path = self._sensor_path
        if sensor_path is not None:
            sensor_id = _id_text(self._get(sensor_path, root, item, where), sensor_path.text, fail)
            topic_id = from_topic.get("sensor_id")
            if topic_id is not None and topic_id != sensor_id:
                fail(
                    sensor_path.text, f"sensor {sensor_id!r} differs from the topic's {topic_id!r}"
                )
        else:
            sensor_id = from_topic["sensor_id"]
        known = self._known
        if known is not None and sensor_id not in known:
            fail(
                sensor_path.text if sensor_path is not None else "topic",
                f"sensor {sensor_id!r} is not configured on this gateway",
            )
        kind = self._kind
        if kind is None:
            kind = self._read_kind(root, item, where, fail)
        value_path = self._value_path
        if value_path is None:
            value = 1.0
        else:
            raw = value_path.find(root, item)
            if type(raw) is int and 0 <= raw < 2**53:
                value = float(raw)
            elif type(raw) is float and 0.0 <= raw < math.inf:
                value = raw
            elif raw is _MISSING:
                _SENSOR_CHECK.fail(f"{where}{value_path.text}", "is missing")
            elif isinstance(raw, bool) and kind is ReadingKind.PRESENCE:
                if not raw:
                    return None
                value = 1.0
            else:
                value = _SENSOR_CHECK.number(raw, f"{where}{value_path.text}")
                if value < 0.0:
                    fail(value_path.text, f"{value!r} is negative; counts and detections are >= 0")
            if kind is ReadingKind.PRESENCE and value == 0.0:
                return None
        time_path = self._time_path
        if time_path is None:
            time_ns = received_ns
        else:
            stamp = self._get(time_path, root, item, where)
            scale = self._time_scale
            if scale and type(stamp) is int and EARLIEST_TIME_NS <= stamp * scale < LATEST_TIME_NS:
                time_ns = stamp * scale  # whole units, checked as _time_ns checks them
            else:
                time_ns = _time_ns(stamp, self.spec.payload.time_unit, time_path.text, fail)
            ahead_s = (time_ns - received_ns) / 1e9  # as _check_clock computes it
            max_age_s = self._max_age_s
            if ahead_s > self._max_future_s or (max_age_s is not None and -ahead_s > max_age_s):
                _check_clock(
                    time_ns, received_ns, self._max_future_s, max_age_s, time_path.text, fail
                )
        message_id = ""
        event_path = self._event_id
        if event_path is not None:
            event = _id_text(self._get(event_path, root, item, where), event_path.text, fail)
            message_id = f"{sensor_id}#{event}"
            if index >= 0 and event_path.from_root:
                message_id += f"#{index}"  # one event id for the whole list: number the entries
        return Reading(sensor_id, kind, value, time_ns, message_id)

    def _read_kind(
        self, root: Any, item: Any, where: str, fail: Callable[[str, str], NoReturn]
    ) -> ReadingKind:
        kind_path = self._kind_path
        assert kind_path is not None  # the spec's validator guarantees kind or kind_path
        kind_values = self.spec.payload.kind_values
        kind_text = self._get(kind_path, root, item, where)
        if not isinstance(kind_text, str):
            fail(kind_path.text, f"must be text, got {json_kind(kind_text)}")
        mapped = kind_values.get(kind_text) if kind_values else kind_text
        if mapped not in ("presence", "footfall_count", "traffic_count"):
            known = ", ".join(sorted(kind_values)) or "presence, footfall_count, traffic_count"
            fail(kind_path.text, f"{kind_text!r} is not a known kind; expected {known}")
        return ReadingKind(mapped)


def _fail_in_entry(where: str, path: str, message: str) -> NoReturn:
    _SENSOR_CHECK.fail(f"{where}{path}", message)


def decode_sensor(
    topic: str,
    payload: bytes,
    spec: SensorSpec,
    *,
    received_ns: int,
    known_sensors: Collection[str] | None = None,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    max_age_s: float | None = DEFAULT_MAX_AGE_S,
    max_bytes: int = MAX_SENSOR_BYTES,
    max_items: int = MAX_SENSOR_ITEMS,
) -> list[Reading]:
    """Readings in one sensor message; raises only :class:`SensorDecodeError`.

    ``received_ns`` (UTC epoch ns) stamps readings whose payload carries no time; a payload
    time more than ``max_future_s`` after it, or more than ``max_age_s`` before it, is refused
    (a sensor whose clock is wrong would put its counts in the wrong night). When the topic and
    the payload both name the sensor they must agree; ``known_sensors`` refuses any other id.
    A presence value of ``false`` (or 0) means "nothing detected" and yields no reading
    (presence readings are detection events). A stream of messages for one spec is cheaper
    through one :class:`SensorDecoder`.
    """
    decoder = SensorDecoder(
        spec,
        known_sensors=known_sensors,
        max_future_s=max_future_s,
        max_age_s=max_age_s,
        max_bytes=max_bytes,
        max_items=max_items,
    )
    return decoder.decode(topic, payload, received_ns=received_ns)


# --- MQTT lamp nodes ----------------------------------------------------------------------------

LampReadingKind = Literal["level_frac", "power_w", "energy_wh", "status"]


class LampFieldMap(BaseModel):
    """One telemetry field: ``value = raw * scale + offset`` in the kind's unit.

    For ``status``, ``flags`` (bit -> flag name) maps the node's status word; without it the
    word already holds the project's status bits (:class:`gateways.pointmap.StatusFlag`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LampReadingKind
    path: JsonPath
    scale: float = 1.0
    offset: float = 0.0
    flags: dict[Annotated[int, Field(ge=0, le=63)], FlagName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> LampFieldMap:
        if self.path.startswith("@"):
            raise ValueError("lamp telemetry paths start with $")
        if not math.isfinite(self.scale) or self.scale == 0.0 or not math.isfinite(self.offset):
            raise ValueError("scale must be finite and not 0; offset finite")
        if self.kind == "status" and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError("a status field is a bit word: remove scale and offset")
        if self.kind != "status" and self.flags:
            raise ValueError("flags apply to the status field only")
        return self


class LampTelemetrySpec(BaseModel):
    """The telemetry topic of MQTT lamp nodes (with ``{lamp}``) and its field maps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: TopicTemplateText
    fields: tuple[LampFieldMap, ...]
    time: JsonPath | None = None
    time_unit: TimeUnit = "ms"

    @model_validator(mode="after")
    def _check(self) -> LampTelemetrySpec:
        if "lamp" not in TopicTemplate.parse(self.topic).fields:
            raise ValueError("the telemetry topic needs a {lamp} level to tell lamps apart")
        if not self.fields:
            raise ValueError("map at least one field (level_frac, power_w, energy_wh, status)")
        kinds = [f.kind for f in self.fields]
        if len(set(kinds)) != len(kinds):
            raise ValueError("map each kind from one field")
        if self.time is not None and self.time.startswith("@"):
            raise ValueError("lamp telemetry paths start with $")
        return self


class LampSetpointSpec(BaseModel):
    """How to command an MQTT lamp node: topic template and JSON payload layout.

    The payload is ``{level_field: level, ramp_field: ramp, **constants}``; fields may be
    nested paths such as ``$.dim.level``. ``level_unit`` ``frac`` (0..1), ``%`` or ``dali_arc``
    (0..254, logarithmic).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: TopicTemplateText
    level_field: JsonPath = "$.level_frac"
    level_unit: Literal["frac", "%", "dali_arc"] = "frac"
    # TOML has no null: ramp_field = "" says the node takes no ramp time.
    ramp_field: Annotated[JsonPath | None, BeforeValidator(lambda v: None if v == "" else v)] = (
        "$.ramp_s"
    )
    ramp_unit: Literal["s", "ms"] = "s"
    constants: dict[str, str | int | float | bool] = Field(default_factory=dict)
    retain: bool = False

    @model_validator(mode="after")
    def _check(self) -> LampSetpointSpec:
        paths = [self.level_field] + ([self.ramp_field] if self.ramp_field else [])
        tops = []
        for path in paths:
            start, segments = parse_json_path(path)
            if start != "$" or not segments or any(s.isdigit() for s in segments):
                raise ValueError(f"setpoint field {path!r} must be an object path like $.level")
            tops.append(segments[0])
        if len(paths) == 2 and paths[0] == paths[1]:
            raise ValueError("level_field and ramp_field must differ")
        clash = sorted(set(tops) & set(self.constants))
        if clash:
            raise ValueError(f"constants {clash} collide with the level or ramp field")
        return self


def _put(doc: dict[str, Any], path: str, value: object) -> None:
    _, segments = parse_json_path(path)
    node = doc
    for segment in segments[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise EncodeError(f"{path}: {segment} is already a value, not an object")
        node = child
    node[segments[-1]] = value


def encode_lamp_setpoint(
    command: LampCommand, spec: LampSetpointSpec, *, topic_values: Mapping[str, str]
) -> tuple[str, bytes]:
    """``(topic, payload)`` commanding one MQTT lamp node.

    ``topic_values`` fill the topic template (``{"lamp": ...}`` and the lamp's substitutions).
    """
    topic = TopicTemplate.parse(spec.topic).format(topic_values)
    level = command.level_frac
    if spec.level_unit == "%":
        level_raw: float | int = level * 100.0
    elif spec.level_unit == "dali_arc":
        level_raw = int(level_to_arc([level])[0])
    else:
        level_raw = level
    doc: dict[str, Any] = dict(spec.constants)
    _put(doc, spec.level_field, level_raw)
    if spec.ramp_field is not None:
        _put(doc, spec.ramp_field, command.ramp_s * (1000.0 if spec.ramp_unit == "ms" else 1.0))
    return topic, dump_json(doc)


def decode_lamp_telemetry(
    topic: str,
    payload: bytes,
    spec: LampTelemetrySpec,
    *,
    received_ns: int,
    lamp_ids: Mapping[str, str] | None = None,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    max_age_s: float | None = DEFAULT_MAX_AGE_S,
    max_bytes: int = MAX_SENSOR_BYTES,
) -> list[Reading]:
    """Readings in one MQTT lamp node message; raises only :class:`LampTelemetryDecodeError`.

    The lamp is the topic's ``{lamp}`` level, mapped through ``lamp_ids`` (topic name -> lamp
    id) when given. Fields absent from a message are skipped (nodes send partial updates);
    a message with none of them, or with a bad one, is refused. Times are checked against
    ``received_ns`` as in :func:`decode_sensor`.
    """
    check = FieldCheck(LampTelemetryDecodeError)
    values = TopicTemplate.parse(spec.topic).match(topic)
    if values is None:
        raise LampTelemetryDecodeError(f"topic {topic!r} does not match {spec.topic!r}")
    name = values["lamp"]
    lamp_id = name if lamp_ids is None else lamp_ids.get(name)
    if lamp_id is None:
        raise LampTelemetryDecodeError(f"topic {topic!r} names lamp {name!r}, not configured here")
    root = load_json(payload, max_bytes, LampTelemetryDecodeError)
    check.obj(root, "payload")
    time_ns = received_ns
    if spec.time is not None:
        stamp = _lookup(root, root, spec.time)
        if stamp is _MISSING:
            check.fail(spec.time, "is missing")
        time_ns = _time_ns(stamp, spec.time_unit, spec.time, check.fail)
        _check_clock(time_ns, received_ns, max_future_s, max_age_s, spec.time, check.fail)
    readings = []
    for f in spec.fields:
        raw = _lookup(root, root, f.path)
        if raw is _MISSING:
            continue
        if f.kind == "status":
            word = check.integer(raw, f.path, 0, 2**64 - 1)
            value = float(flags_to_status(word, f.flags) if f.flags else word)
        else:
            value = check.number(raw, f.path) * f.scale + f.offset
            if not math.isfinite(value):
                check.fail(f.path, f"{raw!r} scales to {value}")
            if f.kind == "level_frac":
                if not -0.005 <= value <= 1.005:
                    check.fail(f.path, f"{raw!r} is level {value:g}, outside 0..1; check scale")
                value = min(1.0, max(0.0, value))
        readings.append(
            Reading(source_id=lamp_id, kind=ReadingKind(f.kind), value=value, time_ns=time_ns)
        )
    if not readings:
        check.fail(
            "payload", "has none of the mapped fields " + ", ".join(f.path for f in spec.fields)
        )
    return readings

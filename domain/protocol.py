"""The gateway protocol, version 1: the wire formats between edge gateways and the central service.

Theory of operation
-------------------
Gateways (``gateways/``) encode uplinks and decode downlinks; the central service
(``sensor_ingest/`` and the composition root) decodes uplinks and encodes downlinks. Both sides
import this one module, so the protocol has exactly one implementation. Every function here
takes bytes or records and returns records or bytes; none reads a clock, a socket or a global.
``docs/gateway-protocol.md`` is the normative description; this module is its reference
implementation.

MQTT topics are ``{prefix}/{gateway_id}/{channel}``:

``uplink``    readings, batched: ``{"v":1,"gw":..,"epoch":..,"seq":..,"sent_ns":..,
              "readings":[[source_id, kind, value, time_ns, message_id], ...]}``
``downlink``  level commands: ``{"v":1,"cmd_id":..,"issued_ns":..,"commands":[{"lamp":..,
              "level_frac":..,"ramp_s":..}], "group":.., "expires_ns":..}``
``ack``       the gateway's answer to a downlink command
``status``    retained ``online``/``offline`` (the offline one is the MQTT last will)

*De-duplication.* MQTT QoS 1 delivers at least once, so the central side de-duplicates on each
reading's ``message_id``. A row may leave it empty: it then *is*
``{gw}:{epoch}:{seq}:{index}``, which stays the same however often the gateway re-sends the
message, because ``seq`` is the message's id in the gateway's on-disk queue (never reused) and
``epoch`` changes when that queue is created anew. Sensors that number their own events get
``{sensor_id}#{event_id}``, which also removes a sensor's own re-transmissions.

*Decoding is hostile-input safe.* Central decoders run on whatever reaches the broker, so they
check the size first, parse strict JSON (no NaN/Infinity, no duplicate keys, bounded nesting),
check every field's type and range, and raise only their own error type
(a :class:`CodecError`), whose ``reason`` locates the problem (``readings[3][2]: value must be
a finite number``). Unknown fields are ignored so that v1 can grow fields that are safe to
ignore; anything that changes meaning bumps ``v``.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from domain.errors import StreetlightError
from domain.records import LampCommand, Reading, ReadingKind

__all__ = [
    "EARLIEST_TIME_NS",
    "GATEWAY_ID_PATTERN",
    "LATEST_TIME_NS",
    "MAX_ACK_BYTES",
    "MAX_COMMANDS_PER_DOWNLINK",
    "MAX_DOWNLINK_BYTES",
    "MAX_ID_CHARS",
    "MAX_RAMP_S",
    "MAX_READINGS_PER_UPLINK",
    "MAX_STATUS_BYTES",
    "MAX_UPLINK_BYTES",
    "PROTOCOL_VERSION",
    "TOPIC_LEVEL_RE",
    "AckDecodeError",
    "AckStatus",
    "Channel",
    "CodecError",
    "CommandAck",
    "DownlinkCommand",
    "DownlinkDecodeError",
    "EncodeError",
    "FieldCheck",
    "GatewayState",
    "GatewayStatus",
    "GatewayTopics",
    "LampFailure",
    "StatusDecodeError",
    "TopicError",
    "UplinkBatch",
    "UplinkColumns",
    "UplinkDecodeError",
    "decode_ack",
    "decode_downlink",
    "decode_status",
    "decode_uplink",
    "decode_uplink_columns",
    "derived_message_id",
    "dump_json",
    "encode_ack",
    "encode_downlink",
    "encode_readings",
    "encode_status",
    "encode_uplink",
    "frame_uplink",
    "gateway_subscription",
    "is_clean_text",
    "json_kind",
    "load_json",
    "parse_gateway_topic",
]

PROTOCOL_VERSION: Final = 1

#: Size limits decoders apply before parsing (bytes). An uplink of 10 000 readings with long
#: ids is about 2.5 MB; commands and acks are small.
MAX_UPLINK_BYTES: Final = 4 * 1024 * 1024
MAX_READINGS_PER_UPLINK: Final = 10_000
MAX_DOWNLINK_BYTES: Final = 1024 * 1024
MAX_COMMANDS_PER_DOWNLINK: Final = 5_000
MAX_ACK_BYTES: Final = 1024 * 1024
MAX_STATUS_BYTES: Final = 64 * 1024
#: Longest ramp a command may ask for, s (DALI's longest fade is 90.5 s; an hour is generous).
MAX_RAMP_S: Final = 3600.0

#: Gateway ids appear as one MQTT topic level: no ``/``, ``+``, ``#``, and short.
GATEWAY_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_GATEWAY_ID_RE: Final = re.compile(GATEWAY_ID_PATTERN)
_EPOCH_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_ID_CHARS: Final = 128
_MAX_MESSAGE_ID_CHARS: Final = 256
_MAX_REASON_CHARS: Final = 500
_INT64_MAX: Final = 2**63 - 1
# Sensor and lamp times outside these years are almost always a wrong time_unit.
EARLIEST_TIME_NS: Final = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
LATEST_TIME_NS: Final = 4_102_444_800 * 10**9  # 2100-01-01T00:00:00Z


# --- errors -------------------------------------------------------------------------------------


class CodecError(StreetlightError, ValueError):
    """A payload cannot be decoded (or a record cannot be encoded); ``reason`` says where/why."""

    what = "payload"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{self.what} rejected: {reason}")


class UplinkDecodeError(CodecError):
    what = "uplink message"


class DownlinkDecodeError(CodecError):
    what = "downlink command"


class AckDecodeError(CodecError):
    what = "command acknowledgement"


class StatusDecodeError(CodecError):
    what = "gateway status"


class EncodeError(CodecError):
    what = "record"


class TopicError(CodecError):
    what = "topic"


# --- strict JSON --------------------------------------------------------------------------------


class _Reject(ValueError):
    """Raised inside json.loads hooks; carries the reason out."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # A duplicate key is read differently by different parsers: refuse the ambiguity.
            raise _Reject(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise _Reject(f"{name} is not a number JSON allows")


def load_json(data: object, max_bytes: int, error: type[CodecError]) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise error(f"expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise error(f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"not UTF-8 text (bad byte at offset {err.start})") from err
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Reject as err:
        raise error(str(err)) from err
    except RecursionError as err:
        raise error("JSON nested too deeply") from err
    except ValueError as err:  # JSONDecodeError, and ints longer than Python will parse
        raise error(f"not valid JSON ({err})") from err


def dump_json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class FieldCheck:
    """Field checks that raise ``error`` with the field's location."""

    def __init__(self, error: type[CodecError]) -> None:
        self.error = error

    def fail(self, where: str, message: str, name: str = "") -> NoReturn:
        raise self.error(f"{where}: {name + ' ' if name else ''}{message}")

    def obj(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {json_kind(value)}")
        return value

    def field(self, doc: Mapping[str, Any], key: str, where: str = "") -> Any:
        if key not in doc:
            self.fail(f"{where}{key}", "is missing")
        return doc[key]

    def version(self, doc: Mapping[str, Any]) -> None:
        v = self.field(doc, "v")
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail("v", f"must be the protocol version number, got {json_kind(v)}")
        if v != PROTOCOL_VERSION:
            self.fail("v", f"version {v} is not supported; this decoder reads v{PROTOCOL_VERSION}")

    def integer(
        self, value: object, where: str, low: int = 0, high: int = _INT64_MAX, name: str = ""
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be a whole number, got {json_kind(value)}", name)
        if not low <= value <= high:
            self.fail(where, f"{value} is outside {low}..{high}", name)
        return value

    def number(self, value: object, where: str, name: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a finite number, got {json_kind(value)}", name)
        try:
            number = float(value)
        except OverflowError:
            self.fail(where, "must be a finite number (too large)", name)
        if not math.isfinite(number):
            self.fail(where, "must be a finite number", name)
        return number

    def text(
        self,
        value: object,
        where: str,
        max_chars: int = MAX_ID_CHARS,
        *,
        empty: bool = False,
        name: str = "",
    ) -> str:
        if not isinstance(value, str):
            self.fail(where, f"must be text, got {json_kind(value)}", name)
        if not value and not empty:
            self.fail(where, "must not be empty", name)
        if len(value) > max_chars:
            self.fail(where, f"is {len(value)} characters; at most {max_chars}", name)
        if not is_clean_text(value):
            self.fail(
                where, "must be printable text (no control characters or lone surrogates)", name
            )
        return value

    def gateway_id(self, value: object, where: str) -> str:
        text = self.text(value, where, 64)
        if not _GATEWAY_ID_RE.match(text):
            self.fail(where, f"{text!r} is not a gateway id (letters, digits, _ . -)")
        return text

    def sender(self, doc: Mapping[str, Any], topic_gateway_id: str | None) -> str:
        gateway_id = self.gateway_id(self.field(doc, "gw"), "gw")
        if topic_gateway_id is not None and gateway_id != topic_gateway_id:
            # Message ids start with the gateway id: one gateway speaking for another could
            # make the central side drop the other's real readings as duplicates.
            self.fail("gw", f"{gateway_id!r} differs from the topic's gateway {topic_gateway_id!r}")
        return gateway_id

    def array(self, value: object, where: str, max_items: int) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be an array, got {json_kind(value)}")
        if len(value) > max_items:
            self.fail(where, f"has {len(value)} entries; at most {max_items}")
        return value


def is_clean_text(text: str) -> bool:
    if not text.isprintable():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "text" if len(value) > 40 else f"the text {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- uplink -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UplinkBatch:
    """One decoded uplink message. Every reading has its message id (derived ones filled in)."""

    gateway_id: str
    epoch: str
    seq: int
    sent_ns: int
    readings: tuple[Reading, ...]
    version: int = PROTOCOL_VERSION


def derived_message_id(gateway_id: str, epoch: str, seq: int, index: int) -> str:
    """The message id of row ``index`` of uplink ``seq`` when the row leaves it empty."""
    return f"{gateway_id}:{epoch}:{seq}:{index}"


_encode_check = FieldCheck(EncodeError)


def encode_readings(readings: Sequence[Reading]) -> bytes:
    """The ``readings`` array of an uplink message (compact JSON), as stored in the queue.

    An empty ``message_id`` stays empty and means the derived id. Raises :class:`EncodeError`
    for a reading the protocol cannot carry (non-finite value, negative time, bad ids).
    """
    if len(readings) > MAX_READINGS_PER_UPLINK:
        raise EncodeError(
            f"{len(readings)} readings; at most {MAX_READINGS_PER_UPLINK} per uplink message"
        )
    rows = []
    check = _encode_check
    for i, r in enumerate(readings):
        where = f"readings[{i}]"
        check.text(r.source_id, f"{where}.source_id")
        try:
            kind = ReadingKind(r.kind).value
        except ValueError:
            check.fail(f"{where}.kind", f"{r.kind!r} is not a reading kind")
        value = check.number(r.value, f"{where}.value")
        time_ns = check.integer(r.time_ns, f"{where}.time_ns")
        message_id = check.text(
            r.message_id, f"{where}.message_id", _MAX_MESSAGE_ID_CHARS, empty=True
        )
        rows.append([r.source_id, kind, value, time_ns, message_id])
    return dump_json(rows)


def frame_uplink(body: bytes, *, gateway_id: str, epoch: str, seq: int, sent_ns: int) -> bytes:
    """Wrap a stored ``readings`` array (from :func:`encode_readings`) into an uplink message.

    The body is spliced in unparsed: re-sending a queued message costs no JSON work.
    """
    check = _encode_check
    check.gateway_id(gateway_id, "gw")
    if not _EPOCH_RE.match(epoch):
        check.fail("epoch", f"{epoch!r} must be 1-32 letters, digits, _ or -")
    check.integer(seq, "seq", 1)
    check.integer(sent_ns, "sent_ns")
    stripped = body.strip()
    if not (stripped.startswith(b"[") and stripped.endswith(b"]")):
        check.fail("readings", "the stored body is not a JSON array; store encode_readings()")
    head = dump_json({"v": PROTOCOL_VERSION, "gw": gateway_id, "epoch": epoch, "seq": seq})
    return head[:-1] + b',"sent_ns":' + str(sent_ns).encode() + b',"readings":' + stripped + b"}"


def encode_uplink(
    readings: Sequence[Reading], *, gateway_id: str, epoch: str, seq: int, sent_ns: int
) -> bytes:
    """A complete uplink message (``frame_uplink(encode_readings(readings), ...)``)."""
    return frame_uplink(
        encode_readings(readings), gateway_id=gateway_id, epoch=epoch, seq=seq, sent_ns=sent_ns
    )


def decode_uplink(
    data: bytes,
    *,
    topic_gateway_id: str | None = None,
    max_bytes: int = MAX_UPLINK_BYTES,
    max_readings: int = MAX_READINGS_PER_UPLINK,
) -> UplinkBatch:
    """Decode and check an uplink message; raises only :class:`UplinkDecodeError`.

    The central side passes ``topic_gateway_id`` (from :func:`parse_gateway_topic`): a
    message whose ``gw`` differs is refused.
    """
    check = FieldCheck(UplinkDecodeError)
    doc = check.obj(load_json(data, max_bytes, UplinkDecodeError), "message")
    check.version(doc)
    gateway_id = check.sender(doc, topic_gateway_id)
    epoch = check.text(check.field(doc, "epoch"), "epoch", 32)
    if not _EPOCH_RE.match(epoch):
        check.fail("epoch", "must be 1-32 letters, digits, _ or -")
    seq = check.integer(check.field(doc, "seq"), "seq", 1)
    sent_ns = check.integer(check.field(doc, "sent_ns"), "sent_ns")
    rows = check.array(check.field(doc, "readings"), "readings", max_readings)
    readings = []
    for i, row in enumerate(rows):
        where = f"readings[{i}]"
        if not isinstance(row, list) or len(row) != 5:
            check.fail(where, "must be [source_id, kind, value, time_ns, message_id] (5 entries)")
        source_id = check.text(row[0], f"{where}[0]", name="source_id")
        kind_text = check.text(row[1], f"{where}[1]", 32, name="kind")
        try:
            kind = ReadingKind(kind_text)
        except ValueError:
            check.fail(
                f"{where}[1]",
                f"{kind_text!r} is not a reading kind; use one of "
                + ", ".join(k.value for k in ReadingKind),
                "kind",
            )
        value = check.number(row[2], f"{where}[2]", "value")
        time_ns = check.integer(row[3], f"{where}[3]", name="time_ns")
        message_id = check.text(
            row[4], f"{where}[4]", _MAX_MESSAGE_ID_CHARS, empty=True, name="message_id"
        )
        readings.append(
            Reading(
                source_id=source_id,
                kind=kind,
                value=value,
                time_ns=time_ns,
                message_id=message_id or derived_message_id(gateway_id, epoch, seq, i),
            )
        )
    return UplinkBatch(
        gateway_id=gateway_id, epoch=epoch, seq=seq, sent_ns=sent_ns, readings=tuple(readings)
    )


# --- uplink, columnar (the central side's fast path) --------------------------------------------


@dataclass(frozen=True, slots=True)
class UplinkColumns:
    """One decoded uplink message as columns: row ``i`` is ``(source_ids[i], kinds[i],
    values[i], times_ns[i])``.

    ``message_ids`` holds the ids *as sent*: ``""`` means the row's id is the derived one
    (:meth:`message_id` fills it in). The central side de-duplicates derived ids per message
    (``(gw, epoch, seq)``) and never needs them as text, so this form skips building them.
    """

    gateway_id: str
    epoch: str
    seq: int
    sent_ns: int
    source_ids: tuple[str, ...]
    kinds: tuple[ReadingKind, ...]
    values: tuple[float, ...]
    times_ns: tuple[int, ...]
    message_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.source_ids)

    def message_id(self, index: int) -> str:
        """The de-duplication key of row ``index`` (explicit, or derived when sent empty)."""
        return self.message_ids[index] or derived_message_id(
            self.gateway_id, self.epoch, self.seq, index
        )

    def readings(self) -> tuple[Reading, ...]:
        """The rows as records, exactly as :func:`decode_uplink` returns them."""
        return tuple(
            Reading(
                source_id=self.source_ids[i],
                kind=self.kinds[i],
                value=self.values[i],
                time_ns=self.times_ns[i],
                message_id=self.message_id(i),
            )
            for i in range(len(self.source_ids))
        )

    @classmethod
    def from_batch(cls, batch: UplinkBatch) -> UplinkColumns:
        rows = batch.readings
        return cls(
            gateway_id=batch.gateway_id,
            epoch=batch.epoch,
            seq=batch.seq,
            sent_ns=batch.sent_ns,
            source_ids=tuple(r.source_id for r in rows),
            kinds=tuple(r.kind for r in rows),
            values=tuple(r.value for r in rows),
            times_ns=tuple(r.time_ns for r in rows),
            message_ids=tuple(
                ""
                if r.message_id == derived_message_id(batch.gateway_id, batch.epoch, batch.seq, i)
                else r.message_id
                for i, r in enumerate(rows)
            ),
        )


_KIND_BY_TEXT: Final[dict[str, ReadingKind]] = {k.value: k for k in ReadingKind}
# Integers beyond this cannot be converted to a float without overflow; the fast path leaves
# them to decode_uplink, which words the refusal.
_FLOAT_SAFE_INT: Final = 2**1000


class _SlowPath(Exception):
    """A row the fast path does not vouch for: decode the message with decode_uplink."""


def decode_uplink_columns(
    data: bytes,
    *,
    topic_gateway_id: str | None = None,
    max_bytes: int = MAX_UPLINK_BYTES,
    max_readings: int = MAX_READINGS_PER_UPLINK,
) -> UplinkColumns:
    """:func:`decode_uplink` for the central side's hot path, in columns.

    Same acceptance, same rows, same errors: the header is checked by the same code, and the
    rows by inline type and range checks that accept only what :func:`decode_uplink` accepts.
    On the first row they cannot vouch for, the whole message goes to :func:`decode_uplink`,
    which raises its located :class:`UplinkDecodeError` (or, if the row was fine after all,
    returns the batch, converted here). Valid messages therefore cost one JSON parse and about
    a microsecond per row; only refused ones are parsed twice.
    """
    check = FieldCheck(UplinkDecodeError)
    doc = check.obj(load_json(data, max_bytes, UplinkDecodeError), "message")
    check.version(doc)
    gateway_id = check.sender(doc, topic_gateway_id)
    epoch = check.text(check.field(doc, "epoch"), "epoch", 32)
    if not _EPOCH_RE.match(epoch):
        check.fail("epoch", "must be 1-32 letters, digits, _ or -")
    seq = check.integer(check.field(doc, "seq"), "seq", 1)
    sent_ns = check.integer(check.field(doc, "sent_ns"), "sent_ns")
    rows = check.array(check.field(doc, "readings"), "readings", max_readings)
    try:
        columns = _fast_rows(rows)
    except _SlowPath:
        batch = decode_uplink(
            data, topic_gateway_id=topic_gateway_id, max_bytes=max_bytes, max_readings=max_readings
        )
        return UplinkColumns.from_batch(batch)
    source_ids, kinds, values, times_ns, message_ids = columns
    return UplinkColumns(
        gateway_id=gateway_id,
        epoch=epoch,
        seq=seq,
        sent_ns=sent_ns,
        source_ids=source_ids,
        kinds=kinds,
        values=values,
        times_ns=times_ns,
        message_ids=message_ids,
    )


def _fast_rows(
    rows: list[Any],
) -> tuple[
    tuple[str, ...], tuple[ReadingKind, ...], tuple[float, ...], tuple[int, ...], tuple[str, ...]
]:
    # Column by column, with set/map/min/max doing the per-row work in C. Any doubt (a wrong
    # type, an unhashable entry raising TypeError) sends the message to decode_uplink.
    if not rows:
        return (), (), (), (), ()
    try:
        if set(map(type, rows)) != {list} or set(map(len, rows)) != {5}:
            raise _SlowPath
        source_ids, kind_texts, values, times_ns, message_ids = zip(*rows, strict=True)
        for source_id in set(source_ids):
            if (
                type(source_id) is not str
                or not 0 < len(source_id) <= MAX_ID_CHARS
                or not is_clean_text(source_id)
            ):
                raise _SlowPath
        if not set(kind_texts) <= _KIND_BY_TEXT.keys():  # only a str can equal a kind's text
            raise _SlowPath
        value_types = set(map(type, values))
        if value_types == {float}:
            if not all(map(math.isfinite, values)):  # inf from 1e999
                raise _SlowPath
        elif value_types <= {float, int}:
            if not -_FLOAT_SAFE_INT < min(values) <= max(values) < _FLOAT_SAFE_INT:
                raise _SlowPath
            if not all(map(math.isfinite, values)):
                raise _SlowPath
            values = tuple(map(float, values))
        else:
            raise _SlowPath
        if set(map(type, times_ns)) != {int} or not (
            min(times_ns) >= 0 and max(times_ns) <= _INT64_MAX
        ):
            raise _SlowPath
        if set(map(type, message_ids)) != {str}:
            raise _SlowPath
        for message_id in [m for m in message_ids if m]:
            if len(message_id) > _MAX_MESSAGE_ID_CHARS or not is_clean_text(message_id):
                raise _SlowPath
    except TypeError as err:
        raise _SlowPath from err
    kinds = tuple(map(_KIND_BY_TEXT.__getitem__, kind_texts))
    return source_ids, kinds, values, times_ns, message_ids


# --- downlink commands --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownlinkCommand:
    """A batch of level commands for lamps of one gateway (a whole group in one message).

    ``group`` labels a batch the central side expanded from a lamp group (the gateway needs no
    group membership); ``expires_ns`` is when the command must no longer be applied.
    """

    cmd_id: str
    issued_ns: int
    commands: tuple[LampCommand, ...]
    group: str | None = None
    expires_ns: int | None = None

    def __post_init__(self) -> None:
        if not self.commands:
            raise ValueError("a downlink command needs at least one lamp command")
        lamps = [c.lamp_id for c in self.commands]
        if len(set(lamps)) != len(lamps):
            raise ValueError("each lamp may appear once per downlink command")

    def expired(self, now_ns: int) -> bool:
        return self.expires_ns is not None and now_ns >= self.expires_ns


def encode_downlink(command: DownlinkCommand) -> bytes:
    check = _encode_check
    check.text(command.cmd_id, "cmd_id")
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "cmd_id": command.cmd_id,
        "issued_ns": check.integer(command.issued_ns, "issued_ns"),
        "commands": [],
    }
    for i, c in enumerate(command.commands):
        check.text(c.lamp_id, f"commands[{i}].lamp")
        entry: dict[str, Any] = {
            "lamp": c.lamp_id,
            "level_frac": check.number(c.level_frac, f"commands[{i}].level_frac"),
            "ramp_s": check.number(c.ramp_s, f"commands[{i}].ramp_s"),
        }
        if c.reason != "program":
            entry["reason"] = check.text(c.reason, f"commands[{i}].reason", 64)
        doc["commands"].append(entry)
    if command.group is not None:
        doc["group"] = check.text(command.group, "group")
    if command.expires_ns is not None:
        doc["expires_ns"] = check.integer(command.expires_ns, "expires_ns")
    return dump_json(doc)


def decode_downlink(
    data: bytes,
    *,
    max_bytes: int = MAX_DOWNLINK_BYTES,
    max_commands: int = MAX_COMMANDS_PER_DOWNLINK,
) -> DownlinkCommand:
    """Decode and check a downlink command; raises only :class:`DownlinkDecodeError`."""
    check = FieldCheck(DownlinkDecodeError)
    doc = check.obj(load_json(data, max_bytes, DownlinkDecodeError), "message")
    check.version(doc)
    cmd_id = check.text(check.field(doc, "cmd_id"), "cmd_id")
    issued_ns = check.integer(check.field(doc, "issued_ns"), "issued_ns")
    entries = check.array(check.field(doc, "commands"), "commands", max_commands)
    if not entries:
        check.fail("commands", "must hold at least one lamp command")
    commands = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(entries):
        where = f"commands[{i}]"
        entry = check.obj(raw, where)
        lamp = check.text(check.field(entry, "lamp", f"{where}."), f"{where}.lamp")
        if lamp in seen:
            check.fail(f"{where}.lamp", f"lamp {lamp!r} already has commands[{seen[lamp]}]")
        seen[lamp] = i
        level = check.number(check.field(entry, "level_frac", f"{where}."), f"{where}.level_frac")
        if not 0.0 <= level <= 1.0:
            check.fail(f"{where}.level_frac", f"{level!r} is outside 0..1 (fraction of full)")
        ramp_s = check.number(entry.get("ramp_s", 0.0), f"{where}.ramp_s")
        if not 0.0 <= ramp_s <= MAX_RAMP_S:
            check.fail(f"{where}.ramp_s", f"{ramp_s!r} s is outside 0..{MAX_RAMP_S:g}")
        reason = check.text(entry.get("reason", "program"), f"{where}.reason", 64)
        commands.append(
            LampCommand(
                lamp_id=lamp, level_frac=level, ramp_s=ramp_s, issued_ns=issued_ns, reason=reason
            )
        )
    group = doc.get("group")
    if group is not None:
        group = check.text(group, "group")
    expires = doc.get("expires_ns")
    if expires is not None:
        expires = check.integer(expires, "expires_ns")
    return DownlinkCommand(
        cmd_id=cmd_id,
        issued_ns=issued_ns,
        commands=tuple(commands),
        group=group,
        expires_ns=expires,
    )


# --- acknowledgements ---------------------------------------------------------------------------


class AckStatus(enum.StrEnum):
    APPLIED = "applied"  # every lamp command was written to its controller
    PARTIAL = "partial"  # some were; ``failed`` lists the others
    REJECTED = "rejected"  # none was (expired, malformed, not this gateway's lamps...)


@dataclass(frozen=True, slots=True)
class LampFailure:
    lamp_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CommandAck:
    """The gateway's answer to one downlink command."""

    cmd_id: str
    gateway_id: str
    status: AckStatus
    ack_ns: int
    failed: tuple[LampFailure, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status is AckStatus.APPLIED and self.failed:
            raise ValueError("an applied ack lists no failed lamps; use partial")
        if self.status is AckStatus.PARTIAL and not self.failed:
            raise ValueError("a partial ack lists the lamps that failed")
        if self.status is AckStatus.REJECTED and not self.reason:
            raise ValueError("a rejected ack says why (reason)")


def encode_ack(ack: CommandAck) -> bytes:
    check = _encode_check
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "cmd_id": check.text(ack.cmd_id, "cmd_id"),
        "gw": check.gateway_id(ack.gateway_id, "gw"),
        "status": AckStatus(ack.status).value,
        "failed": [
            {
                "lamp": check.text(f.lamp_id, f"failed[{i}].lamp"),
                "reason": check.text(
                    f.reason, f"failed[{i}].reason", _MAX_REASON_CHARS, empty=True
                ),
            }
            for i, f in enumerate(ack.failed)
        ],
        "ack_ns": check.integer(ack.ack_ns, "ack_ns"),
    }
    if ack.reason:
        doc["reason"] = check.text(ack.reason, "reason", _MAX_REASON_CHARS)
    return dump_json(doc)


def decode_ack(
    data: bytes, *, topic_gateway_id: str | None = None, max_bytes: int = MAX_ACK_BYTES
) -> CommandAck:
    """Decode and check an acknowledgement; raises only :class:`AckDecodeError`.

    ``topic_gateway_id``: refuse an ack whose ``gw`` is not the topic's gateway.
    """
    check = FieldCheck(AckDecodeError)
    doc = check.obj(load_json(data, max_bytes, AckDecodeError), "message")
    check.version(doc)
    cmd_id = check.text(check.field(doc, "cmd_id"), "cmd_id")
    gateway_id = check.sender(doc, topic_gateway_id)
    status_text = check.text(check.field(doc, "status"), "status", 16)
    try:
        status = AckStatus(status_text)
    except ValueError:
        check.fail("status", f"{status_text!r} is not applied, partial or rejected")
    failed = []
    for i, raw in enumerate(
        check.array(doc.get("failed", []), "failed", MAX_COMMANDS_PER_DOWNLINK)
    ):
        entry = check.obj(raw, f"failed[{i}]")
        failed.append(
            LampFailure(
                lamp_id=check.text(
                    check.field(entry, "lamp", f"failed[{i}]."), f"failed[{i}].lamp"
                ),
                reason=check.text(
                    entry.get("reason", ""), f"failed[{i}].reason", _MAX_REASON_CHARS, empty=True
                ),
            )
        )
    ack_ns = check.integer(check.field(doc, "ack_ns"), "ack_ns")
    reason = check.text(doc.get("reason", ""), "reason", _MAX_REASON_CHARS, empty=True)
    try:
        return CommandAck(
            cmd_id=cmd_id,
            gateway_id=gateway_id,
            status=status,
            ack_ns=ack_ns,
            failed=tuple(failed),
            reason=reason,
        )
    except ValueError as err:
        check.fail("status", str(err))


# --- gateway status (retained; offline is the last will) ----------------------------------------


class GatewayState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """Retained presence of a gateway. ``counters`` (name -> count) are optional diagnostics.

    The offline message is registered as the MQTT last will when the gateway connects, so its
    ``ts_ns`` is the connect time, not the time the gateway was lost.
    """

    gateway_id: str
    state: GatewayState
    ts_ns: int
    counters: Mapping[str, int] = field(default_factory=dict)


def encode_status(status: GatewayStatus) -> bytes:
    check = _encode_check
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "gw": check.gateway_id(status.gateway_id, "gw"),
        "state": GatewayState(status.state).value,
        "ts_ns": check.integer(status.ts_ns, "ts_ns"),
    }
    if status.counters:
        doc["counters"] = {
            check.text(k, "counters", 64): check.integer(v, f"counters.{k}")
            for k, v in status.counters.items()
        }
    return dump_json(doc)


def decode_status(
    data: bytes, *, topic_gateway_id: str | None = None, max_bytes: int = MAX_STATUS_BYTES
) -> GatewayStatus:
    """Decode a status message; raises only :class:`StatusDecodeError`.

    ``topic_gateway_id``: refuse a status whose ``gw`` is not the topic's gateway.
    """
    check = FieldCheck(StatusDecodeError)
    doc = check.obj(load_json(data, max_bytes, StatusDecodeError), "message")
    check.version(doc)
    gateway_id = check.sender(doc, topic_gateway_id)
    state_text = check.text(check.field(doc, "state"), "state", 16)
    try:
        state = GatewayState(state_text)
    except ValueError:
        check.fail("state", f"{state_text!r} is not online or offline")
    ts_ns = check.integer(check.field(doc, "ts_ns"), "ts_ns")
    counters_doc = check.obj(doc.get("counters", {}), "counters")
    counters = {
        check.text(k, "counters", 64): check.integer(v, f"counters.{k}")
        for k, v in counters_doc.items()
    }
    return GatewayStatus(gateway_id=gateway_id, state=state, ts_ns=ts_ns, counters=counters)


# --- topics -------------------------------------------------------------------------------------


class Channel(enum.StrEnum):
    UPLINK = "uplink"  # gateway -> central, QoS 1, not retained
    DOWNLINK = "downlink"  # central -> gateway, QoS 1, not retained
    ACK = "ack"  # gateway -> central, QoS 1, not retained
    STATUS = "status"  # gateway -> central, QoS 1, retained; offline is the last will


TOPIC_LEVEL_RE: Final = re.compile(r"^[^/+#\x00]+$")


def _check_prefix(prefix: str) -> None:
    levels = prefix.split("/")
    if not prefix or any(not TOPIC_LEVEL_RE.match(level) for level in levels):
        raise TopicError(
            f"prefix {prefix!r} must be non-empty topic levels without + # or empty levels "
            "(no leading or trailing /), e.g. streetlight/v1"
        )


@dataclass(frozen=True, slots=True)
class GatewayTopics:
    """The four northbound topics of one gateway: ``{prefix}/{gateway_id}/{channel}``."""

    prefix: str
    gateway_id: str

    def __post_init__(self) -> None:
        _check_prefix(self.prefix)
        if not _GATEWAY_ID_RE.match(self.gateway_id):
            raise TopicError(f"gateway id {self.gateway_id!r} must match {GATEWAY_ID_PATTERN}")

    def topic(self, channel: Channel) -> str:
        return f"{self.prefix}/{self.gateway_id}/{Channel(channel).value}"

    @property
    def uplink(self) -> str:
        return self.topic(Channel.UPLINK)

    @property
    def downlink(self) -> str:
        return self.topic(Channel.DOWNLINK)

    @property
    def ack(self) -> str:
        return self.topic(Channel.ACK)

    @property
    def status(self) -> str:
        return self.topic(Channel.STATUS)


def gateway_subscription(prefix: str, channel: Channel) -> str:
    """The central side's subscription for one channel of every gateway: ``{prefix}/+/uplink``."""
    _check_prefix(prefix)
    return f"{prefix}/+/{Channel(channel).value}"


def parse_gateway_topic(prefix: str, topic: str) -> tuple[str, Channel]:
    """``(gateway_id, channel)`` of a northbound topic; :class:`TopicError` if it is not one."""
    _check_prefix(prefix)
    head = prefix + "/"
    if not topic.startswith(head):
        raise TopicError(f"{topic!r} is not under {prefix!r}")
    rest = topic[len(head) :].split("/")
    if len(rest) != 2:
        raise TopicError(f"{topic!r} is not {prefix}/<gateway_id>/<channel>")
    gateway_id, channel_text = rest
    if not _GATEWAY_ID_RE.match(gateway_id):
        raise TopicError(f"{gateway_id!r} in {topic!r} is not a gateway id")
    try:
        return gateway_id, Channel(channel_text)
    except ValueError as err:
        raise TopicError(
            f"{channel_text!r} in {topic!r} is not uplink, downlink, ack or status"
        ) from err

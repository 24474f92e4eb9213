"""Pure codecs of the gateway protocol (v1) and of southbound MQTT payloads.

Theory of operation
-------------------
Every function here takes bytes or records and returns records or bytes; none reads a clock,
a socket or a global. ``docs/gateway-protocol.md`` is the normative description of the wire
formats; this module is its reference implementation.

*Northbound* (gateway <-> central service, MQTT, topics ``{prefix}/{gateway_id}/{channel}``):

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

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from controller.dimming.dali import level_to_arc
from domain.errors import StreetlightError
from domain.records import LampCommand, Reading, ReadingKind
from gateways.pointmap import FlagName, flags_to_status

__all__ = [
    "GATEWAY_ID_PATTERN",
    "MAX_DOWNLINK_BYTES",
    "MAX_UPLINK_BYTES",
    "PROTOCOL_VERSION",
    "AckDecodeError",
    "AckStatus",
    "Channel",
    "CodecError",
    "CommandAck",
    "DownlinkCommand",
    "DownlinkDecodeError",
    "EncodeError",
    "GatewayState",
    "GatewayStatus",
    "GatewayTopics",
    "LampFailure",
    "LampFieldMap",
    "LampSetpointSpec",
    "LampTelemetryDecodeError",
    "LampTelemetrySpec",
    "SensorDecodeError",
    "SensorPayloadSpec",
    "SensorSpec",
    "StatusDecodeError",
    "TopicError",
    "TopicTemplate",
    "UplinkBatch",
    "UplinkDecodeError",
    "decode_ack",
    "decode_downlink",
    "decode_lamp_telemetry",
    "decode_sensor",
    "decode_status",
    "decode_uplink",
    "derived_message_id",
    "encode_ack",
    "encode_downlink",
    "encode_lamp_setpoint",
    "encode_readings",
    "encode_status",
    "encode_uplink",
    "frame_uplink",
    "gateway_subscription",
    "parse_gateway_topic",
    "parse_json_path",
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
MAX_SENSOR_BYTES: Final = 64 * 1024
MAX_SENSOR_ITEMS: Final = 1_000
#: Longest ramp a command may ask for, s (DALI's longest fade is 90.5 s; an hour is generous).
MAX_RAMP_S: Final = 3600.0

#: Gateway ids appear as one MQTT topic level: no ``/``, ``+``, ``#``, and short.
GATEWAY_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_GATEWAY_ID_RE: Final = re.compile(GATEWAY_ID_PATTERN)
_EPOCH_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_MAX_ID_CHARS: Final = 128
_MAX_MESSAGE_ID_CHARS: Final = 256
_MAX_REASON_CHARS: Final = 500
_INT64_MAX: Final = 2**63 - 1
# Sensor and lamp times outside these years are almost always a wrong time_unit.
_EARLIEST_NS: Final = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
_LATEST_NS: Final = 4_102_444_800 * 10**9  # 2100-01-01T00:00:00Z


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


class SensorDecodeError(CodecError):
    what = "sensor payload"


class LampTelemetryDecodeError(CodecError):
    what = "lamp telemetry"


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


def _load(data: object, max_bytes: int, error: type[CodecError]) -> Any:
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


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class _Check:
    """Field checks that raise ``error`` with the field's location."""

    def __init__(self, error: type[CodecError]) -> None:
        self.error = error

    def fail(self, where: str, message: str, name: str = "") -> NoReturn:
        raise self.error(f"{where}: {name + ' ' if name else ''}{message}")

    def obj(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {_json_kind(value)}")
        return value

    def field(self, doc: Mapping[str, Any], key: str, where: str = "") -> Any:
        if key not in doc:
            self.fail(f"{where}{key}", "is missing")
        return doc[key]

    def version(self, doc: Mapping[str, Any]) -> None:
        v = self.field(doc, "v")
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail("v", f"must be the protocol version number, got {_json_kind(v)}")
        if v != PROTOCOL_VERSION:
            self.fail("v", f"version {v} is not supported; this decoder reads v{PROTOCOL_VERSION}")

    def integer(
        self, value: object, where: str, low: int = 0, high: int = _INT64_MAX, name: str = ""
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be a whole number, got {_json_kind(value)}", name)
        if not low <= value <= high:
            self.fail(where, f"{value} is outside {low}..{high}", name)
        return value

    def number(self, value: object, where: str, name: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a finite number, got {_json_kind(value)}", name)
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
        max_chars: int = _MAX_ID_CHARS,
        *,
        empty: bool = False,
        name: str = "",
    ) -> str:
        if not isinstance(value, str):
            self.fail(where, f"must be text, got {_json_kind(value)}", name)
        if not value and not empty:
            self.fail(where, "must not be empty", name)
        if len(value) > max_chars:
            self.fail(where, f"is {len(value)} characters; at most {max_chars}", name)
        if not _clean_text(value):
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
            self.fail(where, f"must be an array, got {_json_kind(value)}")
        if len(value) > max_items:
            self.fail(where, f"has {len(value)} entries; at most {max_items}")
        return value


def _clean_text(text: str) -> bool:
    if not text.isprintable():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_kind(value: object) -> str:
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


_encode_check = _Check(EncodeError)


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
    return _dumps(rows)


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
    head = _dumps({"v": PROTOCOL_VERSION, "gw": gateway_id, "epoch": epoch, "seq": seq})
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
    check = _Check(UplinkDecodeError)
    doc = check.obj(_load(data, max_bytes, UplinkDecodeError), "message")
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
    return _dumps(doc)


def decode_downlink(
    data: bytes,
    *,
    max_bytes: int = MAX_DOWNLINK_BYTES,
    max_commands: int = MAX_COMMANDS_PER_DOWNLINK,
) -> DownlinkCommand:
    """Decode and check a downlink command; raises only :class:`DownlinkDecodeError`."""
    check = _Check(DownlinkDecodeError)
    doc = check.obj(_load(data, max_bytes, DownlinkDecodeError), "message")
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
    return _dumps(doc)


def decode_ack(
    data: bytes, *, topic_gateway_id: str | None = None, max_bytes: int = MAX_ACK_BYTES
) -> CommandAck:
    """Decode and check an acknowledgement; raises only :class:`AckDecodeError`.

    ``topic_gateway_id``: refuse an ack whose ``gw`` is not the topic's gateway.
    """
    check = _Check(AckDecodeError)
    doc = check.obj(_load(data, max_bytes, AckDecodeError), "message")
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
    return _dumps(doc)


def decode_status(
    data: bytes, *, topic_gateway_id: str | None = None, max_bytes: int = MAX_STATUS_BYTES
) -> GatewayStatus:
    """Decode a status message; raises only :class:`StatusDecodeError`.

    ``topic_gateway_id``: refuse a status whose ``gw`` is not the topic's gateway.
    """
    check = _Check(StatusDecodeError)
    doc = check.obj(_load(data, max_bytes, StatusDecodeError), "message")
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


_LEVEL_RE: Final = re.compile(r"^[^/+#\x00]+$")


def _check_prefix(prefix: str) -> None:
    levels = prefix.split("/")
    if not prefix or any(not _LEVEL_RE.match(level) for level in levels):
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
            if not _LEVEL_RE.match(value):
                raise TopicError(
                    f"{{{name}}} = {value!r} cannot be an MQTT topic level (empty, / + or #)"
                )
            out.append(value)
        return "/".join(out)


@lru_cache(maxsize=256)
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
        elif not _LEVEL_RE.match(level):
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


def _lookup(root: Any, item: Any, path: str) -> Any:
    """The value at ``path``, or ``_MISSING``."""
    start, segments = parse_json_path(path)
    node = root if start == "$" else item
    for segment in segments:
        if isinstance(node, dict):
            node = node.get(segment, _MISSING)
        elif isinstance(node, list) and segment.isdigit():
            index = int(segment)
            node = node[index] if index < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _time_ns(value: object, unit: str, where: str, fail: Callable[[str, str], NoReturn]) -> int:
    if unit == "iso8601":
        if not isinstance(value, str):
            fail(where, f"must be an ISO 8601 time text, got {_json_kind(value)}")
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
            fail(where, f"must be a number of {unit} since 1970, got {_json_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            fail(where, "must be a finite number")
        scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        ns = value * scale if isinstance(value, int) else round(value * scale)
    if not _EARLIEST_NS <= ns < _LATEST_NS:
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
        fail(where, f"must be non-empty text or a whole number, got {_json_kind(value)}")
    if len(value) > _MAX_ID_CHARS or not _clean_text(value):
        fail(where, f"must be printable text of at most {_MAX_ID_CHARS} characters")
    return value


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
    (presence readings are detection events).
    """
    check = _Check(SensorDecodeError)
    template = TopicTemplate.parse(spec.topic)
    from_topic = template.match(topic)
    if from_topic is None:
        raise SensorDecodeError(f"topic {topic!r} does not match {spec.topic!r}")
    root = _load(payload, max_bytes, SensorDecodeError)
    p = spec.payload
    if p.items is not None:
        items = _lookup(root, root, p.items)
        if items is _MISSING:
            check.fail(p.items, "is missing")
        entries = check.array(items, p.items, max_items)
    else:
        entries = [root]
    readings = []
    for i, item in enumerate(entries):
        where = f"{p.items}.{i}: " if p.items is not None else ""

        def get(path: str, *, _item: Any = item, _where: str = where) -> Any:
            value = _lookup(root, _item, path)
            if value is _MISSING:
                check.fail(f"{_where}{path}", "is missing")
            return value

        def fail(path: str, message: str, *, _where: str = where) -> NoReturn:
            check.fail(f"{_where}{path}", message)

        if p.sensor_id is not None:
            sensor_id = _id_text(get(p.sensor_id), p.sensor_id, fail)
            topic_id = from_topic.get("sensor_id")
            if topic_id is not None and topic_id != sensor_id:
                fail(p.sensor_id, f"sensor {sensor_id!r} differs from the topic's {topic_id!r}")
        else:
            sensor_id = from_topic["sensor_id"]
        if known_sensors is not None and sensor_id not in known_sensors:
            fail(p.sensor_id or "topic", f"sensor {sensor_id!r} is not configured on this gateway")
        if p.kind is not None:
            kind = ReadingKind(p.kind)
        else:
            assert p.kind_path is not None  # the spec's validator guarantees one of the two
            kind_text = get(p.kind_path)
            if not isinstance(kind_text, str):
                fail(p.kind_path, f"must be text, got {_json_kind(kind_text)}")
            mapped = p.kind_values.get(kind_text) if p.kind_values else kind_text
            if mapped not in ("presence", "footfall_count", "traffic_count"):
                known = (
                    ", ".join(sorted(p.kind_values)) or "presence, footfall_count, traffic_count"
                )
                fail(p.kind_path, f"{kind_text!r} is not a known kind; expected {known}")
            kind = ReadingKind(mapped)
        if p.value is None:
            value = 1.0
        else:
            raw = get(p.value)
            if isinstance(raw, bool) and kind is ReadingKind.PRESENCE:
                if not raw:
                    continue
                value = 1.0
            else:
                value = check.number(raw, f"{where}{p.value}")
                if value < 0.0:
                    fail(p.value, f"{value!r} is negative; counts and detections are >= 0")
                if kind is ReadingKind.PRESENCE and value == 0.0:
                    continue
        if p.time is None:
            time_ns = received_ns
        else:
            time_ns = _time_ns(get(p.time), p.time_unit, p.time, fail)
            _check_clock(time_ns, received_ns, max_future_s, max_age_s, p.time, fail)
        message_id = ""
        if p.event_id is not None:
            event = _id_text(get(p.event_id), p.event_id, fail)
            message_id = f"{sensor_id}#{event}"
            if p.items is not None and p.event_id.startswith("$"):
                message_id += f"#{i}"  # one event id for the whole list: number the entries
        readings.append(
            Reading(
                source_id=sensor_id, kind=kind, value=value, time_ns=time_ns, message_id=message_id
            )
        )
    return readings


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
    return topic, _dumps(doc)


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
    check = _Check(LampTelemetryDecodeError)
    values = TopicTemplate.parse(spec.topic).match(topic)
    if values is None:
        raise LampTelemetryDecodeError(f"topic {topic!r} does not match {spec.topic!r}")
    name = values["lamp"]
    lamp_id = name if lamp_ids is None else lamp_ids.get(name)
    if lamp_id is None:
        raise LampTelemetryDecodeError(f"topic {topic!r} names lamp {name!r}, not configured here")
    root = _load(payload, max_bytes, LampTelemetryDecodeError)
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

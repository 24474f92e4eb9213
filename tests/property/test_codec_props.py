"""Codec invariants: records round-trip exactly, and hostile input raises only the codec's error."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.protocol import (
    AckDecodeError,
    AckStatus,
    CodecError,
    CommandAck,
    DownlinkCommand,
    DownlinkDecodeError,
    GatewayState,
    GatewayStatus,
    LampFailure,
    StatusDecodeError,
    UplinkDecodeError,
    decode_ack,
    decode_downlink,
    decode_status,
    decode_uplink,
    derived_message_id,
    encode_ack,
    encode_downlink,
    encode_status,
    encode_uplink,
)
from domain.records import LampCommand, Reading, ReadingKind
from gateways.codecs import (
    LampTelemetryDecodeError,
    LampTelemetrySpec,
    SensorDecodeError,
    SensorSpec,
    TopicTemplate,
    decode_lamp_telemetry,
    decode_sensor,
)

# Printable text (what ids may hold): letters, marks, numbers, punctuation, symbols, spaces.
printable = st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S"]) | st.just(" ")
ids = st.text(printable, min_size=1, max_size=40)
gateway_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
epochs = st.from_regex(r"\A[A-Za-z0-9_-]{1,12}\Z")
times_ns = st.integers(0, 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)

readings = st.builds(
    Reading,
    source_id=ids,
    kind=st.sampled_from(ReadingKind),
    value=finite,
    time_ns=times_ns,
    message_id=st.just("") | st.text(printable, min_size=1, max_size=60),
)


@given(st.lists(readings, max_size=30), gateway_ids, epochs, st.integers(1, 2**63 - 1), times_ns)
def test_uplink_round_trip(
    batch: list[Reading], gw: str, epoch: str, seq: int, sent_ns: int
) -> None:
    decoded = decode_uplink(
        encode_uplink(batch, gateway_id=gw, epoch=epoch, seq=seq, sent_ns=sent_ns)
    )
    assert (decoded.gateway_id, decoded.epoch, decoded.seq, decoded.sent_ns) == (
        gw,
        epoch,
        seq,
        sent_ns,
    )
    expected = [
        Reading(
            r.source_id,
            r.kind,
            r.value,
            r.time_ns,
            r.message_id or derived_message_id(gw, epoch, seq, i),
        )
        for i, r in enumerate(batch)
    ]
    assert list(decoded.readings) == expected
    # Message ids within a message are distinct whenever the readings leave them to the codec.
    derived = [
        r.message_id for r, b in zip(decoded.readings, batch, strict=True) if not b.message_id
    ]
    assert len(set(derived)) == len(derived)


lamp_commands = st.lists(
    st.tuples(
        ids,
        st.floats(0.0, 1.0),
        st.floats(0.0, 3600.0),
        st.just("program") | st.text(printable, min_size=1, max_size=20),
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda c: c[0],
)


@given(
    ids,
    times_ns,
    lamp_commands,
    st.none() | ids,
    st.none() | times_ns,
)
def test_downlink_round_trip(
    cmd_id: str,
    issued_ns: int,
    commands: list[tuple[str, float, float, str]],
    group: str | None,
    expires_ns: int | None,
) -> None:
    command = DownlinkCommand(
        cmd_id=cmd_id,
        issued_ns=issued_ns,
        commands=tuple(
            LampCommand(lamp, lv, ramp, issued_ns, why) for lamp, lv, ramp, why in commands
        ),
        group=group,
        expires_ns=expires_ns,
    )
    assert decode_downlink(encode_downlink(command)) == command


@given(
    ids,
    gateway_ids,
    st.sampled_from(AckStatus),
    times_ns,
    st.lists(st.builds(LampFailure, ids, st.text(printable, max_size=50)), min_size=1, max_size=5),
    st.text(printable, min_size=1, max_size=50),
)
def test_ack_round_trip(
    cmd_id: str,
    gw: str,
    status: AckStatus,
    ack_ns: int,
    failed: list[LampFailure],
    reason: str,
) -> None:
    ack = CommandAck(
        cmd_id,
        gw,
        status,
        ack_ns,
        failed=() if status is AckStatus.APPLIED else tuple(failed),
        reason=reason if status is AckStatus.REJECTED else "",
    )
    assert decode_ack(encode_ack(ack)) == ack


@given(
    gateway_ids,
    st.sampled_from(GatewayState),
    times_ns,
    st.dictionaries(st.text(printable, min_size=1, max_size=20), st.integers(0, 2**63 - 1)),
)
def test_status_round_trip(
    gw: str, state: GatewayState, ts_ns: int, counters: dict[str, int]
) -> None:
    status = GatewayStatus(gw, state, ts_ns, counters)
    assert decode_status(encode_status(status)) == status


level_text = st.text(
    st.characters(exclude_characters="/+#\x00", codec="utf-8"), min_size=1, max_size=10
)


@given(st.lists(level_text, min_size=1, max_size=6), st.data())
def test_topic_templates_format_then_match(literals: list[str], data: st.DataObject) -> None:
    names = [f"p{i}" for i in range(len(literals))]
    use = data.draw(st.lists(st.booleans(), min_size=len(literals), max_size=len(literals)))
    literals = [lit.replace("{", "(").replace("}", ")") for lit in literals]
    levels = [f"{{{n}}}" if u else lit for n, lit, u in zip(names, literals, use, strict=True)]
    template = TopicTemplate.parse("/".join(levels))
    values = {n: data.draw(level_text) for n, u in zip(names, use, strict=True) if u}
    topic = template.format(values)
    assert template.match(topic) == values
    assert template.subscription.count("+") == len(values)


# --- hostile input ------------------------------------------------------------------------------

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, the receive time of device payloads

SENSOR = SensorSpec.model_validate(
    {
        "topic": "s/{sensor_id}/e",
        "payload": {
            "items": "$.events",
            "kind_path": "@.k",
            "value": "@.v",
            "time": "@.t",
            "time_unit": "iso8601",
            "event_id": "@.id",
        },
    }
)
LAMP = LampTelemetrySpec.model_validate(
    {
        "topic": "n/{lamp}/state",
        "time": "$.ts",
        "fields": [
            {"kind": "level_frac", "path": "$.d.0", "scale": 0.01},
            {"kind": "status", "path": "$.f", "flags": {0: "lamp_failure", 63: "comms_fault"}},
            {"kind": "power_w", "path": "$.p"},
        ],
    }
)

DECODERS: list[tuple[Callable[[bytes], object], type[CodecError]]] = [
    (decode_uplink, UplinkDecodeError),
    (decode_downlink, DownlinkDecodeError),
    (decode_ack, AckDecodeError),
    (decode_status, StatusDecodeError),
    (lambda b: decode_sensor("s/x/e", b, SENSOR, received_ns=T0), SensorDecodeError),
    (
        lambda b: decode_lamp_telemetry("n/x/state", b, LAMP, received_ns=T0),
        LampTelemetryDecodeError,
    ),
]


def only_own_errors(data: bytes) -> None:
    for decode, error in DECODERS:
        try:
            decode(data)
        except error:
            pass
        except Exception as err:  # anything else is a bug in the decoder
            raise AssertionError(f"{decode} raised {type(err).__name__}: {err}") from err


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    only_own_errors(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _valid_docs() -> list[dict[str, Any]]:
    row = ["L1", "power_w", 1.0, 1_767_225_600_000_000_000, ""]
    return [
        {"v": 1, "gw": "gw-1", "epoch": "e1", "seq": 1, "sent_ns": 0, "readings": [row, row]},
        {"v": 1, "cmd_id": "c", "issued_ns": 0, "commands": [{"lamp": "L1", "level_frac": 0.5}]},
        {
            "v": 1,
            "cmd_id": "c",
            "gw": "g",
            "status": "partial",
            "failed": [{"lamp": "L"}],
            "ack_ns": 0,
        },
        {"v": 1, "gw": "g", "state": "online", "ts_ns": 0, "counters": {"a": 1}},
        {"events": [{"k": "presence", "v": True, "t": "2026-01-01T00:00:00Z", "id": 4}]},
        {"d": [50], "f": 1, "p": 3.5, "ts": 1_767_225_600_000},
    ]


def _replace_somewhere(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node reached by following ``path`` (indices mod size) replaced."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        key = sorted(doc)[path[0] % len(doc)]
        return {**doc, key: _replace_somewhere(doc[key], path[1:], value)}
    index = path[0] % len(doc)
    return [*doc[:index], _replace_somewhere(doc[index], path[1:], value), *doc[index + 1 :]]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_valid_docs()),
    st.lists(st.integers(0, 10), max_size=4),
    json_values,
)
def test_near_valid_documents_raise_only_codec_errors(
    doc: dict[str, Any], path: list[int], value: Any
) -> None:
    mutated = _replace_somewhere(doc, path, value)
    only_own_errors(json.dumps(mutated).encode())


@given(st.sampled_from(_valid_docs()), st.integers(0, 400), st.binary(min_size=1, max_size=3))
def test_corrupted_bytes_raise_only_codec_errors(doc: dict[str, Any], at: int, junk: bytes) -> None:
    data = json.dumps(doc).encode()
    at %= len(data)
    only_own_errors(data[:at] + junk + data[at + len(junk) :])
    only_own_errors(data[:at])

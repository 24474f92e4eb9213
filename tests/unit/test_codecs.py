"""Protocol v1 codecs: exact wire bytes, precise rejection reasons, topics, sensor and lamp maps."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from domain.protocol import (
    AckDecodeError,
    AckStatus,
    Channel,
    CommandAck,
    DownlinkCommand,
    DownlinkDecodeError,
    EncodeError,
    GatewayState,
    GatewayStatus,
    GatewayTopics,
    LampFailure,
    StatusDecodeError,
    TopicError,
    UplinkDecodeError,
    decode_ack,
    decode_downlink,
    decode_status,
    decode_uplink,
    encode_ack,
    encode_downlink,
    encode_readings,
    encode_status,
    encode_uplink,
    frame_uplink,
    gateway_subscription,
    parse_gateway_topic,
)
from domain.records import LampCommand, Reading, ReadingKind, StatusFlag
from gateways.codecs import (
    MAX_CACHED_TOPICS,
    LampSetpointSpec,
    LampTelemetryDecodeError,
    LampTelemetrySpec,
    SensorDecodeError,
    SensorDecoder,
    SensorSpec,
    TopicTemplate,
    decode_lamp_telemetry,
    decode_sensor,
    encode_lamp_setpoint,
)

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

# --- uplink -------------------------------------------------------------------------------------


def test_uplink_wire_bytes_are_exactly_as_documented() -> None:
    readings = [
        Reading("L-0001", ReadingKind.LEVEL_FRAC, 0.5, T0),
        Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 3.0, T0 + 1, "CAM-01#881"),
    ]
    data = encode_uplink(readings, gateway_id="gw-1", epoch="5f3a9c01", seq=123, sent_ns=T0 + 5)
    assert data == (
        b'{"v":1,"gw":"gw-1","epoch":"5f3a9c01","seq":123,"sent_ns":1767225600000000005,'
        b'"readings":[["L-0001","level_frac",0.5,1767225600000000000,""],'
        b'["CAM-01","footfall_count",3.0,1767225600000000001,"CAM-01#881"]]}'
    )
    batch = decode_uplink(data)
    assert (batch.gateway_id, batch.epoch, batch.seq, batch.sent_ns) == (
        "gw-1",
        "5f3a9c01",
        123,
        T0 + 5,
    )
    assert batch.readings[0] == Reading(
        "L-0001", ReadingKind.LEVEL_FRAC, 0.5, T0, "gw-1:5f3a9c01:123:0"
    )
    assert batch.readings[1].message_id == "CAM-01#881"


def test_message_ids_are_stable_across_resends() -> None:
    body = encode_readings([Reading("L1", ReadingKind.POWER_W, 12.0, T0)] * 3)
    first = decode_uplink(frame_uplink(body, gateway_id="gw-1", epoch="e1", seq=7, sent_ns=T0))
    again = decode_uplink(
        frame_uplink(body, gateway_id="gw-1", epoch="e1", seq=7, sent_ns=T0 + 10**9)
    )
    assert [r.message_id for r in first.readings] == [r.message_id for r in again.readings]
    assert [r.message_id for r in first.readings] == ["gw-1:e1:7:0", "gw-1:e1:7:1", "gw-1:e1:7:2"]
    other_queue = decode_uplink(
        frame_uplink(body, gateway_id="gw-1", epoch="e2", seq=7, sent_ns=T0)
    )
    assert {r.message_id for r in other_queue.readings}.isdisjoint(
        r.message_id for r in first.readings
    )


def _uplink(readings: object, **head: object) -> bytes:
    doc = {"v": 1, "gw": "gw-1", "epoch": "e1", "seq": 1, "sent_ns": T0, "readings": readings}
    doc.update(head)
    return json.dumps(doc).encode()


GOOD_ROW = ["L1", "power_w", 1.0, T0, ""]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[1, 2]", "message: must be an object, got an array"),
        (b'{"v": 1, "v": 1}', "key 'v' appears twice"),
        (_uplink([], v=2), "v: version 2 is not supported"),
        (_uplink([], v="1"), "v: must be the protocol version number"),
        (_uplink([], gw="a/b"), "gw: 'a/b' is not a gateway id"),
        (_uplink([], seq=0), "seq: 0 is outside 1.."),
        (_uplink([], seq=True), "seq: must be a whole number, got a boolean"),
        (_uplink([], sent_ns=1.5), "sent_ns: must be a whole number"),
        (_uplink([], epoch="a b"), "epoch: must be 1-32 letters"),
        (_uplink({}), "readings: must be an array, got an object"),
        (_uplink([GOOD_ROW, GOOD_ROW[:4]]), "readings[1]: must be [source_id, kind, value"),
        (_uplink([["", "power_w", 1.0, T0, ""]]), "readings[0][0]: source_id must not be empty"),
        (_uplink([["L1", "lux", 1.0, T0, ""]]), "readings[0][1]: kind 'lux' is not a reading kind"),
        (
            _uplink([GOOD_ROW, GOOD_ROW, GOOD_ROW, ["L1", "power_w", "1", T0, ""]]),
            "readings[3][2]: value must be a finite number",
        ),
        (
            b'{"v":1,"gw":"g","epoch":"e","seq":1,"sent_ns":0,"readings":[["L1","power_w",1e999,0,""]]}',
            "readings[0][2]: value must be a finite number",
        ),
        (
            b'{"v":1,"gw":"g","epoch":"e","seq":1,"sent_ns":0,"readings":[["L1","power_w",NaN,0,""]]}',
            "NaN is not a number JSON allows",
        ),
        (_uplink([["L1", "power_w", 1.0, -1, ""]]), "readings[0][3]: time_ns -1 is outside"),
        (_uplink([["L1", "power_w", 1.0, 2**63, ""]]), "readings[0][3]: time_ns"),
        (_uplink([["L1", "power_w", 1.0, T0, None]]), "readings[0][4]: message_id must be text"),
        (_uplink([["L\x00", "power_w", 1.0, T0, ""]]), "must be printable text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"v":1,"seq":' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_uplink_rejections_say_where(data: bytes, reason: str) -> None:
    with pytest.raises(UplinkDecodeError) as info:
        decode_uplink(data)
    assert reason in info.value.reason
    assert str(info.value).startswith("uplink message rejected: ")


def test_central_side_checks_the_sender_against_the_topic() -> None:
    data = _uplink([GOOD_ROW])
    assert decode_uplink(data, topic_gateway_id="gw-1").gateway_id == "gw-1"
    with pytest.raises(
        UplinkDecodeError, match="gw: 'gw-1' differs from the topic's gateway 'gw-2'"
    ):
        decode_uplink(data, topic_gateway_id="gw-2")
    ack = encode_ack(CommandAck("c", "gw-1", AckStatus.APPLIED, T0))
    with pytest.raises(AckDecodeError, match="differs from the topic's gateway"):
        decode_ack(ack, topic_gateway_id="gw-2")
    status = encode_status(GatewayStatus("gw-1", GatewayState.ONLINE, T0))
    with pytest.raises(StatusDecodeError, match="differs from the topic's gateway"):
        decode_status(status, topic_gateway_id="gw-2")


def test_uplink_limits() -> None:
    data = _uplink([GOOD_ROW] * 20)
    with pytest.raises(UplinkDecodeError, match=f"message is {len(data)} bytes; the limit is 100"):
        decode_uplink(data, max_bytes=100)
    with pytest.raises(UplinkDecodeError, match="has 20 entries; at most 10"):
        decode_uplink(data, max_readings=10)
    with pytest.raises(UplinkDecodeError, match="expected bytes"):
        decode_uplink("text")  # type: ignore[arg-type]
    assert len(decode_uplink(_uplink([GOOD_ROW], extra_field=1)).readings) == 1  # ignored


def test_encode_refuses_what_the_protocol_cannot_carry() -> None:
    with pytest.raises(EncodeError, match=r"readings\[0\].value: must be a finite number"):
        encode_readings([Reading("L1", ReadingKind.POWER_W, float("nan"), T0)])
    with pytest.raises(EncodeError, match="time_ns"):
        encode_readings([Reading("L1", ReadingKind.POWER_W, 1.0, -5)])
    with pytest.raises(EncodeError, match="seq"):
        frame_uplink(b"[]", gateway_id="gw-1", epoch="e", seq=0, sent_ns=0)
    with pytest.raises(EncodeError, match="not a JSON array"):
        frame_uplink(b"{}", gateway_id="gw-1", epoch="e", seq=1, sent_ns=0)


# --- downlink, ack, status ----------------------------------------------------------------------


def test_downlink_round_trip_and_wire_form() -> None:
    command = DownlinkCommand(
        cmd_id="c-42",
        issued_ns=T0,
        commands=(LampCommand("L1", 0.5, 2.0, T0), LampCommand("L2", 0.0, 0.0, T0, "override")),
        group="north-street",
        expires_ns=T0 + 60 * 10**9,
    )
    data = encode_downlink(command)
    assert json.loads(data) == {
        "v": 1,
        "cmd_id": "c-42",
        "issued_ns": T0,
        "commands": [
            {"lamp": "L1", "level_frac": 0.5, "ramp_s": 2.0},
            {"lamp": "L2", "level_frac": 0.0, "ramp_s": 0.0, "reason": "override"},
        ],
        "group": "north-street",
        "expires_ns": T0 + 60 * 10**9,
    }
    assert decode_downlink(data) == command
    assert not command.expired(T0 + 59 * 10**9)
    assert command.expired(T0 + 60 * 10**9)


def _down(commands: object, **head: object) -> bytes:
    doc = {"v": 1, "cmd_id": "c1", "issued_ns": T0, "commands": commands}
    doc.update(head)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_down([]), "commands: must hold at least one lamp command"),
        (_down([{"lamp": "L1"}]), "commands[0].level_frac: is missing"),
        (_down([{"lamp": "L1", "level_frac": 1.5}]), "commands[0].level_frac: 1.5 is outside 0..1"),
        (_down([{"lamp": "L1", "level_frac": 0.5, "ramp_s": -1}]), "commands[0].ramp_s: -1.0 s"),
        (_down([{"lamp": "L1", "level_frac": 0.5, "ramp_s": 1e6}]), "is outside 0..3600"),
        (
            _down([{"lamp": "L1", "level_frac": 0.5}, {"lamp": "L1", "level_frac": 0.2}]),
            "commands[1].lamp: lamp 'L1' already has commands[0]",
        ),
        (_down(["L1"]), "commands[0]: must be an object"),
        (_down([{"lamp": "L1", "level_frac": 0.5}], expires_ns="soon"), "expires_ns: must be"),
        (_down([{"lamp": "L1", "level_frac": 0.5}], cmd_id=""), "cmd_id: must not be empty"),
    ],
)
def test_downlink_rejections(data: bytes, reason: str) -> None:
    with pytest.raises(DownlinkDecodeError) as info:
        decode_downlink(data)
    assert reason in info.value.reason


def test_ack_round_trip_and_consistency() -> None:
    ack = CommandAck(
        "c-42", "gw-1", AckStatus.PARTIAL, T0, (LampFailure("L2", "BadNodeIdUnknown"),)
    )
    data = encode_ack(ack)
    assert json.loads(data) == {
        "v": 1,
        "cmd_id": "c-42",
        "gw": "gw-1",
        "status": "partial",
        "failed": [{"lamp": "L2", "reason": "BadNodeIdUnknown"}],
        "ack_ns": T0,
    }
    assert decode_ack(data) == ack
    rejected = CommandAck("c-43", "gw-1", AckStatus.REJECTED, T0, reason="expired")
    assert decode_ack(encode_ack(rejected)) == rejected
    with pytest.raises(ValueError, match="partial ack lists"):
        CommandAck("c", "gw-1", AckStatus.PARTIAL, T0)
    bad = b'{"v":1,"cmd_id":"c","gw":"gw-1","status":"applied","ack_ns":1,"failed":[{"lamp":"L1"}]}'
    with pytest.raises(AckDecodeError, match="applied ack lists no failed lamps"):
        decode_ack(bad)
    with pytest.raises(AckDecodeError, match="'done' is not applied, partial or rejected"):
        decode_ack(b'{"v":1,"cmd_id":"c","gw":"gw-1","status":"done","ack_ns":1}')


def test_status_round_trip() -> None:
    online = GatewayStatus("gw-1", GatewayState.ONLINE, T0, {"queue_len": 3, "malformed": 0})
    assert decode_status(encode_status(online)) == online
    offline = GatewayStatus("gw-1", GatewayState.OFFLINE, T0)
    assert (
        encode_status(offline)
        == b'{"v":1,"gw":"gw-1","state":"offline","ts_ns":1767225600000000000}'
    )
    with pytest.raises(StatusDecodeError, match=r"counters\.x: must be a whole number"):
        decode_status(b'{"v":1,"gw":"g","state":"online","ts_ns":1,"counters":{"x":1.5}}')


# --- topics -------------------------------------------------------------------------------------


def test_gateway_topics() -> None:
    topics = GatewayTopics("streetlight/v1", "gw-1")
    assert (topics.uplink, topics.downlink, topics.ack, topics.status) == (
        "streetlight/v1/gw-1/uplink",
        "streetlight/v1/gw-1/downlink",
        "streetlight/v1/gw-1/ack",
        "streetlight/v1/gw-1/status",
    )
    assert gateway_subscription("streetlight/v1", Channel.UPLINK) == "streetlight/v1/+/uplink"
    assert parse_gateway_topic("streetlight/v1", "streetlight/v1/gw-1/ack") == ("gw-1", Channel.ACK)
    for bad in (
        "streetlight/v1/gw-1",
        "other/gw-1/ack",
        "streetlight/v1/gw-1/ack/x",
        "streetlight/v1/gw-1/telemetry",
    ):
        with pytest.raises(TopicError):
            parse_gateway_topic("streetlight/v1", bad)
    for prefix in ("", "/a", "a/", "a/+/b", "a//b"):
        with pytest.raises(TopicError, match="prefix"):
            GatewayTopics(prefix, "gw-1")
    with pytest.raises(TopicError, match="gateway id"):
        GatewayTopics("streetlight/v1", "gw#1")


def test_topic_templates() -> None:
    t = TopicTemplate.parse("site/{site}/sensors/{sensor_id}/events")
    assert t.fields == ("site", "sensor_id")
    assert t.subscription == "site/+/sensors/+/events"
    assert t.match("site/A/sensors/S1/events") == {"site": "A", "sensor_id": "S1"}
    assert t.match("site/A/sensors/S1") is None
    assert t.match("site//sensors/S1/events") is None
    assert t.format({"site": "A", "sensor_id": "S1"}) == "site/A/sensors/S1/events"
    with pytest.raises(TopicError, match="cannot be an MQTT topic level"):
        t.format({"site": "A/B", "sensor_id": "S1"})
    with pytest.raises(TopicError, match=r"needs a value for \{site\}"):
        t.format({"sensor_id": "S1"})
    same = TopicTemplate.parse("a/{x}/{x}")
    assert same.match("a/1/1") == {"x": "1"} and same.match("a/1/2") is None
    for bad in ("sensors/+/events", "sensors/#", "sensors/s{id}", "a//b", "a/{x-y}"):
        with pytest.raises(TopicError):
            TopicTemplate.parse(bad)


# --- sensors ------------------------------------------------------------------------------------


def sensor(payload: dict[str, object], topic: str = "sensors/{sensor_id}/events") -> SensorSpec:
    return SensorSpec.model_validate({"topic": topic, "payload": payload})


def test_sensor_counts_with_event_ids() -> None:
    spec = sensor(
        {"kind": "footfall_count", "value": "$.count", "time": "$.ts", "event_id": "$.seq"}
    )
    readings = decode_sensor(
        "sensors/CAM-01/events",
        b'{"count": 4, "ts": 1767225600000, "seq": 881}',
        spec,
        received_ns=T0,
    )
    assert readings == [Reading("CAM-01", ReadingKind.FOOTFALL_COUNT, 4.0, T0, "CAM-01#881")]


def test_sensor_lists_kind_maps_and_receive_time() -> None:
    spec = sensor(
        {
            "items": "$.events",
            "sensor_id": "$.device.id",
            "kind_path": "@.type",
            "kind_values": {"ped": "footfall_count", "car": "traffic_count"},
            "value": "@.n",
            "event_id": "$.msg",
        },
        topic="lora/{gw}/up",
    )
    payload = json.dumps(
        {
            "device": {"id": 17},
            "msg": "m9",
            "events": [{"type": "ped", "n": 2}, {"type": "car", "n": 5}],
        }
    ).encode()
    readings = decode_sensor("lora/x/up", payload, spec, received_ns=T0)
    assert readings == [
        Reading("17", ReadingKind.FOOTFALL_COUNT, 2.0, T0, "17#m9#0"),
        Reading("17", ReadingKind.TRAFFIC_COUNT, 5.0, T0, "17#m9#1"),
    ]
    with pytest.raises(SensorDecodeError, match=r"\$.events.1: @.type: 'bus' is not a known kind"):
        decode_sensor("lora/x/up", payload.replace(b'"car"', b'"bus"'), spec, received_ns=T0)


def test_presence_booleans_and_iso_times() -> None:
    spec = sensor(
        {"kind": "presence", "value": "$.occupied", "time": "$.at", "time_unit": "iso8601"}
    )
    on = decode_sensor(
        "sensors/P7/events",
        b'{"occupied":true,"at":"2026-01-01T01:00:00+01:00"}',
        spec,
        received_ns=T0,
    )
    assert on == [Reading("P7", ReadingKind.PRESENCE, 1.0, T0)]
    off = decode_sensor(
        "sensors/P7/events", b'{"occupied":false,"at":"2026-01-01T00:00:00Z"}', spec, received_ns=T0
    )
    assert off == []
    with pytest.raises(SensorDecodeError, match="has no UTC offset"):
        decode_sensor(
            "sensors/P7/events",
            b'{"occupied":true,"at":"2026-01-01T00:00:00"}',
            spec,
            received_ns=T0,
        )


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("other/S1/events", b"{}", "does not match"),
        ("sensors/S1/events", b"{", "not valid JSON"),
        ("sensors/S1/events", b'{"ts": 1767225600000}', "$.count: is missing"),
        ("sensors/S1/events", b'{"count": -1, "ts": 1767225600000}', "is negative"),
        ("sensors/S1/events", b'{"count": "3", "ts": 1767225600000}', "must be a finite number"),
        ("sensors/S1/events", b'{"count": 3, "ts": 1767225600}', "read as ms is not between 2000"),
        ("sensors/S1/events", b'{"count": 3, "ts": true}', "must be a number of ms since 1970"),
    ],
)
def test_sensor_rejections(topic: str, payload: bytes, reason: str) -> None:
    spec = sensor({"kind": "footfall_count", "value": "$.count", "time": "$.ts"})
    with pytest.raises(SensorDecodeError) as info:
        decode_sensor(topic, payload, spec, received_ns=T0)
    assert reason in info.value.reason


def test_sensor_identity_and_clock_checks() -> None:
    spec = sensor(
        {"sensor_id": "$.id", "kind": "presence", "value": "$.presence", "time": "$.t"},
        topic="sensors/{sensor_id}/presence",
    )
    topic = "sensors/P1/presence"

    def decode(payload: dict[str, object], **kw: object) -> list[Reading]:
        return decode_sensor(topic, json.dumps(payload).encode(), spec, received_ns=T0, **kw)  # type: ignore[arg-type]

    ms = T0 // 10**6
    assert decode({"id": "P1", "t": ms + 1000, "presence": 1})[0].time_ns == T0 + 10**9
    with pytest.raises(SensorDecodeError, match="sensor 'P2' differs from the topic's 'P1'"):
        decode({"id": "P2", "t": ms, "presence": 1})
    with pytest.raises(SensorDecodeError, match="'P1' is not configured on this gateway"):
        decode({"id": "P1", "t": ms, "presence": 1}, known_sensors={"P7"})
    with pytest.raises(SensorDecodeError, match="is 3600 s after the receive time"):
        decode({"id": "P1", "t": ms + 3_600_000, "presence": 1})
    with pytest.raises(SensorDecodeError, match=r"before the receive time \(limit 604800 s\)"):
        decode({"id": "P1", "t": ms - 8 * 86_400_000, "presence": 1})
    old = decode({"id": "P1", "t": ms - 8 * 86_400_000, "presence": 1}, max_age_s=None)
    assert old[0].time_ns == T0 - 8 * 86_400 * 10**9


def test_a_sensor_decoder_serves_a_stream_of_messages() -> None:
    """One decoder for many messages, as the agent uses it: what it remembers of one topic
    never leaks into another, and a refused message leaves it as it was."""
    spec = sensor({"kind": "presence", "value": "$.presence", "time": "$.t"})
    decoder = SensorDecoder(spec, known_sensors={"P1", "P2"})
    ms = T0 // 10**6

    def decode(topic: str, payload: bytes) -> list[Reading]:
        return decoder.decode(topic, payload, received_ns=T0)

    assert decode("sensors/P1/events", b'{"presence": 1, "t": %d}' % ms) == [
        Reading("P1", ReadingKind.PRESENCE, 1.0, T0)
    ]
    with pytest.raises(SensorDecodeError) as info:
        decode("sensors/P9/events", b'{"presence": 1, "t": %d}' % ms)
    assert info.value.reason == "topic: sensor 'P9' is not configured on this gateway"
    with pytest.raises(SensorDecodeError) as info:
        decode("sensors/P1/other", b"{}")
    assert (
        info.value.reason == "topic 'sensors/P1/other' does not match 'sensors/{sensor_id}/events'"
    )
    with pytest.raises(SensorDecodeError) as info:
        decode("sensors/P1/events", b'{"presence": "yes", "t": %d}' % ms)
    assert info.value.reason == "$.presence: must be a finite number, got the text 'yes'"
    assert decode("sensors/P2/events", b'{"presence": 2, "t": %d}' % (ms + 1)) == [
        Reading("P2", ReadingKind.PRESENCE, 2.0, T0 + 10**6)
    ]
    assert decode("sensors/P1/events", b'{"presence": 0, "t": %d}' % ms) == []
    assert decode("sensors/P1/events", b'{"presence": 1, "t": %d}' % (ms + 2)) == [
        Reading("P1", ReadingKind.PRESENCE, 1.0, T0 + 2 * 10**6)
    ]


def test_a_sensor_decoder_remembers_topics_within_a_bound() -> None:
    decoder = SensorDecoder(sensor({"kind": "presence"}))
    first = decoder.topic_values("sensors/S1/events")
    assert first == {"sensor_id": "S1"}
    assert decoder.topic_values("sensors/S1/events") is first  # matched once, then remembered
    for k in range(MAX_CACHED_TOPICS):
        decoder.topic_values(f"sensors/X{k}/events")
    # So many other topics came since that the memory started again: matched anew, same values.
    again = decoder.topic_values("sensors/S1/events")
    assert again == first and again is not first


def test_sensor_ids_from_the_topic_are_checked_as_payload_ids_are() -> None:
    """A topic level may hold what no uplink can carry (over 128 characters, control
    characters); such a message is refused with the reason, not passed on."""
    spec = sensor({"kind": "footfall_count", "value": "$.count"})
    for sensor_id in ("S" * 129, "S\x01"):
        with pytest.raises(SensorDecodeError) as info:
            decode_sensor(f"sensors/{sensor_id}/events", b'{"count": 1}', spec, received_ns=T0)
        assert info.value.reason == "topic: must be printable text of at most 128 characters"
    longest = "S" * 128
    assert decode_sensor(f"sensors/{longest}/events", b'{"count": 1}', spec, received_ns=T0) == [
        Reading(longest, ReadingKind.FOOTFALL_COUNT, 1.0, T0)
    ]


def test_sensor_spec_rules() -> None:
    with pytest.raises(ValidationError, match="exactly one of kind"):
        sensor({"value": "$.n"})
    with pytest.raises(ValidationError, match="where the sensor id comes from"):
        sensor({"kind": "presence"}, topic="pir/events")
    with pytest.raises(ValidationError, match="@ paths read the current entry"):
        sensor({"kind": "presence", "value": "@.n"})
    with pytest.raises(ValidationError, match="must start with"):
        sensor({"kind": "presence", "value": "n"})
    with pytest.raises(ValidationError):
        sensor({"kind": "power_w"})  # lamps report power, not sensors


# --- MQTT lamp nodes ----------------------------------------------------------------------------


def test_lamp_setpoints() -> None:
    spec = LampSetpointSpec(
        topic="nodes/{lamp}/set",
        level_field="$.dim.level",
        level_unit="%",
        ramp_field="$.fade_ms",
        ramp_unit="ms",
        constants={"cmd": "dim"},
    )
    topic, payload = encode_lamp_setpoint(
        LampCommand("L1", 0.25, 1.5), spec, topic_values={"lamp": "n1"}
    )
    assert topic == "nodes/n1/set"
    assert json.loads(payload) == {"cmd": "dim", "dim": {"level": 25.0}, "fade_ms": 1500.0}
    dali = LampSetpointSpec(topic="n/{lamp}", level_unit="dali_arc", ramp_field=None)
    _, payload = encode_lamp_setpoint(LampCommand("L1", 1.0), dali, topic_values={"lamp": "a"})
    assert json.loads(payload) == {"level_frac": 254}
    bare = LampSetpointSpec(topic="n/{lamp}", ramp_field="")  # TOML's way to say "none"
    assert bare.ramp_field is None
    _, payload = encode_lamp_setpoint(LampCommand("L1", 0.5, 3.0), bare, topic_values={"lamp": "a"})
    assert json.loads(payload) == {"level_frac": 0.5}
    with pytest.raises(ValidationError, match="collide"):
        LampSetpointSpec(topic="n/{lamp}", constants={"level_frac": 1})


def test_lamp_telemetry() -> None:
    spec = LampTelemetrySpec.model_validate(
        {
            "topic": "nodes/{lamp}/state",
            "time": "$.ts",
            "time_unit": "s",
            "fields": [
                {"kind": "level_frac", "path": "$.dim", "scale": 0.01},
                {"kind": "power_w", "path": "$.p"},
                {
                    "kind": "status",
                    "path": "$.flags",
                    "flags": {0: "lamp_failure", 1: "comms_fault"},
                },
            ],
        }
    )
    readings = decode_lamp_telemetry(
        "nodes/n1/state",
        b'{"dim": 50, "flags": 2, "ts": 1767225600}',
        spec,
        received_ns=T0,
        lamp_ids={"n1": "L-0001"},
    )
    assert readings == [
        Reading("L-0001", ReadingKind.LEVEL_FRAC, 0.5, T0),
        Reading("L-0001", ReadingKind.STATUS, float(StatusFlag.COMMS_FAULT), T0),
    ]
    with pytest.raises(LampTelemetryDecodeError, match="not configured here"):
        decode_lamp_telemetry("nodes/n9/state", b"{}", spec, received_ns=T0, lamp_ids={"n1": "L"})
    with pytest.raises(LampTelemetryDecodeError, match="has none of the mapped fields"):
        decode_lamp_telemetry("nodes/n1/state", b'{"ts": 1767225600}', spec, received_ns=T0)
    with pytest.raises(LampTelemetryDecodeError, match=r"outside 0\.\.1; check scale"):
        decode_lamp_telemetry(
            "nodes/n1/state", b'{"dim": 250, "ts": 1767225600}', spec, received_ns=T0
        )
    with pytest.raises(ValidationError, match=r"needs a \{lamp\} level"):
        LampTelemetrySpec.model_validate(
            {"topic": "nodes/state", "fields": [{"kind": "power_w", "path": "$.p"}]}
        )

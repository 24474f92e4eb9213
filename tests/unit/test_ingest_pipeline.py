"""The ingest pipeline, sans-io: outcomes and counters for uplinks, status and acks; rows kept
beside bad rows; duplicates; malformed messages with the decoder's reason; pruning; sinks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from domain.protocol import (
    AckStatus,
    Channel,
    CommandAck,
    GatewayState,
    GatewayStatus,
    encode_ack,
    encode_status,
    encode_uplink,
)
from domain.records import Reading
from domain.records import ReadingKind as K
from sensor_ingest.config import IngestConfig
from sensor_ingest.errors import HistorianError
from sensor_ingest.historian import EmbeddedHistorian, ReadingRow
from sensor_ingest.pipeline import IngestOutcome, IngestPipeline, MalformedReason
from sensor_ingest.validate import Rejection, RejectReason
from sensor_ingest.windows import DemandWindows

S = 1_000_000_000
NOW = 1_767_225_600 * S
UP = "streetlight/v1/gw-1/uplink"


class Clock:
    def __init__(self) -> None:
        self.now_ns = NOW

    def __call__(self) -> int:
        return self.now_ns


class ListSink:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[ReadingRow]]] = []

    def submit(self, gateway_id: str, rows: Sequence[ReadingRow]) -> None:
        self.got.append((gateway_id, list(rows)))


def _up(seq: int, readings: list[Reading], gw: str = "gw-1", epoch: str = "e1") -> bytes:
    return encode_uplink(readings, gateway_id=gw, epoch=epoch, seq=seq, sent_ns=NOW - S)


@pytest.fixture
def historian() -> Iterator[EmbeddedHistorian]:
    h = EmbeddedHistorian(":memory:")
    yield h
    h.close()


def _nonzero(p: IngestPipeline) -> dict[str, int]:
    return {k: v for k, v in p.counters().items() if v}


def test_an_uplink_is_stored_windowed_and_counted(historian: EmbeddedHistorian) -> None:
    windows = DemandWindows({"CAM-1": "high-street"})
    sink = ListSink()
    p = IngestPipeline(historian, windows, [sink])
    rows = [
        Reading("L-1", K.LEVEL_FRAC, 0.5, NOW - 2 * S),
        Reading("CAM-1", K.FOOTFALL_COUNT, 4.0, NOW - 2 * S, "CAM-1#1"),
    ]
    outcome = p.handle(UP, _up(1, rows), NOW)
    assert outcome == IngestOutcome(topic=UP, channel=Channel.UPLINK, gateway_id="gw-1", accepted=2)
    assert _nonzero(p) == {"messages": 1, "uplinks": 1, "readings_accepted": 2}
    assert historian.latest(["L-1"])["L-1"].level_frac == 0.5
    assert windows.counts_per_hour("high-street", now_ns=NOW) == 4.0
    assert sink.got == [
        (
            "gw-1",
            [
                ("L-1", K.LEVEL_FRAC, 0.5, NOW - 2 * S),
                ("CAM-1", K.FOOTFALL_COUNT, 4.0, NOW - 2 * S),
            ],
        )
    ]
    assert p.clock_skew()["gw-1"].last_ns == S
    assert p.gateways()["gw-1"].last_seen_ns == NOW


def test_good_rows_beside_bad_rows_are_kept(historian: EmbeddedHistorian) -> None:
    p = IngestPipeline(historian)
    rows = [
        Reading("L-1", K.LEVEL_FRAC, 0.25, NOW - S),
        Reading("L-1", K.POWER_W, -4.0, NOW - S),
        Reading("L-1", K.POWER_W, 12.0, NOW - S),
        Reading("L-1", K.POWER_W, 12.0, NOW + 301 * S),
    ]
    outcome = p.handle(UP, _up(1, rows), NOW)
    assert outcome.accepted == 2
    assert outcome.rejected == (
        Rejection(1, RejectReason.POWER_RANGE, "readings[1]: power_w -4.0 is outside 0..5000 W"),
        Rejection(
            3,
            RejectReason.FUTURE,
            f"readings[3]: time_ns {NOW + 301 * S} is 301.0 s ahead of the receive time; "
            "at most 300 s is accepted",
        ),
    )
    assert p.counters()["rejected_power_out_of_range"] == 1
    assert p.counters()["rejected_future"] == 1
    assert historian.series("L-1", K.POWER_W, NOW - 10 * S, NOW + 10 * S) == [(NOW - S, 12.0)]


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "detail"),
    [
        (
            "streetlight/v1/gw 1/uplink",
            b"{}",
            MalformedReason.TOPIC,
            "'gw 1' in 'streetlight/v1/gw 1/uplink' is not a gateway id",
        ),
        (
            "other/gw-1/uplink",
            b"{}",
            MalformedReason.TOPIC,
            "'other/gw-1/uplink' is not under 'streetlight/v1'",
        ),
        (
            "streetlight/v1/gw-1/downlink",
            b"{}",
            MalformedReason.CHANNEL,
            "downlink messages go from the central side to gateways; the ingest does not consume them",
        ),
        (UP, b"\xff", MalformedReason.JSON, "not UTF-8 text (bad byte at offset 0)"),
        (UP, b'{"v":1,"v":1}', MalformedReason.JSON, "key 'v' appears twice in one object"),
        (UP, b'{"v":NaN}', MalformedReason.JSON, "NaN is not a number JSON allows"),
        (UP, b"[1]", MalformedReason.SCHEMA, "message: must be an object, got an array"),
        (
            UP,
            b'{"v":3}',
            MalformedReason.VERSION,
            "v: version 3 is not supported; this decoder reads v1",
        ),
        (
            UP,
            b'{"v":1,"gw":"gw-2"}',
            MalformedReason.GATEWAY_MISMATCH,
            "gw: 'gw-2' differs from the topic's gateway 'gw-1'",
        ),
        (
            UP,
            b'{"v":1,"gw":"gw-1","epoch":"e","seq":1,"sent_ns":1,"readings":[["L",'
            b'"level_frac",true,1,""]]}',
            MalformedReason.SCHEMA,
            "readings[0][2]: value must be a finite number, got a boolean",
        ),
        (
            UP,
            b'{"v":1,"gw":"gw-1","epoch":"e","seq":1,"sent_ns":1,"readings":[["L",'
            b'"level_frac",1e999,1,""]]}',
            MalformedReason.SCHEMA,
            "readings[0][2]: value must be a finite number",
        ),
        (
            "streetlight/v1/gw-1/status",
            b'{"v":1,"gw":"gw-1","state":"up","ts_ns":1}',
            MalformedReason.SCHEMA,
            "state: 'up' is not online or offline",
        ),
        ("streetlight/v1/gw-1/ack", b'{"v":1}', MalformedReason.SCHEMA, "cmd_id: is missing"),
    ],
)
def test_malformed_messages_are_dropped_whole_with_the_decoders_reason(
    historian: EmbeddedHistorian, topic: str, payload: bytes, reason: MalformedReason, detail: str
) -> None:
    p = IngestPipeline(historian)
    outcome = p.handle(topic, payload, NOW)
    assert (outcome.malformed, outcome.detail, outcome.accepted) == (reason, detail, 0)
    assert _nonzero(p) == {"messages": 1, f"malformed_{reason.value}": 1} | (
        {"uplinks": 1} if topic == UP else {}
    )


def test_an_oversized_uplink_is_refused_before_parsing(historian: EmbeddedHistorian) -> None:
    p = IngestPipeline(historian, config=IngestConfig(max_uplink_bytes=100))
    outcome = p.handle(UP, b" " * 101, NOW)
    assert outcome.malformed is MalformedReason.OVERSIZED
    assert outcome.detail == "message is 101 bytes; the limit is 100"


def test_a_resent_message_counts_once_within_a_batch_and_across_batches(
    historian: EmbeddedHistorian,
) -> None:
    p = IngestPipeline(historian)
    m1 = _up(1, [Reading("L-1", K.POWER_W, 1.0, NOW - S), Reading("L-1", K.POWER_W, 2.0, NOW)])
    m2 = _up(2, [Reading("L-1", K.POWER_W, 3.0, NOW)])
    outcomes = p.handle_many([(UP, m1, NOW), (UP, m1, NOW), (UP, m2, NOW)])
    assert [(o.accepted, o.duplicates, o.duplicate_message) for o in outcomes] == [
        (2, 0, False),
        (0, 2, True),
        (1, 0, False),
    ]
    again = p.handle(UP, m1, NOW + S)
    assert (again.accepted, again.duplicates, again.duplicate_message) == (0, 2, True)
    # The same seq under a new epoch (the gateway's queue was replaced) is a new message.
    assert (
        p.handle(UP, _up(1, [Reading("L-1", K.POWER_W, 5.0, NOW)], epoch="e2"), NOW).accepted == 1
    )
    assert _nonzero(p) == {
        "messages": 5,
        "uplinks": 5,
        "readings_accepted": 4,
        "readings_duplicate": 4,
        "messages_duplicate": 2,
    }
    assert len(historian.series("L-1", K.POWER_W, 0, NOW + S)) == 4


def test_explicit_ids_are_accepted_once_across_messages_and_gateways(
    historian: EmbeddedHistorian,
) -> None:
    p = IngestPipeline(historian)
    event = Reading("CAM-1", K.FOOTFALL_COUNT, 2.0, NOW - S, "CAM-1#42")
    other = Reading("CAM-1", K.FOOTFALL_COUNT, 1.0, NOW - S, "CAM-1#43")
    outcomes = p.handle_many(
        [
            (UP, _up(1, [event, event]), NOW),  # twice in one message
            ("streetlight/v1/gw-2/uplink", _up(1, [event, other], gw="gw-2"), NOW),
        ]
    )
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(1, 1), (1, 1)]
    later = p.handle(UP, _up(2, [event]), NOW + S)  # a later wake-up: from the store
    assert (later.accepted, later.duplicates, later.duplicate_message) == (0, 1, False)
    assert historian.counts(["CAM-1"], K.FOOTFALL_COUNT, 0, NOW, 3600).counts.sum() == 3.0


def test_explicit_ids_must_not_look_derived(historian: EmbeddedHistorian) -> None:
    p = IngestPipeline(historian)
    rows = [
        Reading("L-1", K.POWER_W, 1.0, NOW, "gw-1:e1:1:0"),  # its own derived id: fine
        Reading("L-1", K.POWER_W, 2.0, NOW, "gw-1:e1:5:0"),  # another message's id
    ]
    outcome = p.handle(UP, _up(1, rows), NOW)
    assert outcome.accepted == 1
    assert outcome.rejected == (
        Rejection(
            1,
            RejectReason.MESSAGE_ID_FORM,
            "readings[1]: message id 'gw-1:e1:5:0' has the derived form "
            "{gw}:{epoch}:{seq}:{index} of another row; explicit ids must not "
            "(use {sensor_id}#{event_id})",
        ),
    )


def test_status_and_acks_reach_their_callbacks(historian: EmbeddedHistorian) -> None:
    statuses: list[GatewayStatus] = []
    acks: list[CommandAck] = []
    p = IngestPipeline(historian, on_status=statuses.append, on_ack=acks.append)
    status = GatewayStatus("gw-1", GatewayState.OFFLINE, NOW - 60 * S, {"queue_len": 3})
    ack = CommandAck("c-9", "gw-1", AckStatus.REJECTED, NOW, reason="expired")
    o1 = p.handle("streetlight/v1/gw-1/status", encode_status(status), NOW)
    o2 = p.handle("streetlight/v1/gw-1/ack", encode_ack(ack), NOW + S)
    assert (o1.status, o2.ack) == (status, ack)
    assert statuses == [status] and acks == [ack]
    view = p.gateways()["gw-1"]
    assert (view.state, view.status_ts_ns, view.last_seen_ns, view.counters) == (
        GatewayState.OFFLINE,
        NOW - 60 * S,
        NOW + S,
        {"queue_len": 3},
    )
    assert _nonzero(p) == {"messages": 2, "statuses": 1, "acks": 1}


def test_a_failing_callback_is_counted_and_ingest_goes_on(historian: EmbeddedHistorian) -> None:
    def broken(events: list[tuple[str, int]]) -> None:
        raise RuntimeError("controller bug")

    p = IngestPipeline(historian, DemandWindows({}, on_presence=broken))
    outcome = p.handle(UP, _up(1, [Reading("PIR-1", K.PRESENCE, 1.0, NOW)]), NOW)
    assert outcome.accepted == 1
    assert p.counters()["callback_errors"] == 1
    assert historian.series("PIR-1", K.PRESENCE, 0, NOW + 1) == [(NOW, 1.0)]


def test_the_clock_supplies_the_receive_time(historian: EmbeddedHistorian) -> None:
    clock = Clock()
    p = IngestPipeline(historian, clock=clock)
    clock.now_ns = NOW + 8 * 86_400 * S
    outcome = p.handle(UP, _up(1, [Reading("L-1", K.POWER_W, 1.0, NOW)]))
    assert [r.reason for r in outcome.rejected] == [RejectReason.TOO_OLD]


def test_expired_state_is_pruned_and_an_old_resend_is_refused_as_too_old(
    historian: EmbeddedHistorian,
) -> None:
    config = IngestConfig(max_age_s=3600, max_future_skew_s=60, prune_interval_s=60)
    p = IngestPipeline(historian, config=config)
    old = _up(1, [Reading("CAM-1", K.FOOTFALL_COUNT, 1.0, NOW, "CAM-1#1")])
    assert p.handle(UP, old, NOW).accepted == 1
    later = NOW + 3600 * S + 61 * S
    # Another gateway's message moves time on; gw-1's epoch has been idle past the window.
    p.handle(
        "streetlight/v1/gw-2/uplink",
        _up(1, [Reading("L-1", K.POWER_W, 1.0, later)], gw="gw-2"),
        later,
    )
    assert p.counters()["dedup_pruned"] == 2  # message 1 and its explicit id
    assert not p.dedup.message_done("gw-1", "e1", 1)
    resent = p.handle(UP, old, later)
    assert (resent.accepted, [r.reason for r in resent.rejected]) == (0, [RejectReason.TOO_OLD])
    assert historian.counts(["CAM-1"], K.FOOTFALL_COUNT, 0, later, 86_400).counts.sum() == 1.0


def test_a_restarted_pipeline_skips_what_the_previous_one_stored(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    message = _up(
        7, [Reading("L-1", K.POWER_W, 1.0, NOW), Reading("PIR-1", K.PRESENCE, 1.0, NOW, "PIR-1#9")]
    )
    with EmbeddedHistorian(path) as h:
        assert IngestPipeline(h).handle(UP, message, NOW).accepted == 2
    with EmbeddedHistorian(path) as h:
        p = IngestPipeline(h)
        assert p.handle(UP, message, NOW + S).duplicate_message
        again = _up(8, [Reading("PIR-1", K.PRESENCE, 1.0, NOW, "PIR-1#9")])
        assert p.handle(UP, again, NOW + S).duplicates == 1
        assert len(h.series("PIR-1", K.PRESENCE, 0, NOW + 1)) == 1


def test_historian_failures_are_not_counted_away(historian: EmbeddedHistorian) -> None:
    p = IngestPipeline(historian)
    historian.close()
    with pytest.raises(HistorianError, match="the historian is closed"):
        p.handle(UP, _up(1, [Reading("L-1", K.POWER_W, 1.0, NOW)]), NOW)
    # Bad input still never raises, even with a broken store behind.
    assert p.handle(UP, b"garbage", NOW).malformed is MalformedReason.JSON

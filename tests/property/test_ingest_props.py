"""Ingest invariants: no input crashes handle(); every reading is counted at most once however
messages are repeated, batched or the pipeline restarted; good rows beside bad rows are kept;
the fast decoder agrees with decode_uplink; windows agree with a plain sum."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.protocol import (
    UplinkDecodeError,
    decode_uplink,
    decode_uplink_columns,
    encode_uplink,
)
from domain.records import Reading, ReadingKind
from sensor_ingest.dedup import SeqRanges
from sensor_ingest.historian import EmbeddedHistorian, ReadingRow
from sensor_ingest.pipeline import IngestOutcome, IngestPipeline
from sensor_ingest.windows import DemandWindows

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
S = 1_000_000_000
NOW = 1_767_225_600 * S
PREFIX = "streetlight/v1"
UP = f"{PREFIX}/gw-1/uplink"

K = ReadingKind
VALID_VALUES: dict[ReadingKind, st.SearchStrategy[float]] = {
    K.PRESENCE: st.just(1.0),
    K.FOOTFALL_COUNT: st.integers(0, 500).map(float),
    K.TRAFFIC_COUNT: st.integers(0, 500).map(float),
    K.LEVEL_FRAC: st.floats(0.0, 1.0),
    K.POWER_W: st.floats(0.0, 5000.0),
    K.ENERGY_WH: st.floats(0.0, 1e9),
    K.STATUS: st.integers(0, 31).map(float),
}
INVALID_VALUES: dict[ReadingKind, st.SearchStrategy[float]] = {
    K.PRESENCE: st.sampled_from([0.0, 2.0, -1.0]),
    K.FOOTFALL_COUNT: st.sampled_from([-1.0, 0.5, 1e9]),
    K.TRAFFIC_COUNT: st.sampled_from([-3.0, 2.25]),
    K.LEVEL_FRAC: st.sampled_from([-0.1, 1.01, 50.0]),
    K.POWER_W: st.sampled_from([-1.0, 5000.1]),
    K.ENERGY_WH: st.sampled_from([-0.5, -1e6]),
    K.STATUS: st.sampled_from([32.0, 0.5, -1.0, 64.0]),
}


class ListSink:
    def __init__(self) -> None:
        self.rows: list[ReadingRow] = []

    def submit(self, gateway_id: str, rows: Sequence[ReadingRow]) -> None:
        self.rows.extend(rows)


def _uplink(seq: int, readings: Sequence[Reading], gw: str = "gw-1") -> bytes:
    return encode_uplink(readings, gateway_id=gw, epoch="e1", seq=seq, sent_ns=NOW)


def _counted(outcome: IngestOutcome) -> None:
    # Every message ends in exactly one of: malformed, duplicate, or handled with its rows
    # split into accepted + duplicates + rejected.
    assert outcome.malformed is None or (outcome.accepted == 0 and outcome.detail)


@SETTINGS
@given(
    topic=st.sampled_from(
        [UP, f"{PREFIX}/gw-1/status", f"{PREFIX}/gw-1/ack", f"{PREFIX}/gw-1/downlink", "x/y"]
    ),
    payload=st.binary(max_size=600),
)
def test_any_bytes_never_crash_handle(topic: str, payload: bytes) -> None:
    with EmbeddedHistorian() as historian:
        pipeline = IngestPipeline(historian)
        outcome = pipeline.handle(topic, payload, NOW)
        _counted(outcome)
        counters = pipeline.counters()
        assert counters["messages"] == 1
        malformed = sum(v for k, v in counters.items() if k.startswith("malformed_"))
        assert (
            malformed
            + counters["statuses"]
            + counters["acks"]
            + (
                outcome.malformed is None
                and outcome.channel is not None
                and outcome.channel == "uplink"
            )
            == 1
        )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
ROW = st.one_of(
    st.lists(JSON, max_size=6),
    st.tuples(
        st.sampled_from(["L-1", "", "CAM 1", "x" * 129, 7]),
        st.sampled_from([k.value for k in K] + ["volts", 1]),
        st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=3)),
        st.one_of(st.integers(-5, 2**64), st.floats(0, 1)),
        st.sampled_from(["", "CAM-1#1", "gw-1:e1:1:0", None, "\x00"]),
    ).map(list),
    JSON,
)


@SETTINGS
@given(rows=st.lists(ROW, max_size=6), seq=st.sampled_from([1, 0, -1, "1", 2**63]))
def test_json_shaped_garbage_never_crashes_and_both_decoders_agree(
    rows: list[Any], seq: object
) -> None:
    doc = {"v": 1, "gw": "gw-1", "epoch": "e1", "seq": seq, "sent_ns": NOW, "readings": rows}
    data = json.dumps(doc).encode()
    try:
        expected = decode_uplink(data, topic_gateway_id="gw-1")
    except UplinkDecodeError as err:
        try:
            decode_uplink_columns(data, topic_gateway_id="gw-1")
        except UplinkDecodeError as got:
            assert got.reason == err.reason
        else:
            raise AssertionError(f"columns accepted what decode_uplink refused: {err.reason}")
    else:
        assert decode_uplink_columns(data, topic_gateway_id="gw-1").readings() == expected.readings
    with EmbeddedHistorian() as historian:
        _counted(IngestPipeline(historian).handle(UP, data, NOW))


READING = st.builds(
    lambda source, kind, value, dt, explicit: Reading(
        source, kind, value, NOW - dt * S, f"CAM-1#{explicit}" if explicit is not None else ""
    ),
    st.sampled_from(["L-1", "L-2", "CAM-1"]),
    st.sampled_from([K.POWER_W, K.FOOTFALL_COUNT, K.PRESENCE]),
    st.just(1.0),
    st.integers(0, 100),
    st.none() | st.integers(0, 5),  # a small pool, so explicit ids collide
)


@SETTINGS
@given(
    messages=st.lists(st.lists(READING, min_size=1, max_size=5), min_size=1, max_size=6),
    data=st.data(),
)
def test_duplicates_never_double_count(
    messages: list[list[Reading]], data: st.DataObject, tmp_path_factory: Any
) -> None:
    payloads = [_uplink(seq, rows) for seq, rows in enumerate(messages, start=1)]
    deliveries = data.draw(
        st.lists(st.integers(0, len(messages) - 1), min_size=1, max_size=15), label="deliveries"
    )
    cuts = data.draw(st.sets(st.integers(1, len(deliveries))), label="batch cuts")
    restart_at = data.draw(st.integers(0, len(deliveries)), label="restart before")
    # The model: each message counts once (its first delivery), and within it each explicit id
    # counts only if no earlier accepted row carried it.
    seen_messages: set[int] = set()
    seen_ids: set[str] = set()
    expected = 0
    for index in deliveries:
        if index in seen_messages:
            continue
        seen_messages.add(index)
        for r in messages[index]:
            if r.message_id:
                if r.message_id in seen_ids:
                    continue
                seen_ids.add(r.message_id)
            expected += 1
    path = Path(tmp_path_factory.mktemp("dedup")) / "h.db"
    accepted = 0
    batch: list[tuple[str, bytes, int]] = []
    historian = EmbeddedHistorian(path, hot_rows=7)
    pipeline = IngestPipeline(historian)
    for position, index in enumerate(deliveries, start=1):
        if position - 1 == restart_at:  # a restart between two wake-ups
            if batch:
                accepted += sum(o.accepted for o in pipeline.handle_many(batch))
                batch = []
            historian.close()
            historian = EmbeddedHistorian(path, hot_rows=7)
            pipeline = IngestPipeline(historian)
        batch.append((UP, payloads[index], NOW))
        if position in cuts:
            accepted += sum(o.accepted for o in pipeline.handle_many(batch))
            batch = []
    accepted += sum(o.accepted for o in pipeline.handle_many(batch))
    stats = historian.stats()
    historian.close()
    assert accepted == expected
    assert stats["hot_rows"] + stats["settled_rows"] == expected


ROW_SPEC = st.tuples(st.sampled_from(list(K)), st.sampled_from(["ok", "value", "future", "old"]))


@SETTINGS
@given(specs=st.lists(ROW_SPEC, min_size=1, max_size=20), data=st.data())
def test_good_rows_beside_bad_rows_are_kept(
    specs: list[tuple[ReadingKind, str]], data: st.DataObject
) -> None:
    readings = []
    for i, (kind, fault) in enumerate(specs):
        bad_value = fault == "value"
        value = data.draw(INVALID_VALUES[kind] if bad_value else VALID_VALUES[kind])
        dt = {"future": -301 * S, "old": 8 * 86_400 * S}.get(fault, i)
        readings.append(Reading(f"S-{i % 3}", kind, value, NOW - dt))
    sink = ListSink()
    with EmbeddedHistorian() as historian:
        pipeline = IngestPipeline(historian, DemandWindows({}), [sink])
        outcome = pipeline.handle(UP, _uplink(1, readings), NOW)
    good = [i for i, (_, fault) in enumerate(specs) if fault == "ok"]
    assert outcome.accepted == len(good)
    assert [r.index for r in outcome.rejected] == [i for i in range(len(specs)) if i not in good]
    assert sink.rows == [
        (readings[i].source_id, readings[i].kind, readings[i].value, readings[i].time_ns)
        for i in good
    ]


@SETTINGS
@given(st.lists(st.integers(1, 60), max_size=80))
def test_seq_ranges_behave_like_a_set(seqs: list[int]) -> None:
    ranges = SeqRanges()
    for seq in seqs:
        ranges.add(seq)
    assert {s for s in range(0, 62) if s in ranges} == set(seqs)
    spans = ranges.ranges()
    assert all(lo <= hi for lo, hi in spans)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(spans))  # disjoint, gaps


@SETTINGS
@given(
    events=st.lists(
        st.tuples(st.integers(0, 7_199), st.integers(0, 20), st.sampled_from(["CAM-1", "CAM-2"])),
        max_size=40,
    ),
    later_s=st.integers(0, 3_600),
)
def test_windows_agree_with_a_plain_sum(events: list[tuple[int, int, str]], later_s: int) -> None:
    window = DemandWindows({"CAM-1": "a", "CAM-2": "a"}, window_s=1800, bucket_s=60)
    rows = sorted((NOW + t * S, float(n), s) for t, n, s in events)
    window.add_rows([(s, K.FOOTFALL_COUNT, n, t) for t, n, s in rows])
    newest = rows[-1][0] if rows else NOW
    now = newest + later_s * S
    bucket = 60 * S
    now_bucket = now // bucket
    expected = sum(n for t, n, _ in rows if now_bucket - 30 < t // bucket <= now_bucket)
    assert window.counts_per_hour("a", now_ns=now) == 2 * expected
    # The ring holds 30 + 10 (ahead) buckets: a reading is dropped as late exactly when a newer
    # bucket shares its slot.
    buckets = [t // bucket for t, _, _ in rows]
    assert window.late == sum(any(c > b and (c - b) % 40 == 0 for c in buckets) for b in buckets)

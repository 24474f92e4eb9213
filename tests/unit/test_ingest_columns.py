"""``decode_uplink_columns`` (the central side's fast decoder) agrees with ``decode_uplink``:
same rows on valid input, the same located error on invalid input."""

from __future__ import annotations

import json

import pytest

from domain.protocol import (
    UplinkColumns,
    UplinkDecodeError,
    decode_uplink,
    decode_uplink_columns,
    encode_uplink,
)
from domain.records import Reading
from domain.records import ReadingKind as K

T = 1_767_225_600_000_000_000


def _doc(rows: object, **head: object) -> bytes:
    doc = {"v": 1, "gw": "gw-1", "epoch": "e1", "seq": 3, "sent_ns": T, "readings": rows}
    doc.update(head)
    return json.dumps(doc).encode()


def _agree(data: bytes, topic_gateway_id: str | None = "gw-1") -> UplinkColumns | str:
    try:
        expected = decode_uplink(data, topic_gateway_id=topic_gateway_id)
    except UplinkDecodeError as err:
        with pytest.raises(UplinkDecodeError) as got:
            decode_uplink_columns(data, topic_gateway_id=topic_gateway_id)
        assert str(got.value) == str(err)
        return err.reason
    columns = decode_uplink_columns(data, topic_gateway_id=topic_gateway_id)
    assert columns.readings() == expected.readings
    assert (columns.gateway_id, columns.epoch, columns.seq, columns.sent_ns) == (
        expected.gateway_id,
        expected.epoch,
        expected.seq,
        expected.sent_ns,
    )
    return columns


def test_valid_messages_give_the_same_rows_in_columns() -> None:
    readings = [
        Reading("L-1", K.LEVEL_FRAC, 0.5, T),
        Reading("CAM-1", K.FOOTFALL_COUNT, 3.0, T + 1, "CAM-1#881"),
        Reading("L-1", K.STATUS, 5.0, T + 2),
    ]
    data = encode_uplink(readings, gateway_id="gw-1", epoch="e1", seq=3, sent_ns=T)
    columns = _agree(data)
    assert isinstance(columns, UplinkColumns)
    assert columns.source_ids == ("L-1", "CAM-1", "L-1")
    assert columns.kinds == (K.LEVEL_FRAC, K.FOOTFALL_COUNT, K.STATUS)
    assert columns.message_ids == ("", "CAM-1#881", "")  # as sent: "" means derived
    assert columns.message_id(0) == "gw-1:e1:3:0"
    assert len(columns) == 3


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [["L-1", "power_w", 40, T, ""]],  # an integer value becomes a float
        [["L-1", "power_w", -(2**80), T, ""]],
        [["L-1", "power_w", 1e308, 0, ""]],
        [["L-1", "power_w", 1.0, 2**63 - 1, ""]],
        [["L ä 1", "presence", 1, T, "x" * 256]],
        [["L-1", "presence", 1, T, "gw-1:e1:3:0"]],  # an explicit id equal to its derived id
    ],
)
def test_edge_cases_that_both_accept(rows: list[object]) -> None:
    columns = _agree(_doc(rows))
    assert isinstance(columns, UplinkColumns)
    assert all(type(v) is float for v in columns.values)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            _doc([["L-1", "power_w", True, T, ""]]),
            "readings[0][2]: value must be a finite number, got a boolean",
        ),
        (
            _doc([["L-1", "power_w", 10**400, T, ""]]),
            "readings[0][2]: value must be a finite number (too large)",
        ),
        (
            _doc([["L-1", "power_w", 12345, T, ""]]).replace(b"12345", b"1e999"),
            "readings[0][2]: value must be a finite number",
        ),
        (
            _doc([["L-1", "power_w", "1", T, ""]]),
            "readings[0][2]: value must be a finite number, got the text '1'",
        ),
        (
            _doc([["L-1", "power_w", 1.0, -1, ""]]),
            "readings[0][3]: time_ns -1 is outside 0..9223372036854775807",
        ),
        (
            _doc([["L-1", "power_w", 1.0, 2**63, ""]]),
            "readings[0][3]: time_ns 9223372036854775808 is outside 0..9223372036854775807",
        ),
        (
            _doc([["L-1", "power_w", 1.0, 1.5, ""]]),
            "readings[0][3]: time_ns must be a whole number, got the number 1.5",
        ),
        (
            _doc([["L-1", "volts", 1.0, T, ""]]),
            "readings[0][1]: kind 'volts' is not a reading kind; use one of presence, "
            "footfall_count, traffic_count, level_frac, power_w, energy_wh, status",
        ),
        (
            _doc([["L-1", ["power_w"], 1.0, T, ""]]),
            "readings[0][1]: kind must be text, got an array",
        ),
        (
            _doc([[["L-1"], "power_w", 1.0, T, ""]]),
            "readings[0][0]: source_id must be text, got an array",
        ),
        (_doc([["", "power_w", 1.0, T, ""]]), "readings[0][0]: source_id must not be empty"),
        (
            _doc([["L" * 129, "power_w", 1.0, T, ""]]),
            "readings[0][0]: source_id is 129 characters; at most 128",
        ),
        (
            _doc([["L\n1", "power_w", 1.0, T, ""]]),
            "readings[0][0]: source_id must be printable text (no control characters or lone "
            "surrogates)",
        ),
        (
            _doc([["L-1", "power_w", 1.0, T, ""]]).replace(b"L-1", b"\\ud800"),
            "readings[0][0]: source_id must be printable text (no control characters or lone "
            "surrogates)",
        ),
        (
            _doc([["L-1", "power_w", 1.0, T, "x" * 257]]),
            "readings[0][4]: message_id is 257 characters; at most 256",
        ),
        (
            _doc([["L-1", "power_w", 1.0, T, None]]),
            "readings[0][4]: message_id must be text, got null",
        ),
        (
            _doc([["L-1", "power_w", 1.0, T]]),
            "readings[0]: must be [source_id, kind, value, time_ns, message_id] (5 entries)",
        ),
        (
            _doc([{"source_id": "L-1"}]),
            "readings[0]: must be [source_id, kind, value, time_ns, message_id] (5 entries)",
        ),
        (
            _doc([["L-1", "power_w", 1.0, T, ""], ["L-2", "power_w", 1.0, T, 7]]),
            "readings[1][4]: message_id must be text, got the number 7",
        ),
        (_doc({"rows": []}), "readings: must be an array, got an object"),
        (_doc([], seq=0), "seq: 0 is outside 1..9223372036854775807"),
        (_doc([], gw="gw-2"), "gw: 'gw-2' differs from the topic's gateway 'gw-1'"),
        (_doc([], epoch="e/1"), "epoch: must be 1-32 letters, digits, _ or -"),
        (b'{"v":1,"v":1}', "key 'v' appears twice in one object"),
    ],
)
def test_invalid_messages_give_the_same_located_error(data: bytes, reason: str) -> None:
    assert _agree(data) == reason


def test_the_row_limit_and_size_limit_are_the_same() -> None:
    data = _doc([["L-1", "presence", 1, T, ""]] * 3)
    for decode in (decode_uplink, decode_uplink_columns):
        with pytest.raises(UplinkDecodeError, match=r"readings: has 3 entries; at most 2$"):
            decode(data, max_readings=2)
        with pytest.raises(UplinkDecodeError, match=r"message is \d+ bytes; the limit is 10$"):
            decode(data, max_bytes=10)

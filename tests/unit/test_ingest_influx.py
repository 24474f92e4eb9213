"""The sink's line protocol (schema, escaping, types) and its settings checks. Writing to real
servers is tested in tests/integration/test_historians.py."""

from __future__ import annotations

import pytest

from domain.records import ReadingKind as K
from sensor_ingest.influx import InfluxSettings, escape_key, escape_measurement, to_lines

T = 1_767_225_600_000_000_000


def test_lamp_and_sensor_lines_follow_the_documented_schema() -> None:
    rows = [
        ("L-1", K.LEVEL_FRAC, 0.5, T),
        ("L-1", K.POWER_W, 40.0, T),
        ("L-1", K.ENERGY_WH, 1e-05, T),
        ("L-1", K.STATUS, 17.0, T),
        ("CAM-1", K.FOOTFALL_COUNT, 3.0, T + 1),
        ("RAD-1", K.TRAFFIC_COUNT, 12.0, T + 2),
        ("PIR-1", K.PRESENCE, 1.0, T + 3),
    ]
    assert to_lines(rows, gateway_id="gw-17", council="bristol") == [
        f"lamp,council=bristol,gateway=gw-17,lamp_id=L-1 level_frac=0.5 {T}",
        f"lamp,council=bristol,gateway=gw-17,lamp_id=L-1 power_w=40.0 {T}",
        f"lamp,council=bristol,gateway=gw-17,lamp_id=L-1 energy_wh=1e-05 {T}",
        f"lamp,council=bristol,gateway=gw-17,lamp_id=L-1 status=17i {T}",
        f"sensor,council=bristol,gateway=gw-17,kind=footfall_count,sensor_id=CAM-1 value=3.0 {T + 1}",
        f"sensor,council=bristol,gateway=gw-17,kind=traffic_count,sensor_id=RAD-1 value=12.0 {T + 2}",
        f"sensor,council=bristol,gateway=gw-17,kind=presence,sensor_id=PIR-1 value=1.0 {T + 3}",
    ]
    assert to_lines(rows[:1], gateway_id="gw-17") == [
        f"lamp,gateway=gw-17,lamp_id=L-1 level_frac=0.5 {T}"
    ]


def test_tag_values_are_escaped() -> None:
    assert escape_key("High St, No 4=a b") == r"High\ St\,\ No\ 4\=a\ b"
    assert escape_key("ends\\") == "ends\\\\"
    assert escape_measurement("a b,c=d") == r"a\ b\,c=d"
    line = to_lines([("L 1", K.POWER_W, 2.0, T)], gateway_id="gw.1", council="Bath & NE")
    assert line == [rf"lamp,council=Bath\ &\ NE,gateway=gw.1,lamp_id=L\ 1 power_w=2.0 {T}"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "127.0.0.1:8086"}, "url must be http(s)://host:port, got '127.0.0.1:8086'"),
        ({"api": "v3"}, "api must be 'v2' or 'v1', got 'v3'"),
        ({"bucket": ""}, "the v2 write API needs a bucket"),
        ({"api": "v1", "database": ""}, "the v1 write API needs a database"),
        ({"password": "x"}, "a password needs a username"),
        ({"timeout_s": 0}, "timeout_s must be > 0, got 0"),
        ({"block_timeout_s": -1}, "block_timeout_s must be >= 0, got -1"),
        (
            {"batch_points": 10, "max_buffer_points": 5},
            "need 0 < batch_points <= max_buffer_points, got 10 and 5",
        ),
        ({"max_retries": -1}, "max_retries must be >= 0 or None, got -1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"url": "http://127.0.0.1:8428", **kwargs}
    with pytest.raises(ValueError) as err:
        InfluxSettings(**args)  # type: ignore[arg-type]
    assert str(err.value) == message

"""Point maps: the built-in tables, template resolution, conversions both ways, and the rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.dimming.dali import FADE_TIME_S
from domain.records import ReadingKind
from gateways.pointmap import (
    BUILTIN_POINT_MAPS,
    VENDOR_EXAMPLE_MAP,
    VIRTUAL_MAP,
    Point,
    PointMap,
    PointValueError,
    StatusFlag,
    merge_status,
    status_flag_names,
    template_fields,
)


def point(**fields: object) -> Point:
    return Point.model_validate({"node_id": "ns=2;s=X.{lamp}", **fields})


def one_map(*points: dict[str, object], name: str = "m") -> PointMap:
    rows = [{"key": "setpoint", "node_id": "ns=2;s=S.{lamp}"}, *points]
    return PointMap.model_validate({"name": name, "schema_version": 1, "points": rows})


# --- the built-in maps --------------------------------------------------------------------------


def test_virtual_map_node_ids_are_the_simulator_contract() -> None:
    resolved = VIRTUAL_MAP.resolve("L-0001")
    assert resolved.writable() == {
        "setpoint": "ns=2;s=Lamp.L-0001.Setpoint",
        "ramp_time": "ns=2;s=Lamp.L-0001.RampTime_s",
    }
    assert resolved.telemetry() == {
        "level": "ns=2;s=Lamp.L-0001.Level",
        "power": "ns=2;s=Lamp.L-0001.Power_W",
        "energy": "ns=2;s=Lamp.L-0001.Energy_Wh",
        "status": "ns=2;s=Lamp.L-0001.Status",
    }
    types = {p.key.value: p.data_type for p in VIRTUAL_MAP.points}
    assert types == {
        "setpoint": "Double",
        "ramp_time": "Double",
        "level": "Double",
        "power": "Double",
        "energy": "Double",
        "status": "UInt32",
    }


def test_virtual_map_passes_values_through() -> None:
    setpoint = VIRTUAL_MAP.point("setpoint")
    assert setpoint is not None
    assert setpoint.encode(0.37) == pytest.approx(0.37)
    ramp = VIRTUAL_MAP.point("ramp_time")
    assert ramp is not None and ramp.encode(2.5) == 2.5
    status = VIRTUAL_MAP.reading("status", "L-0001", 0b101, 7)
    assert status.kind is ReadingKind.STATUS
    assert int(status.value) == StatusFlag.LAMP_FAILURE | StatusFlag.COMMS_FAULT
    assert VIRTUAL_MAP.reading("power", "L-0001", 41.5, 7).value == 41.5


def test_builtins_by_name() -> None:
    assert set(BUILTIN_POINT_MAPS) == {"streetlight-virtual-v1", "vendor-example-v1"}
    assert all(m.schema_version == 1 for m in BUILTIN_POINT_MAPS.values())


def test_vendor_example_conversions() -> None:
    m = VENDOR_EXAMPLE_MAP
    assert m.resolve("Lum07").writable()["setpoint"] == "ns=2;s=Vendor.Luminaire.Lum07.DimLevel"
    setpoint, ramp, level = m.point("setpoint"), m.point("ramp_time"), m.point("level")
    assert setpoint is not None and ramp is not None and level is not None
    assert setpoint.encode(0.5) == 50 and isinstance(setpoint.encode(0.5), int)
    assert setpoint.encode(0.004) == 0  # rounds to the Byte's step
    assert ramp.encode(2.0) == 4  # DALI fade code 4 is exactly 2.0 s
    assert ramp.encode(2.1) == 5  # rounds up: never faster than asked
    assert ramp.decode(4) == FADE_TIME_S[4]
    assert level.decode(254) == pytest.approx(1.0)
    assert level.decode(1) == pytest.approx(0.001)
    assert level.decode(0) == 0.0
    assert m.reading("power", "L", 0.0425, 1).value == pytest.approx(42.5)
    assert m.reading("energy", "L", 1234, 1).value == pytest.approx(123_400.0)  # tenths of kWh


def test_status_word_and_separate_flag_node_combine() -> None:
    m = VENDOR_EXAMPLE_MAP
    word = (1 << 3) | (1 << 9) | (1 << 12)  # comms fault, over-temperature, an unmapped bit
    status = int(m.reading("status", "L", word, 1).value)
    assert status == StatusFlag.COMMS_FAULT | StatusFlag.OVER_TEMPERATURE
    # The lamp-failure node sets only its own bit and keeps the word's bits ...
    status = int(m.reading("lamp_failure", "L", True, 2, previous_status=status).value)
    assert status_flag_names(status) == ("lamp_failure", "comms_fault", "over_temperature")
    # ... and the word, read again, keeps the lamp-failure bit it does not own.
    status = int(m.reading("status", "L", 0, 3, previous_status=status).value)
    assert status == StatusFlag.LAMP_FAILURE


def test_inverted_bool_flag() -> None:
    ok = point(key="lamp_failure", invert=True)
    assert merge_status(0, ok, True) == 0
    assert merge_status(0, ok, False) == StatusFlag.LAMP_FAILURE
    assert merge_status(StatusFlag.DAY_BURNER, ok, 0) == StatusFlag.DAY_BURNER | 1


# --- conversions --------------------------------------------------------------------------------


def test_linear_units_scale_and_offset() -> None:
    p = point(key="level", unit="permille", scale=2.0, offset=10.0)
    assert p.decode(245) == pytest.approx(0.5)  # (245 * 2 + 10) permille
    assert point(key="ramp_time", unit="ms", writable=True).encode(1.5) == pytest.approx(1500)
    assert point(key="ramp_time", unit="ds", data_type="UInt16", writable=True).encode(2.0) == 20
    assert point(key="energy", unit="MWh").decode(0.5) == 500_000.0


def test_levels_just_outside_range_are_rounding_beyond_it_an_error() -> None:
    p = point(key="level", unit="%")
    assert p.decode(100.3) == 1.0
    assert p.decode(-0.2) == 0.0
    with pytest.raises(PointValueError, match=r"outside 0\.\.1; check unit"):
        p.decode(127)


@pytest.mark.parametrize(
    ("fields", "raw", "message"),
    [
        ({"key": "level"}, "0.5", "expected a number"),
        ({"key": "level"}, True, "expected a number"),
        ({"key": "power"}, math.nan, "not a finite number"),
        ({"key": "level", "kind": "dali_arc"}, 255, "MASK"),
        ({"key": "level", "kind": "dali_arc"}, 12.5, "whole number"),
        ({"key": "status", "flags": {0: "lamp_failure"}}, -1, "outside"),
        ({"key": "lamp_failure"}, 2, "expected a Boolean"),
        ({"key": "ramp_time", "kind": "dali_fade", "writable": True}, 16, "outside 0..15"),
    ],
)
def test_decode_refuses_bad_raw_values(
    fields: dict[str, object], raw: object, message: str
) -> None:
    with pytest.raises(PointValueError, match=message) as info:
        point(**fields).decode(raw)
    assert info.value.key == fields["key"]


def test_encode_refuses_out_of_range_and_read_only() -> None:
    setpoint = point(key="setpoint", unit="%", data_type="SByte")
    assert setpoint.encode(1.0) == 100
    with pytest.raises(PointValueError, match=r"outside 0\.\.1"):
        setpoint.encode(1.2)
    with pytest.raises(PointValueError, match="finite"):
        setpoint.encode(math.inf)
    tight = point(key="setpoint", unit="permille", data_type="SByte")
    with pytest.raises(PointValueError, match="outside the SByte range"):
        tight.encode(0.5)
    with pytest.raises(PointValueError, match="does not write"):
        point(key="level").encode(0.5)


@given(st.floats(min_value=0.0, max_value=1.0))
def test_percent_byte_round_trip_within_half_a_step(level: float) -> None:
    p = point(key="setpoint", unit="%", data_type="Byte")
    raw = p.encode(level)
    assert isinstance(raw, int) and 0 <= raw <= 100
    assert abs(p.decode(raw) - level) <= 0.005 + 1e-12


@given(st.floats(min_value=0.0, max_value=1.0))
def test_dali_round_trip_is_close_on_the_log_curve(level: float) -> None:
    p = point(key="setpoint", kind="dali_arc")
    arc = p.encode(level)
    assert isinstance(arc, int) and 0 <= arc <= 254
    back = p.decode(arc)
    if level >= 0.001:
        assert back == pytest.approx(level, rel=0.03)  # one arc step is ~2.8 %


# --- resolution ---------------------------------------------------------------------------------


def test_substitutions_prefix_and_browse_paths() -> None:
    m = one_map(
        {"key": "level", "node_id": "{prefix}.Lamp{n}.Level"},
        {"key": "power", "browse_path": "0:Objects/2:{cabinet}/2:{lamp}/2:Power"},
    )
    assert m.placeholders == {"lamp", "prefix", "n", "cabinet"}
    r = m.resolve(
        "L-9",
        node_prefix="ns=3;s=Cab4",
        substitutions={"n": "07", "cabinet": "C4", "lamp": "Lum9"},
    )
    by_key = {p.point.key.value: p for p in r.points}
    assert by_key["level"].node_id == "ns=3;s=Cab4.Lamp07.Level"
    assert by_key["power"].browse_path == ("0:Objects", "2:C4", "2:Lum9", "2:Power")
    assert r.telemetry()["power"] == "0:Objects/2:C4/2:Lum9/2:Power"
    assert by_key["setpoint"].node_id == "ns=2;s=S.Lum9"


def test_resolution_errors_say_what_to_add() -> None:
    m = one_map({"key": "level", "node_id": "ns=2;s={cabinet}.{lamp}"})
    with pytest.raises(ValueError, match=r"uses \{cabinet\} but lamp L1 gives no value"):
        m.resolve("L1")
    with pytest.raises(ValueError, match="give lamp L1 a node_prefix"):
        one_map({"key": "level", "node_id": "{prefix}.L"}).resolve("L1")
    numeric = one_map({"key": "level", "node_id": "ns=2;i={n}"})
    assert numeric.resolve("L1", substitutions={"n": "1001"}).telemetry()["level"] == "ns=2;i=1001"
    with pytest.raises(ValueError, match="is not an OPC-UA node id"):
        numeric.resolve("L1", substitutions={"n": "abc"})


def test_template_fields() -> None:
    assert template_fields("ns=2;s=A.{lamp}.{x}") == {"lamp", "x"}
    assert template_fields("ns=2;s={{literal}}") == frozenset()
    with pytest.raises(ValueError, match="plain names"):
        template_fields("ns=2;s={lamp:>5}")
    with pytest.raises(ValueError, match="malformed"):
        template_fields("ns=2;s={lamp")


# --- the rules of a map -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key": "level", "unit": "V"}, "unit 'V' is not known for level; use one of frac, %"),
        ({"key": "power", "kind": "dali_arc"}, "kind 'dali_arc' does not fit; use linear"),
        ({"key": "level", "writable": True}, "only reads this point; remove writable"),
        ({"key": "setpoint", "writable": False}, "set writable = true"),
        ({"key": "status"}, "needs its bit table"),
        ({"key": "level", "kind": "dali_arc", "scale": 2.0}, "linear points only"),
        ({"key": "level", "scale": 0.0}, "scale must be a finite number other than 0"),
        ({"key": "level", "flags": {0: "lamp_failure"}}, "flags apply to a status point"),
        ({"key": "level", "invert": True}, "invert applies to bool points only"),
        ({"key": "level", "kind": "dali_arc", "data_type": "Double"}, "holds an integer"),
        ({"key": "lamp_failure", "data_type": "Byte"}, "has data_type Boolean"),
        (
            {"key": "status", "flags": {9: "day_burner"}, "data_type": "Byte"},
            "does not fit in a Byte",
        ),
        ({"key": "level", "node_id": "Lamp.{lamp}"}, "is not an OPC-UA node id"),
        ({"key": "level", "node_id": None, "browse_path": "Objects/Lamp"}, "namespace index"),
        ({"key": "level", "browse_path": "0:Objects"}, "exactly one of node_id or browse_path"),
        ({"key": "status", "flags": {0: "lamp_failure", 1: "lamp_failure"}}, "one bit only"),
    ],
)
def test_point_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        point(**fields)


def test_unknown_fields_and_flag_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        point(key="level", units="%")
    with pytest.raises(ValidationError):
        point(key="status", flags={0: "lamp_broken"})


def test_map_rules() -> None:
    with pytest.raises(ValidationError, match="add a point with key setpoint"):
        PointMap.model_validate(
            {"name": "m", "schema_version": 1, "points": [{"key": "level", "node_id": "i=1"}]}
        )
    with pytest.raises(ValidationError, match=r"keys \['level'\] appear twice"):
        one_map({"key": "level", "node_id": "i=1"}, {"key": "level", "node_id": "i=2"})
    with pytest.raises(ValidationError, match=r"flags \['lamp_failure'\] come from two points"):
        one_map(
            {"key": "status", "node_id": "i=1", "flags": {0: "lamp_failure"}},
            {"key": "lamp_failure", "node_id": "i=2"},
        )
    with pytest.raises(ValidationError, match="schema_version"):
        PointMap.model_validate(
            {"name": "m", "schema_version": 2, "points": [{"key": "setpoint", "node_id": "i=1"}]}
        )


def test_reading_refuses_command_points_and_unknown_keys() -> None:
    with pytest.raises(PointValueError, match="command point"):
        VIRTUAL_MAP.reading("setpoint", "L", 0.5, 1)
    with pytest.raises(PointValueError, match="has no point"):
        VIRTUAL_MAP.reading("lamp_failure", "L", True, 1)
    with pytest.raises(PointValueError, match="not a status point"):
        merge_status(0, point(key="level"), 0.5)

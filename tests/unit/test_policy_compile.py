"""Compiling a policy into a NightProgram: DST, the astronomical clock, classes, presence, zones."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pytest

from controller.dimming.levels import run_night
from controller.dimming.power import LampElectrics
from controller.dimming.solar import ZENITH_CIVIL_DEG, dusk_dawn
from controller.policy import (
    INSTANT_FRAC_PER_S,
    compile_night,
    compile_night_full,
    lux_to_zenith_deg,
    validate_policy,
)
from controller.policy.model import Policy
from domain.errors import PolicyError
from domain.inventory import InventoryArrays
from domain.neighbours import build_neighbour_graph
from domain.records import Lamp, LightingClass
from tests.naive import policy_night

NS = 1_000_000_000
LONDON = (51.5074, -0.1278)


def _ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * NS


def _inventory(
    classes: list[str],
    *,
    lat_lon: tuple[float, float] = LONDON,
    streets: list[str] | None = None,
    groups: list[str] | None = None,
    spacing_deg: float = 0.0004,
) -> InventoryArrays:
    lamps = [
        Lamp(
            lamp_id=f"L{i}",
            council_id="test",
            lat_deg=lat_lon[0],
            lon_deg=lat_lon[1] + i * spacing_deg,
            rated_power_w=60.0,
            lighting_class=LightingClass(cls),
            street=streets[i] if streets else "",
            order_on_street=i,
            group=groups[i] if groups else "",
        )
        for i, cls in enumerate(classes)
    ]
    return InventoryArrays.from_lamps(lamps)


def _policy(profiles: dict[str, Any], **changes: Any) -> Policy:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": "test",
        "version": 1,
        "lighting_classes": ["P3", "P4", "M3"],
        "calendar": [{"profile": next(iter(profiles))}],
        "profiles": profiles,
    }
    doc.update(changes)
    return validate_policy(doc)


PART_NIGHT = {"part_night": {"steps": [{"from": "00:00", "to": "05:30", "off": True}]}}


def _index(program: Any, time_ns: int) -> int:
    return -((program.start_ns - time_ns) // round(program.step_s * NS))


# --- daylight saving ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("night", "noon_utc", "n_steps", "off_from_utc", "off_to_utc"),
    [
        # Clocks go forward at 01:00 GMT on 29 March 2026: a 23-hour night.
        (
            "2026-03-28",
            "2026-03-28T12:00:00Z",
            23 * 3600,
            "2026-03-29T00:00:00Z",
            "2026-03-29T04:30:00Z",
        ),
        # Clocks go back at 01:00 GMT on 25 October 2026: a 25-hour night.
        (
            "2026-10-24",
            "2026-10-24T11:00:00Z",
            25 * 3600,
            "2026-10-24T23:00:00Z",
            "2026-10-25T05:30:00Z",
        ),
        # An ordinary winter night for comparison.
        (
            "2026-01-14",
            "2026-01-14T12:00:00Z",
            24 * 3600,
            "2026-01-15T00:00:00Z",
            "2026-01-15T05:30:00Z",
        ),
    ],
)
def test_part_night_window_is_local_time_on_both_sides_of_a_dst_change(
    night: str, noon_utc: str, n_steps: int, off_from_utc: str, off_to_utc: str
) -> None:
    program = compile_night(_policy(PART_NIGHT), _inventory(["P4"]), night, "Europe/London")
    assert program.start_ns == _ns(noon_utc)
    assert program.n_steps == n_steps
    row = program.program_frac[0]
    first_off, first_on_again = _index(program, _ns(off_from_utc)), _index(program, _ns(off_to_utc))
    assert row[first_off - 1] == 1.0 and row[first_off] == 0.0
    assert np.all(row[first_off:first_on_again] == 0.0)
    assert row[first_on_again] == 1.0  # 05:30 is before sunrise all year in London
    assert np.all(program.floor_frac[0][first_off:first_on_again] == 0.0)
    assert program.floor_frac[0][first_on_again] == np.float32(0.4)
    # Exactly two switch-offs (the window and dawn) and two switch-ons (dusk and 05:30).
    changes = np.diff((row > 0).astype(np.int8))
    assert np.sum(changes == 1) == 2 and np.sum(changes == -1) == 2


def test_dimming_step_crossing_the_skipped_hour_in_spring() -> None:
    # 01:30 does not exist on 29 March 2026 in London: the step starts at the change, 01:00 GMT.
    policy = _policy({"p": {"steps": [{"from": "01:30", "to": "03:00", "level_frac": 0.5}]}})
    program = compile_night(policy, _inventory(["P3"]), dt.date(2026, 3, 28), "Europe/London")
    row = program.program_frac[0]
    a, b = (
        _index(program, _ns("2026-03-29T01:00:00Z")),
        _index(program, _ns("2026-03-29T02:00:00Z")),
    )
    assert row[a - 1] == 1.0 and np.all(row[a:b] == 0.5) and row[b] == 1.0


def test_dimming_step_in_the_repeated_hour_in_autumn_is_one_window() -> None:
    # 01:30-05:30 on 25 October 2026: from the first 01:30 (BST, 00:30Z) to 05:30 GMT, 5 h.
    policy = _policy({"p": {"steps": [{"from": "01:30", "to": "05:30", "level_frac": 0.5}]}})
    program = compile_night(policy, _inventory(["P3"]), dt.date(2026, 10, 24), "Europe/London")
    row = program.program_frac[0]
    a, b = (
        _index(program, _ns("2026-10-25T00:30:00Z")),
        _index(program, _ns("2026-10-25T05:30:00Z")),
    )
    assert b - a == 5 * 3600
    assert row[a - 1] == 1.0 and np.all(row[a:b] == 0.5) and row[b] == 1.0


# --- the astronomical clock ---------------------------------------------------------------------


def _first_lit(row: np.ndarray) -> int:
    return int(np.argmax(row > 0))


def _last_lit(row: np.ndarray) -> int:
    return int(len(row) - 1 - np.argmax(row[::-1] > 0))


@pytest.mark.parametrize(
    ("switching", "zenith_on", "zenith_off", "on_s", "off_s"),
    [
        (
            {
                "on": {"event": "sunset", "offset_min": 20},
                "off": {"event": "sunrise", "offset_min": -20},
            },
            90.833,
            90.833,
            1200.0,
            -1200.0,
        ),
        (
            {"on": {"event": "civil_dusk"}, "off": {"event": "civil_dawn", "offset_min": 5}},
            ZENITH_CIVIL_DEG,
            ZENITH_CIVIL_DEG,
            0.0,
            300.0,
        ),
        (
            {
                "on": {"event": "lux", "offset_min": -3},
                "off": {"event": "lux"},
                "lux_on": 35,
                "lux_off": 18,
            },
            lux_to_zenith_deg(35),
            lux_to_zenith_deg(18),
            -180.0,
            0.0,
        ),
        (
            {"on": {"event": "sunset"}, "off": {"event": "civil_dawn"}},
            90.833,
            ZENITH_CIVIL_DEG,
            0.0,
            0.0,
        ),
    ],
)
def test_switching_follows_dusk_dawn_with_offsets(
    switching: dict[str, Any], zenith_on: float, zenith_off: float, on_s: float, off_s: float
) -> None:
    inventory = _inventory(["P4", "P4"])
    lat, lon = float(inventory.lat_deg.mean()), float(inventory.lon_deg.mean())
    night = np.datetime64("2026-06-10")
    program = compile_night(
        _policy({"p": {}}, switching=switching), inventory, night, "Europe/London"
    )
    on = dusk_dawn(night, lat, lon, zenith_on, dusk_offset_s=on_s).dusk_ns
    off = dusk_dawn(night, lat, lon, zenith_off, dawn_offset_s=off_s).dawn_ns
    row = program.program_frac[0]
    assert _first_lit(row) == _index(program, int(on))
    assert _last_lit(row) + 1 == _index(program, int(off))
    assert np.all(row[_first_lit(row) : _last_lit(row) + 1] == 1.0)


def test_fixed_clock_switching_in_winter_and_summer_time() -> None:
    switching = {"on": {"event": "clock", "at": "19:00"}, "off": {"event": "clock", "at": "06:30"}}
    policy = _policy({"p": {}}, switching=switching)
    for night, on_utc, off_utc in (
        ("2026-01-10", "2026-01-10T19:00:00Z", "2026-01-11T06:30:00Z"),
        ("2026-07-10", "2026-07-10T18:00:00Z", "2026-07-11T05:30:00Z"),
    ):
        compiled = compile_night_full(policy, _inventory(["P4"]), night, "Europe/London")
        row = compiled.program.program_frac[0]
        assert _first_lit(row) == _index(compiled.program, _ns(on_utc))
        assert _last_lit(row) + 1 == _index(compiled.program, _ns(off_utc))
        assert compiled.lit_ns == ((_ns(on_utc), _ns(off_utc)),)


def test_polar_night_keeps_lamps_on_through_the_whole_window_and_polar_day_off() -> None:
    tromso = (69.6496, 18.9560)
    policy = _policy({"p": {}})
    winter = compile_night(policy, _inventory(["P4"], lat_lon=tromso), "2026-12-20", "Europe/Oslo")
    assert np.all(winter.program_frac[0] == 1.0)
    summer = compile_night(policy, _inventory(["P4"], lat_lon=tromso), "2026-06-21", "Europe/Oslo")
    assert np.all(summer.program_frac[0] == 0.0)
    assert np.all(summer.floor_frac == 0.0)


def test_night_window_is_a_slice_of_the_noon_window() -> None:
    policy = _policy(PART_NIGHT)
    inventory = _inventory(["P4", "P3"])
    noon = compile_night(policy, inventory, "2026-02-02", "Europe/London", step_s=30)
    night = compile_night(
        policy, inventory, "2026-02-02", "Europe/London", step_s=30, window="night"
    )
    offset = (night.start_ns - noon.start_ns) // (30 * NS)
    assert (night.start_ns - noon.start_ns) % (30 * NS) == 0
    np.testing.assert_array_equal(
        night.program_frac, noon.program_frac[:, offset : offset + night.n_steps]
    )
    on_ns = int(night.meta["switch_on_ns"])
    off_ns = int(night.meta["switch_off_ns"])
    assert night.start_ns <= on_ns - 3600 * NS < night.start_ns + 30 * NS
    assert night.start_ns + (night.n_steps - 1) * 30 * NS < off_ns + 3600 * NS
    assert night.start_ns + night.n_steps * 30 * NS >= off_ns + 3600 * NS


# --- agreement with the slow twin ---------------------------------------------------------------

TWIN_POLICY: dict[str, Any] = {
    "schema_version": 1,
    "name": "twin",
    "version": 1,
    "lighting_classes": ["P3", "P4", "P5", "M3"],
    "floor_frac": {"P5": 0.45},
    "switching": {"on": {"event": "lux"}, "off": {"event": "sunrise", "offset_min": -10}},
    "calendar": [
        {"profile": "week"},
        {"profile": "weekend", "weekdays": ["fri", "sat"]},
        {"profile": "special", "nth_weekday": {"n": -1, "weekday": "sat", "month": 10}},
        {"profile": "special", "date_ranges": [{"from": "03-27", "to": "03-29"}]},
    ],
    "profiles": {
        "week": {
            "steps": [
                {"from": "21:00", "to": "23:30", "level_frac": 0.8},
                {"from": "23:30", "to": "01:30", "class_steps_down": 1},
                {"from": "01:30", "to": "05:00", "off": True},
                {"from": "05:00", "to": "06:30", "level_frac": 0.5},
            ]
        },
        "weekend": {
            "steps": [{"from": "00:30", "to": "05:00", "level_frac": 0.6}],
            "presence": {"base_level_frac": 0.9, "fade_up_s": 2, "fade_down_s": 0},
        },
        "special": {
            "level_frac": 0.95,
            "steps": [
                {"from": "01:30", "to": "02:30", "class_steps_down": 2},
                {"from": "02:30", "to": "03:00", "off": True},
            ],
            "adaptive": {
                "measure": "traffic",
                "min_class": ["P4"],
                "thresholds": [{"down_below_per_h": 50, "up_above_per_h": 80}],
            },
        },
    },
}


@pytest.mark.parametrize(
    ("night", "tz", "lat_lon", "step_s"),
    [
        ("2026-03-28", "Europe/London", LONDON, 60),  # spring change, special profile
        ("2026-10-24", "Europe/London", LONDON, 60),  # autumn change, a Saturday: weekend
        ("2026-10-31", "Europe/London", LONDON, 60),  # last Saturday of October: special
        ("2026-10-22", "Europe/London", LONDON, 60),  # Thursday: week
        ("2026-01-14", "Europe/London", LONDON, 1),  # ordinary night at 1 s
        ("2026-03-07", "America/New_York", (40.71, -74.01), 60),  # the night of the US change
        ("2026-04-04", "Australia/Sydney", (-33.87, 151.21), 60),  # the southern autumn change
    ],
)
def test_compile_agrees_with_the_step_by_step_twin(
    night: str, tz: str, lat_lon: tuple[float, float], step_s: int
) -> None:
    policy = validate_policy(TWIN_POLICY)
    classes = ["P3", "P4", "P5", "M3"]
    inventory = _inventory(classes, lat_lon=lat_lon)
    day = dt.date.fromisoformat(night)
    program = compile_night(policy, inventory, day, tz, step_s=step_s)
    want = policy_night(
        policy,
        classes,
        day,
        tz,
        float(inventory.lat_deg.mean()),
        float(inventory.lon_deg.mean()),
        step_s,
    )
    assert program.start_ns == want["start_ns"]
    assert program.n_steps == want["n_steps"]
    order = ["M3", "P3", "P4", "P5"]  # CLASS_ORDER order
    assert [name.split("/")[1] for name in program.profile_names] == order
    for p, cls in enumerate(order):
        np.testing.assert_array_equal(
            program.program_frac[p],
            np.asarray(want["program"][cls], dtype=np.float32),
            cls,  # type: ignore[index]
        )
        np.testing.assert_array_equal(
            program.floor_frac[p],
            np.asarray(want["floor"][cls], dtype=np.float32),
            cls,  # type: ignore[index]
        )
        np.testing.assert_allclose(
            program.class_factor[p],
            want["class_factor"][cls],
            rtol=1e-6,  # type: ignore[index]
        )
    assert np.all(program.boost_frac == np.float32(want["boost"]))
    assert np.all(program.hold_s == np.float32(want["hold_s"]))


def test_twin_nights_cover_every_profile() -> None:
    policy = validate_policy(TWIN_POLICY)
    names = {
        compile_night_full(policy, _inventory(["P4"]), night, "Europe/London", step_s=600).profile
        for night in ("2026-03-28", "2026-10-24", "2026-10-31", "2026-01-14")
    }
    assert names == {"special", "week", "weekend"}


# --- classes, presence, adaptive, CLO -----------------------------------------------------------


def test_one_profile_per_class_present_with_class_levels_and_floors() -> None:
    policy = _policy({"p": {"steps": [{"from": "23:00", "to": "05:00", "class_steps_down": 1}]}})
    inventory = _inventory(["P4", "M3", "P4", "P3"])
    program = compile_night(policy, inventory, "2026-01-14", "Europe/London", step_s=60)
    assert program.profile_names == ("p/M3", "p/P3", "p/P4")
    np.testing.assert_array_equal(program.lamp_profile, [2, 0, 2, 1])
    midnight = _index(program, _ns("2026-01-15T00:00:00Z"))
    np.testing.assert_allclose(program.program_frac[:, midnight], [0.75, 5 / 7.5, 0.6], rtol=1e-6)
    np.testing.assert_allclose(program.floor_frac[:, midnight], [0.3, 2 / 7.5, 0.4], rtol=1e-6)
    assert program.class_factor.shape == (3, 1) and np.all(program.class_factor == 1.0)
    assert np.all(program.boost_frac == 0.0)
    assert np.all(program.fade_up_frac_per_s == np.float32(INSTANT_FRAC_PER_S))
    assert program.fail_safe_frac == 1.0
    assert program.meta["profile"] == "p" and program.meta["policy_version"] == "1"


def test_lamps_of_a_class_the_policy_does_not_list_are_refused() -> None:
    policy = _policy(PART_NIGHT, lighting_classes=["P4"])
    with pytest.raises(PolicyError) as caught:
        compile_night(policy, _inventory(["P4", "P6", "P6"]), "2026-01-14", "Europe/London")
    assert [str(i) for i in caught.value.issues] == [
        "lighting_classes: the inventory has lamps of class P6 (e.g. lamp 'L1'), which policy "
        "'test' does not list; activate it only on lamps of P4, or add P6 (its floor must hold)"
    ]


def test_an_invalid_policy_cannot_be_compiled() -> None:
    doc = {
        "schema_version": 1,
        "name": "bad",
        "version": 1,
        "lighting_classes": ["P6"],
        "calendar": [{"profile": "p"}],
        "profiles": {"p": {"level_frac": 0.5}},
    }
    with pytest.raises(PolicyError, match="below the safety floor of P6"):
        compile_night(Policy.model_validate(doc), _inventory(["P6"]), "2026-01-14", "Europe/London")


def test_presence_rates_neighbours_and_speed_limit() -> None:
    presence = {
        "base_level_frac": 0.5,
        "boost_level_frac": 1.0,
        "hold_s": 45,
        "fade_up_s": 2,
        "fade_down_s": 25,
        "neighbours": {"ahead": 2, "behind": 1, "max_distance_m": 70},
        "max_speed_mps": 12,
    }
    policy = _policy({"p": {"presence": presence}})
    # Ten lamps 28 m apart along one street, west to east.
    inventory = _inventory(["P3"] * 10, streets=["High St"] * 10)
    graph = build_neighbour_graph(
        inventory.lon_deg,
        inventory.lat_deg,
        k=6,
        max_distance_m=200,
        street_index=inventory.street_index,
        order_on_street=inventory.order_on_street,
    )
    compiled = compile_night_full(
        policy, inventory, "2026-01-14", "Europe/London", step_s=10, neighbours=graph
    )
    program = compiled.program
    assert program.boost_frac[0] == 1.0 and program.hold_s[0] == 45.0
    assert program.fade_up_frac_per_s[0] == pytest.approx(0.25)
    assert program.fade_down_frac_per_s[0] == pytest.approx(0.02)
    assert compiled.max_speed_mps == 12.0 and program.meta["max_speed_mps"] == "12.0"
    lit = program.program_frac[0][program.program_frac[0] > 0]
    assert np.all(lit == 0.5)
    rows = [
        sorted(
            program.neighbour_indices[program.neighbour_indptr[i] : program.neighbour_indptr[i + 1]]
        )
        for i in range(10)
    ]
    assert rows[0] == [1, 2]  # nothing behind the first lamp
    assert rows[5] == [4, 6, 7]  # two ahead, one behind (56 m < 70 m)
    assert rows[9] == [8]


def test_presence_by_distance_only() -> None:
    presence = {
        "base_level_frac": 0.5,
        "neighbours": {"ahead": None, "behind": None, "max_distance_m": 60},
        "max_speed_mps": None,
    }
    policy = _policy({"p": {"presence": presence}})
    inventory = _inventory(["P3"] * 6, streets=["A"] * 6)
    graph = build_neighbour_graph(
        inventory.lon_deg,
        inventory.lat_deg,
        k=6,
        max_distance_m=500,
        street_index=inventory.street_index,
        order_on_street=inventory.order_on_street,
    )
    compiled = compile_night_full(
        policy, inventory, "2026-01-14", "Europe/London", step_s=60, neighbours=graph
    )
    p = compiled.program
    row = sorted(p.neighbour_indices[p.neighbour_indptr[2] : p.neighbour_indptr[3]].tolist())
    assert row == [0, 1, 3, 4]  # 28 m and 56 m either side
    assert compiled.max_speed_mps == float("inf")
    # Without a graph a detection raises only its own lamp.
    alone = compile_night(policy, inventory, "2026-01-14", "Europe/London", step_s=60)
    assert len(alone.neighbour_indices) == 0 and np.all(alone.neighbour_indptr == 0)


ADAPTIVE = {
    "measure": "footfall",
    "min_class": "P5",
    "thresholds": [
        {"down_below_per_h": 60, "up_above_per_h": 90},
        {"down_below_per_h": 20, "up_above_per_h": 35},
    ],
}


def test_adaptive_zones_thresholds_and_class_factors() -> None:
    policy = _policy({"p": {"adaptive": ADAPTIVE}}, lighting_classes=["P3", "P4", "P5"])
    inventory = _inventory(
        ["P3", "P3", "P4", "P4", "P5", "P3"],
        streets=["Mill Lane", "Mill Lane", "Church St", "Church St", "Church St", ""],
    )
    compiled = compile_night_full(policy, inventory, "2026-01-14", "Europe/London", step_s=60)
    program, zones = compiled.program, compiled.thresholds
    assert program.profile_names == ("p/P3", "p/P4", "p/P5")
    np.testing.assert_allclose(
        program.class_factor,
        [[1.0, 5 / 7.5, 3 / 7.5], [1.0, 0.6, 0.6], [1.0, 1.0, 1.0]],
        rtol=1e-6,
    )
    # P5 lamps are at min_class already; the lamp without a street has no zone.
    assert program.zone_names == zones.zone_names == ("Church St", "Mill Lane")
    np.testing.assert_array_equal(program.lamp_zone, [1, 1, 0, 0, -1, -1])
    np.testing.assert_array_equal(zones.down_per_h, [[60, np.nan], [60, 20]])
    np.testing.assert_array_equal(zones.up_per_h, [[90, np.nan], [90, 35]])
    assert zones.measure == "footfall" and program.meta["adaptive_measure"] == "footfall"


def test_adaptive_zones_by_group_or_given_ids() -> None:
    adaptive = {**ADAPTIVE, "zone_by": "group"}
    policy = _policy({"p": {"adaptive": adaptive}})
    inventory = _inventory(["P3", "P3", "P4"], groups=["north", "south", "north"])
    program = compile_night(policy, inventory, "2026-01-14", "Europe/London", step_s=60)
    assert program.zone_names == ("north", "south")
    np.testing.assert_array_equal(program.lamp_zone, [0, 1, 0])
    given = compile_night(
        policy, inventory, "2026-01-14", "Europe/London", step_s=60, zones=["z9", "", "z1"]
    )
    assert given.zone_names == ("z1", "z9")
    np.testing.assert_array_equal(given.lamp_zone, [1, -1, 0])
    with pytest.raises(ValueError, match=r"zones must give one zone id per lamp \(3\)"):
        compile_night(policy, inventory, "2026-01-14", "Europe/London", zones=["a"])


def test_clo_ceiling_from_operating_hours() -> None:
    clo = {"maintenance_factor": 0.8, "llmf_at_rated_life": 0.8, "rated_life_h": 100_000}
    policy = _policy(PART_NIGHT, clo=clo)
    inventory = _inventory(["P4"] * 4)
    hours = np.array([0.0, 50_000.0, 150_000.0, np.nan])
    program = compile_night(
        policy, inventory, "2026-01-14", "Europe/London", step_s=60, operating_hours=hours
    )
    np.testing.assert_allclose(program.ceiling_frac, [0.8, 0.8 / 0.9, 1.0, 1.0], rtol=1e-6)
    without = compile_night(policy, inventory, "2026-01-14", "Europe/London", step_s=60)
    assert np.all(without.ceiling_frac == 1.0)


def test_argument_errors_say_what_to_fix() -> None:
    policy, inventory = _policy(PART_NIGHT), _inventory(["P4"])
    with pytest.raises(ValueError, match="step_s must be a number of seconds above 0"):
        compile_night(policy, inventory, "2026-01-14", "Europe/London", step_s=0)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        compile_night(policy, inventory, "2026-01-14", "Mars/Olympus")
    with pytest.raises(ValueError, match="night_date must be a calendar date"):
        compile_night(policy, inventory, dt.datetime(2026, 1, 14, 18), "Europe/London")
    with pytest.raises(ValueError, match="the inventory has no lamps"):
        compile_night(policy, InventoryArrays.from_lamps([]), "2026-01-14", "Europe/London")


# --- the program drives the level kernel --------------------------------------------------------


def test_compiled_program_runs_in_the_level_kernel() -> None:
    policy = _policy(
        {
            "p": {
                "steps": [
                    {"from": "22:00", "to": "00:00", "level_frac": 0.7},
                    {"from": "00:00", "to": "05:30", "off": True},
                ]
            }
        }
    )
    inventory = _inventory(["P3", "P4", "M3"])
    program = compile_night(policy, inventory, "2026-10-24", "Europe/London", step_s=60)
    # One adaptive interval for the whole night: with no lamp in a zone, run_night builds a
    # single-column steps table, and the kernel reads a column per interval.
    result = run_night(
        program,
        LampElectrics.uniform(3, 60.0),
        sample_every_s=60.0,
        adaptive_interval_s=program.n_steps * program.step_s,
    )
    # Without presence or adaptive steps, every lamp follows its program exactly.
    np.testing.assert_array_equal(result.samples, program.program_frac[program.lamp_profile])
    lit_minutes = int(np.sum(program.program_frac[0] > 0))
    np.testing.assert_array_equal(result.on_s, np.full(3, lit_minutes * 60.0))


def test_fifty_thousand_lamps_compile_quickly() -> None:
    policy = validate_policy(TWIN_POLICY)
    rng = np.random.default_rng(0)
    n = 50_000
    classes = rng.choice(["P3", "P4", "P5", "M3"], size=n)
    inventory = InventoryArrays(
        lamp_id=np.array([f"L{i}" for i in range(n)]),
        council_id="big",
        lon_deg=LONDON[1] + rng.uniform(-0.05, 0.05, n),
        lat_deg=LONDON[0] + rng.uniform(-0.05, 0.05, n),
        rated_power_w=np.full(n, 60.0),
        standby_power_w=np.full(n, 0.5),
        class_index=np.array(
            [list(LightingClass).index(LightingClass(c)) for c in classes], dtype=np.int32
        ),
        street_index=rng.integers(0, 400, n).astype(np.int32),
        order_on_street=np.zeros(n, dtype=np.int32),
        street_names=tuple(f"street {i}" for i in range(400)),
        driver_index=np.zeros(n, dtype=np.int32),
        driver_curves=("default",),
        dali=np.ones(n, dtype=np.bool_),
        group=np.full(n, "g"),
    )
    compile_night(policy, inventory, "2026-03-28", "Europe/London")  # warm the solar kernels
    timings = {}
    programs = {}
    for night in ("2026-03-28", "2026-10-24"):  # special (adaptive zones), weekend (presence)
        started = time.perf_counter()
        programs[night] = compile_night(
            policy, inventory, night, "Europe/London", operating_hours=np.full(n, 1e4)
        )
        timings[night] = time.perf_counter() - started
    assert programs["2026-03-28"].n_steps == 23 * 3600
    assert programs["2026-10-24"].n_steps == 25 * 3600
    assert len(programs["2026-03-28"].zone_names) == 400
    assert programs["2026-10-24"].boost_frac[0] == 1.0
    assert max(timings.values()) < 1.0, f"compiling 50,000 lamps took {timings}"

"""Invariants of policies over random documents, nights, time zones and overrides.

The central one: a policy either fails validation with located, worded problems, or every
program it compiles keeps lit lamps at or above their class floor, even after the deepest
adaptive class step, and is dark only where the policy says so.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from controller.policy import (
    Override,
    OverrideTable,
    clo_drive_frac,
    compile_night,
    compile_night_full,
    select_rule,
    validate_policy,
)
from controller.policy.calendar import zone
from controller.policy.model import CalendarRule
from domain.errors import PolicyError
from domain.inventory import CLASS_ORDER, InventoryArrays
from domain.records import Lamp, LightingClass
from tests.naive import policy_night

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLACES = {
    "Europe/London": (51.5, -0.12),
    "America/New_York": (40.7, -74.0),
    "Australia/Sydney": (-33.9, 151.2),
    "Europe/Oslo": (59.9, 10.75),
}
TOP_LEVEL = {
    "document", "schema_version", "name", "version", "description", "lighting_classes",
    "switching", "calendar", "profiles", "floor_frac", "allow_floor_below_hard_minimum",
    "fail_safe_level_frac", "clo",
}  # fmt: skip

clocks = st.integers(0, 47).map(lambda k: f"{k // 2:02d}:{(k % 2) * 30:02d}")
levels = st.sampled_from([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


@st.composite
def steps(draw: st.DrawFn) -> dict[str, Any]:
    window = {"from": draw(clocks), "to": draw(clocks)}
    kind = draw(st.sampled_from(["off", "level", "class"]))
    if kind == "off":
        return {**window, "off": True}
    if kind == "level":
        return {**window, "level_frac": draw(levels)}
    return {**window, "class_steps_down": draw(st.integers(1, 3))}


@st.composite
def thresholds(draw: st.DrawFn) -> list[dict[str, float]]:
    count = draw(st.integers(1, 3))
    downs = sorted(draw(st.sets(st.integers(1, 300), min_size=count, max_size=count)), reverse=True)
    gaps = draw(st.lists(st.integers(1, 40), min_size=count, max_size=count))
    return [
        {"down_below_per_h": d, "up_above_per_h": d + g} for d, g in zip(downs, gaps, strict=True)
    ]


presences = st.fixed_dictionaries(
    {"base_level_frac": levels, "boost_level_frac": levels},
    optional={
        "hold_s": st.integers(0, 120),
        "fade_up_s": st.sampled_from([0, 0.7, 2.0]),
        "fade_down_s": st.sampled_from([0, 10, 60]),
    },
)
adaptives = st.fixed_dictionaries(
    {"measure": st.sampled_from(["traffic", "footfall"]), "thresholds": thresholds()},
    optional={"min_class": st.sampled_from(["P5", "P6", "M5", "C4", "P3"])},
)


def _night_clock(half_hours: int) -> str:
    """Clock time ``half_hours`` half-hours after noon (48 = noon of the next day)."""
    minutes = (12 * 60 + half_hours * 30) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def ordered_steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to three steps that do not overlap, in night order."""
    bounds = sorted(draw(st.sets(st.integers(0, 48), max_size=6)))
    out = []
    for a, b in zip(bounds[::2], bounds[1::2], strict=False):
        step = draw(steps())
        out.append({**step, "from": _night_clock(a), "to": _night_clock(b)})
    return out


@st.composite
def profiles(draw: st.DrawFn, lenient: bool = False) -> dict[str, Any]:
    step_list = draw(ordered_steps() if lenient else st.lists(steps(), max_size=3))
    profile: dict[str, Any] = {"steps": step_list}
    if draw(st.booleans()):
        profile["presence"] = draw(presences)
    if draw(st.booleans()):
        profile["adaptive"] = draw(adaptives)
    # A level with presence is a mistake the validator must catch; make it rare.
    if draw(st.integers(0, 9)) == 0 or ("presence" not in profile and draw(st.booleans())):
        profile["level_frac"] = draw(levels)
    return profile


switchings = st.sampled_from(
    [
        {},
        {
            "on": {"event": "sunset", "offset_min": 20},
            "off": {"event": "sunrise", "offset_min": -20},
        },
        {"on": {"event": "civil_dusk"}, "off": {"event": "civil_dawn"}},
        {"on": {"event": "lux"}, "off": {"event": "lux"}, "lux_on": 70, "lux_off": 35},
        {"on": {"event": "clock", "at": "18:30"}, "off": {"event": "clock", "at": "06:30"}},
        {"on": {"event": "sunset"}, "off": {"event": "clock", "at": "05:00"}},
    ]
)
# Mostly classes that can be dimmed, so that plenty of documents are valid.
class_names = st.sampled_from(
    ["P1", "P2", "P3", "P4", "M1", "M2", "M3", "C0", "C1", "C2", "P5", "M6"]
)


@st.composite
def documents(draw: st.DrawFn, lenient: bool = False) -> dict[str, Any]:
    """Random documents; ``lenient`` ones use low-floor classes and ordered steps, so most are
    valid, for tests that need programs rather than errors."""
    names = st.sampled_from(["P1", "P2", "M1", "M2", "C0", "C1"]) if lenient else class_names
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": "prop",
        "version": draw(st.integers(1, 5)),
        "lighting_classes": draw(st.lists(names, min_size=1, max_size=4, unique=True)),
        "switching": draw(switchings),
        "calendar": [{"profile": "a"}],
        "profiles": {"a": draw(profiles(lenient))},
    }
    if draw(st.booleans()):
        doc["profiles"]["b"] = draw(profiles(lenient))
        days = st.lists(st.sampled_from(["mon", "wed", "fri", "sat"]), min_size=1, unique=True)
        doc["calendar"].append({"profile": "b", "weekdays": draw(days)})
    floors = draw(
        st.dictionaries(
            class_names, st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.9]), max_size=2
        )
    )
    if floors and not lenient:
        doc["floor_frac"] = floors
    if draw(st.booleans()):
        doc["fail_safe_level_frac"] = draw(levels)
    return doc


def _inventory(classes: tuple[LightingClass, ...], lat_lon: tuple[float, float]) -> InventoryArrays:
    return InventoryArrays.from_lamps(
        [
            Lamp(
                f"L{i}", "c", lat_lon[1] + 0.001 * i, lat_lon[0], 60.0, lighting_class=c, street="s"
            )
            for i, c in enumerate(classes)
        ]
    )


nights = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2030, 12, 30))


@SETTINGS
@given(
    doc=st.one_of(documents(), documents(lenient=True)),
    night=nights,
    tz=st.sampled_from(sorted(PLACES)),
)
def test_valid_policies_never_compile_below_a_floor(
    doc: dict[str, Any], night: dt.date, tz: str
) -> None:
    try:
        policy = validate_policy(doc)
    except PolicyError as err:
        event("rejected by validation")
        assert err.issues
        for issue in err.issues:
            assert issue.message and issue.where.split(".")[0].split("[")[0] in TOP_LEVEL, issue
        return
    event("compiled")
    note(f"valid: {policy.to_document()}")
    program = compile_night(
        policy, _inventory(policy.lighting_classes, PLACES[tz]), night, tz, step_s=600
    )
    lit = program.program_frac > 0
    assert np.all(program.floor_frac[lit] > 0)
    assert np.all(program.floor_frac[~lit] == 0)
    assert np.all(program.program_frac[lit] >= program.floor_frac[lit] - 1e-6)
    deepest = program.class_factor.min(axis=1, keepdims=True)
    assert np.all((program.program_frac * deepest)[lit] >= program.floor_frac[lit] - 1e-6)
    assert np.all(program.floor_frac <= program.fail_safe_frac + 1e-6)
    boosted = program.boost_frac > 0
    assert np.all(program.boost_frac[boosted] >= program.floor_frac.max(axis=1)[boosted] - 1e-6)
    # Round trip: what was stored is what runs.
    assert validate_policy(policy.to_document()) == policy


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(lenient=True), night=nights, tz=st.sampled_from(sorted(PLACES)))
def test_compile_matches_the_twin_on_random_policies(
    doc: dict[str, Any], night: dt.date, tz: str
) -> None:
    try:
        policy = validate_policy(doc)
    except PolicyError:
        event("rejected by validation")
        return
    event("compared with the twin")
    inventory = _inventory(policy.lighting_classes, PLACES[tz])
    program = compile_night(policy, inventory, night, tz, step_s=900)
    present = [c for c in CLASS_ORDER if c in policy.lighting_classes]
    want = policy_night(
        policy,
        [c.value for c in present],
        night,
        tz,
        float(inventory.lat_deg.mean()),
        float(inventory.lon_deg.mean()),
        900,
    )
    assert program.start_ns == want["start_ns"] and program.n_steps == want["n_steps"]
    for p, cls in enumerate(present):
        np.testing.assert_array_equal(
            program.program_frac[p],
            np.asarray(want["program"][cls.value], np.float32),  # type: ignore[index]
        )
        np.testing.assert_array_equal(
            program.floor_frac[p],
            np.asarray(want["floor"][cls.value], np.float32),  # type: ignore[index]
        )
        np.testing.assert_allclose(
            program.class_factor[p],
            want["class_factor"][cls.value],
            rtol=1e-6,  # type: ignore[index]
        )


@SETTINGS
@given(night=nights, tz=st.sampled_from([*sorted(PLACES), "America/Santiago", "Asia/Tehran"]))
def test_part_night_window_reads_00_00_and_05_30_on_the_local_clock(
    night: dt.date, tz: str
) -> None:
    doc = {
        "schema_version": 1,
        "name": "pn",
        "version": 1,
        "switching": {
            "on": {"event": "clock", "at": "17:00"},
            "off": {"event": "clock", "at": "08:00"},
        },
        "calendar": [{"profile": "p"}],
        "profiles": {"p": {"steps": [{"from": "00:00", "to": "05:30", "off": True}]}},
    }
    compiled = compile_night_full(
        validate_policy(doc), _inventory((LightingClass.P4,), (0.0, 0.0)), night, tz, step_s=60
    )
    program = compiled.program
    row = program.program_frac[0]
    tzinfo = zone(tz)

    def local(step: int) -> dt.datetime:
        seconds = (program.start_ns + step * 60 * 10**9) // 10**9
        return dt.datetime.fromtimestamp(seconds, tzinfo).replace(tzinfo=None)

    lit_from = int(np.argmax(row > 0))
    first_off = lit_from + int(np.argmax(row[lit_from:] == 0))
    back_on = first_off + int(np.argmax(row[first_off:] > 0))
    midnight = dt.datetime.combine(night + dt.timedelta(days=1), dt.time(0, 0))
    # The window starts when the wall clock first shows 00:00 or later on the next day (where
    # clocks go forward at midnight, 00:00 never shows and it starts at 01:00) ...
    assert local(first_off - 1) < midnight <= local(first_off) <= midnight + dt.timedelta(hours=1)
    # ... and ends when it first shows 05:30.
    assert local(back_on - 1) < midnight + dt.timedelta(hours=5, minutes=30) <= local(back_on)
    assert row[back_on] == 1.0


@SETTINGS
@given(
    rules=st.lists(
        st.fixed_dictionaries(
            {"profile": st.sampled_from(["a", "b"])},
            optional={
                "weekdays": st.lists(st.sampled_from(["mon", "tue", "sat"]), min_size=1),
                "dates": st.lists(st.sampled_from(["12-25", "2026-07-04", "01-01"]), min_size=1),
                "nth_weekday": st.fixed_dictionaries(
                    {"n": st.sampled_from([1, 2, -1]), "weekday": st.sampled_from(["fri", "sun"])}
                ),
            },
        ),
        max_size=5,
    ),
    night=nights,
)
def test_later_rules_win(rules: list[dict[str, Any]], night: dt.date) -> None:
    parsed = [CalendarRule.model_validate(r) for r in rules]
    chosen = select_rule(parsed, night)
    catch_all = CalendarRule(profile="z")
    assert select_rule([*parsed, catch_all], night) == len(parsed)
    assert select_rule([catch_all, *parsed], night) == (0 if chosen is None else chosen + 1)
    today = CalendarRule(profile="t", dates=(night.isoformat(),))
    assert select_rule([*parsed, today], night) == len(parsed)


# --- overrides ----------------------------------------------------------------------------------

LAMP_IDS = ["A", "B", "C", "D", "E"]
GROUPS = ["g1", "g1", "g2", "g2", ""]

overrides = st.builds(
    lambda lamps, groups, level, issued, start, length: Override(
        lamp_ids=tuple(lamps),
        groups=tuple(groups) if groups or lamps else ("g1",),
        level_frac=level,
        issued_ns=issued,
        start_ns=None if start is None else issued + start,
        expiry_ns=None if length is None else issued + (start or 0) + length,
    ),
    st.lists(st.sampled_from(LAMP_IDS), max_size=2, unique=True),
    st.lists(st.sampled_from(["g1", "g2"]), max_size=2, unique=True),
    st.none() | st.sampled_from([0.0, 0.3, 1.0]),
    st.integers(0, 50),
    st.none() | st.integers(0, 20),
    st.none() | st.integers(1, 30),
)


def _reference(entries: list[Override], lamp: int, t: int) -> float:
    """TALQ, one lamp: the latest override issued by t decides; only if in force, its level."""
    covering = [
        (o.issued_ns, k, o)
        for k, o in enumerate(entries)
        if (LAMP_IDS[lamp] in o.lamp_ids or GROUPS[lamp] in o.groups) and o.issued_ns <= t
    ]
    if not covering:
        return math.nan
    latest = max(covering, key=lambda x: (x[0], x[1]))[2]
    start = max(
        latest.start_ns if latest.start_ns is not None else latest.issued_ns, latest.issued_ns
    )
    end = latest.expiry_ns if latest.expiry_ns is not None else 2**62
    if latest.level_frac is None or not start <= t < end:
        return math.nan
    return latest.level_frac


@SETTINGS
@given(entries=st.lists(overrides, max_size=8), t=st.integers(0, 120), now=st.integers(0, 80))
def test_override_table_matches_the_talq_rule_and_prunes_safely(
    entries: list[Override], t: int, now: int
) -> None:
    table = OverrideTable(LAMP_IDS, GROUPS, entries)
    got = table.apply(t)
    want = np.array([_reference(entries, i, t) for i in range(len(LAMP_IDS))], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(table.apply(t), got)  # deterministic
    pruned = table.prune(now)
    assert len(pruned) <= len(table)
    for later in (now, now + 1, max(now, t), now + 40):
        np.testing.assert_array_equal(pruned.apply(later), table.apply(later))


# --- constant light output ----------------------------------------------------------------------


@SETTINGS
@given(
    mf=st.floats(0.5, 1.0),
    end=st.floats(0.5, 1.0),
    rated=st.floats(1_000, 200_000),
    hours=st.lists(st.floats(0, 400_000), min_size=2, max_size=20),
)
def test_clo_drive_never_falls_as_lamps_age(
    mf: float, end: float, rated: float, hours: list[float]
) -> None:
    ordered = np.sort(np.asarray(hours))
    drive = clo_drive_frac(
        ordered, maintenance_factor=mf, rated_life_h=rated, llmf_at_rated_life=end
    )
    assert np.all(np.diff(drive) >= 0)
    assert np.all(drive <= 1.0) and np.all(drive >= np.float32(mf) - 1e-6)

"""Validation of policy documents: every problem, at its location, in words that say what to fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from controller.policy import check_update, load_policy_text, policy_issues, validate_policy
from controller.policy.classes import DEFAULT_FLOOR_FRAC
from controller.policy.model import Policy
from domain.errors import PolicyError
from domain.records import LightingClass

SAMPLES = sorted((Path(__file__).parents[2] / "streetlight" / "samples").glob("policy_*.yaml"))


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": "residential",
        "version": 1,
        "lighting_classes": ["P4"],
        "calendar": [{"profile": "residential"}],
        "profiles": {
            "residential": {
                "steps": [
                    {"from": "22:00", "to": "00:00", "level_frac": 0.5},
                    {"from": "00:00", "to": "05:30", "off": True},
                ]
            }
        },
    }
    doc.update(changes)
    return doc


def _issues(doc: Any) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as caught:
        validate_policy(doc)
    assert caught.value.issues, "a PolicyError must list its problems"
    return [(issue.where, issue.message) for issue in caught.value.issues]


def test_a_good_document_gives_a_frozen_policy() -> None:
    policy = validate_policy(_doc())
    assert policy.profiles["residential"].steps[1].off
    with pytest.raises(Exception, match="frozen"):
        policy.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_are_valid_and_round_trip(path: Path) -> None:
    policy = validate_policy(path)
    assert validate_policy(policy.to_document()) == policy
    assert policy_issues(policy) == []


def test_there_are_three_samples() -> None:
    assert [p.name for p in SAMPLES] == [
        "policy_all_night.yaml",
        "policy_part_night.yaml",
        "policy_presence_adaptive.yaml",
    ]


def test_level_above_one_has_the_documented_message() -> None:
    doc = _doc()
    doc["profiles"]["residential"]["steps"][1] = {"from": "00:00", "to": "05:30", "level_frac": 1.4}
    assert _issues(doc) == [
        (
            "profiles.residential.steps[1].level_frac",
            "1.4 is above 1.0; levels are fractions of full output",
        )
    ]


def test_every_problem_is_listed_at_once_including_meaning_of_parsed_parts() -> None:
    doc = _doc(
        floor_frac={"P4": 0.05},
        fail_safe_level_frac=0.2,
        calendar=[{"profile": "residential"}, {"profile": "weekend", "weekdays": ["sat"]}],
    )
    doc["profiles"]["residential"]["steps"] = [
        {"from": "22:00", "to": "00:00", "level_frac": 0.5},
        {"from": "23:00", "to": "01:00", "level_frac": 1.4},
        {"from": "06:00", "to": "05:00", "off": True},
    ]
    doc["profiles"]["weekend"] = {
        "presence": {"base_level_frac": 0.5, "hold_s": -3, "fade_up_s": -1},
    }
    assert _issues(doc) == [
        (
            "profiles.residential.steps[1].level_frac",
            "1.4 is above 1.0; levels are fractions of full output",
        ),
        (
            "profiles.weekend.presence.hold_s",
            "-3 is negative; give a duration in seconds, 0 or more",
        ),
        (
            "profiles.weekend.presence.fade_up_s",
            "-1 is negative; give a duration in seconds, 0 or more",
        ),
        (
            "floor_frac.P4",
            "0.05 is below the hard minimum 0.1; raise it, or set "
            "allow_floor_below_hard_minimum: true if this road really needs it",
        ),
        (
            "profiles.residential.steps[2]",
            "06:00-05:00 runs backwards: times run from noon to noon, so 05:00 comes before "
            "06:00; swap them, or split the window at 12:00",
        ),
    ]


def test_meaning_checks_with_exact_messages() -> None:
    doc = _doc(
        lighting_classes=["P4", "P5", "M3"],
        fail_safe_level_frac=0.2,
        calendar=[{"profile": "residential"}, {"profile": "weekend", "weekdays": ["sat"]}],
    )
    doc["profiles"]["residential"]["steps"] = [
        {"from": "22:00", "to": "00:00", "level_frac": 0.7},
        {"from": "23:00", "to": "01:00", "level_frac": 0.3},
    ]
    doc["profiles"]["weekend"] = {
        "level_frac": 0.9,
        "presence": {"base_level_frac": 0.5, "boost_level_frac": 0.3},
        "adaptive": {
            "measure": "footfall",
            "min_class": ["P5", "P6"],
            "thresholds": [
                {"down_below_per_h": 100, "up_above_per_h": 90},
                {"down_below_per_h": 120, "up_above_per_h": 150},
            ],
        },
    }
    floor_hint = (
        "raise the level, list only the classes this policy is for in lighting_classes or make "
        "the window an explicit switch-off with off: true"
    )
    assert _issues(doc) == [
        (
            "profiles.residential.steps[1]",
            "23:00-01:00 overlaps steps[0] (22:00-00:00); steps of one profile must not overlap",
        ),
        (
            "profiles.residential.steps[1].level_frac",
            f"0.3 is below the safety floor of P4 (0.4) and P5 (0.667) while lit; {floor_hint}",
        ),
        (
            "profiles.weekend.level_frac",
            "with presence, lit hours outside steps run at presence.base_level_frac; remove "
            "level_frac",
        ),
        (
            "profiles.weekend.presence.boost_level_frac",
            "0.3 is not above base_level_frac 0.5; the boost must be brighter than the base",
        ),
        (
            "profiles.weekend.adaptive.thresholds[0].up_above_per_h",
            "90 is not above down_below_per_h 100; a zone steps down below one volume and back up "
            "only above a higher one (hysteresis)",
        ),
        (
            "profiles.weekend.adaptive.thresholds[1].down_below_per_h",
            "120 is not below thresholds[0].down_below_per_h 100; each further class step needs "
            "a lower volume",
        ),
        (
            "profiles.weekend.adaptive.thresholds[1].up_above_per_h",
            "150 is not below thresholds[0].up_above_per_h 90; each further class step needs a "
            "lower volume",
        ),
        (
            "profiles.weekend.adaptive.min_class",
            "gives P5 and P6 for the P series; give at most one class per series",
        ),
        (
            "profiles.weekend.presence.base_level_frac",
            "0.5 is below the safety floor of P5 (0.667) while lit, and stepped down by adaptive "
            "lighting falls below the safety floor of P4 (0.5 × 0.6 at P5 = 0.3 < 0.4) and M3 "
            "(0.5 × 0.5 at M5 = 0.25 < 0.3); raise the level, raise adaptive.min_class or list "
            "only the classes this policy is for in lighting_classes",
        ),
        (
            "fail_safe_level_frac",
            "0.2 is below the safety floor of P4 (0.4), P5 (0.667) and M3 (0.3); the level kept "
            "when the central service is lost must respect every floor",
        ),
    ]


def test_an_explicit_off_window_may_go_dark_but_level_zero_may_not() -> None:
    doc = _doc()
    doc["profiles"]["residential"]["steps"].append(
        {"from": "05:30", "to": "06:00", "level_frac": 0}
    )
    assert _issues(doc) == [
        (
            "profiles.residential.steps[2].level_frac",
            "0 would switch the lamps off; write off: true instead so the switch-off window is "
            "explicit",
        )
    ]


def test_default_lighting_classes_include_those_that_cannot_be_dimmed() -> None:
    doc = _doc()
    del doc["lighting_classes"]
    doc["profiles"]["residential"]["presence"] = {"base_level_frac": 0.5}
    doc["profiles"]["residential"]["steps"] = []
    assert _issues(doc) == [
        (
            "profiles.residential.presence.base_level_frac",
            "0.5 is below the safety floor of M5 (0.6), M6 (1.0), C4 (0.75), C5 (1.0), P5 (0.667) "
            "and P6 (1.0) while lit; raise the level or list only the classes this policy is for "
            "in lighting_classes",
        )
    ]


def test_class_steps_are_floor_safe_for_every_class_by_construction() -> None:
    doc = _doc()
    del doc["lighting_classes"]
    doc["profiles"]["residential"]["steps"] = [
        {"from": "23:00", "to": "05:30", "class_steps_down": 2}
    ]
    assert validate_policy(doc).lighting_classes == tuple(LightingClass)


def test_a_raised_floor_catches_class_steps() -> None:
    doc = _doc(floor_frac={"P4": 0.7})
    doc["profiles"]["residential"]["steps"] = [
        {"from": "23:00", "to": "05:30", "class_steps_down": 1}
    ]
    assert _issues(doc) == [
        (
            "profiles.residential.steps[0].class_steps_down",
            "1 class step down is below the safety floor of P4 (0.7) while lit; raise the level, "
            "list only the classes this policy is for in lighting_classes or make the window an "
            "explicit switch-off with off: true",
        )
    ]


def test_step_and_switching_shapes() -> None:
    doc = _doc(
        calendar=[{"profile": "residential", "weekdays": ["fri"]}],
        switching={
            "on": {"event": "sunrise", "at": "18:00"},
            "off": {"event": "clock"},
            "lux_on": 1000,
        },
    )
    doc["profiles"]["residential"] = {
        "levl_frac": 0.5,
        "steps": [
            {"from": "22:00", "to": "22:00", "level_frac": 0.5, "off": True},
            {"from": "23:00", "to": "01:00"},
        ],
    }
    assert _issues(doc) == [
        ("profiles.residential.levl_frac", "unknown field levl_frac; did you mean level_frac?"),
        (
            "switching.on.event",
            "'sunrise' is a morning event; switch on at 'sunset', 'civil_dusk', 'lux' or 'clock'",
        ),
        ("switching.on.at", "is only used with event: clock; remove it or set event: clock"),
        ("switching.off.at", "required with event: clock; give local time as HH:MM"),
        ("profiles.residential.steps[0]", "gives level_frac and off: true; keep exactly one"),
        ("profiles.residential.steps[0].to", "22:00 is the same as from; a step needs a window"),
        (
            "profiles.residential.steps[1]",
            "says nothing to do; give level_frac, class_steps_down or off: true",
        ),
        (
            "calendar",
            "no rule matches every night, so some nights would have no profile; add a first rule "
            "with only profile: as the default",
        ),
    ]


def test_lux_thresholds_outside_the_model_and_clock_order() -> None:
    doc = _doc(
        switching={
            "on": {"event": "lux"},
            "off": {"event": "clock", "at": "17:00"},
            "lux_on": 1000,
        }
    )
    assert _issues(doc) == [
        (
            "switching.lux_on",
            "1000.0 lx is outside 3.4-400.0 lx, the clear-sky twilight range the lux model "
            "covers; use sunset or civil twilight with offset_min instead",
        )
    ]
    doc["switching"] = {
        "on": {"event": "clock", "at": "18:00"},
        "off": {"event": "clock", "at": "17:00"},
    }
    assert _issues(doc) == [
        (
            "switching.off.at",
            "17:00 is not after switch-on at 18:00; times run from noon to noon, so switch on in "
            "the evening and off in the morning",
        )
    ]


def test_calendar_problems() -> None:
    doc = _doc(
        calendar=[
            {"profile": "residential", "weekdays": ["fri"]},
            {"profile": "weekend"},
            {
                "profile": "residential",
                "date_ranges": [
                    {"from": "2026-02-01", "to": "2026-01-01"},
                    {"from": "02-01", "to": "2026-01-01"},
                ],
                "nth_weekday": {"n": 5, "weekday": "mon", "month": 13},
            },
        ]
    )
    assert _issues(doc) == [
        ("calendar[1].profile", "'weekend' is not a profile; defined profiles: residential"),
        (
            "calendar[2].date_ranges[0].to",
            "2026-01-01 is before from 2026-02-01; swap them (only MM-DD ranges may wrap the new "
            "year)",
        ),
        ("calendar[2].date_ranges[1]", "give both dates as YYYY-MM-DD or both as MM-DD"),
        ("calendar[2].nth_weekday[0].n", "5 is not 1, 2, 3, 4 or -1 (the last)"),
        ("calendar[2].nth_weekday[0].month", "13 is not a month; give 1-12"),
        (
            "calendar[0]",
            "never applies: calendar[1] matches every night and later rules win; move the default "
            "rule to the top",
        ),
    ]


def test_field_syntax_messages() -> None:
    doc = _doc(
        lighting_classes=["P7"],
        calendar=[{"profile": "residential", "weekdays": ["mnd"], "dates": ["02-30"]}],
    )
    doc["profiles"]["residential"]["steps"] = [
        {"from": "25:00", "to": "05:30", "off": True},
        {"from": 1320, "to": "23:00", "level_frac": "half"},
    ]
    assert _issues(doc) == [
        (
            "lighting_classes[0]",
            "'P7' is not an EN 13201 lighting class; use M1-M6, C0-C5 or P1-P6",
        ),
        (
            "calendar[0].dates[0]",
            "'02-30' is not a day of the calendar",
        ),
        (
            "calendar[0].weekdays[0]",
            "'mnd' is not a weekday; use mon, tue, wed, thu, fri, sat or sun",
        ),
        (
            "profiles.residential.steps[0].from",
            "'25:00' is not a clock time; write local time as HH:MM from 00:00 to 23:59",
        ),
        (
            "profiles.residential.steps[1].from",
            "1320 is not a clock time; write local time as HH:MM; if you wrote 22:00 unquoted, a "
            'YAML 1.1 reader took it as a base-60 number: quote it ("22:00") or read the file '
            "with load_policy_text",
        ),
        ("profiles.residential.steps[1].level_frac", "expected a number, got the text 'half'"),
    ]


def test_document_level_problems() -> None:
    assert _issues(
        {
            "schema_version": 2,
            "name": "",
            "version": 0,
            "calendar": [],
            "profiles": {},
            "lighting_classes": [],
            "fail_safe_level_frac": "full",
        }
    ) == [
        ("schema_version", "2 is not supported; this service reads schema_version 1"),
        ("name", "must not be empty"),
        ("version", "0 is below the minimum 1"),
        ("fail_safe_level_frac", "expected a number, got the text 'full'"),
        (
            "lighting_classes",
            "is empty; list the classes of the lamps this policy is for, e.g. [P4, P5]",
        ),
        ("profiles", "is empty; define at least one profile, e.g. standard: {}"),
        ("calendar", "is empty; add at least one rule, e.g. - profile: standard"),
    ]
    missing = _doc()
    del missing["calendar"]
    assert _issues(missing) == [("calendar", "required field is missing; add calendar")]
    assert _issues("- a\n- b\n") == [
        ("document", "expected a mapping of fields (schema_version, name, ...), got a list")
    ]
    assert _issues("name: [1, 2\n") == [
        (
            "document",
            "is not valid YAML or JSON: expected ',' or ']', but got '<stream end>' (line 2, "
            "column 1)",
        )
    ]
    assert _issues("a: 1\nb: 2\na: 3\n") == [
        (
            "document",
            "is not valid YAML or JSON: key 'a' appears twice in one mapping, on lines 1 and 3; "
            "keep one",
        )
    ]
    assert _issues(Path("/nonexistent/policy.yaml")) == [
        ("/nonexistent/policy.yaml", "cannot read the file: No such file or directory")
    ]


def test_yaml_reads_on_off_keys_and_unquoted_clock_times() -> None:
    text = """
schema_version: 1
name: yaml
version: 2
lighting_classes: P4
switching:
  on: {event: sunset, offset_min: 15}
  off: {event: clock, at: 06:30}
calendar:
  - profile: p
profiles:
  p:
    steps:
      - {from: 22:00, to: 05:30, level_frac: 0.5}
      - {from: 05:30, to: 06:00, off: yes}
"""
    assert load_policy_text("a: on\nb: 22:00\nc: 010\nd: 1.5\ne: true\n") == {
        "a": "on",
        "b": "22:00",
        "c": "010",
        "d": 1.5,
        "e": True,
    }
    # "yes" is text in YAML 1.2; pydantic reads it as true.
    policy = validate_policy(text)
    assert policy.switching.on.offset_min == 15
    assert policy.switching.off.at == "06:30"
    assert policy.profiles["p"].steps[0].start == "22:00"
    assert policy.profiles["p"].steps[1].off is True
    assert policy.lighting_classes == (LightingClass.P4,)


def test_floors_defaults_and_limits() -> None:
    assert DEFAULT_FLOOR_FRAC[LightingClass.P4] == pytest.approx(0.4)
    doc = _doc(floor_frac={"P4": 0.05}, allow_floor_below_hard_minimum=True)
    doc["profiles"]["residential"]["steps"][0]["level_frac"] = 0.06
    assert validate_policy(doc).floor_frac == {LightingClass.P4: 0.05}
    assert _issues(_doc(floor_frac={"P4": 0.0}, allow_floor_below_hard_minimum=True)) == [
        (
            "floor_frac.P4",
            "0.0 must be above 0; a lit lamp keeps a positive floor (to switch lamps off, use a "
            "step with off: true)",
        )
    ]
    assert _issues(_doc(floor_frac={"P4": 1.2})) == [
        ("floor_frac.P4", "1.2 is above 1.0; floors are fractions of full output")
    ]


def test_presence_neighbour_rules() -> None:
    doc = _doc()
    doc["profiles"]["residential"] = {
        "presence": {"base_level_frac": 0.5, "neighbours": {"ahead": None}}
    }
    assert _issues(doc) == [
        (
            "profiles.residential.presence.neighbours.max_distance_m",
            "required when ahead or behind is null (any number of lamps), so a detection raises "
            "only nearby lamps",
        )
    ]


def test_clo_factors_are_fractions() -> None:
    assert _issues(_doc(clo={"maintenance_factor": 1.2, "rated_life_h": 0})) == [
        ("clo.maintenance_factor", "1.2 is not a factor in (0, 1]; e.g. 0.8 for 80 %"),
        ("clo.rated_life_h", "0 must be above 0 (hours)"),
    ]


def test_policy_built_directly_is_still_checked_before_use() -> None:
    policy = Policy.model_validate(_doc(lighting_classes=["P6"]))
    assert [str(i) for i in policy_issues(policy)] == [
        "profiles.residential.steps[0].level_frac: 0.5 is below the safety floor of P6 (1.0) "
        "while lit; raise the level, list only the classes this policy is for in "
        "lighting_classes or make the window an explicit switch-off with off: true"
    ]


def test_check_update_requires_same_name_and_higher_version() -> None:
    old = validate_policy(_doc(version=3))
    check_update(old, validate_policy(_doc(version=4)))
    with pytest.raises(PolicyError) as caught:
        check_update(old, validate_policy(_doc(version=3, name="other")))
    assert [str(i) for i in caught.value.issues] == [
        "name: 'other' does not match 'residential'; a new version keeps the name (save a "
        "different name as a new policy)",
        "version: 3 does not increase on version 3; give 4 or more",
    ]


def test_error_text_lists_the_problems() -> None:
    with pytest.raises(PolicyError, match=r"policy is invalid \(1 problem\(s\)\):\n  - name: must"):
        validate_policy(_doc(name=""))


def test_documents_are_not_mutated() -> None:
    doc = _doc()
    before = copy.deepcopy(doc)
    validate_policy(doc)
    assert doc == before

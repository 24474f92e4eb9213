"""Reading and validating policy documents, with every problem reported at once.

Theory of operation
-------------------
A document is checked in two passes. The first is the schema (:mod:`controller.policy.model`):
types, ranges and syntax, field by field. The second is the meaning: steps that overlap or run
backwards, calendar rules that name no profile or can never apply, presence boosts that are
not brighter than the base, thresholds without hysteresis, and above all the *safety floor*:
no level a profile can schedule while lamps are lit, after the deepest adaptive class step it
allows, may be below the floor of any lighting class the policy may be activated on. Only an
explicit ``off: true`` window may go below it (to zero).

When the schema pass fails, the meaning pass still runs on every part that parsed on its own
(each profile, each calendar rule, the switching block), so one run lists all problems.

Every problem is a :class:`domain.errors.ValidationIssue` whose ``where`` is the path of the
field in the document (``profiles.residential.steps[1].level_frac``) and whose ``message`` says
what is wrong and what to write instead. The messages are part of the interface: tests assert
them word for word.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from controller.policy.calendar import (
    LUX_AT_CIVIL_DUSK,
    LUX_AT_SUNSET,
    night_minutes,
)
from controller.policy.classes import (
    HARD_MIN_FLOOR_FRAC,
    floor_table,
    light_ratio,
    max_steps_down,
    stepped_class,
)
from controller.policy.model import (
    OFF_EVENTS,
    ON_EVENTS,
    SCHEMA_VERSION,
    CalendarRule,
    ClassName,
    LevelFrac,
    Policy,
    Profile,
    Step,
    Switching,
    SwitchPoint,
    format_number,
    known_field_names,
)
from domain.errors import PolicyError, ValidationIssue
from domain.records import LightingClass

__all__ = [
    "check_policy",
    "check_update",
    "load_policy_text",
    "policy_issues",
    "validate_policy",
]

_fmt = format_number
_MAX_ADAPTIVE_STEPS = 5
_MAX_CLASS_STEPS = 5
_FLOOR_TOLERANCE = 1e-9

# --- YAML ---------------------------------------------------------------------------------------


# YAML with the YAML 1.2 core scalars. YAML 1.1 (PyYAML's default) reads on/off/yes/no as
# booleans, which would turn the on:/off: keys of switching into true/false, and reads 22:00 as
# the base-60 number 1320 while leaving 05:30 a string. Policies are full of both. Built with
# type() and typed Any so the module type-checks with or without the PyYAML stubs.
_PolicyLoader: Any = type("_PolicyLoader", (yaml.SafeLoader,), {})
_PolicyLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+)$"),
    list("-+0123456789."),
)


def _construct_mapping_once(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    # PyYAML keeps the last of two equal keys; a second profile of the same name would silently
    # replace the first, so refuse instead.
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # PyYAML's own mapping constructor reports unhashable keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice in one mapping, on lines "
                f"{seen[key].start_mark.line + 1} and {key_node.start_mark.line + 1}; keep one",
                None,
            )
        seen[key] = key_node
    return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=deep))


_PolicyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once
)


def load_policy_text(text: str) -> Any:
    """Parse a YAML (or JSON, which is YAML) policy text with YAML 1.2 scalars."""
    return yaml.load(text, Loader=_PolicyLoader)


# --- schema errors ------------------------------------------------------------------------------

_KNOWN_FIELDS = known_field_names()


def _where(loc: Sequence[int | str]) -> str:
    text = ""
    for item in loc:
        if item == "[key]":
            continue
        if isinstance(item, int):
            text += f"[{item}]"
        else:
            text += f".{item}" if text else str(item)
    return text or "document"


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the text '{value}'"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _schema_message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    loc = error["loc"]
    last = str(loc[-1]) if loc else ""
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "missing":
        return f"required field is missing; add {last}"
    if kind == "extra_forbidden":
        guess = difflib.get_close_matches(last, sorted(_KNOWN_FIELDS), n=1, cutoff=0.6)
        return f"unknown field {last}" + (
            f"; did you mean {guess[0]}?" if guess else "; remove it or check the spelling"
        )
    if kind == "literal_error":
        if last == "schema_version":
            return (
                f"{_fmt(value) if isinstance(value, int | float) else repr(value)} is not "
                f"supported; this service reads schema_version {SCHEMA_VERSION}"
            )
        return f"{value!r} is not allowed; use {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {_kind(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_kind(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {_kind(value)}"
    if kind == "string_type":
        return f"expected text, got {_kind(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of fields, got {_kind(value)}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, got {_kind(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "greater_than_equal" and isinstance(value, int | float):
        return f"{_fmt(value)} is below the minimum {_fmt(ctx['ge'])}"
    return str(error["msg"])


def _schema_issues(err: ValidationError) -> list[ValidationIssue]:
    errors = err.errors()
    issues: list[ValidationIssue] = []
    for error in errors:
        loc = tuple(error["loc"])
        # A failed entry is dropped before a length check runs, which would add a misleading
        # "too short" on top of the real problem; report the real one alone.
        if error["type"] in ("too_short", "string_too_short") and any(
            tuple(other["loc"])[: len(loc)] == loc and len(other["loc"]) > len(loc)
            for other in errors
        ):
            continue
        issues.append(ValidationIssue(_where(loc), _schema_message(error)))
    return issues


# --- meaning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    """The parts of a document that parsed; None where a part did not."""

    classes: tuple[LightingClass, ...] | None
    floors: dict[LightingClass, float] | None
    floor_overrides: dict[LightingClass, float] | None
    allow_below_hard_minimum: bool | None
    switching: Switching | None
    profiles: dict[str, Profile]
    profile_names: frozenset[str] | None
    rules: dict[int, CalendarRule]
    n_rules: int | None
    fail_safe_level_frac: float | None
    #: Steps that parsed, by profile, for profiles that as a whole did not.
    loose_steps: dict[str, list[tuple[int, Step]]]


def _list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _check_classes(classes: tuple[LightingClass, ...]) -> list[ValidationIssue]:
    if not classes:
        return [
            ValidationIssue(
                "lighting_classes",
                "is empty; list the classes of the lamps this policy is for, e.g. [P4, P5]",
            )
        ]
    doubled = sorted({c.value for c in classes if classes.count(c) > 1})
    return [ValidationIssue("lighting_classes", f"{c} is listed twice") for c in doubled]


def _check_floor_overrides(
    overrides: Mapping[LightingClass, float], allow_below: bool
) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    for cls, value in overrides.items():
        where = f"floor_frac.{cls.value}"
        if not math.isfinite(value) or value <= 0.0:
            issues.append(
                ValidationIssue(
                    where,
                    f"{_fmt(value)} must be above 0; a lit lamp keeps a positive floor (to "
                    "switch lamps off, use a step with off: true)",
                )
            )
        elif value > 1.0:
            issues.append(
                ValidationIssue(
                    where, f"{_fmt(value)} is above 1.0; floors are fractions of full output"
                )
            )
        elif value < HARD_MIN_FLOOR_FRAC and not allow_below:
            issues.append(
                ValidationIssue(
                    where,
                    f"{_fmt(value)} is below the hard minimum {_fmt(HARD_MIN_FLOOR_FRAC)}; raise "
                    "it, or set allow_floor_below_hard_minimum: true if this road really needs it",
                )
            )
    return issues


def _check_switch_point(
    point: SwitchPoint, which: str, allowed: tuple[str, ...]
) -> list[ValidationIssue]:
    where = f"switching.{which}"
    issues: list[ValidationIssue] = []
    if point.event not in allowed:
        time_of_day = "morning" if which == "on" else "evening"
        issues.append(
            ValidationIssue(
                f"{where}.event",
                f"'{point.event}' is a {time_of_day} event; switch {which} at "
                f"{_list([repr(a) for a in allowed]).replace(' and ', ' or ')}",
            )
        )
    if point.event == "clock" and point.at is None:
        issues.append(
            ValidationIssue(f"{where}.at", "required with event: clock; give local time as HH:MM")
        )
    if point.event != "clock" and point.at is not None:
        issues.append(
            ValidationIssue(
                f"{where}.at", "is only used with event: clock; remove it or set event: clock"
            )
        )
    return issues


def _check_switching(switching: Switching) -> list[ValidationIssue]:
    issues = _check_switch_point(switching.on, "on", ON_EVENTS)
    issues += _check_switch_point(switching.off, "off", OFF_EVENTS)
    on, off = switching.on, switching.off
    if on.event == "clock" and off.event == "clock" and on.at is not None and off.at is not None:
        on_m = night_minutes(on.at) + on.offset_min
        off_m = night_minutes(off.at, is_end=True) + off.offset_min
        if off_m <= on_m:
            issues.append(
                ValidationIssue(
                    "switching.off.at",
                    f"{off.at} is not after switch-on at {on.at}; times run from noon to noon, "
                    "so switch on in the evening and off in the morning",
                )
            )
    for point, field in ((on, "lux_on"), (off, "lux_off")):
        value = getattr(switching, field)
        if point.event == "lux" and not LUX_AT_CIVIL_DUSK <= value <= LUX_AT_SUNSET:
            issues.append(
                ValidationIssue(
                    f"switching.{field}",
                    f"{_fmt(value)} lx is outside {_fmt(LUX_AT_CIVIL_DUSK)}-{_fmt(LUX_AT_SUNSET)} "
                    "lx, the clear-sky twilight range the lux model covers; use sunset or "
                    "civil twilight with offset_min instead",
                )
            )
    return issues


def _step_window(step: Step) -> tuple[int, int]:
    return night_minutes(step.start), night_minutes(step.end, is_end=True)


def _check_steps(where: str, steps: Sequence[tuple[int, Step]]) -> list[ValidationIssue]:
    """Checks of ``(index, step)`` pairs; the indices are those in the document."""
    by_index = dict(steps)
    issues: list[ValidationIssue] = []
    windows: list[tuple[int, int, int]] = []
    for i, step in steps:
        at = f"{where}.steps[{i}]"
        given = [
            name
            for name, present in (
                ("level_frac", step.level_frac is not None),
                ("class_steps_down", step.class_steps_down is not None),
                ("off: true", step.off),
            )
            if present
        ]
        if not given:
            issues.append(
                ValidationIssue(
                    at, "says nothing to do; give level_frac, class_steps_down or off: true"
                )
            )
        elif len(given) > 1:
            issues.append(ValidationIssue(at, f"gives {_list(given)}; keep exactly one"))
        if step.level_frac == 0.0 and not step.off:
            issues.append(
                ValidationIssue(
                    f"{at}.level_frac",
                    "0 would switch the lamps off; write off: true instead so the switch-off "
                    "window is explicit",
                )
            )
        if step.class_steps_down is not None and not 1 <= step.class_steps_down <= _MAX_CLASS_STEPS:
            issues.append(
                ValidationIssue(
                    f"{at}.class_steps_down",
                    f"{step.class_steps_down} is not 1-{_MAX_CLASS_STEPS}; give how many classes "
                    "below each lamp's own class to dim to",
                )
            )
        start, end = _step_window(step)
        if start == end:
            issues.append(
                ValidationIssue(
                    f"{at}.to", f"{step.end} is the same as from; a step needs a window"
                )
            )
        elif start > end:
            issues.append(
                ValidationIssue(
                    at,
                    f"{step.start}-{step.end} runs backwards: times run from noon to noon, so "
                    f"{step.end} comes before {step.start}; swap them, or split the window at 12:00",
                )
            )
        else:
            windows.append((start, end, i))
    for a in range(len(windows)):
        for b in range(a + 1, len(windows)):
            (s1, e1, i), (s2, e2, j) = windows[a], windows[b]
            if s1 < e2 and s2 < e1:
                issues.append(
                    ValidationIssue(
                        f"{where}.steps[{j}]",
                        f"{by_index[j].start}-{by_index[j].end} overlaps steps[{i}] "
                        f"({by_index[i].start}-{by_index[i].end}); steps of one profile must "
                        "not overlap",
                    )
                )
    return issues


def _check_presence_and_adaptive(where: str, profile: Profile) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    presence = profile.presence
    if presence is not None:
        if profile.level_frac is not None:
            issues.append(
                ValidationIssue(
                    f"{where}.level_frac",
                    "with presence, lit hours outside steps run at presence.base_level_frac; "
                    "remove level_frac",
                )
            )
        if presence.boost_level_frac <= presence.base_level_frac:
            issues.append(
                ValidationIssue(
                    f"{where}.presence.boost_level_frac",
                    f"{_fmt(presence.boost_level_frac)} is not above base_level_frac "
                    f"{_fmt(presence.base_level_frac)}; the boost must be brighter than the base",
                )
            )
        nb = presence.neighbours
        if (nb.ahead is None or nb.behind is None) and nb.max_distance_m is None:
            issues.append(
                ValidationIssue(
                    f"{where}.presence.neighbours.max_distance_m",
                    "required when ahead or behind is null (any number of lamps), so a "
                    "detection raises only nearby lamps",
                )
            )
    adaptive = profile.adaptive
    if adaptive is not None:
        at = f"{where}.adaptive.thresholds"
        if not 1 <= len(adaptive.thresholds) <= _MAX_ADAPTIVE_STEPS:
            issues.append(
                ValidationIssue(
                    at,
                    f"has {len(adaptive.thresholds)} entries; give 1-{_MAX_ADAPTIVE_STEPS}, one "
                    "per class step",
                )
            )
        for k, step in enumerate(adaptive.thresholds):
            if step.up_above_per_h <= step.down_below_per_h:
                issues.append(
                    ValidationIssue(
                        f"{at}[{k}].up_above_per_h",
                        f"{step.up_above_per_h:g} is not above down_below_per_h "
                        f"{step.down_below_per_h:g}; a zone steps down below one volume and "
                        "back up only above a higher one (hysteresis)",
                    )
                )
            if k == 0:
                continue
            before = adaptive.thresholds[k - 1]
            for field in ("down_below_per_h", "up_above_per_h"):
                value, previous = getattr(step, field), getattr(before, field)
                if value >= previous:
                    issues.append(
                        ValidationIssue(
                            f"{at}[{k}].{field}",
                            f"{value:g} is not below thresholds[{k - 1}].{field} "
                            f"{previous:g}; each further class step needs a lower volume",
                        )
                    )
        for series in sorted({c.series for c in adaptive.min_class}):
            same = [c.value for c in adaptive.min_class if c.series == series]
            if len(same) > 1:
                issues.append(
                    ValidationIssue(
                        f"{where}.adaptive.min_class",
                        f"gives {_list(same)} for the {series} series; give at most one class "
                        "per series",
                    )
                )
    return issues


def _adaptive_bottom(profile: Profile, cls: LightingClass) -> LightingClass:
    """The lowest class adaptive lighting can take ``cls`` to (``cls`` itself without it)."""
    adaptive = profile.adaptive
    if adaptive is None or not adaptive.thresholds:
        return cls
    bound = next((c for c in adaptive.min_class if c.series == cls.series), None)
    return stepped_class(cls, len(adaptive.thresholds), bound)


def scheduled_level(step_or_profile: Step | Profile, cls: LightingClass) -> float:
    """Level a step (or a profile outside its steps) schedules for lamps of class ``cls``."""
    if isinstance(step_or_profile, Profile):
        presence = step_or_profile.presence
        if presence is not None:
            return presence.base_level_frac
        level = step_or_profile.level_frac
        return 1.0 if level is None else level
    if step_or_profile.off:
        return 0.0
    if step_or_profile.class_steps_down is not None:
        steps = max(step_or_profile.class_steps_down, 0)
        return light_ratio(cls, stepped_class(cls, steps))
    return step_or_profile.level_frac if step_or_profile.level_frac is not None else 0.0


def _check_floor_of(
    where: str,
    what: str,
    level_of: Callable[[LightingClass], float],
    profile: Profile,
    classes: Sequence[LightingClass],
    floors: Mapping[LightingClass, float],
    switch_off_hint: bool,
) -> list[ValidationIssue]:
    plain: list[str] = []
    stepped: list[str] = []
    for cls in classes:
        level = level_of(cls)
        bottom = _adaptive_bottom(profile, cls)
        factor = light_ratio(cls, bottom)
        floor = floors[cls]
        if level * factor >= floor - _FLOOR_TOLERANCE:
            continue
        if level < floor - _FLOOR_TOLERANCE:
            plain.append(f"{cls.value} ({_fmt(floor)})")
        else:
            stepped.append(
                f"{cls.value} ({_fmt(level)} × {_fmt(factor)} at {bottom.value} = "
                f"{_fmt(level * factor)} < {_fmt(floor)})"
            )
    if not plain and not stepped:
        return []
    remedies = ["raise the level"]
    if stepped:
        remedies.append("raise adaptive.min_class")
    remedies.append("list only the classes this policy is for in lighting_classes")
    if switch_off_hint:
        remedies.append("make the window an explicit switch-off with off: true")
    problems = []
    if plain:
        problems.append(f"is below the safety floor of {_list(plain)} while lit")
    if stepped:
        problems.append(
            f"stepped down by adaptive lighting falls below the safety floor of {_list(stepped)}"
        )
    text = f"{what} {', and '.join(problems)}; {', '.join(remedies[:-1])} or {remedies[-1]}"
    return [ValidationIssue(where, text)]


def _check_profile_floors(
    where: str,
    profile: Profile,
    classes: Sequence[LightingClass],
    floors: Mapping[LightingClass, float],
) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    base_where = (
        f"{where}.presence.base_level_frac"
        if profile.presence is not None
        else f"{where}.level_frac"
    )
    issues += _check_floor_of(
        base_where,
        _fmt(scheduled_level(profile, classes[0])),
        partial(scheduled_level, profile),
        profile,
        classes,
        floors,
        switch_off_hint=False,
    )
    for i, step in enumerate(profile.steps):
        if step.off or (step.level_frac is None) == (step.class_steps_down is None):
            continue  # off windows may go dark; malformed steps are reported elsewhere
        if step.level_frac is not None:
            if step.level_frac == 0.0:
                continue  # reported as "write off: true"
            at, what = f"{where}.steps[{i}].level_frac", _fmt(step.level_frac)
        elif step.class_steps_down is not None and 1 <= step.class_steps_down <= _MAX_CLASS_STEPS:
            n = step.class_steps_down
            at, what = f"{where}.steps[{i}].class_steps_down", f"{n} class step"
            what += f"{'s' if n > 1 else ''} down"
        else:
            continue
        issues += _check_floor_of(
            at, what, partial(scheduled_level, step), profile, classes, floors, switch_off_hint=True
        )
    return issues


def _check_calendar(
    rules: Mapping[int, CalendarRule], n_rules: int | None, profile_names: frozenset[str] | None
) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    if n_rules == 0:
        return [
            ValidationIssue("calendar", "is empty; add at least one rule, e.g. - profile: standard")
        ]
    for index, rule in sorted(rules.items()):
        where = f"calendar[{index}]"
        if profile_names is not None and rule.profile not in profile_names:
            defined = ", ".join(sorted(profile_names)) or "none"
            issues.append(
                ValidationIssue(
                    f"{where}.profile",
                    f"'{rule.profile}' is not a profile; defined profiles: {defined}",
                )
            )
        for r, date_range in enumerate(rule.date_ranges):
            at = f"{where}.date_ranges[{r}]"
            if len(date_range.start) != len(date_range.end):
                issues.append(ValidationIssue(at, "give both dates as YYYY-MM-DD or both as MM-DD"))
            elif len(date_range.start) == 10 and date_range.end < date_range.start:
                issues.append(
                    ValidationIssue(
                        f"{at}.to",
                        f"{date_range.end} is before from {date_range.start}; swap them (only "
                        "MM-DD ranges may wrap the new year)",
                    )
                )
        for r, nth in enumerate(rule.nth_weekday):
            at = f"{where}.nth_weekday[{r}]"
            if nth.n not in (1, 2, 3, 4, -1):
                issues.append(
                    ValidationIssue(f"{at}.n", f"{nth.n} is not 1, 2, 3, 4 or -1 (the last)")
                )
            if nth.month is not None and not 1 <= nth.month <= 12:
                issues.append(
                    ValidationIssue(f"{at}.month", f"{nth.month} is not a month; give 1-12")
                )
    if n_rules is None or len(rules) != n_rules:
        return issues  # coverage needs every rule
    defaults = [i for i, rule in rules.items() if rule.unconditional]
    if not defaults:
        issues.append(
            ValidationIssue(
                "calendar",
                "no rule matches every night, so some nights would have no profile; add a first "
                "rule with only profile: as the default",
            )
        )
    else:
        last_default = max(defaults)
        for index in range(last_default):
            issues.append(
                ValidationIssue(
                    f"calendar[{index}]",
                    f"never applies: calendar[{last_default}] matches every night and later "
                    "rules win; move the default rule to the top",
                )
            )
    return issues


def _semantic_issues(parts: _Parts) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    if parts.classes is not None:
        issues += _check_classes(parts.classes)
    floor_issues: list[ValidationIssue] = []
    if parts.floor_overrides is not None and parts.allow_below_hard_minimum is not None:
        floor_issues = _check_floor_overrides(parts.floor_overrides, parts.allow_below_hard_minimum)
        issues += floor_issues
    if parts.switching is not None:
        issues += _check_switching(parts.switching)
    if parts.profile_names is not None and not parts.profile_names:
        issues.append(
            ValidationIssue("profiles", "is empty; define at least one profile, e.g. standard: {}")
        )
    # Levels are only compared with floors that are themselves valid, or one bad floor would
    # be reported again at every step.
    floors_ok = parts.floors is not None and bool(parts.classes) and not floor_issues
    for name, profile in parts.profiles.items():
        where = f"profiles.{name}"
        issues += _check_steps(where, list(enumerate(profile.steps)))
        issues += _check_presence_and_adaptive(where, profile)
        if floors_ok and parts.classes and parts.floors is not None:
            issues += _check_profile_floors(where, profile, parts.classes, parts.floors)
    for name, loose in parts.loose_steps.items():
        issues += _check_steps(f"profiles.{name}", loose)
    issues += _check_calendar(parts.rules, parts.n_rules, parts.profile_names)
    if parts.fail_safe_level_frac is not None and floors_ok and parts.floors is not None:
        level = parts.fail_safe_level_frac
        below = [
            f"{c.value} ({_fmt(parts.floors[c])})"
            for c in parts.classes or ()
            if level < parts.floors[c] - _FLOOR_TOLERANCE
        ]
        if below:
            issues.append(
                ValidationIssue(
                    "fail_safe_level_frac",
                    f"{_fmt(level)} is below the safety floor of {_list(below)}; the level kept "
                    "when the central service is lost must respect every floor",
                )
            )
    return issues


def _parts_of_policy(policy: Policy) -> _Parts:
    return _Parts(
        classes=policy.lighting_classes,
        floors=floor_table(policy.floor_frac),
        floor_overrides=dict(policy.floor_frac),
        allow_below_hard_minimum=policy.allow_floor_below_hard_minimum,
        switching=policy.switching,
        profiles=dict(policy.profiles),
        profile_names=frozenset(policy.profiles),
        rules=dict(enumerate(policy.calendar)),
        n_rules=len(policy.calendar),
        fail_safe_level_frac=policy.fail_safe_level_frac,
        loose_steps={},
    )


_T = TypeVar("_T")


def _try(adapter: TypeAdapter[_T], raw: object) -> _T | None:
    try:
        return adapter.validate_python(raw)
    except ValidationError:
        return None


def _try_model(model: type[BaseModel], raw: object) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


_CLASSES = TypeAdapter(tuple[ClassName, ...])
_FLOORS = TypeAdapter(dict[ClassName, float])
_BOOL = TypeAdapter(bool)
_LEVEL = TypeAdapter(LevelFrac)


def _parts_of_document(doc: Mapping[str, Any]) -> _Parts:
    """Best-effort parts of a document that failed the schema: whatever parses on its own."""
    raw_classes = doc.get("lighting_classes", tuple(LightingClass))
    classes = _try(_CLASSES, [raw_classes] if isinstance(raw_classes, str) else raw_classes)
    overrides = _try(_FLOORS, doc.get("floor_frac", {}))
    allow = _try(_BOOL, doc.get("allow_floor_below_hard_minimum", False))
    floors = floor_table(overrides) if overrides is not None else None
    raw_profiles = doc.get("profiles")
    profiles: dict[str, Profile] = {}
    loose_steps: dict[str, list[tuple[int, Step]]] = {}
    names: frozenset[str] | None = None
    if isinstance(raw_profiles, Mapping):
        names = frozenset(str(k) for k in raw_profiles)
        for key, raw in raw_profiles.items():
            parsed = _try_model(Profile, raw)
            if parsed is not None:
                profiles[str(key)] = parsed
            elif isinstance(raw, Mapping) and isinstance(raw.get("steps"), list):
                steps = [(i, _try_model(Step, r)) for i, r in enumerate(raw["steps"])]
                loose_steps[str(key)] = [(i, st) for i, st in steps if st is not None]
    raw_rules = doc.get("calendar")
    rules: dict[int, CalendarRule] = {}
    n_rules: int | None = None
    if isinstance(raw_rules, list):
        n_rules = len(raw_rules)
        for index, raw in enumerate(raw_rules):
            parsed = _try_model(CalendarRule, raw)
            if parsed is not None:
                rules[index] = parsed
    return _Parts(
        classes=classes,
        floors=floors,
        floor_overrides=overrides,
        allow_below_hard_minimum=allow,
        switching=_try_model(Switching, doc.get("switching", {})),
        profiles=profiles,
        profile_names=names,
        rules=rules,
        n_rules=n_rules,
        fail_safe_level_frac=_try(_LEVEL, doc.get("fail_safe_level_frac", 1.0)),
        loose_steps=loose_steps,
    )


# --- public -------------------------------------------------------------------------------------


def policy_issues(policy: Policy) -> list[ValidationIssue]:
    """Every problem of meaning in a policy that passed the schema (empty if it is valid)."""
    return _semantic_issues(_parts_of_policy(policy))


def check_policy(policy: Policy) -> None:
    """Raise :class:`PolicyError` if ``policy`` breaks any rule of meaning (see module doc)."""
    issues = policy_issues(policy)
    if issues:
        raise PolicyError(issues)


def _read(doc: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(doc, Path):
        try:
            text = doc.read_text(encoding="utf-8")
        except OSError as err:
            raise PolicyError(
                [ValidationIssue(str(doc), f"cannot read the file: {err.strerror or err}")]
            ) from err
        doc = text
    if isinstance(doc, str):
        try:
            parsed = load_policy_text(doc)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problem = getattr(err, "problem", None) or str(err)
            place = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise PolicyError(
                [ValidationIssue("document", f"is not valid YAML or JSON: {problem}{place}")]
            ) from err
        doc = parsed
    if not isinstance(doc, Mapping):
        raise PolicyError(
            [
                ValidationIssue(
                    "document",
                    f"expected a mapping of fields (schema_version, name, ...), got {_kind(doc)}",
                )
            ]
        )
    return doc


def validate_policy(doc: Mapping[str, Any] | str | Path) -> Policy:
    """Read and validate a policy: a parsed mapping, YAML/JSON text, or a file path.

    Raises :class:`PolicyError` listing every problem found, each with its location.
    """
    mapping = _read(doc)
    try:
        policy = Policy.model_validate(mapping)
    except ValidationError as err:
        issues = _schema_issues(err) + _semantic_issues(_parts_of_document(mapping))
        raise PolicyError(issues) from None
    check_policy(policy)
    return policy


def check_update(previous: Policy, new: Policy) -> None:
    """Raise :class:`PolicyError` unless ``new`` may replace ``previous`` (same name, newer version)."""
    issues: list[ValidationIssue] = []
    if new.name != previous.name:
        issues.append(
            ValidationIssue(
                "name",
                f"'{new.name}' does not match '{previous.name}'; a new version keeps the name "
                "(save a different name as a new policy)",
            )
        )
    if new.version <= previous.version:
        issues.append(
            ValidationIssue(
                "version",
                f"{new.version} does not increase on version {previous.version}; give "
                f"{previous.version + 1} or more",
            )
        )
    if issues:
        raise PolicyError(issues)


def max_class_steps(profile: Profile, cls: LightingClass) -> int:
    """Adaptive class steps a lamp of class ``cls`` can take under ``profile``."""
    adaptive = profile.adaptive
    if adaptive is None:
        return 0
    bound = next((c for c in adaptive.min_class if c.series == cls.series), None)
    return min(len(adaptive.thresholds), max_steps_down(cls, bound))

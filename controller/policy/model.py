"""Policy documents: declarative, versioned dimming policies (YAML or JSON), schema version 1.

These models check each field on its own (types, ranges, clock-time and date syntax) with
messages that say what to write instead. Everything that needs two fields or the whole
document (overlapping steps, calendar references, safety floors) is checked by
:func:`controller.policy.validate.validate_policy`, which is the way to read a document: it
reports every problem at once, each with its location. ``docs/policies.md`` describes every
field, its unit and its default.

Models are frozen and reject unknown fields, so a typo is an error, not a silently ignored
setting. Field names carry their units (``hold_s``, ``level_frac``, ``max_distance_m``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from domain.records import LightingClass

SCHEMA_VERSION = 1

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {
    **{w: w for w in WEEKDAYS},
    **{
        full: full[:3]
        for full in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    },
}
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
_MONTH_DAY_RE = re.compile(r"^(?:--)?(\d{2})-(\d{2})$")

#: Largest switching offset, minutes: the astronomical clock accepts +-6 h.
MAX_OFFSET_MIN = 360.0


def format_number(value: float) -> str:
    """A number as people write it: ``1.4``, ``1.0``, ``0.667``, ``1320``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.6g}"
    if "e" in text:
        return repr(value)
    return text if "." in text else f"{text}.0"


# --- field types with friendly messages ---------------------------------------------------------


def _level(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a level; levels are fractions of full output")
    if value > 1.0:
        raise ValueError(
            f"{format_number(value)} is above 1.0; levels are fractions of full output"
        )
    if value < 0.0:
        raise ValueError(
            f"{format_number(value)} is below 0.0; levels are fractions of full output"
        )
    return value


def _duration_s(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a duration; give seconds as a finite number")
    if value < 0.0:
        raise ValueError(f"{value:g} is negative; give a duration in seconds, 0 or more")
    return value


def _per_h(value: float) -> float:
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{value:g} is not a volume; give vehicles or people per hour, 0 or more")
    return value


def _positive(unit: str) -> Any:
    def check(value: float) -> float:
        if not math.isfinite(value) or value <= 0.0:
            raise ValueError(f"{value:g} must be above 0 ({unit})")
        return value

    return check


def _factor(value: float) -> float:
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{value:g} is not a factor in (0, 1]; e.g. 0.8 for 80 %")
    return value


def _count(value: int) -> int:
    if value < 0:
        raise ValueError(f"{value} is negative; give a number of lamps, 0 or more")
    return value


def _offset_min(value: float) -> float:
    if not math.isfinite(value) or abs(value) > MAX_OFFSET_MIN:
        raise ValueError(
            f"{value:g} minutes is outside -360..360; offsets are minutes "
            "(positive = later), at most 6 hours"
        )
    return value


def _clock(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        hint = ""
        if 0 <= value < 24 * 60:
            written = f"{value // 60:02d}:{value % 60:02d}"
            hint = (
                f"; if you wrote {written} unquoted, a YAML 1.1 reader took it as a base-60 "
                f'number: quote it ("{written}") or read the file with load_policy_text'
            )
        raise ValueError(f"{value} is not a clock time; write local time as HH:MM{hint}")
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a clock time; write local time as HH:MM, e.g. 22:30")
    match = _CLOCK_RE.match(value.strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(
            f"'{value}' is not a clock time; write local time as HH:MM from 00:00 to 23:59"
        )
    return f"{int(match[1]):02d}:{match[2]}"


def _day(value: object) -> str:
    """A calendar date ``YYYY-MM-DD`` or a yearly date ``MM-DD`` (TALQ's ``--MM-DD`` too)."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"'{value}' has a time of day; give a date as YYYY-MM-DD or MM-DD")
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD, or MM-DD for every year")
    text = value.strip()
    match = _MONTH_DAY_RE.match(text)
    try:
        if match is not None:
            # 2000 is a leap year, so 02-29 is a valid yearly date (it matches leap years only).
            dt.date(2000, int(match[1]), int(match[2]))
            return f"{match[1]}-{match[2]}"
        if len(text) == 10:
            return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"'{value}' is not a day of the calendar") from None
    raise ValueError(f"'{value}' is not a date; write YYYY-MM-DD, or MM-DD for every year")


def _weekday(value: object) -> str:
    key = value.strip().lower() if isinstance(value, str) else None
    if key is None or key not in _WEEKDAY_NAMES:
        raise ValueError(f"{value!r} is not a weekday; use mon, tue, wed, thu, fri, sat or sun")
    return _WEEKDAY_NAMES[key]


def _lighting_class(value: object) -> LightingClass:
    if isinstance(value, LightingClass):
        return value
    text = value.strip().upper() if isinstance(value, str) else ""
    try:
        return LightingClass(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an EN 13201 lighting class; use M1-M6, C0-C5 or P1-P6"
        ) from None


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str | dict | LightingClass) else value


LevelFrac = Annotated[float, AfterValidator(_level)]
DurationS = Annotated[float, AfterValidator(_duration_s)]
PerHour = Annotated[float, AfterValidator(_per_h)]
LampCount = Annotated[int, AfterValidator(_count)]
OffsetMin = Annotated[float, AfterValidator(_offset_min)]
#: Local wall-clock time, normalised to ``HH:MM``.
ClockTime = Annotated[str, BeforeValidator(_clock)]
#: ``YYYY-MM-DD`` (one date) or ``MM-DD`` (that day every year).
DaySpec = Annotated[str, BeforeValidator(_day)]
Weekday = Annotated[str, BeforeValidator(_weekday)]
ClassName = Annotated[LightingClass, BeforeValidator(_lighting_class)]


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- switching ----------------------------------------------------------------------------------

SwitchEvent = Literal["sunset", "sunrise", "civil_dusk", "civil_dawn", "lux", "clock"]
ON_EVENTS: tuple[str, ...] = ("sunset", "civil_dusk", "lux", "clock")
OFF_EVENTS: tuple[str, ...] = ("sunrise", "civil_dawn", "lux", "clock")


class SwitchPoint(_Document):
    """When the lamps switch on (evening) or off (morning).

    ``sunset``/``sunrise``: sun's upper limb on the horizon (zenith 90.833 deg);
    ``civil_dusk``/``civil_dawn``: sun 6 deg below (zenith 96 deg); ``lux``: the policy's
    ``lux_on``/``lux_off`` threshold, mapped to a solar elevation; ``clock``: local time ``at``.
    ``offset_min`` moves the event, positive = later.
    """

    event: SwitchEvent
    offset_min: OffsetMin = 0.0
    at: ClockTime | None = None


class Switching(_Document):
    on: SwitchPoint = SwitchPoint(event="sunset")
    off: SwitchPoint = SwitchPoint(event="sunrise")
    #: Photocell-like thresholds (lx, horizontal, clear sky) for ``event: lux``.
    lux_on: float = 35.0
    lux_off: float = 18.0


# --- profiles -----------------------------------------------------------------------------------


class Step(_Document):
    """One time window of a profile, local wall-clock times in night order (noon to noon).

    Exactly one of: ``level_frac`` (dim to this level), ``class_steps_down`` (dim to the level
    of the class that many steps below each lamp's own), ``off: true`` (switch off).
    """

    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")
    level_frac: LevelFrac | None = None
    class_steps_down: int | None = None
    off: bool = False


class Neighbours(_Document):
    """Which neighbours a detection raises together with the detecting lamp.

    The nearest ``ahead`` lamps ahead and ``behind`` behind along the street, each within
    ``max_distance_m`` when given; ``ahead``/``behind`` null = any number within the distance.
    """

    ahead: LampCount | None = 2
    behind: LampCount | None = 2
    max_distance_m: Annotated[float, AfterValidator(_positive("metres"))] | None = None


class Presence(_Document):
    """Light on demand: lamps idle at ``base_level_frac`` and boost on detection."""

    base_level_frac: LevelFrac
    boost_level_frac: LevelFrac = 1.0
    hold_s: DurationS = 60.0
    fade_up_s: DurationS = 1.0
    fade_down_s: DurationS = 30.0
    neighbours: Neighbours = Neighbours()
    #: Detections implying faster travel between neighbouring sensors are false; null = off.
    max_speed_mps: Annotated[float, AfterValidator(_positive("metres per second"))] | None = 20.0


class AdaptiveThreshold(_Document):
    """One class step: taken when volume falls below ``down_below_per_h``, left above ``up_above_per_h``."""

    down_below_per_h: PerHour
    up_above_per_h: PerHour


class Adaptive(_Document):
    """Adaptive lighting (CEN/TR 13201-1): step the class down when measured demand falls."""

    measure: Literal["traffic", "footfall"]
    #: One entry per class step, in order (deepest step last); emptiness is checked by validation.
    thresholds: tuple[AdaptiveThreshold, ...]
    #: Lowest class per series that steps may reach (default: the series' lowest).
    min_class: Annotated[tuple[ClassName, ...], BeforeValidator(_as_list)] = ()
    #: How lamps are grouped into zones when the caller gives no zone ids.
    zone_by: Literal["street", "group"] = "street"


class Profile(_Document):
    """What the lamps do on one kind of night."""

    #: Level from switch-on to switch-off outside steps: 1.0 when not given; with presence it
    #: is presence.base_level_frac and must not be given.
    level_frac: LevelFrac | None = None
    steps: tuple[Step, ...] = ()
    presence: Presence | None = None
    adaptive: Adaptive | None = None


# --- calendar -----------------------------------------------------------------------------------


class DateRange(_Document):
    """Inclusive range of dates: both ``YYYY-MM-DD``, or both ``MM-DD`` (may wrap the new year)."""

    start: DaySpec = Field(alias="from")
    end: DaySpec = Field(alias="to")


class NthWeekday(_Document):
    """The ``n``-th (1-4) or last (-1) ``weekday`` of the month (of ``month`` only, if given)."""

    n: int
    weekday: Weekday
    month: int | None = None


class CalendarRule(_Document):
    """Selects ``profile`` for the nights it matches; later rules win (TALQ rule order).

    A rule matches a night (by the date the night starts) when every condition it gives
    matches; within one condition any entry may match. A rule without conditions matches
    every night.
    """

    profile: str
    dates: tuple[DaySpec, ...] = ()
    date_ranges: tuple[DateRange, ...] = ()
    weekdays: tuple[Weekday, ...] = ()
    nth_weekday: Annotated[tuple[NthWeekday, ...], BeforeValidator(_as_list)] = ()
    note: str = ""

    @property
    def unconditional(self) -> bool:
        return not (self.dates or self.date_ranges or self.weekdays or self.nth_weekday)


# --- constant light output ----------------------------------------------------------------------


class Clo(_Document):
    """Constant light output: drive = min(1, maintenance_factor / LLMF(hours)), LLMF linear."""

    maintenance_factor: Annotated[float, AfterValidator(_factor)] = 0.8
    llmf_at_rated_life: Annotated[float, AfterValidator(_factor)] = 0.8
    rated_life_h: Annotated[float, AfterValidator(_positive("hours"))] = 100_000.0


# --- the document -------------------------------------------------------------------------------


class Policy(_Document):
    """A whole policy document (schema version 1)."""

    schema_version: Literal[1]
    name: str = Field(min_length=1)
    version: int = Field(ge=1)
    description: str = ""
    #: Classes of the lamps this policy may be activated on (default: all).
    lighting_classes: Annotated[tuple[ClassName, ...], BeforeValidator(_as_list)] = tuple(
        LightingClass
    )
    switching: Switching = Switching()
    calendar: tuple[CalendarRule, ...]
    profiles: dict[str, Profile]
    #: Per-class safety floor overrides (level fractions); unlisted classes keep the defaults.
    floor_frac: dict[ClassName, float] = Field(default_factory=dict)
    allow_floor_below_hard_minimum: bool = False
    #: Level the edge keeps when it loses the central service (1.0 = fail bright).
    fail_safe_level_frac: LevelFrac = 1.0
    clo: Clo | None = None

    def to_document(self) -> dict[str, Any]:
        """The policy as a plain JSON-compatible document (``from``/``to`` keys, no defaults lost)."""
        return self.model_dump(mode="json", by_alias=True)


def known_field_names() -> frozenset[str]:
    """Every key a policy document may use, for "did you mean" hints."""
    names: set[str] = set()
    for model in (
        SwitchPoint,
        Switching,
        Step,
        Neighbours,
        Presence,
        AdaptiveThreshold,
        Adaptive,
        Profile,
        DateRange,
        NthWeekday,
        CalendarRule,
        Clo,
        Policy,
    ):
        for field_name, info in model.model_fields.items():
            names.add(info.alias or field_name)
    return frozenset(names)

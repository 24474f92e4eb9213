"""EN 13201 lighting-class tables: requirements, adaptive class steps and safety floors.

Theory of operation
-------------------
EN 13201-2:2015 sets one headline requirement per class: the average road luminance for the
M series (cd/m2) and the average illuminance for the C and P series (lx). The light a lamp
gives scales with its level, so the level at which a lamp designed for class ``A`` meets the
lower class ``B`` of the same series is the ratio ``requirement(B) / requirement(A)``: a P4
street (5 lx) meets P5 (3 lx) at 0.6 and P6 (2 lx) at 0.4. That ratio is ``light_ratio``; an
adaptive step of ``k`` classes below normal multiplies the scheduled level by it
(``class_factor``). Series are never mixed: there is no P7, and the comparable classes across
series (M3 ~ C3 ~ P1, BS 5489-1) are for design, not for steps.

The *safety floor* of a class is the lowest level at which its lamps still meet the lowest class
they may ever be stepped to, which by default is the lowest class of the series (M6, C5, P6):
``floor(A) = requirement(lowest) / requirement(A)``. So a P4 lamp may go down to 0.4 and a P6
lamp, already at the bottom of its series, may not be dimmed at all (floor 1.0). A policy may
raise any floor, or lower it (for a road whose design is known to over-light), but never below
:data:`HARD_MIN_FLOOR_FRAC` unless it says so explicitly; a lit lamp always keeps a floor > 0.

The P series also sets a minimum illuminance (3 / 2 / 1.5 / 1 / 0.6 / 0.4 lx); it is one fifth
of the average in every class, so its ratios are the same and one table serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from domain.records import LightingClass

#: Classes of each series, brightest first.
SERIES: Final[Mapping[str, tuple[LightingClass, ...]]] = MappingProxyType(
    {series: tuple(c for c in LightingClass if c.series == series) for series in ("M", "C", "P")}
)

#: EN 13201-2:2015 headline requirement of each class; unit per series in :data:`REQUIREMENT_UNIT`.
REQUIREMENT: Final[Mapping[LightingClass, float]] = MappingProxyType(
    {
        LightingClass.M1: 2.0,
        LightingClass.M2: 1.5,
        LightingClass.M3: 1.0,
        LightingClass.M4: 0.75,
        LightingClass.M5: 0.5,
        LightingClass.M6: 0.3,
        LightingClass.C0: 50.0,
        LightingClass.C1: 30.0,
        LightingClass.C2: 20.0,
        LightingClass.C3: 15.0,
        LightingClass.C4: 10.0,
        LightingClass.C5: 7.5,
        LightingClass.P1: 15.0,
        LightingClass.P2: 10.0,
        LightingClass.P3: 7.5,
        LightingClass.P4: 5.0,
        LightingClass.P5: 3.0,
        LightingClass.P6: 2.0,
    }
)

REQUIREMENT_UNIT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "M": "cd/m2 average road luminance",
        "C": "lx average illuminance",
        "P": "lx average illuminance",
    }
)

#: No floor may go below this unless a policy sets ``allow_floor_below_hard_minimum``.
HARD_MIN_FLOOR_FRAC: Final[float] = 0.1


def series_of(lighting_class: LightingClass) -> tuple[LightingClass, ...]:
    """The classes of ``lighting_class``'s series, brightest first."""
    return SERIES[lighting_class.series]


def lowest_in_series(lighting_class: LightingClass) -> LightingClass:
    return series_of(lighting_class)[-1]


def light_ratio(normal: LightingClass, adaptive: LightingClass) -> float:
    """Level at which a lamp designed for ``normal`` meets ``adaptive`` (same series)."""
    if normal.series != adaptive.series:
        raise ValueError(
            f"cannot step from {normal} to {adaptive}: adaptive steps stay within one series"
        )
    return REQUIREMENT[adaptive] / REQUIREMENT[normal]


def max_steps_down(lighting_class: LightingClass, min_class: LightingClass | None = None) -> int:
    """How many classes ``lighting_class`` may step down, bounded by its series and ``min_class``.

    ``min_class`` is the lowest class allowed for this series (None: the series' lowest); a
    ``min_class`` brighter than ``lighting_class`` allows no step at all.
    """
    classes = series_of(lighting_class)
    here = classes.index(lighting_class)
    bottom = len(classes) - 1
    if min_class is not None:
        if min_class.series != lighting_class.series:
            raise ValueError(f"min_class {min_class} is not of the {lighting_class.series} series")
        bottom = classes.index(min_class)
    return max(0, bottom - here)


def stepped_class(
    lighting_class: LightingClass, steps: int, min_class: LightingClass | None = None
) -> LightingClass:
    """The class ``steps`` below ``lighting_class``, stopping at the bound of :func:`max_steps_down`."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0 (steps down), got {steps}")
    classes = series_of(lighting_class)
    taken = min(steps, max_steps_down(lighting_class, min_class))
    return classes[classes.index(lighting_class) + taken]


def class_factor_row(
    lighting_class: LightingClass, n_steps: int, min_class: LightingClass | None = None
) -> tuple[float, ...]:
    """Light ratios at 0..``n_steps`` steps below normal; flat once the bound is reached.

    Flat rather than shorter so every profile of a program shares one column count and the
    kernel needs no per-class bound: asking for more steps than a class has changes nothing.
    """
    return tuple(
        light_ratio(lighting_class, stepped_class(lighting_class, k, min_class))
        for k in range(n_steps + 1)
    )


#: Default safety floor per class: the level that still meets the lowest class of its series.
DEFAULT_FLOOR_FRAC: Final[Mapping[LightingClass, float]] = MappingProxyType(
    {c: max(HARD_MIN_FLOOR_FRAC, light_ratio(c, lowest_in_series(c))) for c in LightingClass}
)


def floor_table(
    overrides: Mapping[LightingClass, float] | None = None,
) -> dict[LightingClass, float]:
    """Every class's floor: the defaults with ``overrides`` applied (checked by validation)."""
    table = dict(DEFAULT_FLOOR_FRAC)
    table.update(overrides or {})
    return table

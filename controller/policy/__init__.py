"""Dimming policies: declarative, versioned documents, their validation and their compilation.

A policy document (YAML or JSON, ``docs/policies.md``) says when lamps switch on and off, which
profile each night follows (calendar rules, later rules win), the dimming steps and switch-off
windows of each profile in local clock time, presence light on demand and adaptive class steps,
the safety floors and the fail-safe level. :func:`validate_policy` reads one and reports every
problem with its location; :func:`compile_night` turns a valid policy into the
:class:`controller.dimming.program.NightProgram` of one night, the only thing the level kernels
read. Overrides (:class:`OverrideTable`) and constant light output (:mod:`.clo`) live here too.
"""

from controller.policy.calendar import lux_to_zenith_deg, select_rule
from controller.policy.classes import (
    DEFAULT_FLOOR_FRAC,
    HARD_MIN_FLOOR_FRAC,
    REQUIREMENT,
    class_factor_row,
    floor_table,
    light_ratio,
)
from controller.policy.clo import ceiling_frac, clo_drive_frac, llmf
from controller.policy.compile import (
    INSTANT_FRAC_PER_S,
    CompiledNight,
    NeighbourGraphLike,
    ZoneThresholds,
    compile_night,
    compile_night_full,
    switch_times_ns,
)
from controller.policy.model import Policy, Profile
from controller.policy.overrides import Override, OverrideTable
from controller.policy.validate import (
    check_policy,
    check_update,
    load_policy_text,
    policy_issues,
    validate_policy,
)

__all__ = [
    "DEFAULT_FLOOR_FRAC",
    "HARD_MIN_FLOOR_FRAC",
    "INSTANT_FRAC_PER_S",
    "REQUIREMENT",
    "CompiledNight",
    "NeighbourGraphLike",
    "Override",
    "OverrideTable",
    "Policy",
    "Profile",
    "ZoneThresholds",
    "ceiling_frac",
    "check_policy",
    "check_update",
    "class_factor_row",
    "clo_drive_frac",
    "compile_night",
    "compile_night_full",
    "floor_table",
    "light_ratio",
    "llmf",
    "load_policy_text",
    "lux_to_zenith_deg",
    "policy_issues",
    "select_rule",
    "switch_times_ns",
    "validate_policy",
]

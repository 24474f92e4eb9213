"""The compiled form of a policy for one night: the only input format the level kernels take.

A *profile* is one combination of policy rules and lighting class; every lamp follows exactly
one profile. Per-profile time series are sampled on the program's step grid (1 s for simulation
and for live control), so the kernels never evaluate calendars, clocks or time zones: that work
is done once, in :mod:`controller.policy`, when the program is compiled.

Rules the arrays obey (checked on construction):

* every level is a fraction of full light output in [0, 1];
* ``program_frac == 0`` means *switched off by the policy* (daylight or an explicit part-night
  window); anywhere else the lamp is lit and ``floor_frac`` is the safety floor, which is > 0;
* ``class_factor[:, 0] == 1``: zero adaptive steps is the normal class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _frac(name: str, values: npt.NDArray[np.float32]) -> None:
    if values.size and (
        not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0
    ):
        raise ValueError(f"{name} must hold fractions of full output in [0, 1]")


@dataclass(frozen=True, eq=False)
class NightProgram:
    """Everything the level kernels need to drive ``n_lamps`` lamps through ``n_steps`` steps.

    Per profile ``p`` (``P`` profiles) and step ``t`` (``T`` steps of ``step_s`` seconds from
    ``start_ns``, UTC epoch nanoseconds):

    ``program_frac[p, t]``  scheduled level before presence and adaptive steps (0 = off by policy)
    ``floor_frac[p, t]``    safety floor (EN 13201 class minimum expressed as a level fraction)
    ``boost_frac[p]``       presence boost target (0 disables light on demand)
    ``hold_s[p]``           how long a detection holds the boost
    ``fade_up_frac_per_s[p]`` / ``fade_down_frac_per_s[p]``  maximum rate of change
    ``class_factor[p, k]``  light ratio at ``k`` adaptive class steps below the normal class

    Per lamp ``i``: ``lamp_profile[i]``, ``lamp_zone[i]`` (row of the adaptive-steps array, or
    -1 for no adaptive control), ``ceiling_frac[i]`` (constant-light-output drive limit, <= 1).

    ``neighbour_indptr``/``neighbour_indices`` (CSR): the lamps raised together with lamp ``i``
    when it detects presence, the lamp itself excluded; already filtered by each profile's
    ahead/behind counts or distance.
    """

    start_ns: int
    step_s: float
    program_frac: F32
    floor_frac: F32
    boost_frac: F32
    hold_s: F32
    fade_up_frac_per_s: F32
    fade_down_frac_per_s: F32
    class_factor: F32
    lamp_profile: I32
    lamp_zone: I32
    ceiling_frac: F32
    neighbour_indptr: I64
    neighbour_indices: I32
    profile_names: tuple[str, ...] = ()
    zone_names: tuple[str, ...] = ()
    fail_safe_frac: float = 1.0
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p_count, t_count = self.program_frac.shape if self.program_frac.ndim == 2 else (-1, -1)
        _check(
            p_count > 0 and t_count > 0,
            "program_frac must be a non-empty 2-D array [profile, step]",
        )
        _check(self.step_s > 0, f"step_s must be > 0, got {self.step_s}")
        for name in (
            "program_frac",
            "floor_frac",
            "boost_frac",
            "hold_s",
            "fade_up_frac_per_s",
            "fade_down_frac_per_s",
            "class_factor",
            "ceiling_frac",
        ):
            _check(getattr(self, name).dtype == np.float32, f"{name} must be float32")
        _check(
            self.floor_frac.shape == (p_count, t_count),
            f"floor_frac has shape {self.floor_frac.shape}, expected {(p_count, t_count)}",
        )
        for name in ("boost_frac", "hold_s", "fade_up_frac_per_s", "fade_down_frac_per_s"):
            _check(
                getattr(self, name).shape == (p_count,),
                f"{name} must have one value per profile ({p_count})",
            )
        _check(
            self.class_factor.ndim == 2
            and self.class_factor.shape[0] == p_count
            and self.class_factor.shape[1] >= 1,
            "class_factor must be [profile, adaptive step] with at least one column",
        )
        for name in ("program_frac", "floor_frac", "boost_frac", "class_factor", "ceiling_frac"):
            _frac(name, getattr(self, name))
        _check(
            bool(np.all(self.class_factor[:, 0] == 1.0)),
            "class_factor[:, 0] must be 1 (the normal class)",
        )
        _check(bool(np.all(self.hold_s >= 0)), "hold_s must be >= 0")
        _check(
            bool(np.all(self.fade_up_frac_per_s > 0))
            and bool(np.all(self.fade_down_frac_per_s > 0)),
            "fade rates must be > 0 (use a large rate for an instant change)",
        )
        lit = self.program_frac > 0
        _check(
            bool(np.all(self.floor_frac[lit] > 0)),
            "floor_frac must be > 0 wherever the program has the lamp lit",
        )
        n = len(self.lamp_profile)
        _check(
            self.lamp_profile.dtype == np.int32 and self.lamp_zone.dtype == np.int32,
            "lamp_profile and lamp_zone must be int32",
        )
        _check(
            len(self.lamp_zone) == n and len(self.ceiling_frac) == n,
            "lamp_profile, lamp_zone and ceiling_frac must have one value per lamp",
        )
        if n:
            _check(
                int(self.lamp_profile.min()) >= 0 and int(self.lamp_profile.max()) < p_count,
                f"lamp_profile values must index the {p_count} profiles",
            )
            _check(
                int(self.lamp_zone.min()) >= -1, "lamp_zone must be >= -1 (-1 = no adaptive zone)"
            )
            _check(bool(np.all(self.ceiling_frac > 0)), "ceiling_frac must be > 0")
        _check(
            self.neighbour_indptr.dtype == np.int64 and self.neighbour_indices.dtype == np.int32,
            "neighbour_indptr must be int64 and neighbour_indices int32",
        )
        _check(
            len(self.neighbour_indptr) == n + 1
            and int(self.neighbour_indptr[0]) == 0
            and int(self.neighbour_indptr[-1]) == len(self.neighbour_indices)
            and bool(np.all(np.diff(self.neighbour_indptr) >= 0)),
            "neighbour_indptr must be a CSR pointer array of length n_lamps + 1",
        )
        if len(self.neighbour_indices):
            _check(
                int(self.neighbour_indices.min()) >= 0 and int(self.neighbour_indices.max()) < n,
                "neighbour_indices must index lamps",
            )
        _check(0.0 < self.fail_safe_frac <= 1.0, "fail_safe_frac must be in (0, 1]")

    @property
    def n_profiles(self) -> int:
        return int(self.program_frac.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.program_frac.shape[1])

    @property
    def n_lamps(self) -> int:
        return len(self.lamp_profile)

    @property
    def n_adaptive_steps(self) -> int:
        """Largest number of class steps below normal that ``class_factor`` covers."""
        return int(self.class_factor.shape[1] - 1)

    def step_of(self, time_ns: int) -> int:
        """Index of the step containing ``time_ns`` (may be outside ``[0, n_steps)``)."""
        return int((time_ns - self.start_ns) // round(self.step_s * 1e9))

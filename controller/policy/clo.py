"""Constant light output (CLO): drive a new lamp below full so it gives its design light for life.

Theory of operation
-------------------
A lighting design meets its class with the *maintained* output, the lamp's output at the end
of its life times the maintenance factor ``MF_design``. A new LED gives more than that, so
without CLO a road is over-lit by up to ``1 / MF_design`` when new (~20 %, DOMAIN.md: MF 0.71
at L80 versus 0.89 with CLO at L100). CLO drives the lamp at

    drive(h) = min(1, MF_design / LLMF(h))

where ``LLMF(h)`` is the lamp lumen maintenance factor after ``h`` operating hours. Here LLMF
is linear, the usual datasheet reading between two points: 1.0 when new and
``llmf_at_rated_life`` (L80 -> 0.8, L90 -> 0.9) at ``rated_life_h``, extended past rated life
on the same line. With the defaults (MF 0.8, L80 at 100,000 h) a new lamp is driven at 0.8 and
reaches full drive at rated life. Drive never falls as a lamp ages, which the tests check.

The result is each lamp's ``ceiling_frac``: the level kernels never drive it above that.
Unknown operating hours (NaN) give 1.0: without its age, a lamp is not dimmed below design.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from controller.policy.model import Clo

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def _check(maintenance_factor: float, rated_life_h: float, llmf_at_rated_life: float) -> None:
    if not 0.0 < maintenance_factor <= 1.0:
        raise ValueError(f"maintenance_factor must be within (0, 1], got {maintenance_factor}")
    if not 0.0 < llmf_at_rated_life <= 1.0:
        raise ValueError(f"llmf_at_rated_life must be within (0, 1], got {llmf_at_rated_life}")
    if not (np.isfinite(rated_life_h) and rated_life_h > 0.0):
        raise ValueError(f"rated_life_h must be a number of hours above 0, got {rated_life_h}")


def _hours(operating_hours: npt.ArrayLike) -> F64:
    hours = np.asarray(operating_hours, dtype=np.float64)
    if np.any(hours[~np.isnan(hours)] < 0.0) or np.any(np.isinf(hours)):
        raise ValueError("operating_hours must be finite hours >= 0 (NaN = unknown)")
    return hours


def llmf(operating_hours: npt.ArrayLike, *, rated_life_h: float, llmf_at_rated_life: float) -> F64:
    """Lamp lumen maintenance factor after ``operating_hours``: linear from 1.0 at 0 h.

    Reaches ``llmf_at_rated_life`` at ``rated_life_h`` and continues on the same line (never
    below 0). NaN hours give NaN.
    """
    _check(1.0, rated_life_h, llmf_at_rated_life)
    hours = _hours(operating_hours)
    out: F64 = np.maximum(0.0, 1.0 - (1.0 - llmf_at_rated_life) * hours / rated_life_h)
    return out


def clo_drive_frac(
    operating_hours: npt.ArrayLike,
    *,
    maintenance_factor: float,
    rated_life_h: float,
    llmf_at_rated_life: float,
) -> F32:
    """CLO drive ``min(1, MF / LLMF(h))`` per lamp, float32 in (0, 1]; NaN hours give 1.0."""
    _check(maintenance_factor, rated_life_h, llmf_at_rated_life)
    factor = llmf(operating_hours, rated_life_h=rated_life_h, llmf_at_rated_life=llmf_at_rated_life)
    known = ~np.isnan(factor)
    # Where LLMF has fallen to MF or below, the lamp needs full drive; no division there.
    needs_less = known & (factor > maintenance_factor)
    drive = np.ones(factor.shape, dtype=np.float64)
    drive[needs_less] = maintenance_factor / factor[needs_less]
    return drive.astype(np.float32)


def ceiling_frac(clo: Clo | None, operating_hours: npt.ArrayLike | None, n_lamps: int) -> F32:
    """Per-lamp ceiling for a program: CLO drive, or 1.0 without CLO or without hours."""
    if clo is None or operating_hours is None:
        return np.ones(n_lamps, dtype=np.float32)
    hours = np.asarray(operating_hours, dtype=np.float64)
    if hours.shape != (n_lamps,):
        raise ValueError(
            f"operating_hours must have one value per lamp ({n_lamps}), got shape {hours.shape}"
        )
    return clo_drive_frac(
        hours,
        maintenance_factor=clo.maintenance_factor,
        rated_life_h=clo.rated_life_h,
        llmf_at_rated_life=clo.llmf_at_rated_life,
    )

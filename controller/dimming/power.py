"""Electrical model: lamp input power as a function of dimming level, and energy.

Power is not linear in light output at low levels because driver efficiency falls
(Sikora et al., Energies 2018, 11(6):1386). The default model, per DOMAIN.md:

    P(d) = P_standby + P_rated * (a + (1 - a) * d) / r(d),   r(d) = 1 - c * (1 - d)^2

where ``d`` is the level fraction, ``P_rated`` the circuit input power at full output (driver
losses included), ``a`` a small fixed term and ``r(d) = eta(d) / eta(1)`` the relative driver
efficiency. A lamp that is off draws only ``P_standby`` (the controller node, 24 h a day).
Datasheet points (level, P/P_rated) can replace the model; both become a 101-point table that
the kernels interpolate linearly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.dimming._kernels import POWER_TABLE_STEPS, _lamp_power_w
from domain.inventory import InventoryArrays

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DriverCurve:
    """How one driver model's input power falls with level.

    Either the parametric model (``fixed_frac`` = a, ``efficiency_drop`` = c) or, when
    ``points`` is given, datasheet points ``(level_frac, power_frac_of_rated)`` with levels
    strictly increasing from <= 0.01 to 1.0 and power 1.0 at full output.
    """

    name: str = "default"
    fixed_frac: float = 0.05
    efficiency_drop: float = 0.2
    points: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.fixed_frac < 1.0:
            raise ValueError(f"driver curve {self.name!r}: fixed_frac must be in [0, 1)")
        if not 0.0 <= self.efficiency_drop < 1.0:
            raise ValueError(f"driver curve {self.name!r}: efficiency_drop must be in [0, 1)")
        if self.points:
            levels = [p[0] for p in self.points]
            if any(b <= a for a, b in itertools.pairwise(levels)):
                raise ValueError(f"driver curve {self.name!r}: datasheet levels must increase")
            if levels[0] > 0.01 or levels[-1] != 1.0:
                raise ValueError(
                    f"driver curve {self.name!r}: datasheet points must span 0.01 (or less) to 1.0"
                )
            if abs(self.points[-1][1] - 1.0) > 1e-9 or any(p[1] <= 0 for p in self.points):
                raise ValueError(
                    f"driver curve {self.name!r}: power fractions must be > 0 and 1.0 at full output"
                )

    def table(self) -> F64:
        """P/P_rated at levels 0, 0.01, ..., 1.0 (101 values)."""
        d = np.linspace(0.0, 1.0, POWER_TABLE_STEPS + 1)
        if self.points:
            pts = np.array(self.points, dtype=np.float64)
            return np.interp(d, pts[:, 0], pts[:, 1])
        a, c = self.fixed_frac, self.efficiency_drop
        return (a + (1.0 - a) * d) / (1.0 - c * (1.0 - d) ** 2)


DEFAULT_CURVE = DriverCurve()


@dataclass(frozen=True, eq=False)
class LampElectrics:
    """Per-lamp electrical parameters in the layout the kernels take."""

    rated_power_w: F64
    standby_power_w: F64
    curve_index: npt.NDArray[np.int32]
    tables: F64  # [curve, 101]

    def __post_init__(self) -> None:
        n = len(self.rated_power_w)
        if len(self.standby_power_w) != n or len(self.curve_index) != n:
            raise ValueError("rated_power_w, standby_power_w and curve_index must align")
        if self.tables.ndim != 2 or self.tables.shape[1] != POWER_TABLE_STEPS + 1:
            raise ValueError(f"tables must be [curve, {POWER_TABLE_STEPS + 1}]")
        if n and (self.curve_index.min() < 0 or self.curve_index.max() >= self.tables.shape[0]):
            raise ValueError("curve_index must index the tables")
        if n and (not np.all(np.isfinite(self.rated_power_w)) or self.rated_power_w.min() < 0):
            raise ValueError("rated_power_w must be finite and >= 0")
        if n and (not np.all(np.isfinite(self.standby_power_w)) or self.standby_power_w.min() < 0):
            raise ValueError("standby_power_w must be finite and >= 0")

    @classmethod
    def uniform(
        cls,
        n_lamps: int,
        rated_power_w: float,
        standby_power_w: float = 0.5,
        curve: DriverCurve = DEFAULT_CURVE,
    ) -> LampElectrics:
        return cls(
            rated_power_w=np.full(n_lamps, rated_power_w, dtype=np.float64),
            standby_power_w=np.full(n_lamps, standby_power_w, dtype=np.float64),
            curve_index=np.zeros(n_lamps, dtype=np.int32),
            tables=curve.table()[None, :].copy(),
        )

    @classmethod
    def from_inventory(
        cls, inventory: InventoryArrays, curves: Sequence[DriverCurve] = ()
    ) -> LampElectrics:
        """Electrics of an inventory; driver curve names not in ``curves`` use the default model."""
        by_name = {c.name: c for c in curves}
        chosen = [by_name.get(name, DEFAULT_CURVE) for name in inventory.driver_curves] or [
            DEFAULT_CURVE
        ]
        return cls(
            rated_power_w=inventory.rated_power_w.astype(np.float64),
            standby_power_w=inventory.standby_power_w.astype(np.float64),
            curve_index=inventory.driver_index.astype(np.int32),
            tables=np.stack([c.table() for c in chosen]),
        )

    def subset(self, index: npt.NDArray[np.intp]) -> LampElectrics:
        return LampElectrics(
            self.rated_power_w[index],
            self.standby_power_w[index],
            self.curve_index[index],
            self.tables,
        )


def lamp_power_w(
    level_frac: npt.ArrayLike,
    rated_power_w: npt.ArrayLike,
    standby_power_w: npt.ArrayLike = 0.0,
    curve: DriverCurve = DEFAULT_CURVE,
) -> F64:
    """Input power in watts at ``level_frac`` (broadcast over all three arrays)."""
    lv, rated, standby = np.broadcast_arrays(
        np.asarray(level_frac, dtype=np.float32),
        np.asarray(rated_power_w, dtype=np.float64),
        np.asarray(standby_power_w, dtype=np.float64),
    )
    if lv.size and (not np.all(np.isfinite(lv)) or lv.min() < 0 or lv.max() > 1):
        raise ValueError("level_frac must be within [0, 1]")
    out = np.empty(lv.size, dtype=np.float64)
    _lamp_power_w(
        np.ascontiguousarray(lv).ravel(),
        np.ascontiguousarray(rated).ravel(),
        np.ascontiguousarray(standby).ravel(),
        curve.table(),
        out,
    )
    return out.reshape(lv.shape)

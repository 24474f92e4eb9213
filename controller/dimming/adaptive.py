"""Adaptive lighting classes from measured demand (CEN/TR 13201-1:2014), with hysteresis.

A road keeps its *normal* class (the brightest it ever needs) and steps down to *adaptive*
classes when traffic or footfall falls. No published table maps volumes to classes, so the
thresholds are the policy's: demand below ``down_per_h[k]`` allows ``k + 1`` steps down; a zone
that stepped down only returns when demand exceeds ``up_per_h[k]``, so lamps do not flicker
between classes when demand hovers at a threshold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from controller.dimming._kernels import _adaptive_steps


def adaptive_steps(
    demand_per_h: npt.ArrayLike,
    down_per_h: npt.ArrayLike,
    up_per_h: npt.ArrayLike,
    *,
    initial_steps: npt.ArrayLike | None = None,
) -> npt.NDArray[np.int8]:
    """Class steps below normal for each zone and interval.

    ``demand_per_h`` is ``[zone, interval]`` (NaN = no data: the zone returns to its normal
    class). ``down_per_h`` and ``up_per_h`` are ``[zone, max_steps]`` (or 1-D, shared by every
    zone), each row strictly decreasing, with ``up > down`` elementwise. NaN thresholds pad
    rows of zones that may take fewer steps.
    """
    demand = np.atleast_2d(np.asarray(demand_per_h, dtype=np.float32))
    if demand.ndim != 2:
        raise ValueError("demand_per_h must be [zone, interval]")
    z_count = demand.shape[0]
    down = np.asarray(down_per_h, dtype=np.float32)
    up = np.asarray(up_per_h, dtype=np.float32)
    if down.ndim == 1:
        down = np.broadcast_to(down, (z_count, down.shape[0]))
    if up.ndim == 1:
        up = np.broadcast_to(up, (z_count, up.shape[0]))
    if down.shape != up.shape or down.shape[0] != z_count:
        raise ValueError(
            f"down_per_h {down.shape} and up_per_h {up.shape} must both be [zone={z_count}, step]"
        )
    if np.any(demand < 0):
        raise ValueError("demand_per_h must be >= 0 (NaN marks missing data)")
    max_steps = np.sum(np.isfinite(down), axis=1).astype(np.int32)
    for z in range(z_count):
        m = int(max_steps[z])
        d, u = down[z, :m], up[z, :m]
        if not np.all(np.isfinite(down[z, :m])):
            raise ValueError(f"zone {z}: NaN padding must come after all real thresholds")
        if not np.all(np.isfinite(u)):
            raise ValueError(f"zone {z}: up_per_h must be given for every down_per_h threshold")
        if np.any(np.diff(d) >= 0):
            raise ValueError(
                f"zone {z}: down_per_h must decrease (deeper steps need less demand), got {d.tolist()}"
            )
        if np.any(u <= d):
            raise ValueError(
                f"zone {z}: up_per_h must exceed down_per_h at every step (hysteresis), "
                f"got down={d.tolist()} up={u.tolist()}"
            )
    initial = (
        np.zeros(z_count, dtype=np.int32)
        if initial_steps is None
        else np.asarray(initial_steps, dtype=np.int32).reshape(z_count)
    )
    if np.any(initial < 0) or np.any(initial > max_steps):
        raise ValueError("initial_steps must be within [0, max steps of the zone]")
    out = np.empty(demand.shape, dtype=np.int8)
    _adaptive_steps(
        np.ascontiguousarray(demand),
        np.ascontiguousarray(down, dtype=np.float32),
        np.ascontiguousarray(up, dtype=np.float32),
        max_steps,
        initial,
        out,
    )
    return out

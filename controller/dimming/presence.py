"""Presence detections before they reach the level kernels: the plausible-speed filter.

Field tests find presence sensors trip on things that are not road users (DOMAIN.md); a policy's
``presence.max_speed_mps`` drops a detection that, following a detection at a neighbouring
lamp ``d`` metres away less than ``d / max_speed_mps`` seconds earlier, would mean somebody
moved faster than anybody on that street can. The earlier detection stands.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from controller.dimming._kernels import _plausible
from controller.dimming.levels import Triggers


def plausible_triggers(
    triggers: Triggers,
    *,
    neighbour_indptr: npt.NDArray[np.int64],
    neighbour_indices: npt.NDArray[np.int32],
    neighbour_distance_m: npt.NDArray[np.float32],
    max_speed_mps: float,
    step_s: float = 1.0,
) -> tuple[Triggers, int]:
    """The detections that pass the filter, and how many were dropped.

    ``max_speed_mps`` of ``inf`` keeps everything. The neighbour arrays are a CSR graph with
    distances (``domain.neighbours.NeighbourGraph``: ``indptr``, ``indices``, ``distance_m``).
    """
    if not (max_speed_mps > 0):
        raise ValueError(
            f"max_speed_mps must be > 0 (inf disables the filter), got {max_speed_mps!r}"
        )
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    n = len(neighbour_indptr) - 1
    if len(neighbour_indices) != len(neighbour_distance_m) or n < 0:
        raise ValueError("neighbour_indices and neighbour_distance_m must align, indptr be CSR")
    if len(triggers) and (triggers.lamp.min() < 0 or triggers.lamp.max() >= n):
        raise ValueError(f"trigger lamps must index the graph's {n} lamps")
    if math.isinf(max_speed_mps) or len(triggers) == 0:
        return triggers, 0
    keep = np.ones(len(triggers), dtype=np.bool_)
    _plausible(
        triggers.step,
        triggers.lamp,
        neighbour_indptr.astype(np.int64),
        neighbour_indices.astype(np.int32),
        neighbour_distance_m.astype(np.float64),
        float(max_speed_mps),
        float(step_s),
        n,
        keep,
    )
    return Triggers(triggers.step[keep], triggers.lamp[keep]), int((~keep).sum())

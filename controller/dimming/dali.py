"""DALI (IEC 62386-102) logarithmic dimming curve and fade-time codes.

Arc power level ``n`` = 1..254 gives light output X(n) = 10^((n - 1) / (253/3) - 1) % of full
(n = 1 -> 0.1 %, n = 254 -> 100 %); 0 is off.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from controller.dimming._kernels import _dali_to_level, _level_to_dali

#: Fade time in seconds for DALI fade-time codes 0..15 (code 0 means < 0.7 s: taken as 0).
FADE_TIME_S: tuple[float, ...] = (
    0.0,
    0.7,
    1.0,
    1.4,
    2.0,
    2.8,
    4.0,
    5.7,
    8.0,
    11.3,
    16.0,
    22.6,
    32.0,
    45.3,
    64.0,
    90.5,
)


def level_to_arc(level_frac: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Nearest DALI arc power level for each level fraction (0 -> 0 = off; > 0 -> 1..254)."""
    lv = np.atleast_1d(np.asarray(level_frac, dtype=np.float64))
    if lv.size and (not np.all(np.isfinite(lv)) or lv.min() < 0 or lv.max() > 1):
        raise ValueError("level_frac must be within [0, 1] (fractions of full light output)")
    out = np.empty(lv.size, dtype=np.uint8)
    _level_to_dali(np.ascontiguousarray(lv).ravel(), out)
    return out.reshape(lv.shape)


def arc_to_level(arc: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Light output fraction for each DALI arc power level 0..254 (255 is MASK: rejected)."""
    a = np.atleast_1d(np.asarray(arc))
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() > 254):
        raise ValueError("DALI arc power levels are integers 0..254 (255 is MASK, not a level)")
    out = np.empty(a.size, dtype=np.float64)
    _dali_to_level(np.ascontiguousarray(a, dtype=np.int64).ravel(), out)
    return out.reshape(a.shape)


def fade_code_for(fade_s: float) -> int:
    """Smallest DALI fade-time code whose fade lasts at least ``fade_s`` seconds (max 15)."""
    if not np.isfinite(fade_s) or fade_s < 0:
        raise ValueError(f"fade_s must be a finite number of seconds >= 0, got {fade_s!r}")
    for code, seconds in enumerate(FADE_TIME_S):
        if seconds >= fade_s:
            return code
    return len(FADE_TIME_S) - 1

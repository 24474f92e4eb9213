"""Numba flags in one place.

``cache=True`` keeps the compiled machine code on disk so a second process starts in well under
a second. Serial and parallel kernels are separate top-level functions: a factory that built
both from one Python function made them share one cache entry and the parallel one ran serially.
``fastmath`` is used only by the level kernels, whose arithmetic is min/max/multiply-add on
bounded fractions; the solar kernels keep IEEE semantics.
"""

from __future__ import annotations

import os
from typing import Any

JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True}
FAST_OPTIONS: dict[str, Any] = {**JIT_OPTIONS, "fastmath": True}
PARALLEL_OPTIONS: dict[str, Any] = {**JIT_OPTIONS, "parallel": True}
FAST_PARALLEL_OPTIONS: dict[str, Any] = {**FAST_OPTIONS, "parallel": True}

#: Below this many lamps the wrappers use the serial kernels: thread start-up costs more than it saves.
PARALLEL_MIN_LAMPS: int = int(os.environ.get("STREETLIGHT_PARALLEL_MIN_LAMPS", "2000"))

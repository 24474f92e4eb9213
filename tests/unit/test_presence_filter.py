"""The plausible-speed filter against a plain-Python twin and worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dimming.levels import Triggers
from controller.dimming.presence import plausible_triggers

# Three lamps in a row, 30 m apart: 0 - 1 - 2.
INDPTR = np.array([0, 1, 3, 4], np.int64)
INDICES = np.array([1, 0, 2, 1], np.int32)
DIST = np.array([30, 30, 30, 30], np.float32)


def twin(steps, lamps, max_speed):  # type: ignore[no-untyped-def]
    last: dict[int, int] = {}
    keep = []
    for t, j in zip(steps, lamps, strict=True):
        ok = True
        for q in range(INDPTR[j], INDPTR[j + 1]):
            i = int(INDICES[q])
            if i in last and (t - last[i]) * max_speed < DIST[q]:
                ok = False
        keep.append(ok)
        if ok:
            last[j] = t
    return keep


def test_walking_pace_passes_and_teleporting_does_not() -> None:
    # A walker: lamp 0 at 0 s, lamp 1 at 20 s, lamp 2 at 40 s (1.5 m/s): all kept.
    walker = Triggers(np.array([0, 20, 40], np.int64), np.array([0, 1, 2], np.int32))
    kept, dropped = plausible_triggers(
        walker,
        neighbour_indptr=INDPTR,
        neighbour_indices=INDICES,
        neighbour_distance_m=DIST,
        max_speed_mps=15,
    )
    assert dropped == 0 and kept.lamp.tolist() == [0, 1, 2]
    # Lamp 1 fires 1 s after lamp 0, 30 m away (30 m/s): implausible, dropped.
    glitch = Triggers(np.array([0, 1, 50], np.int64), np.array([0, 1, 2], np.int32))
    kept, dropped = plausible_triggers(
        glitch,
        neighbour_indptr=INDPTR,
        neighbour_indices=INDICES,
        neighbour_distance_m=DIST,
        max_speed_mps=15,
    )
    assert dropped == 1 and kept.step.tolist() == [0, 50]
    # Disabled: everything stays.
    kept, dropped = plausible_triggers(
        glitch,
        neighbour_indptr=INDPTR,
        neighbour_indices=INDICES,
        neighbour_distance_m=DIST,
        max_speed_mps=float("inf"),
    )
    assert dropped == 0 and len(kept) == 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 2)), max_size=40), st.floats(1, 40))
def test_matches_plain_python(events: list[tuple[int, int]], max_speed: float) -> None:
    events = sorted(events)
    steps = np.array([e[0] for e in events], np.int64)
    lamps = np.array([e[1] for e in events], np.int32)
    kept, _ = plausible_triggers(
        Triggers(steps, lamps),
        neighbour_indptr=INDPTR,
        neighbour_indices=INDICES,
        neighbour_distance_m=DIST,
        max_speed_mps=max_speed,
    )
    mask = twin(steps.tolist(), lamps.tolist(), max_speed)
    assert kept.step.tolist() == steps[mask].tolist() and kept.lamp.tolist() == lamps[mask].tolist()


def test_rejects_bad_arguments() -> None:
    t = Triggers(np.array([0], np.int64), np.array([5], np.int32))
    with pytest.raises(ValueError, match="trigger lamps must index"):
        plausible_triggers(
            t,
            neighbour_indptr=INDPTR,
            neighbour_indices=INDICES,
            neighbour_distance_m=DIST,
            max_speed_mps=10,
        )
    with pytest.raises(ValueError, match="max_speed_mps must be > 0"):
        plausible_triggers(
            t,
            neighbour_indptr=INDPTR,
            neighbour_indices=INDICES,
            neighbour_distance_m=DIST,
            max_speed_mps=0,
        )

"""Overrides: latest wins, an empty override resumes the program, expiry, groups, replay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from controller.policy import Override, OverrideTable

LAMPS = ["A", "B", "C", "D"]
GROUPS = ["north", "north", "south", ""]


def _table(*overrides: Override) -> OverrideTable:
    return OverrideTable(LAMPS, GROUPS, overrides)


def _levels(table: OverrideTable, t: int) -> list[float | None]:
    return [None if math.isnan(x) else round(float(x), 6) for x in table.apply(t)]


def test_no_overrides_means_programs_everywhere() -> None:
    assert _levels(_table(), 0) == [None, None, None, None]


def test_group_and_lamp_overrides_latest_wins() -> None:
    table = _table(
        Override(groups=("north",), level_frac=1.0, issued_ns=10),
        Override(lamp_ids=("B", "D"), level_frac=0.2, issued_ns=20),
    )
    assert _levels(table, 5) == [None, None, None, None]  # nothing issued yet
    assert _levels(table, 15) == [1.0, 1.0, None, None]
    assert _levels(table, 25) == [1.0, 0.2, None, 0.2]
    # A newer group override replaces the lamp override on B.
    later = table.with_override(Override(groups=("north",), level_frac=0.5, issued_ns=30))
    assert _levels(later, 35) == [0.5, 0.5, None, 0.2]
    assert _levels(table, 35) == [1.0, 0.2, None, 0.2]  # the original table is unchanged


def test_empty_override_resumes_the_program() -> None:
    table = _table(
        Override(groups=("north", "south"), level_frac=0.0, issued_ns=0, reason="works"),
        Override(lamp_ids=("C",), level_frac=None, issued_ns=100),
    )
    assert _levels(table, 50) == [0.0, 0.0, 0.0, None]
    assert _levels(table, 100) == [0.0, 0.0, None, None]


def test_expiry_returns_to_the_program_not_to_an_older_override() -> None:
    table = _table(
        Override(lamp_ids=("A",), level_frac=0.3, issued_ns=0),
        Override(lamp_ids=("A",), level_frac=1.0, issued_ns=10, expiry_ns=20),
    )
    assert _levels(table, 5) == [0.3, None, None, None]
    assert _levels(table, 10) == [1.0, None, None, None]
    assert _levels(table, 19) == [1.0, None, None, None]
    # TALQ: the newer override removed the older one; when it expires the program resumes.
    assert _levels(table, 20) == [None, None, None, None]


def test_a_scheduled_override_replaces_the_older_one_as_soon_as_it_is_issued() -> None:
    table = _table(
        Override(lamp_ids=("A",), level_frac=0.3, issued_ns=0),
        Override(lamp_ids=("A",), level_frac=0.9, issued_ns=10, start_ns=50, expiry_ns=60),
    )
    assert _levels(table, 9) == [0.3, None, None, None]
    assert _levels(table, 30) == [None, None, None, None]  # pending: program
    assert _levels(table, 55) == [0.9, None, None, None]
    assert _levels(table, 60) == [None, None, None, None]


def test_ties_in_issue_time_go_to_the_later_entry() -> None:
    first = Override(lamp_ids=("A",), level_frac=0.1, issued_ns=5)
    second = Override(lamp_ids=("A",), level_frac=0.9, issued_ns=5)
    assert _levels(_table(first, second), 5)[0] == 0.9
    assert _levels(_table(second, first), 5)[0] == 0.1
    assert _levels(_table(first).with_override(second), 5)[0] == 0.9


def test_the_order_of_insertion_does_not_matter_for_distinct_issue_times() -> None:
    overrides = [
        Override(groups=("north",), level_frac=0.4, issued_ns=30, expiry_ns=90),
        Override(lamp_ids=("A", "C"), level_frac=None, issued_ns=50),
        Override(groups=("south",), level_frac=0.7, issued_ns=10),
    ]
    forward, backward = _table(*overrides), _table(*reversed(overrides))
    for t in range(0, 100, 5):
        np.testing.assert_array_equal(forward.apply(t), backward.apply(t))


def test_no_override_marker_for_the_kernels() -> None:
    table = _table(Override(lamp_ids=("A",), level_frac=0.5, issued_ns=0))
    np.testing.assert_array_equal(table.apply(1, no_override=-1.0), [0.5, -1.0, -1.0, -1.0])
    assert table.apply(1).dtype == np.float32


def test_prune_keeps_the_answer_for_later_times_and_drops_dead_entries() -> None:
    table = _table(
        Override(lamp_ids=("A", "B"), level_frac=0.5, issued_ns=1),
        Override(lamp_ids=("B",), level_frac=0.8, issued_ns=2, expiry_ns=3),
        Override(lamp_ids=("C",), level_frac=0.1, issued_ns=4),
        Override(lamp_ids=("C",), level_frac=None, issued_ns=5),
        Override(lamp_ids=("D",), level_frac=0.6, issued_ns=20),
    )
    pruned = table.prune(10)
    assert len(pruned) == 2  # the one still in force on A, and the one issued later
    for t in range(10, 30):
        np.testing.assert_array_equal(pruned.apply(t), table.apply(t))
    # B: the newer override expired, so B follows its program; the older one must not return.
    assert _levels(pruned, 12) == [0.5, None, None, None]


def test_bad_overrides_are_refused_with_reasons() -> None:
    with pytest.raises(ValidationError, match="targets nothing; give lamp_ids, groups or both"):
        Override(level_frac=0.5, issued_ns=0)
    with pytest.raises(ValidationError, match=r"1\.5 is above 1\.0; levels are fractions"):
        Override(lamp_ids=("A",), level_frac=1.5, issued_ns=0)
    with pytest.raises(ValidationError, match="expiry_ns 5 is not after the start 10"):
        Override(lamp_ids=("A",), level_frac=0.5, issued_ns=10, expiry_ns=5)
    with pytest.raises(ValueError, match=r"names lamp\(s\) not in the inventory: Z; check"):
        _table(Override(override_id="o1", lamp_ids=("Z",), level_frac=0.5, issued_ns=0))
    with pytest.raises(ValueError, match=r"names group\(s\) with no lamps: east"):
        _table(Override(groups=("east",), level_frac=0.5, issued_ns=0))
    with pytest.raises(ValueError, match="must have one entry per lamp"):
        OverrideTable(["A"], [], ())

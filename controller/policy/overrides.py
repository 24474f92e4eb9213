"""Manual overrides of lamps and groups, with TALQ semantics: latest wins, empty resumes.

Theory of operation
-------------------
An :class:`Override` sets lamps (by id) and/or groups (by name) to ``level_frac`` from
``start_ns`` until ``expiry_ns``. As in TALQ 2.7.1 (``OverrideCommand``), a newer override
*replaces* every older one on the lamps it covers, and an override without a level (``None``,
TALQ's command without ``targetCommand``) returns them to their program. So, at time ``t``,
for each lamp:

1. among the overrides covering it that were issued at or before ``t``, take the latest
   (by ``issued_ns``, then by position in the table);
2. if it has a level and ``start_ns <= t < expiry_ns``, that level is the lamp's override;
3. otherwise the lamp follows its program (it is pending, expired, or empty).

An older override never comes back when a newer one expires: re-issue it if it is still wanted.
Overrides issued after ``t`` are ignored, so replaying a past night gives what the lamps did.

:class:`OverrideTable` is pure and immutable: adding an override returns a new table, and
``apply(t)`` depends on nothing but the table and ``t``. It returns levels as given; the level
kernels still keep a lit lamp at or above its safety floor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from controller.policy.model import LevelFrac

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

_NEVER_NS = np.iinfo(np.int64).max


def _non_empty(values: tuple[str, ...]) -> tuple[str, ...]:
    if any(not v for v in values):
        raise ValueError("contains an empty name; give lamp ids and group names as text")
    return values


class Override(BaseModel):
    """Set lamps and groups to ``level_frac`` (None = resume the program) for a while.

    ``issued_ns`` orders overrides (latest wins); ``start_ns`` defaults to ``issued_ns``;
    ``expiry_ns`` None = until replaced. Times are UTC epoch nanoseconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    override_id: str = ""
    lamp_ids: Annotated[tuple[str, ...], AfterValidator(_non_empty)] = ()
    groups: Annotated[tuple[str, ...], AfterValidator(_non_empty)] = ()
    level_frac: LevelFrac | None
    issued_ns: int
    start_ns: int | None = None
    expiry_ns: int | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Override:
        if not self.lamp_ids and not self.groups:
            raise ValueError("targets nothing; give lamp_ids, groups or both")
        start = self.effective_start_ns
        if self.expiry_ns is not None and self.expiry_ns <= start:
            raise ValueError(
                f"expiry_ns {self.expiry_ns} is not after the start {start}; an override must "
                "last some time (omit expiry_ns for no expiry)"
            )
        return self

    @property
    def effective_start_ns(self) -> int:
        """When the level takes effect: ``start_ns``, but never before the override was issued."""
        return self.issued_ns if self.start_ns is None else max(self.start_ns, self.issued_ns)


class OverrideTable:
    """The overrides in force over one inventory; immutable, see the module docstring."""

    __slots__ = ("_by_group", "_by_id", "_end", "_lamps", "_level", "_n", "_overrides", "_start")

    def __init__(
        self,
        lamp_ids: Sequence[str] | npt.NDArray[np.str_],
        groups: Sequence[str] | npt.NDArray[np.str_],
        overrides: Iterable[Override] = (),
    ) -> None:
        ids = [str(x) for x in np.asarray(lamp_ids).tolist()]
        names = [str(x) for x in np.asarray(groups).tolist()]
        if len(ids) != len(names):
            raise ValueError(
                f"lamp_ids ({len(ids)}) and groups ({len(names)}) must have one entry per lamp"
            )
        self._n = len(ids)
        self._by_id = {lamp_id: i for i, lamp_id in enumerate(ids)}
        if len(self._by_id) != self._n:
            raise ValueError("lamp_ids must be unique")
        by_group: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            if name:
                by_group.setdefault(name, []).append(i)
        self._by_group = {k: np.asarray(v, dtype=np.int32) for k, v in by_group.items()}
        self._overrides: tuple[Override, ...] = ()
        self._lamps: tuple[I32, ...] = ()
        self._level = np.zeros(0, dtype=np.float32)
        self._start = np.zeros(0, dtype=np.int64)
        self._end = np.zeros(0, dtype=np.int64)
        self._add(tuple(overrides))

    # Construction ---------------------------------------------------------------------------

    def _targets(self, override: Override) -> I32:
        parts: list[I32] = []
        unknown = [x for x in override.lamp_ids if x not in self._by_id]
        if unknown:
            raise ValueError(
                f"override {override.override_id or '(no id)'} names lamp(s) not in the "
                f"inventory: {', '.join(unknown[:5])}; check the lamp ids"
            )
        missing = [g for g in override.groups if g not in self._by_group]
        if missing:
            raise ValueError(
                f"override {override.override_id or '(no id)'} names group(s) with no lamps: "
                f"{', '.join(missing[:5])}; check the group names"
            )
        if override.lamp_ids:
            parts.append(np.asarray([self._by_id[x] for x in override.lamp_ids], dtype=np.int32))
        parts.extend(self._by_group[g] for g in override.groups)
        return np.unique(np.concatenate(parts)).astype(np.int32)

    def _add(self, new: tuple[Override, ...]) -> None:
        if new:
            lamps = tuple(self._targets(o) for o in new)
            self._set(list(zip(self._overrides + new, self._lamps + lamps, strict=True)))

    def _set(self, entries: list[tuple[Override, I32]]) -> None:
        # Stable sort by issue time keeps table order as the tie-break.
        entries.sort(key=lambda pair: pair[0].issued_ns)
        self._overrides = tuple(o for o, _ in entries)
        self._lamps = tuple(idx for _, idx in entries)
        self._level = np.array(
            [math.nan if o.level_frac is None else o.level_frac for o in self._overrides],
            dtype=np.float32,
        )
        self._start = np.array([o.effective_start_ns for o in self._overrides], dtype=np.int64)
        self._end = np.array(
            [_NEVER_NS if o.expiry_ns is None else o.expiry_ns for o in self._overrides],
            dtype=np.int64,
        )

    def _copy(self) -> OverrideTable:
        table = OverrideTable.__new__(OverrideTable)
        table._n = self._n
        table._by_id = self._by_id
        table._by_group = self._by_group
        table._overrides = self._overrides
        table._lamps = self._lamps
        table._level = self._level
        table._start = self._start
        table._end = self._end
        return table

    def with_overrides(self, overrides: Iterable[Override]) -> OverrideTable:
        """A new table with ``overrides`` added after the existing ones (for equal issue times)."""
        table = self._copy()
        table._add(tuple(overrides))
        return table

    def with_override(self, override: Override) -> OverrideTable:
        return self.with_overrides((override,))

    # Queries --------------------------------------------------------------------------------

    @property
    def overrides(self) -> tuple[Override, ...]:
        """The overrides, oldest first (the order in which they replace each other)."""
        return self._overrides

    @property
    def n_lamps(self) -> int:
        return self._n

    def __len__(self) -> int:
        return len(self._overrides)

    def winners(self, time_ns: int) -> I32:
        """Per lamp, the index (in :attr:`overrides`) of its latest override issued by
        ``time_ns``, or -1 if none."""
        winner = np.full(self._n, -1, dtype=np.int32)
        for k, override in enumerate(self._overrides):
            if override.issued_ns > time_ns:
                break  # sorted by issue time
            winner[self._lamps[k]] = k
        return winner

    def apply(self, time_ns: int, *, no_override: float = math.nan) -> F32:
        """Per-lamp override level at ``time_ns``, or ``no_override`` (NaN) where the program rules.

        The level kernels take a negative number for "no override": pass ``no_override=-1``.
        """
        winner = self.winners(time_ns)
        out = np.full(self._n, no_override, dtype=np.float32)
        has = winner >= 0
        if not np.any(has):
            return out
        k = winner[has]
        in_force = (
            (self._start[k] <= time_ns) & (time_ns < self._end[k]) & ~np.isnan(self._level[k])
        )
        rows = np.flatnonzero(has)[in_force]
        out[rows] = self._level[k[in_force]]
        return out

    def prune(self, time_ns: int) -> OverrideTable:
        """A smaller table that gives the same :meth:`apply` for every time at or after ``time_ns``.

        Keeps the overrides issued later, and of the others each lamp's latest one while it
        still has a level and has not expired, narrowed to the lamps where it is the latest.
        Narrowing matters: an override kept for lamp A must not reach lamp B, where a newer
        override that has since expired had replaced it.
        """
        winner = self.winners(time_ns)
        keep: list[tuple[Override, I32]] = []
        for k, override in enumerate(self._overrides):
            lamps = self._lamps[k]
            if override.issued_ns > time_ns:
                keep.append((override, lamps))
                continue
            in_force_later = override.level_frac is not None and (
                override.expiry_ns is None or override.expiry_ns > time_ns
            )
            still_latest = lamps[winner[lamps] == k]
            if in_force_later and len(still_latest):
                keep.append((override, still_latest))
        table = self._copy()
        table._set(keep)
        return table

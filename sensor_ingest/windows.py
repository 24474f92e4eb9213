"""Demand per street or zone, as rolling counts the live controller reads. Pure: time is an
argument.

Theory of operation
-------------------
Sensors belong to zones (usually a street; the mapping is a dict, or derived from the
inventory by :func:`zones_from_inventory`). Each accepted count reading adds its value to its
zone: ``footfall_count`` and ``traffic_count`` readings add their counts, a ``presence``
reading adds 1. Counts go into a ring of ``window_s / bucket_s`` time buckets per kind and
zone (a NumPy array ``(3, zones, slots)``) indexed by the *reading's* time, so late
readings land in the bucket they belong to. The ring has ``ahead_s`` of spare slots so that
readings somewhat ahead of the controller's clock never overwrite buckets still in its window.
A slot is reset when the ring wraps onto it; a reading whose slot already holds a newer bucket
(older than the ring relative to the newest data) is counted in ``late`` and dropped.

``counts_per_hour(zone, now_ns=...)`` sums the buckets in ``(now - window, now]`` and scales
to one hour; ``snapshot(now_ns)`` gives every zone at once as an array ``(zones, 3)`` with the
columns of :data:`COUNT_KINDS`, ready for the controller's adaptive class step.

Presence readings are also handed on as events ``(source_id, time_ns)`` (the controller's
light-on-demand), one call per batch, whether or not the sensor has a zone. The ingest adds on
its own thread while the controller reads on another: the ring is guarded by a lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from domain.records import Lamp, Reading, ReadingKind, Sensor

__all__ = ["COUNT_KINDS", "DemandWindows", "PresenceCallback", "zones_from_inventory"]

#: The kinds that count demand, in the order of the arrays' kind axis.
COUNT_KINDS: Final = (ReadingKind.FOOTFALL_COUNT, ReadingKind.TRAFFIC_COUNT, ReadingKind.PRESENCE)
_KIND_INDEX: Final = {kind: i for i, kind in enumerate(COUNT_KINDS)}
_NS_PER_S: Final = 1_000_000_000

PresenceCallback = Callable[[list[tuple[str, int]]], None]


def zones_from_inventory(
    sensors: Iterable[Sensor], lamps: Iterable[Lamp], *, default_zone: str = ""
) -> dict[str, str]:
    """``sensor_id -> zone``: the street of the first of a sensor's lamps that has one.

    A sensor with no lamp on a named street gets ``default_zone`` (left out when empty).
    """
    street_of = {lamp.lamp_id: lamp.street for lamp in lamps if lamp.street}
    zones: dict[str, str] = {}
    for sensor in sensors:
        zone = next((street_of[i] for i in sensor.lamp_ids if i in street_of), default_zone)
        if zone:
            zones[sensor.sensor_id] = zone
    return zones


class DemandWindows:
    """Rolling demand counts per zone; see the module docstring.

    ``zone_of_sensor``: sensor id -> zone id. ``window_s`` is the rolling window (default one
    hour) and ``bucket_s`` its resolution; the window must be a whole number of buckets.
    ``on_presence`` receives each batch's presence events ``[(source_id, time_ns), ...]``.
    """

    def __init__(
        self,
        zone_of_sensor: Mapping[str, str],
        *,
        window_s: float = 3600.0,
        bucket_s: float = 60.0,
        ahead_s: float = 600.0,
        on_presence: PresenceCallback | None = None,
    ) -> None:
        if not bucket_s > 0 or not window_s >= bucket_s:
            raise ValueError(
                f"need 0 < bucket_s <= window_s, got bucket_s={bucket_s!r}, window_s={window_s!r}"
            )
        n_buckets = window_s / bucket_s
        if not ahead_s >= 0:
            raise ValueError(f"ahead_s must be >= 0, got {ahead_s!r}")
        if abs(n_buckets - round(n_buckets)) > 1e-9:
            raise ValueError(
                f"window_s ({window_s!r}) must be a whole number of buckets of {bucket_s!r} s"
            )
        self.zones: tuple[str, ...] = tuple(sorted(set(zone_of_sensor.values())))
        index = {zone: i for i, zone in enumerate(self.zones)}
        self._zone_index: dict[str, int] = {s: index[z] for s, z in zone_of_sensor.items()}
        self._zone_pos = index
        self.window_s = float(window_s)
        self.bucket_ns = round(bucket_s * _NS_PER_S)
        self.n_buckets = round(n_buckets)
        # Readings may be ahead of the controller's "now" (device clocks; the validator allows
        # some future skew): spare slots keep them from overwriting buckets still in the window.
        self._ring = self.n_buckets + math.ceil(ahead_s * _NS_PER_S / self.bucket_ns)
        self._counts = np.zeros((len(COUNT_KINDS), len(self.zones), self._ring))
        # The bucket number each slot currently holds (-1: never used).
        self._slot_bucket = np.full(self._ring, -1, dtype=np.int64)
        self.on_presence = on_presence
        # The pipeline adds on its thread while the controller reads on another.
        self._lock = threading.Lock()
        self.added = 0
        self.late = 0
        self.unknown_sensor = 0

    # --- input ----------------------------------------------------------------------------------

    def add(self, readings: Iterable[Reading]) -> int:
        """Add readings (other kinds are ignored); returns how many were counted."""
        return self.add_rows((r.source_id, r.kind, r.value, r.time_ns) for r in readings)

    def add_rows(self, rows: Iterable[tuple[str, ReadingKind, float, int]]) -> int:
        """Add ``(source_id, kind, value, time_ns)`` rows; returns how many were counted."""
        listed = list(rows)
        if not listed:
            return 0
        source_ids, kinds, values, times_ns = zip(*listed, strict=True)
        return self.add_columns(source_ids, kinds, values, times_ns)

    def add_columns(
        self,
        source_ids: Sequence[str],
        kinds: Sequence[ReadingKind],
        values: Sequence[float],
        times_ns: Sequence[int],
    ) -> int:
        """Add rows given as four equal-length columns; returns how many were counted."""
        kind_index = _KIND_INDEX
        zone_index = self._zone_index
        presence = ReadingKind.PRESENCE
        k_list: list[int] = []
        zones: list[int] = []
        counts: list[float] = []
        times: list[int] = []
        events: list[tuple[str, int]] = []
        unknown = 0
        # Only demand kinds matter here: find them in one pass, then look at those alone.
        for i in [i for i, kind in enumerate(kinds) if kind in kind_index]:
            kind = kinds[i]
            source_id = source_ids[i]
            time_ns = times_ns[i]
            if kind is presence:
                events.append((source_id, time_ns))
            zone = zone_index.get(source_id)
            if zone is None:
                unknown += 1
                continue
            k_list.append(kind_index[kind])
            zones.append(zone)
            counts.append(1.0 if kind is presence else values[i])
            times.append(time_ns)
        self.unknown_sensor += unknown
        counted = 0
        if times:
            with self._lock:
                counted = self._accumulate(k_list, zones, counts, times)
        if events and self.on_presence is not None:
            self.on_presence(events)
        return counted

    def _accumulate(
        self, kinds: list[int], zones: list[int], values: list[float], times: list[int]
    ) -> int:
        buckets = np.asarray(times, dtype=np.int64) // self.bucket_ns
        slots = buckets % self._ring
        for bucket in np.unique(buckets):  # ascending; usually one or two per batch
            slot = int(bucket % self._ring)
            if self._slot_bucket[slot] < bucket:
                self._counts[:, :, slot] = 0.0
                self._slot_bucket[slot] = bucket
        fits = self._slot_bucket[slots] == buckets
        counted = int(fits.sum())
        self.late += len(times) - counted
        np.add.at(
            self._counts,
            (
                np.asarray(kinds, dtype=np.intp)[fits],
                np.asarray(zones, dtype=np.intp)[fits],
                slots[fits],
            ),
            np.asarray(values, dtype=np.float64)[fits],
        )
        self.added += counted
        return counted

    # --- output ---------------------------------------------------------------------------------

    def _live_slots(self, now_ns: int) -> npt.NDArray[np.bool_]:
        now_bucket = now_ns // self.bucket_ns
        return (self._slot_bucket > now_bucket - self.n_buckets) & (self._slot_bucket <= now_bucket)

    def snapshot(self, now_ns: int) -> tuple[tuple[str, ...], npt.NDArray[np.float64]]:
        """``(zone_ids, counts)``: counts per hour in the window ending at ``now_ns``, shape
        ``(zones, 3)``, columns in the order of :data:`COUNT_KINDS` (footfall, traffic,
        presence)."""
        with self._lock:
            live = self._live_slots(now_ns)
            per_window = self._counts[:, :, live].sum(axis=2)  # (kinds, zones)
        return self.zones, np.ascontiguousarray(per_window.T) * (3600.0 / self.window_s)

    def counts_per_hour(self, zone: str, *, now_ns: int, kind: ReadingKind | None = None) -> float:
        """Counts per hour in ``zone`` over the window ending at ``now_ns``: one ``kind`` of
        :data:`COUNT_KINDS`, or (``None``) all of them summed."""
        z = self._zone_pos.get(zone)
        if z is None:
            raise KeyError(f"unknown zone {zone!r}; zones: {', '.join(self.zones) or '(none)'}")
        if kind is not None and kind not in _KIND_INDEX:
            raise ValueError(
                f"{kind!r} is not a demand kind; use one of "
                + ", ".join(k.value for k in COUNT_KINDS)
            )
        kinds: Sequence[int] = range(len(COUNT_KINDS)) if kind is None else (_KIND_INDEX[kind],)
        with self._lock:
            live = self._live_slots(now_ns)
            total = sum(float(self._counts[k, z, live].sum()) for k in kinds)
        return total * (3600.0 / self.window_s)

    def counters(self) -> dict[str, int]:
        return {"added": self.added, "late": self.late, "unknown_sensor": self.unknown_sensor}

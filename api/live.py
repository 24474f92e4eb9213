"""What the API reads from the telemetry historian: live lamp status and energy.

:class:`TelemetryReader` is the read side of ``sensor_ingest.historian.EmbeddedHistorian``
(and of any other historian with the same methods), written as a Protocol so the API depends
on the shape, not on one store. The historian is keyed by source id; for lamps that is the lamp
id, so a deployment serving several councils must give lamps ids unique across councils (the
importer's ``id_prefix`` does that).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from domain.records import ReadingKind


class LampTelemetryLike(Protocol):
    """The latest known values of one lamp (None where never reported)."""

    @property
    def lamp_id(self) -> str: ...

    @property
    def level_frac(self) -> float | None: ...

    @property
    def power_w(self) -> float | None: ...

    @property
    def energy_wh(self) -> float | None: ...

    @property
    def status(self) -> int | None: ...

    @property
    def time_ns(self) -> int | None: ...


class TelemetryReader(Protocol):
    """The historian's read methods the API uses."""

    def latest(self, source_ids: Collection[str]) -> Mapping[str, LampTelemetryLike]:
        """Latest values per lamp id; lamps never heard from may be missing."""
        ...

    def series(
        self, source_id: str, kind: ReadingKind, start_ns: int, end_ns: int
    ) -> Sequence[tuple[int, float]]:
        """``(time_ns, value)`` of one source and kind in ``[start_ns, end_ns)``, by time."""
        ...

    def energy_wh(
        self, source_ids: Collection[str], start_ns: int, end_ns: int
    ) -> Mapping[str, float]:
        """Energy used by each source in ``[start_ns, end_ns)``, Wh."""
        ...


#: Status bits reported by lamp controllers (docs/gateway-protocol.md).
STATUS_BITS: tuple[tuple[int, str], ...] = (
    (0, "lamp_failure"),
    (1, "day_burner"),
    (2, "comms_fault"),
    (3, "driver_fault"),
    (4, "over_temperature"),
)


def status_flags(status: int | None) -> list[str]:
    """Names of the bits set in a lamp controller's status word."""
    if status is None:
        return []
    return [name for bit, name in STATUS_BITS if status >> bit & 1]

"""The shared vocabulary of the street-lighting service.

Records carry their units in their field names (``power_w``, ``level_frac``, ``hold_s``).
Levels are fractions of full light output in [0, 1] project-wide (``level_frac``).
Timestamps are int64 epoch nanoseconds UTC (``*_ns``) or timezone-aware datetimes.
This package imports nothing else of the project.
"""

from domain.errors import InventoryError, PolicyError, StreetlightError, ValidationIssue
from domain.inventory import InventoryArrays
from domain.records import (
    CommandSink,
    DimmingCurve,
    Lamp,
    LampCommand,
    LightingClass,
    Reading,
    ReadingKind,
    Sensor,
    SensorKind,
)

__all__ = [
    "CommandSink",
    "DimmingCurve",
    "InventoryArrays",
    "InventoryError",
    "Lamp",
    "LampCommand",
    "LightingClass",
    "PolicyError",
    "Reading",
    "ReadingKind",
    "Sensor",
    "SensorKind",
    "StreetlightError",
    "ValidationIssue",
]

"""Records shared by every stage: lamps, sensors, readings and lamp commands."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class LightingClass(enum.StrEnum):
    """EN 13201-2:2015 lighting classes."""

    M1 = "M1"
    M2 = "M2"
    M3 = "M3"
    M4 = "M4"
    M5 = "M5"
    M6 = "M6"
    C0 = "C0"
    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"
    P6 = "P6"

    @property
    def series(self) -> str:
        return self.value[0]

    @property
    def number(self) -> int:
        return int(self.value[1:])


class DimmingCurve(enum.StrEnum):
    """How a commanded level maps onto the controller's interface."""

    DALI = "dali"  # IEC 62386 logarithmic arc power levels 1..254
    LINEAR = "linear"  # 0-10 V / percentage drivers


class SensorKind(enum.StrEnum):
    PRESENCE = "presence"
    FOOTFALL = "footfall"
    TRAFFIC = "traffic"


class ReadingKind(enum.StrEnum):
    PRESENCE = "presence"  # a detection event, value 1
    FOOTFALL_COUNT = "footfall_count"  # people in the reading's interval
    TRAFFIC_COUNT = "traffic_count"  # vehicles in the reading's interval
    LEVEL_FRAC = "level_frac"  # measured lamp output, 0..1
    POWER_W = "power_w"
    ENERGY_WH = "energy_wh"  # cumulative meter
    STATUS = "status"  # bit flags: StatusFlag


class StatusFlag(enum.IntFlag):
    """Lamp status bits: the value of a ``ReadingKind.STATUS`` reading (docs/gateway-protocol.md)."""

    LAMP_FAILURE = 1 << 0  # lamp or LED module out (TALQ LampFailure)
    DAY_BURNER = 1 << 1  # lit in daylight, when the program says off
    COMMS_FAULT = 1 << 2  # the controller cannot reach the driver (DALI bus error)
    DRIVER_FAULT = 1 << 3  # control gear failure
    OVER_TEMPERATURE = 1 << 4  # driver or luminaire thermal derating/protection


@dataclass(frozen=True, slots=True)
class Lamp:
    """One light point.

    ``rated_power_w`` is the circuit input power at full output (driver losses included);
    ``standby_power_w`` is the controller/node draw, 24 h a day. Positions are WGS84 degrees.
    ``street`` and ``order_on_street`` place the lamp along its street for light-on-demand
    propagation; when the inventory has no street names they are derived from geometry.
    """

    lamp_id: str
    council_id: str
    lon_deg: float
    lat_deg: float
    rated_power_w: float
    standby_power_w: float = 0.5
    lighting_class: LightingClass = LightingClass.P4
    street: str = ""
    order_on_street: int = 0
    driver_curve: str = "default"
    dimming_curve: DimmingCurve = DimmingCurve.DALI
    controller_address: str = ""
    lamp_type: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True)
class Sensor:
    sensor_id: str
    council_id: str
    kind: SensorKind
    lon_deg: float
    lat_deg: float
    lamp_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement or event from a sensor or a lamp controller."""

    source_id: str
    kind: ReadingKind
    value: float
    time_ns: int
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class LampCommand:
    """Set a lamp to ``level_frac`` over ``ramp_s`` seconds (TALQ: commands carry ramp times)."""

    lamp_id: str
    level_frac: float
    ramp_s: float = 0.0
    issued_ns: int = 0
    reason: str = field(default="program")

    def __post_init__(self) -> None:
        if not 0.0 <= self.level_frac <= 1.0:
            raise ValueError(f"level_frac must be within [0, 1], got {self.level_frac!r}")
        if self.ramp_s < 0.0:
            raise ValueError(f"ramp_s must be >= 0, got {self.ramp_s!r}")


class CommandSink(Protocol):
    """Where the controller sends lamp commands (a gateway downlink, a simulator, a test)."""

    async def send(self, commands: list[LampCommand]) -> None: ...

"""Declarative point maps: where a lamp controller keeps each value, and how to read it.

Theory of operation
-------------------
A *point map* is a table, one row (:class:`Point`) per value the gateway reads or writes on an
OPC-UA lamp controller: the level setpoint and its ramp (fade) time, the actual level, power,
energy and status flags. A row names the node by a *template* (a node id such as
``ns=2;s=Vendor.Luminaire.{lamp}.DimLevel`` or a browse path such as
``0:Objects/2:Lamps/2:{lamp}/2:Level``) and says how the raw value converts to the project's
units. A controller model from a new vendor is supported by writing a new table in the
gateway's configuration; no code changes.

Rows convert with one of five *kinds*:

``linear``     ``domain = (raw * scale + offset) * factor(unit)``: percentages, kW, kWh, ms...
``dali_arc``   IEC 62386-102 arc power level 0..254 (logarithmic curve,
               :mod:`controller.dimming.dali`).
``dali_fade``  IEC 62386-102 fade-time code 0..15 for the ramp time.
``flags``      an unsigned integer whose bits (table ``flags``: bit -> flag name) map onto the
               project's status flags (:class:`StatusFlag`).
``bool``       one boolean node that *is* one status flag (the point's key), optionally inverted.

The project's status value (``ReadingKind.STATUS``) is the bit set of :class:`StatusFlag`.
Each flag is *owned* by at most one point of a map, so a vendor with a status word *and* a
separate lamp-failure node is fine as long as the word's table does not also claim that flag;
:func:`merge_status` updates only the bits a point owns.

Everything here is pure: values in, values or :class:`domain.records.Reading` out. Nothing
touches asyncua; ``data_type`` names the OPC-UA built-in type (``ua.VariantType`` member name)
the connector must use when it writes, because servers refuse a Double written to a Byte node.
"""

from __future__ import annotations

import enum
import math
import re
import string
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from controller.dimming.dali import FADE_TIME_S, arc_to_level, fade_code_for, level_to_arc
from domain.errors import StreetlightError
from domain.records import Reading, ReadingKind, StatusFlag

__all__ = [
    "BUILTIN_POINT_MAPS",
    "POINT_MAP_SCHEMA_VERSION",
    "VENDOR_EXAMPLE_MAP",
    "VIRTUAL_MAP",
    "DataType",
    "Point",
    "PointKey",
    "PointKind",
    "PointMap",
    "PointValueError",
    "ResolvedLamp",
    "ResolvedPoint",
    "StatusFlag",
    "flags_to_status",
    "merge_status",
    "status_flag_names",
    "template_fields",
]

POINT_MAP_SCHEMA_VERSION: Final = 1


#: Flag names as written in configuration (``lamp_failure``...).
FlagName = Literal["lamp_failure", "day_burner", "comms_fault", "driver_fault", "over_temperature"]


def status_flag_names(status: int) -> tuple[str, ...]:
    """Names of the :class:`StatusFlag` bits set in ``status``, lowest bit first."""
    return tuple(str(flag.name).lower() for flag in StatusFlag if flag.value & status and flag.name)


def _flag(name: str) -> StatusFlag:
    return StatusFlag[name.upper()]


class PointKey(enum.StrEnum):
    """What a point is; the key decides the domain unit and the reading it produces."""

    SETPOINT = "setpoint"  # commanded level, level_frac (written)
    RAMP_TIME = "ramp_time"  # ramp/fade time of the next setpoint, s (written)
    LEVEL = "level"  # actual light output, level_frac
    POWER = "power"  # active input power, W
    ENERGY = "energy"  # cumulative energy meter, Wh
    STATUS = "status"  # status word -> StatusFlag bits
    LAMP_FAILURE = "lamp_failure"  # one boolean flag node each
    DAY_BURNER = "day_burner"
    COMMS_FAULT = "comms_fault"
    DRIVER_FAULT = "driver_fault"
    OVER_TEMPERATURE = "over_temperature"


class PointKind(enum.StrEnum):
    LINEAR = "linear"
    DALI_ARC = "dali_arc"
    DALI_FADE = "dali_fade"
    FLAGS = "flags"
    BOOL = "bool"


#: OPC-UA built-in types a point may have (``asyncua.ua.VariantType`` member names).
DataType = Literal[
    "Boolean",
    "SByte",
    "Byte",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float",
    "Double",
]

_INT_RANGE: Final[Mapping[str, tuple[int, int]]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}

_FLAG_KEYS: Final = frozenset(
    {
        PointKey.LAMP_FAILURE,
        PointKey.DAY_BURNER,
        PointKey.COMMS_FAULT,
        PointKey.DRIVER_FAULT,
        PointKey.OVER_TEMPERATURE,
    }
)
_COMMAND_KEYS: Final = frozenset({PointKey.SETPOINT, PointKey.RAMP_TIME})

# Linear units each key accepts, and the factor that takes the unit to the domain unit.
_UNITS: Final[Mapping[PointKey, Mapping[str, float]]] = {
    PointKey.SETPOINT: {"frac": 1.0, "%": 0.01, "permille": 0.001},
    PointKey.LEVEL: {"frac": 1.0, "%": 0.01, "permille": 0.001},
    PointKey.RAMP_TIME: {"s": 1.0, "ds": 0.1, "ms": 0.001, "min": 60.0},
    PointKey.POWER: {"W": 1.0, "kW": 1000.0},
    PointKey.ENERGY: {"Wh": 1.0, "kWh": 1000.0, "MWh": 1.0e6},
}
_DOMAIN_UNIT: Final[Mapping[PointKey, str]] = {
    PointKey.SETPOINT: "frac",
    PointKey.LEVEL: "frac",
    PointKey.RAMP_TIME: "s",
    PointKey.POWER: "W",
    PointKey.ENERGY: "Wh",
}
_KINDS: Final[Mapping[PointKey, tuple[PointKind, ...]]] = {
    PointKey.SETPOINT: (PointKind.LINEAR, PointKind.DALI_ARC),
    PointKey.LEVEL: (PointKind.LINEAR, PointKind.DALI_ARC),
    PointKey.RAMP_TIME: (PointKind.LINEAR, PointKind.DALI_FADE),
    PointKey.POWER: (PointKind.LINEAR,),
    PointKey.ENERGY: (PointKind.LINEAR,),
    PointKey.STATUS: (PointKind.FLAGS,),
    **{key: (PointKind.BOOL,) for key in _FLAG_KEYS},
}
_DEFAULT_DATA_TYPE: Final[Mapping[PointKind, DataType]] = {
    PointKind.LINEAR: "Double",
    PointKind.DALI_ARC: "Byte",
    PointKind.DALI_FADE: "Byte",
    PointKind.FLAGS: "UInt32",
    PointKind.BOOL: "Boolean",
}
_READING_KIND: Final[Mapping[PointKey, ReadingKind]] = {
    PointKey.LEVEL: ReadingKind.LEVEL_FRAC,
    PointKey.POWER: ReadingKind.POWER_W,
    PointKey.ENERGY: ReadingKind.ENERGY_WH,
    PointKey.STATUS: ReadingKind.STATUS,
    **{key: ReadingKind.STATUS for key in _FLAG_KEYS},
}

# Levels a little outside 0..1 are rounding (a 0..100 % byte scaled twice); beyond this slack
# the scale or unit is wrong and the value is refused rather than clipped silently.
_LEVEL_SLACK: Final = 0.005


class PointValueError(StreetlightError, ValueError):
    """A raw value cannot be converted (or a domain value cannot be encoded) for ``key``."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"point {key}: {reason}")


# --- templates ----------------------------------------------------------------------------------

_FORMATTER = string.Formatter()
_NODE_ID_RE = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$")
_BROWSE_ELEMENT_RE = re.compile(r"^\d+:.+$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_fields(template: str) -> frozenset[str]:
    """Placeholder names in a ``{name}`` template; ``ValueError`` if the template is malformed."""
    names: set[str] = set()
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as err:
        raise ValueError(
            f"template {template!r} is malformed ({err}); write placeholders as {{name}} "
            "and a literal brace as {{{{ or }}}}"
        ) from err
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _IDENT_RE.match(name) or spec or conversion:
            raise ValueError(
                f"template {template!r} has placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}; placeholders are plain names such as {{lamp}}"
            )
        names.add(name)
    return frozenset(names)


def _fill(template: str, values: Mapping[str, str]) -> str:
    return "".join(
        literal + (values[name] if name is not None else "")
        for literal, name, _, _ in _FORMATTER.parse(template)
    )


def _check_node_id(text: str, where: str) -> None:
    if not _NODE_ID_RE.match(text):
        raise ValueError(
            f"{where} {text!r} is not an OPC-UA node id; write it as ns=<index>;s=<name> "
            "(or i=<number>, g=<guid>, b=<base64>), e.g. ns=2;s=Lamp.{lamp}.Level"
        )


def _split_path(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part for part in value.split("/"))
    return value


# --- points -------------------------------------------------------------------------------------


class Point(BaseModel):
    """One row of a point map. ``node_id`` or ``browse_path`` (exactly one) may hold templates.

    ``unit``, ``scale`` and ``offset`` apply to ``linear`` points only:
    ``domain = (raw * scale + offset) * factor(unit)``. ``flags`` (bit -> flag name) is the
    table of a ``flags`` point; ``invert`` makes a ``bool`` point mean "ok" rather than "fault".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: PointKey
    node_id: str | None = None
    browse_path: Annotated[tuple[str, ...] | None, BeforeValidator(_split_path)] = None
    kind: PointKind = PointKind.LINEAR
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    writable: bool = False
    data_type: DataType = "Double"
    flags: dict[Annotated[int, Field(ge=0, le=63)], FlagName] = Field(default_factory=dict)
    invert: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Defaults that depend on the key: a status word is "flags", a flag node "bool",
        # commands are written; unit and data type follow the kind.
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        try:
            key = PointKey(str(out.get("key")))
        except ValueError:
            return out  # the field validator reports the bad key
        if "kind" not in out:
            out["kind"] = (
                PointKind.FLAGS
                if key is PointKey.STATUS
                else PointKind.BOOL
                if key in _FLAG_KEYS
                else PointKind.LINEAR
            )
        if "writable" not in out:
            out["writable"] = key in _COMMAND_KEYS
        try:
            kind = PointKind(out["kind"])
        except ValueError:
            return out
        if "unit" not in out and kind is PointKind.LINEAR and key in _DOMAIN_UNIT:
            out["unit"] = _DOMAIN_UNIT[key]
        if "data_type" not in out:
            out["data_type"] = _DEFAULT_DATA_TYPE[kind]
        return out

    @model_validator(mode="after")
    def _check(self) -> Point:
        key, kind = self.key, self.kind
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError(f"point {key}: give exactly one of node_id or browse_path")
        if self.node_id is not None:
            fields = template_fields(self.node_id)
            # Placeholders may stand anywhere in the identifier ("0" keeps i=<number>
            # checkable); one that starts the template (a {prefix} holding "ns=3;s=Cab4") is
            # checked once it is filled, in resolve().
            if not self.node_id.startswith("{") or self.node_id.startswith("{{"):
                _check_node_id(
                    _fill(self.node_id, dict.fromkeys(fields, "0")), f"point {key}: node_id"
                )
        if self.browse_path is not None:
            if not self.browse_path or any(not part for part in self.browse_path):
                raise ValueError(
                    f"point {key}: browse_path has an empty element; write it as "
                    "0:Objects/2:Lamps/2:{lamp}/2:Level"
                )
            for part in self.browse_path:
                template_fields(part)
                if not _BROWSE_ELEMENT_RE.match(part):
                    raise ValueError(
                        f"point {key}: browse_path element {part!r} needs its namespace "
                        "index, e.g. 2:Level"
                    )
        if kind not in _KINDS[key]:
            allowed = " or ".join(k.value for k in _KINDS[key])
            raise ValueError(f"point {key}: kind {kind.value!r} does not fit; use {allowed}")
        if kind is PointKind.LINEAR:
            units = _UNITS[key]
            if self.unit not in units:
                raise ValueError(
                    f"point {key}: unit {self.unit!r} is not known for {key}; use one of "
                    + ", ".join(units)
                )
            if not math.isfinite(self.scale) or self.scale == 0.0:
                raise ValueError(f"point {key}: scale must be a finite number other than 0")
            if not math.isfinite(self.offset):
                raise ValueError(f"point {key}: offset must be a finite number")
        elif self.unit or self.scale != 1.0 or self.offset != 0.0:
            raise ValueError(
                f"point {key}: unit, scale and offset apply to linear points only; "
                f"a {kind.value} point has its own fixed conversion, remove them"
            )
        if kind is PointKind.FLAGS and not self.flags:
            raise ValueError(
                f"point {key}: a flags point needs its bit table, e.g. "
                'flags = { 0 = "lamp_failure", 2 = "comms_fault" }'
            )
        if kind is not PointKind.FLAGS and self.flags:
            raise ValueError(f"point {key}: flags apply to a status point of kind flags only")
        if self.invert and kind is not PointKind.BOOL:
            raise ValueError(f"point {key}: invert applies to bool points only")
        if len(set(self.flags.values())) != len(self.flags):
            raise ValueError(f"point {key}: each flag may come from one bit only")
        if self.writable != (key in _COMMAND_KEYS):
            raise ValueError(
                f"point {key}: "
                + (
                    "the gateway writes this point; set writable = true"
                    if key in _COMMAND_KEYS
                    else "the gateway only reads this point; remove writable = true"
                )
            )
        self._check_data_type()
        return self

    def _check_data_type(self) -> None:
        dtype, kind = self.data_type, self.kind
        if kind is PointKind.BOOL and dtype != "Boolean":
            raise ValueError(f"point {self.key}: a bool point has data_type Boolean")
        if kind is not PointKind.BOOL and dtype == "Boolean":
            raise ValueError(f"point {self.key}: only bool points have data_type Boolean")
        if kind in (PointKind.DALI_ARC, PointKind.DALI_FADE, PointKind.FLAGS) and (
            dtype not in _INT_RANGE
        ):
            raise ValueError(
                f"point {self.key}: a {kind.value} point holds an integer; use data_type "
                "Byte, UInt16, UInt32 (or another integer type)"
            )
        if kind is PointKind.FLAGS and self.flags and max(self.flags) >= 8 * _int_bytes(dtype):
            raise ValueError(
                f"point {self.key}: bit {max(self.flags)} does not fit in a {dtype}; "
                "use a wider data_type"
            )

    # --- derived facts ------------------------------------------------------------------------

    @property
    def reading_kind(self) -> ReadingKind | None:
        """The kind of reading this point produces (None for setpoint and ramp time)."""
        return _READING_KIND.get(self.key)

    @property
    def owned_status_bits(self) -> int:
        """The :class:`StatusFlag` bits this point reports (0 for non-status points)."""
        if self.kind is PointKind.FLAGS:
            bits = 0
            for name in self.flags.values():
                bits |= _flag(name)
            return bits
        if self.kind is PointKind.BOOL:
            return int(_flag(self.key.value))
        return 0

    @property
    def placeholders(self) -> frozenset[str]:
        if self.node_id is not None:
            return template_fields(self.node_id)
        out: frozenset[str] = frozenset()
        for part in self.browse_path or ():
            out |= template_fields(part)
        return out

    # --- conversions --------------------------------------------------------------------------

    def decode(self, raw: object) -> float:
        """Domain value of a raw controller value.

        ``level``: level_frac 0..1; ``power``: W; ``energy``: Wh; ``ramp_time``: s;
        ``status`` and flag points: the :class:`StatusFlag` bits they report as set (see
        :func:`merge_status` to combine several points). Raises :class:`PointValueError`.
        """
        kind = self.kind
        if kind is PointKind.BOOL:
            if isinstance(raw, bool) or (isinstance(raw, int) and raw in (0, 1)):
                return float(self.owned_status_bits if bool(raw) != self.invert else 0)
            raise PointValueError(self.key, raw, f"expected a Boolean, got {raw!r}")
        if kind is PointKind.FLAGS:
            word = self._whole(raw, 0, 2**64 - 1, "status word")
            return float(flags_to_status(word, self.flags))
        if kind is PointKind.DALI_ARC:
            arc = self._whole(raw, 0, 254, "DALI arc power level (255 is MASK, no level)")
            return float(arc_to_level([arc])[0])
        if kind is PointKind.DALI_FADE:
            code = self._whole(raw, 0, len(FADE_TIME_S) - 1, "DALI fade-time code")
            return FADE_TIME_S[code]
        number = self._number(raw)
        value = (number * self.scale + self.offset) * _UNITS[self.key][self.unit]
        if not math.isfinite(value):
            raise PointValueError(self.key, raw, f"{raw!r} converts to {value}")
        if self.key is PointKey.LEVEL or self.key is PointKey.SETPOINT:
            if -_LEVEL_SLACK <= value < 0.0:
                return 0.0
            if 1.0 < value <= 1.0 + _LEVEL_SLACK:
                return 1.0
            if not 0.0 <= value <= 1.0:
                raise PointValueError(
                    self.key,
                    raw,
                    f"raw {raw!r} is level {value:g}, outside 0..1; check unit "
                    f"({self.unit!r}), scale and offset",
                )
        if self.key is PointKey.RAMP_TIME and value < 0.0:
            raise PointValueError(self.key, raw, f"raw {raw!r} is a negative ramp time")
        return value

    def encode(self, value: float) -> int | float | bool:
        """Raw value to write for a domain value (level_frac for setpoint, s for ramp time).

        Integer data types are rounded to the nearest step and range-checked; DALI levels use
        the logarithmic curve, DALI fade codes round the ramp up (never faster than asked).
        """
        if not self.writable:
            raise PointValueError(self.key, value, "the gateway does not write this point")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise PointValueError(self.key, value, f"expected a finite number, got {value!r}")
        if self.key is PointKey.SETPOINT and not 0.0 <= value <= 1.0:
            raise PointValueError(self.key, value, f"level_frac {value!r} is outside 0..1")
        if self.key is PointKey.RAMP_TIME and value < 0.0:
            raise PointValueError(self.key, value, f"ramp_s {value!r} is negative")
        if self.kind is PointKind.DALI_ARC:
            return int(level_to_arc([float(value)])[0])
        if self.kind is PointKind.DALI_FADE:
            return fade_code_for(float(value))
        raw = (value / _UNITS[self.key][self.unit] - self.offset) / self.scale
        bounds = _INT_RANGE.get(self.data_type)
        if bounds is None:
            return float(raw)
        whole = round(raw)
        if not bounds[0] <= whole <= bounds[1]:
            raise PointValueError(
                self.key,
                value,
                f"{value!r} encodes to {whole}, outside the {self.data_type} range "
                f"{bounds[0]}..{bounds[1]}; check unit, scale and offset",
            )
        return whole

    def _number(self, raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise PointValueError(self.key, raw, f"expected a number, got {raw!r}")
        if not math.isfinite(raw):
            raise PointValueError(self.key, raw, f"{raw!r} is not a finite number")
        return float(raw)

    def _whole(self, raw: object, low: int, high: int, what: str) -> int:
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise PointValueError(self.key, raw, f"expected a whole number ({what}), got {raw!r}")
        if not low <= raw <= high:
            raise PointValueError(self.key, raw, f"{raw} is outside {low}..{high} ({what})")
        return raw


def _int_bytes(data_type: str) -> int:
    low, high = _INT_RANGE[data_type]
    return (high - low).bit_length() // 8


def flags_to_status(word: int, table: Mapping[int, str]) -> int:
    """:class:`StatusFlag` bits for a vendor status word, given the table bit -> flag name.

    Bits the table does not name are ignored: vendors set many bits the project has no use for.
    """
    status = 0
    for bit, name in table.items():
        if word >> bit & 1:
            status |= _flag(name)
    return status


def merge_status(previous: int, point: Point, raw: object) -> int:
    """The lamp's status after ``point`` reported ``raw``: only the bits it owns change."""
    owned = point.owned_status_bits
    if not owned:
        raise PointValueError(point.key, raw, "is not a status point")
    return (previous & ~owned) | int(point.decode(raw))


# --- maps ---------------------------------------------------------------------------------------


class ResolvedPoint(BaseModel):
    """A point with its templates filled in for one lamp."""

    model_config = ConfigDict(frozen=True)

    point: Point
    node_id: str | None
    browse_path: tuple[str, ...] | None

    @property
    def address(self) -> str:
        """The node id, or the browse path joined with ``/``."""
        return self.node_id if self.node_id is not None else "/".join(self.browse_path or ())


class ResolvedLamp(BaseModel):
    """Every point of one lamp, addressed."""

    model_config = ConfigDict(frozen=True)

    lamp_id: str
    points: tuple[ResolvedPoint, ...]

    def writable(self) -> dict[str, str]:
        """``{key: address}`` of the points the gateway writes."""
        return {p.point.key.value: p.address for p in self.points if p.point.writable}

    def telemetry(self) -> dict[str, str]:
        """``{key: address}`` of the points the gateway subscribes to."""
        return {p.point.key.value: p.address for p in self.points if not p.point.writable}


class PointMap(BaseModel):
    """A named, versioned table of points for one controller model.

    Every map has a writable ``setpoint``; keys are unique; each status flag comes from at
    most one point. ``description`` is for people.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    schema_version: Literal[1]
    description: str = ""
    points: tuple[Point, ...]

    @model_validator(mode="after")
    def _check(self) -> PointMap:
        keys = [p.key for p in self.points]
        twice = sorted({k.value for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"point map {self.name}: keys {twice} appear twice; keep one each")
        if PointKey.SETPOINT not in keys:
            raise ValueError(
                f"point map {self.name}: add a point with key setpoint (the level the "
                "gateway writes)"
            )
        seen = 0
        for point in self.points:
            overlap = seen & point.owned_status_bits
            if overlap:
                raise ValueError(
                    f"point map {self.name}: flags {list(status_flag_names(overlap))} come "
                    "from two points; map each flag from one point only"
                )
            seen |= point.owned_status_bits
        return self

    def point(self, key: str) -> Point | None:
        for p in self.points:
            if p.key == key:
                return p
        return None

    @property
    def placeholders(self) -> frozenset[str]:
        """Every placeholder name the map's templates use."""
        out: frozenset[str] = frozenset()
        for p in self.points:
            out |= p.placeholders
        return out

    def resolve(
        self,
        lamp_id: str,
        *,
        node_prefix: str = "",
        substitutions: Mapping[str, str] | None = None,
    ) -> ResolvedLamp:
        """Fill the templates for one lamp.

        ``{lamp}`` is ``lamp_id`` unless ``substitutions`` gives it, ``{prefix}`` is
        ``node_prefix``; any other placeholder must be in ``substitutions``. Raises
        ``ValueError`` naming the missing placeholder or the malformed result.
        """
        values = {"lamp": lamp_id, "prefix": node_prefix, **(substitutions or {})}
        missing = sorted(self.placeholders - values.keys())
        if missing:
            raise ValueError(
                f"point map {self.name} uses {', '.join('{' + m + '}' for m in missing)} but "
                f'lamp {lamp_id} gives no value; add substitutions = {{ {missing[0]} = "..." }}'
            )
        if "prefix" in self.placeholders and not values["prefix"]:
            raise ValueError(
                f"point map {self.name} uses {{prefix}}; give lamp {lamp_id} a node_prefix"
            )
        resolved = []
        for p in self.points:
            if p.node_id is not None:
                node_id = _fill(p.node_id, values)
                _check_node_id(node_id, f"lamp {lamp_id} point {p.key}: node id")
                resolved.append(ResolvedPoint(point=p, node_id=node_id, browse_path=None))
            else:
                path = tuple(_fill(part, values) for part in p.browse_path or ())
                bad = [part for part in path if not _BROWSE_ELEMENT_RE.match(part)]
                if bad:
                    raise ValueError(
                        f"lamp {lamp_id} point {p.key}: browse path element {bad[0]!r} needs "
                        "its namespace index, e.g. 2:Level"
                    )
                resolved.append(ResolvedPoint(point=p, node_id=None, browse_path=path))
        return ResolvedLamp(lamp_id=lamp_id, points=tuple(resolved))

    def reading(
        self, key: str, lamp_id: str, raw: object, time_ns: int, *, previous_status: int = 0
    ) -> Reading:
        """The :class:`Reading` for a raw telemetry value of point ``key`` of ``lamp_id``.

        Status points give the lamp's whole status: ``previous_status`` (the last status the
        caller saw for the lamp) with this point's bits replaced. Raises
        :class:`PointValueError` for a bad value or a point that is not telemetry.
        """
        point = self.point(key)
        if point is None:
            raise PointValueError(key, raw, f"point map {self.name} has no point {key}")
        kind = point.reading_kind
        if kind is None:
            raise PointValueError(key, raw, "is a command point, not telemetry")
        if kind is ReadingKind.STATUS:
            value = float(merge_status(previous_status, point, raw))
        else:
            value = point.decode(raw)
        return Reading(source_id=lamp_id, kind=kind, value=value, time_ns=time_ns)


# --- built-in maps ------------------------------------------------------------------------------

#: The project's own device simulator (and the reference for new controllers). Node ids, all
#: in namespace 2 with string identifiers, per lamp ``{lamp}``:
#: ``Lamp.{lamp}.Setpoint`` Double level_frac 0..1 (written), ``Lamp.{lamp}.RampTime_s``
#: Double s (written before the setpoint; the ramp of the next setpoint change),
#: ``Lamp.{lamp}.Level`` Double actual level_frac, ``Lamp.{lamp}.Power_W`` Double W,
#: ``Lamp.{lamp}.Energy_Wh`` Double cumulative Wh, ``Lamp.{lamp}.Status`` UInt32 bit flags
#: (bit 0 lamp failure, bit 1 day burner, bit 2 comms fault).
VIRTUAL_MAP: Final = PointMap.model_validate(
    {
        "name": "streetlight-virtual-v1",
        "schema_version": 1,
        "description": "The streetlight device simulator's virtual OPC-UA lamp controller.",
        "points": [
            {"key": "setpoint", "node_id": "ns=2;s=Lamp.{lamp}.Setpoint"},
            {"key": "ramp_time", "node_id": "ns=2;s=Lamp.{lamp}.RampTime_s"},
            {"key": "level", "node_id": "ns=2;s=Lamp.{lamp}.Level"},
            {"key": "power", "node_id": "ns=2;s=Lamp.{lamp}.Power_W"},
            {"key": "energy", "node_id": "ns=2;s=Lamp.{lamp}.Energy_Wh"},
            {
                "key": "status",
                "node_id": "ns=2;s=Lamp.{lamp}.Status",
                "flags": {0: "lamp_failure", 1: "day_burner", 2: "comms_fault"},
            },
        ],
    }
)

#: A vendor-style controller: percent setpoint in a Byte, DALI arc feedback, DALI fade code,
#: kW power and a kWh meter in tenths, a status word with the vendor's own bit positions and a
#: separate lamp-failure node. Shows every kind of conversion; copy it for a real vendor.
VENDOR_EXAMPLE_MAP: Final = PointMap.model_validate(
    {
        "name": "vendor-example-v1",
        "schema_version": 1,
        "description": "Example vendor luminaire controller (string node ids, DALI feedback).",
        "points": [
            {
                "key": "setpoint",
                "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.DimLevel",
                "unit": "%",
                "data_type": "Byte",
            },
            {
                "key": "ramp_time",
                "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.FadeTime",
                "kind": "dali_fade",
            },
            {
                "key": "level",
                "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.ActualArcLevel",
                "kind": "dali_arc",
            },
            {
                "key": "power",
                "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.ActivePower",
                "unit": "kW",
                "data_type": "Float",
            },
            {
                "key": "energy",
                "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.EnergyCounter",
                "unit": "kWh",
                "scale": 0.1,
                "data_type": "UInt32",
            },
            {
                "key": "status",
                "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.StatusWord",
                "data_type": "UInt16",
                "flags": {
                    3: "comms_fault",
                    5: "day_burner",
                    8: "driver_fault",
                    9: "over_temperature",
                },
            },
            {"key": "lamp_failure", "node_id": "ns=2;s=Vendor.Luminaire.{lamp}.LampFailure"},
        ],
    }
)

#: Maps every gateway knows without configuration, by name.
BUILTIN_POINT_MAPS: Final[Mapping[str, PointMap]] = {
    m.name: m for m in (VIRTUAL_MAP, VENDOR_EXAMPLE_MAP)
}

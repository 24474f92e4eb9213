"""Device simulator configuration (``devices.toml``, docs/devices.md): frozen, validated, located.

A file names the virtual lamp controllers (one OPC-UA server each, serving many lamps), the
point scheme each one uses (which string node id, data type and scale carries which quantity),
the virtual MQTT sensors and their broker, and the simulated clock. Every problem is reported
with its location (``controllers[1].lamps.count: ...``), like scenarios and policies.

The point scheme is a declarative table, not code: a vendor's node ids are used by writing
their templates into the file. Internal quantities always have the same units
(:data:`INTERNAL_UNITS`); a point's ``scale`` converts them to what travels on the wire
(``wire = internal * scale``, e.g. 100 for a level in percent, 0.001 for energy in kWh).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import math
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.errors import DocumentError, StreetlightError, ValidationIssue
from domain.validation import iana_time_zone, schema_issues

DEVICES_SCHEMA_VERSION = 1


class DeviceError(StreetlightError):
    """Root of the device simulator's run-time errors."""


class DeviceConfigError(DeviceError, DocumentError):
    """A devices file is invalid; ``issues`` lists every problem with its location."""

    document = "devices config"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- point schemes -----------------------------------------------------------------------------


class PointRole(enum.StrEnum):
    """What a lamp point carries; the code knows roles, the configuration knows node ids."""

    SETPOINT = "setpoint"
    RAMP_TIME = "ramp_time"
    LEVEL = "level"
    POWER = "power"
    ENERGY = "energy"
    STATUS = "status"


#: Internal unit of each role; a point's ``scale`` multiplies it into the wire unit.
INTERNAL_UNITS: Mapping[PointRole, str] = {
    PointRole.SETPOINT: "level_frac (0..1)",
    PointRole.RAMP_TIME: "s",
    PointRole.LEVEL: "level_frac (0..1)",
    PointRole.POWER: "W",
    PointRole.ENERGY: "Wh",
    PointRole.STATUS: "bit flags",
}

#: Roles a client may write; every other role is measured by the lamp.
WRITABLE_ROLES = frozenset({PointRole.SETPOINT, PointRole.RAMP_TIME})

#: Longest fade a lamp accepts, seconds (TALQ commands may carry long ramps; DALI stops at 90.5).
MAX_RAMP_S = 3600.0


class DataType(enum.StrEnum):
    """OPC-UA built-in scalar types a point may use (names as in OPC 10000-6 5.1.2)."""

    DOUBLE = "Double"
    FLOAT = "Float"
    BYTE = "Byte"
    INT16 = "Int16"
    UINT16 = "UInt16"
    INT32 = "Int32"
    UINT32 = "UInt32"
    INT64 = "Int64"
    UINT64 = "UInt64"

    @property
    def is_integer(self) -> bool:
        return self not in (DataType.DOUBLE, DataType.FLOAT)

    @property
    def integer_range(self) -> tuple[int, int]:
        """Inclusive range of an integer type."""
        bits = {"Byte": 8, "Int16": 16, "UInt16": 16, "Int32": 32, "UInt32": 32}.get(self.value, 64)
        if self.value.startswith("U") or self is DataType.BYTE:
            return 0, 2**bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


_NODE_ID = re.compile(r"^ns=(?P<ns>\d+|\{ns\});s=(?P<text>.+)$")
_TEMPLATE_FIELDS = frozenset({"lamp", "ns"})
#: Lamp ids go into string node ids and MQTT topics: keep them to safe characters.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"{template!r} is not a valid template ({err}); use {{lamp}}") from None


def _check_node_template(template: str) -> str:
    fields = _template_fields(template)
    unknown = fields - _TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"node id template {template!r} uses {sorted(unknown)}; only {{lamp}} and {{ns}} exist"
        )
    if "lamp" not in fields:
        raise ValueError(f"node id template {template!r} needs {{lamp}}: every lamp has its own")
    if not _NODE_ID.match(template):
        raise ValueError(
            f"node id template {template!r} must be a string node id such as "
            "'ns=2;s=Lamp.{lamp}.Level' (or 'ns={ns};s=...' for the server's own namespace)"
        )
    return template


def render_node_id(template: str, *, lamp: str, ns: int) -> str:
    """The node id string of ``template`` for one lamp (``ns`` fills ``{ns}``)."""
    return template.format(lamp=lamp, ns=ns)


def split_node_id(node_id: str) -> tuple[int, str]:
    """``"ns=2;s=Lamp.L001.Level"`` -> ``(2, "Lamp.L001.Level")``."""
    match = _NODE_ID.match(node_id)
    if match is None or not match["ns"].isdigit():
        raise ValueError(f"{node_id!r} is not a string node id 'ns=<index>;s=<text>'")
    return int(match["ns"]), match["text"]


class PointSpec(_Model):
    """One lamp point: node id template, OPC-UA data type, scale to the wire unit, writability."""

    node_id: str
    data_type: DataType = DataType.DOUBLE
    #: ``wire = internal * scale`` (internal units: :data:`INTERNAL_UNITS`).
    scale: float = Field(1.0, gt=0)
    writable: bool = False
    #: Browse name of the variable (default: the last '.'-separated part of the string id).
    browse_name: str | None = None

    @field_validator("node_id")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_node_template(value)

    @field_validator("scale")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("scale must be a finite number > 0")
        return value

    def name_of(self, node_id: str) -> str:
        return self.browse_name or split_node_id(node_id)[1].rsplit(".", 1)[-1]

    def encode(self, internal: float) -> float | int:
        """Internal value -> wire value (rounded and clamped to the range of integer types)."""
        wire = internal * self.scale
        if self.data_type.is_integer:
            low, high = self.data_type.integer_range
            return min(max(round(wire), low), high)
        return float(wire)

    def decode(self, wire: float | int) -> float:
        """Wire value -> internal value."""
        return float(wire) / self.scale


class StatusBits(_Model):
    """Bit positions of the status word (default: bit 0 lamp failure, 1 day-burner, 2 comms)."""

    lamp_failure: int = Field(0, ge=0, le=63)
    day_burner: int = Field(1, ge=0, le=63)
    comms_fault: int = Field(2, ge=0, le=63)

    @model_validator(mode="after")
    def _distinct(self) -> StatusBits:
        if len({self.lamp_failure, self.day_burner, self.comms_fault}) != 3:
            raise ValueError("lamp_failure, day_burner and comms_fault need different bits")
        return self


class PointScheme(_Model):
    """How one controller model lays out its lamps' points (a declarative point map).

    ``setpoint`` and ``level`` are required; the other roles are optional (a controller without
    a ramp time point fades over the controller's ``default_ramp_s``). ``lamp_object`` is the
    template of each lamp's object node (default: the setpoint's id without its last part).
    """

    name: str = "custom"
    namespace_uri: str = "urn:streetlight:virtual-controller"
    lamp_object: str | None = None
    setpoint: PointSpec
    ramp_time: PointSpec | None = None
    level: PointSpec
    power: PointSpec | None = None
    energy: PointSpec | None = None
    status: PointSpec | None = None
    status_bits: StatusBits = Field(default_factory=lambda: StatusBits())

    @field_validator("lamp_object")
    @classmethod
    def _object_template(cls, value: str | None) -> str | None:
        return None if value is None else _check_node_template(value)

    @model_validator(mode="after")
    def _consistent(self) -> PointScheme:
        if not self.setpoint.writable:
            raise ValueError("setpoint.writable must be true: clients command lamps through it")
        for role, spec in self.points().items():
            if spec.writable and role not in WRITABLE_ROLES:
                raise ValueError(
                    f"{role}.writable must be false: only setpoint and ramp_time can be written "
                    "(the others are measured by the lamp)"
                )
        if self.status is not None:
            if not self.status.data_type.is_integer:
                raise ValueError("status must be an integer data type (UInt32, UInt16, ...)")
            if self.status.scale != 1.0:
                raise ValueError("status.scale must be 1 (it is a bit field)")
            high = max(self.status_bits.lamp_failure, self.status_bits.day_burner)
            high = max(high, self.status_bits.comms_fault)
            if 2**high > self.status.data_type.integer_range[1]:
                raise ValueError(
                    f"status bit {high} does not fit into {self.status.data_type}; "
                    "choose a wider type or lower bits"
                )
        object_template = self.object_template()
        ids = [render_node_id(s.node_id, lamp="X", ns=0) for s in self.points().values()]
        ids.append(render_node_id(object_template, lamp="X", ns=0))
        if len(set(ids)) != len(ids):
            raise ValueError(f"two points (or a point and lamp_object) share a node id: {ids}")
        return self

    def points(self) -> dict[PointRole, PointSpec]:
        """The configured points by role, in role order."""
        out: dict[PointRole, PointSpec] = {}
        for role in PointRole:
            spec = getattr(self, role.value)
            if spec is not None:
                out[role] = spec
        return out

    def object_template(self) -> str:
        if self.lamp_object is not None:
            return self.lamp_object
        head, sep, _ = self.setpoint.node_id.rpartition(".")
        if not sep or "{lamp}" not in head:
            raise ValueError(
                f"cannot derive the lamp object from {self.setpoint.node_id!r}; set lamp_object"
            )
        return head

    def node_ids(self, lamp: str, ns: int) -> dict[PointRole, str]:
        """Every point's node id for one lamp."""
        return {
            role: render_node_id(spec.node_id, lamp=lamp, ns=ns)
            for role, spec in self.points().items()
        }


def _virtual_v1() -> PointScheme:
    def point(suffix: str, data_type: DataType = DataType.DOUBLE, **kw: Any) -> PointSpec:
        return PointSpec(node_id=f"ns={{ns}};s=Lamp.{{lamp}}.{suffix}", data_type=data_type, **kw)

    return PointScheme(
        name="streetlight-virtual-v1",
        setpoint=point("Setpoint", writable=True),
        ramp_time=point("RampTime_s", writable=True),
        level=point("Level"),
        power=point("Power_W"),
        energy=point("Energy_Wh"),
        status=point("Status", DataType.UINT32),
    )


#: Schemes every devices file may name without defining them.
BUILTIN_SCHEMES: Mapping[str, PointScheme] = {s.name: s for s in (_virtual_v1(),)}
DEFAULT_SCHEME = "streetlight-virtual-v1"


# --- controllers -------------------------------------------------------------------------------


class Security(enum.StrEnum):
    """OPC-UA endpoint security (policy and message mode)."""

    NONE = "None"
    BASIC256SHA256_SIGN = "Basic256Sha256_Sign"
    BASIC256SHA256_SIGN_AND_ENCRYPT = "Basic256Sha256_SignAndEncrypt"


class LampsSpec(_Model):
    """Either ``count`` lamps named ``{id_prefix}{n:0{digits}d}`` from ``first``, or ``ids``."""

    count: int | None = Field(None, ge=1, le=20_000)
    id_prefix: str = "L"
    first: int = Field(1, ge=0)
    digits: int = Field(3, ge=1, le=9)
    ids: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LampsSpec:
        if (self.count is None) == (self.ids is None):
            raise ValueError("give exactly one of count (with id_prefix) or ids")
        lamp_ids = self.lamp_ids()
        bad = [i for i in lamp_ids if not _ID.match(i)]
        if bad:
            raise ValueError(
                f"lamp ids may hold only letters, digits, '_' and '-' (1-64 characters): {bad[:3]}"
            )
        if len(set(lamp_ids)) != len(lamp_ids):
            raise ValueError("lamp ids must be unique within a controller")
        return self

    def lamp_ids(self) -> tuple[str, ...]:
        if self.ids is not None:
            return self.ids
        assert self.count is not None
        return tuple(
            f"{self.id_prefix}{n:0{self.digits}d}"
            for n in range(self.first, self.first + self.count)
        )


def _check_host(value: str) -> str:
    if value == "localhost":
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"host must be an IP address such as 127.0.0.1, got {value!r}") from None
    return value


class ControllerConfig(_Model):
    """One virtual lamp controller (a cabinet): an OPC-UA server serving ``lamps``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    host: str = "127.0.0.1"
    #: 0 picks a free port at start; the same port is kept across drop-off and come-back.
    port: int = Field(0, ge=0, le=65535)
    #: Endpoint path; ``{name}`` is the controller's name.
    path: str = "/streetlight/{name}"
    security: Security = Security.NONE
    #: When set, only client certificates in this folder (DER or PEM) are accepted.
    trusted_clients_dir: str | None = None
    #: A built-in scheme's name or a name under ``[schemes]`` (default streetlight-virtual-v1).
    scheme: str | None = None
    #: An inline point scheme for this controller only (instead of ``scheme``).
    points: PointScheme | None = None
    lamps: LampsSpec
    rated_power_w: float = Field(60.0, gt=0, le=5000)
    standby_power_w: float = Field(0.5, ge=0, le=50)
    initial_level_frac: float = Field(0.0, ge=0, le=1)
    #: Fade time used until a client writes the ramp time (and always, without that point).
    default_ramp_s: float = Field(0.0, ge=0, le=MAX_RAMP_S)
    #: Fade simulation step (Level and Power are published at most this often).
    tick_s: float = Field(0.1, ge=0.01, le=5.0)
    #: Energy counters are published at most this often (they change every tick).
    energy_publish_s: float = Field(1.0, ge=0.01, le=3600)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    @model_validator(mode="after")
    def _one_scheme(self) -> ControllerConfig:
        if self.scheme is not None and self.points is not None:
            raise ValueError("give scheme (a name) or points (an inline scheme), not both")
        return self

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or _template_fields(value) - {"name"}:
            raise ValueError(f"path must start with '/' and may use only {{name}}, got {value!r}")
        return value

    def endpoint_path(self) -> str:
        return self.path.format(name=self.name)


# --- sensors and broker ------------------------------------------------------------------------


def _check_topic(value: str) -> str:
    fields = _template_fields(value)
    if fields - {"sensor_id", "kind"}:
        raise ValueError(f"topic template {value!r} may use only {{sensor_id}} and {{kind}}")
    if "sensor_id" not in fields:
        raise ValueError(f"topic template {value!r} needs {{sensor_id}}")
    if any(c in value for c in "+#\0") or value.startswith("/") or not value.strip():
        raise ValueError(f"topic template {value!r} must not hold '+', '#' or start with '/'")
    return value


def _check_shape(shape: tuple[float, ...]) -> tuple[float, ...]:
    if not shape:
        return shape
    if len(shape) != 24 or not all(math.isfinite(v) and v >= 0 for v in shape) or max(shape) <= 0:
        raise ValueError("footfall_shape needs 24 finite values >= 0, not all zero (one per hour)")
    return shape


FootfallShape = Annotated[tuple[float, ...], AfterValidator(_check_shape)]


class PresenceSensors(_Model):
    """PIR presence sensors along ``streets`` streets, ``per_street`` each, ``spacing_m`` apart.

    Road users come from :meth:`simulation.demand.DemandModel.synthetic` (peaks per street),
    walk, cycle or drive along the street and are detected by each sensor they pass
    (:func:`simulation.demand.simulate_night`, with its default miss probabilities).
    """

    kind: Literal["presence"] = "presence"
    id_prefix: str = Field("pir-", pattern=r"^[A-Za-z0-9_-]{0,32}$")
    streets: int = Field(1, ge=1, le=1000)
    per_street: int = Field(10, ge=1, le=500)
    spacing_m: float = Field(30.0, gt=1, le=500)
    footfall_peak_per_h: float = Field(60.0, ge=0, le=100_000)
    traffic_peak_per_h: float = Field(30.0, ge=0, le=100_000)
    #: People on foot by local hour (24 values, any scale: normalised to the peak), e.g. the
    #: mean day of a real footfall counter; empty = the documented residential default shape.
    footfall_shape: FootfallShape = ()
    topic: str = "sensors/{sensor_id}/presence"
    qos: int = Field(0, ge=0, le=2)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic(value)

    @property
    def count(self) -> int:
        return self.streets * self.per_street


class CountingSensors(_Model):
    """Footfall or traffic counters publishing a count every ``interval_s`` simulated seconds.

    Counts are Poisson with the mean of :meth:`DemandModel.synthetic` (footfall: people on foot
    and cycling; traffic: vehicles) over the interval, ``peak_per_h`` at the day's peak.
    """

    kind: Literal["footfall", "traffic"]
    id_prefix: str = Field(pattern=r"^[A-Za-z0-9_-]{0,32}$")
    count: int = Field(1, ge=1, le=10_000)
    interval_s: float = Field(60.0, ge=1, le=86_400)
    peak_per_h: float = Field(600.0, ge=0, le=1_000_000)
    #: People on foot by local hour (24 values, any scale: normalised to the peak), e.g. the
    #: mean day of a real footfall counter; empty = the documented residential default shape.
    footfall_shape: FootfallShape = ()
    topic: str = "sensors/{sensor_id}/count"
    qos: int = Field(0, ge=0, le=2)

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic(value)


SensorGroup = Annotated[PresenceSensors | CountingSensors, Field(discriminator="kind")]


class TlsConfig(_Model):
    """TLS to the broker: a CA to trust, optionally a client certificate and key."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Skip the broker host name check (test brokers with a certificate for another name).
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (a client certificate)")
        return self


class BrokerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    #: A literal password (development only) or the name of an environment variable holding it.
    password: str | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    client_id: str = Field("streetlight-devices", min_length=1, max_length=64)
    keepalive_s: int = Field(30, ge=5, le=3600)

    @model_validator(mode="after")
    def _password(self) -> BrokerConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        if (self.password is not None or self.password_env is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self


class ClockConfig(_Model):
    """The simulated clock that drives the sensors: ``speedup`` simulated seconds per second."""

    speedup: float = Field(1.0, gt=0, le=100_000)
    #: ``"now"`` or an ISO 8601 time with a zone, e.g. ``2026-12-21T16:00:00Z``.
    start: Literal["now"] | dt.datetime = "now"
    #: IANA zone of the demand shapes' local hours.
    tz: Annotated[str, AfterValidator(iana_time_zone)] = "Europe/London"
    seed: int = 42

    @field_validator("start")
    @classmethod
    def _aware(cls, value: Literal["now"] | dt.datetime) -> Literal["now"] | dt.datetime:
        if isinstance(value, dt.datetime) and value.utcoffset() is None:
            raise ValueError("start needs a zone, e.g. 2026-12-21T16:00:00Z")
        return value


# --- the file ----------------------------------------------------------------------------------


class DevicesConfig(_Model):
    schema_version: Literal[1]
    #: Server certificates are generated here at start when missing (default: a temp folder).
    cert_dir: str | None = None
    schemes: dict[str, PointScheme] = Field(default_factory=dict)
    controllers: tuple[ControllerConfig, ...] = ()
    sensors: tuple[SensorGroup, ...] = ()
    broker: BrokerConfig | None = None
    clock: ClockConfig = Field(default_factory=lambda: ClockConfig())
    base_dir: str = Field("", exclude=True)

    @field_validator("schemes")
    @classmethod
    def _named(cls, value: dict[str, PointScheme]) -> dict[str, PointScheme]:
        clash = sorted(set(value) & set(BUILTIN_SCHEMES))
        if clash:
            raise ValueError(f"{clash} are built-in scheme names; choose another name")
        return {name: s.model_copy(update={"name": name}) for name, s in value.items()}

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> DevicesConfig:
        issues = _cross_issues(self)
        collected = info.context.get("cross_issues") if isinstance(info.context, dict) else None
        if isinstance(collected, list):
            collected.extend(issues)
        elif issues:
            raise ValueError("; ".join(str(issue) for issue in issues))
        return self

    def scheme_of(self, controller: ControllerConfig) -> PointScheme:
        """The resolved point scheme of a controller."""
        if controller.points is not None:
            return controller.points.model_copy(update={"name": f"{controller.name}-points"})
        return (self.schemes | dict(BUILTIN_SCHEMES))[controller.scheme or DEFAULT_SCHEME]

    def path(self, relative: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(relative)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


def sensor_ids(group: PresenceSensors | CountingSensors) -> tuple[str, ...]:
    """The ids of a sensor group: ``{id_prefix}{n:03d}`` from 1."""
    return tuple(f"{group.id_prefix}{n:03d}" for n in range(1, group.count + 1))


def _cross_issues(config: DevicesConfig) -> list[ValidationIssue]:
    """Problems that span several sections, each located."""
    issues: list[ValidationIssue] = []
    seen_names: dict[str, int] = {}
    seen_ports: dict[tuple[str, int], int] = {}
    known = config.schemes | dict(BUILTIN_SCHEMES)
    for k, c in enumerate(config.controllers):
        if c.name in seen_names:
            issues.append(
                ValidationIssue(
                    f"controllers.{k}.name",
                    f"{c.name!r} is already controllers.{seen_names[c.name]}; names must be unique",
                )
            )
        seen_names.setdefault(c.name, k)
        if c.port and (c.host, c.port) in seen_ports:
            issues.append(
                ValidationIssue(
                    f"controllers.{k}.port",
                    f"controllers.{seen_ports[(c.host, c.port)]} already listens on "
                    f"{c.host}:{c.port}; use another port or 0 (a free one)",
                )
            )
        seen_ports.setdefault((c.host, c.port), k)
        if c.scheme is not None and c.scheme not in known:
            issues.append(
                ValidationIssue(
                    f"controllers.{k}.scheme",
                    f"{c.scheme!r} is neither built in nor under [schemes]; known: {sorted(known)}",
                )
            )
    if config.sensors and config.broker is None:
        issues.append(ValidationIssue("broker", "sensors need a [broker] section (host, port)"))
    owner: dict[str, int] = {}
    for k, group in enumerate(config.sensors):
        for sid in sensor_ids(group):
            if sid in owner and owner[sid] != k:
                issues.append(
                    ValidationIssue(
                        f"sensors.{k}.id_prefix",
                        f"sensor id {sid!r} is also in sensors.{owner[sid]}; use another id_prefix",
                    )
                )
                break
            owner[sid] = k
    return issues


def parse_devices(data: Any, *, base_dir: str | Path = "") -> DevicesConfig:
    """Validate a parsed devices document; paths inside resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise DeviceConfigError(
            [ValidationIssue("(document)", "a devices file is a table of keys")]
        )
    cross: list[ValidationIssue] = []
    try:
        config = DevicesConfig.model_validate(
            {**data, "base_dir": str(base_dir)}, context={"cross_issues": cross}
        )
    except ValidationError as err:
        raise DeviceConfigError(
            schema_issues(err, unknown_key="check the spelling against docs/devices.md")
        ) from None
    if cross:
        raise DeviceConfigError(cross)
    return config


def load_devices(path: str | Path) -> DevicesConfig:
    """Read and validate a ``devices.toml``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise DeviceConfigError(
            [ValidationIssue(str(p), f"cannot read the file: {err.strerror}")]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise DeviceConfigError([ValidationIssue(str(p), f"not valid TOML: {err}")]) from None
    return parse_devices(data, base_dir=p.resolve().parent)

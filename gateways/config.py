"""The gateway agent's configuration: one TOML file, schema version 1, loaded once.

Theory of operation
-------------------
:func:`load_gateway_config` reads the TOML file and returns a frozen :class:`GatewayConfig`,
or raises :class:`GatewayConfigError` listing *every* problem, each with its location
(``opcua_controllers[0].lamps[2].lamp_id``) and what to write instead. It checks in two passes:

1. the schema: types, ranges, unknown fields (a typo is an error, never a silently ignored
   setting), and the rules inside one section (security policy and mode go together...);
2. the cross-references: point maps named by controllers exist, every lamp's node ids and
   topics resolve, a lamp has one controller, sensors cover lamps this gateway has, and the
   broker credentials are not the documented development ones outside ``dev_mode``.

Relative file paths (queue, schedule, certificates) are relative to the configuration file's
directory and come back absolute; certificate and key files must exist.

``docs/gateway-config.md`` describes every field; ``streetlight/samples/gateway.toml`` is a
complete example.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from domain.errors import DocumentError, ValidationIssue
from domain.protocol import GATEWAY_ID_PATTERN, GatewayTopics, TopicError
from domain.validation import iana_time_zone
from gateways.codecs import LampSetpointSpec, LampTelemetrySpec, SensorSpec, TopicTemplate
from gateways.pointmap import BUILTIN_POINT_MAPS, PointMap, ResolvedLamp

__all__ = [
    "CONFIG_SCHEMA_VERSION",
    "DEV_BROKER_PASSWORD",
    "AutonomyConfig",
    "BrokerConfig",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewaySection",
    "LampBinding",
    "MqttLampsConfig",
    "MqttSensorConfig",
    "OpcUaControllerConfig",
    "QueueConfig",
    "TlsConfig",
    "UplinkConfig",
    "gateway_config_issues",
    "load_gateway_config",
    "parse_gateway_config",
]

CONFIG_SCHEMA_VERSION: Final = 1

#: The broker password of the development setup (documented, so never a secret): refused
#: unless ``dev_mode = true``.
DEV_BROKER_PASSWORD: Final = "streetlight-dev"


class GatewayConfigError(DocumentError):
    """The gateway configuration is invalid; ``issues`` lists every problem found."""

    document = "gateway configuration"


# --- field types --------------------------------------------------------------------------------


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return value


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    value = _resolve_path(value, info)
    if (info.context or {}).get("check_files") and not value.is_file():
        raise ValueError(f"file {value} does not exist; give the path of the PEM or DER file")
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
ConfigFile = Annotated[Path, AfterValidator(_existing_file)]
_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=_NAME_PATTERN)]


def _printable_id(value: str) -> str:
    if not value or len(value) > 128 or not value.isprintable():
        raise ValueError("ids are 1-128 printable characters")
    return value


LampId = Annotated[str, AfterValidator(_printable_id)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Seconds = Annotated[float, Field(gt=0.0, le=86_400.0), AfterValidator(_finite)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- sections -----------------------------------------------------------------------------------


class GatewaySection(_Model):
    """Who this gateway is and where (for the astronomical clock of the fail-safe)."""

    id: Annotated[str, Field(pattern=GATEWAY_ID_PATTERN)]
    council_id: Annotated[str, Field(min_length=1, max_length=128)]
    tz: Annotated[str, AfterValidator(iana_time_zone)]
    lat_deg: Annotated[float, Field(ge=-90.0, le=90.0)]
    lon_deg: Annotated[float, Field(ge=-180.0, le=180.0)]


class TlsConfig(_Model):
    """TLS to the broker. No ``ca_file``: the system's CAs. ``cert_file``/``key_file``: a client
    certificate (per-gateway identity). ``insecure`` skips verification (dev_mode only)."""

    ca_file: ConfigFile | None = None
    cert_file: ConfigFile | None = None
    key_file: ConfigFile | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (the client certificate)")
        return self


class BrokerConfig(_Model):
    """The MQTT broker the gateway talks to the central service through."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str = ""
    password: SecretStr = SecretStr("")
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    tls: TlsConfig | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30


def _topic_prefix(value: str) -> str:
    try:
        GatewayTopics(value, "x")
    except TopicError as err:
        raise ValueError(err.reason) from err
    return value


class UplinkConfig(_Model):
    """Readings northbound: batched into messages of at most ``batch_max_readings``, sent at
    least every ``batch_interval_s``; QoS 1 (or 2) so the broker acknowledges each."""

    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "streetlight/v1"
    batch_max_readings: Annotated[int, Field(ge=1, le=10_000)] = 500
    batch_interval_s: Seconds = 1.0
    qos: Literal[1, 2] = 1


class QueueConfig(_Model):
    """The on-disk store-and-forward queue (:class:`gateways.queue.DiskQueue`)."""

    path: ConfigPath
    max_messages: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    when_full: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"


class AutonomyConfig(_Model):
    """Local control when the central service is silent (:mod:`gateways.autonomy`)."""

    uplink_timeout_s: Seconds = 30.0
    fail_safe_level_frac: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    schedule_path: ConfigPath | None = None
    daylight_elevation_deg: Annotated[float, Field(ge=-18.0, le=30.0)] = 3.0


def _substitution_keys(value: dict[str, str]) -> dict[str, str]:
    bad = [k for k in value if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
    if bad:
        raise ValueError(f"substitution names {bad} must be plain names like cabinet or lamp")
    return value


class LampBinding(_Model):
    """One lamp on a controller. Templates see ``{lamp}`` (the lamp id unless substitutions
    give another), ``{prefix}`` (``node_prefix``) and each substitution by name."""

    lamp_id: LampId
    node_prefix: str = ""
    substitutions: Annotated[dict[str, str], AfterValidator(_substitution_keys)] = Field(
        default_factory=dict
    )

    def values(self) -> dict[str, str]:
        return {"lamp": self.lamp_id, "prefix": self.node_prefix, **self.substitutions}


class OpcUaControllerConfig(_Model):
    """One OPC-UA lamp controller endpoint and the lamps behind it."""

    name: Name
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://[^\s]+$")]
    point_map: str
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: ConfigFile | None = None
    private_key: ConfigFile | None = None
    server_certificate: ConfigFile | None = None
    username: str = ""
    password: SecretStr = SecretStr("")
    publishing_interval_ms: Annotated[float, Field(ge=10.0, le=60_000.0)] = 100.0
    lamps: Annotated[tuple[LampBinding, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _security(self) -> OpcUaControllerConfig:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError(
                "security_policy and security_mode go together: both None, or "
                "Basic256Sha256 with Sign or SignAndEncrypt"
            )
        if self.security_policy != "None" and (
            self.certificate is None or self.private_key is None
        ):
            raise ValueError(
                f"security_mode {self.security_mode} needs this gateway's certificate and "
                "private_key files (the server must trust the certificate)"
            )
        if self.security_policy == "None" and (self.certificate or self.private_key):
            raise ValueError(
                "certificate and private_key are used only with security_policy Basic256Sha256"
            )
        if self.password.get_secret_value() and not self.username:
            raise ValueError("password given without username; add username")
        return self


class MqttSensorConfig(SensorSpec):
    """MQTT sensors sharing one topic template and payload mapping.

    ``lamps`` maps a sensor id to the lamps it covers (for presence light on demand while
    the gateway runs on its own).
    """

    name: Name
    qos: Literal[0, 1, 2] = 1
    lamps: dict[str, tuple[LampId, ...]] = Field(default_factory=dict)


class MqttLampsConfig(_Model):
    """MQTT lamp nodes sharing one setpoint/telemetry layout."""

    name: Name
    setpoint: LampSetpointSpec
    telemetry: LampTelemetrySpec | None = None
    qos: Literal[0, 1, 2] = 1
    lamps: Annotated[tuple[LampBinding, ...], Field(min_length=1)]


def _name_point_maps(value: Any) -> Any:
    # A map's name is its table key in TOML ([point_maps.acme-v2]); copy it into the body.
    if isinstance(value, Mapping):
        return {
            key: (
                {"name": key, **body} if isinstance(body, Mapping) and "name" not in body else body
            )
            for key, body in value.items()
        }
    return value


class GatewayConfig(_Model):
    """The whole configuration of one gateway agent."""

    schema_version: Literal[1]
    dev_mode: bool = False
    gateway: GatewaySection
    broker: BrokerConfig
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    queue: QueueConfig
    autonomy: AutonomyConfig = Field(default_factory=AutonomyConfig)
    point_maps: dict[str, PointMap] = Field(default_factory=dict)
    opcua_controllers: tuple[OpcUaControllerConfig, ...] = ()
    mqtt_sensors: tuple[MqttSensorConfig, ...] = ()
    mqtt_lamps: tuple[MqttLampsConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "point_maps" in data:
            return {**data, "point_maps": _name_point_maps(data["point_maps"])}
        return data

    # --- derived ------------------------------------------------------------------------------

    @property
    def topics(self) -> GatewayTopics:
        """The gateway's uplink/downlink/ack/status topics."""
        return GatewayTopics(self.uplink.topic_prefix, self.gateway.id)

    @property
    def mqtt_client_id(self) -> str:
        return self.broker.client_id or f"streetlight-gw-{self.gateway.id}"

    def point_map(self, name: str) -> PointMap:
        """A map defined in this file, or a built-in one; ``KeyError`` if neither."""
        if name in self.point_maps:
            return self.point_maps[name]
        return BUILTIN_POINT_MAPS[name]

    def resolved_lamps(self, controller: OpcUaControllerConfig) -> list[ResolvedLamp]:
        """Every lamp of ``controller`` with its node ids filled in."""
        point_map = self.point_map(controller.point_map)
        return [
            point_map.resolve(
                lamp.lamp_id, node_prefix=lamp.node_prefix, substitutions=lamp.substitutions
            )
            for lamp in controller.lamps
        ]

    def lamp_ids(self) -> tuple[str, ...]:
        """Every lamp this gateway drives, in configuration order."""
        groups: list[Sequence[LampBinding]] = [c.lamps for c in self.opcua_controllers]
        groups += [g.lamps for g in self.mqtt_lamps]
        return tuple(lamp.lamp_id for lamps in groups for lamp in lamps)


# --- loading and checking -----------------------------------------------------------------------


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read, check and return the configuration in ``path`` (TOML).

    Raises :class:`GatewayConfigError` listing every problem.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GatewayConfigError(
            [ValidationIssue(str(file), f"cannot read the file ({err})")], str(file)
        ) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise GatewayConfigError(
            [ValidationIssue(str(file), f"not valid TOML: {err}")], str(file)
        ) from err
    return parse_gateway_config(data, base_dir=file.resolve().parent, source=str(file))


def parse_gateway_config(
    data: Mapping[str, Any],
    *,
    base_dir: Path | None = None,
    check_files: bool = True,
    source: str = "",
) -> GatewayConfig:
    """Check a parsed document; relative paths are resolved against ``base_dir``."""
    config, issues = _check(data, base_dir=base_dir, check_files=check_files)
    if issues or config is None:
        raise GatewayConfigError(issues, source)
    return config


def gateway_config_issues(
    data: Mapping[str, Any], *, base_dir: Path | None = None, check_files: bool = True
) -> list[ValidationIssue]:
    """Every problem with a parsed document (empty when it is valid)."""
    return _check(data, base_dir=base_dir, check_files=check_files)[1]


def _check(
    data: Mapping[str, Any], *, base_dir: Path | None, check_files: bool
) -> tuple[GatewayConfig | None, list[ValidationIssue]]:
    context = {"base_dir": base_dir, "check_files": check_files and base_dir is not None}
    if not isinstance(data, Mapping):
        return None, [ValidationIssue("document", "expected a table of sections")]
    try:
        config = GatewayConfig.model_validate(data, context=context)
    except ValidationError as err:
        issues = [_issue(e) for e in err.errors(include_url=False)]
        partial = _cross_issues(_raw_parts(data, context), complete=False)
        return None, _dedupe(issues + partial)
    return config, _dedupe(_cross_issues(_full_parts(config), complete=True))


def _dedupe(issues: Iterable[ValidationIssue]) -> list[ValidationIssue]:
    return list(dict.fromkeys(issues))


# --- schema messages ----------------------------------------------------------------------------


def _known_fields() -> frozenset[str]:
    names: set[str] = set()
    stack: list[type[BaseModel]] = [GatewayConfig, PointMap]
    seen: set[type[BaseModel]] = set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(name)
            for arg in _types_in(info.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    stack.append(arg)
    return frozenset(names)


def _types_in(annotation: Any) -> Iterable[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _types_in(arg)


_KNOWN_FIELDS: Final = _known_fields()


def _where(loc: Sequence[int | str]) -> str:
    text = ""
    for item in loc:
        if item == "[key]":
            continue
        if isinstance(item, int):
            text += f"[{item}]"
        elif text and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(item)):
            text += f".{item}" if re.match(_NAME_PATTERN, str(item)) else f"[{item!r}]"
        else:
            text += f".{item}" if text else str(item)
    return text or "document"


def _shown(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return repr(value)


def _issue(error: Mapping[str, Any]) -> ValidationIssue:
    loc = tuple(error["loc"])
    where = _where(loc)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    last = str(loc[-1]) if loc else ""
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    elif kind == "missing":
        message = f"required; add {last}"
    elif kind == "extra_forbidden":
        guess = difflib.get_close_matches(last, sorted(_KNOWN_FIELDS), n=1, cutoff=0.6)
        message = f"unknown field {last}" + (
            f"; did you mean {guess[0]}?" if guess else "; remove it or check the spelling"
        )
    elif kind == "literal_error" and last == "schema_version":
        message = (
            f"{value!r} is not supported; this gateway reads schema_version {CONFIG_SCHEMA_VERSION}"
        )
    elif kind in ("literal_error", "enum"):
        message = f"{_shown(value)} is not allowed; use {ctx.get('expected', '')}"
    elif kind == "string_pattern_mismatch":
        message = f"{_shown(value)} has characters that are not allowed here " + (
            "(letters, digits, _ . - ; at most 64)"
            if ctx.get("pattern") in (GATEWAY_ID_PATTERN, _NAME_PATTERN)
            else f"(pattern {ctx.get('pattern')})"
        )
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        message = f"expected a whole number, got {_shown(value)}"
    elif kind in ("float_parsing", "float_type"):
        message = f"expected a number, got {_shown(value)}"
    elif kind in ("bool_parsing", "bool_type"):
        message = f"expected true or false, got {_shown(value)}"
    elif kind == "string_type":
        message = f"expected text, got {_shown(value)}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a table, got {_shown(value)}"
    elif kind in ("tuple_type", "list_type"):
        message = f"expected a list, got {_shown(value)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "")
        word = {
            "greater_than": "above",
            "greater_than_equal": "at least",
            "less_than": "below",
            "less_than_equal": "at most",
        }[kind]
        message = f"{_shown(value)} must be {word} {bound}"
    else:
        message = str(error["msg"])
    return ValidationIssue(where, message)


# --- cross-references ---------------------------------------------------------------------------

_BUILTIN_NAMES: Final = ", ".join(sorted(BUILTIN_POINT_MAPS))


@dataclass(frozen=True, slots=True)
class _Parts:
    """The sections the cross-reference checks read; None marks a part that did not validate
    (its own problems are reported by the schema pass, and checks that need it are skipped)."""

    dev_mode: bool | None
    broker: BrokerConfig | None
    maps: Mapping[str, PointMap | None] | None
    controllers: Sequence[OpcUaControllerConfig | None]
    mqtt_lamps: Sequence[MqttLampsConfig | None]
    sensors: Sequence[MqttSensorConfig | None]


def _full_parts(config: GatewayConfig) -> _Parts:
    return _Parts(
        dev_mode=config.dev_mode,
        broker=config.broker,
        maps=config.point_maps,
        controllers=config.opcua_controllers,
        mqtt_lamps=config.mqtt_lamps,
        sensors=config.mqtt_sensors,
    )


def _valid(model: type[BaseModel], raw: object, context: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(raw, context=dict(context))
    except ValidationError:
        return None


def _raw_parts(data: Mapping[str, Any], context: Mapping[str, Any]) -> _Parts:
    """Validate each section, and each entry of a list section, on its own."""

    def entries(key: str, model: type[BaseModel]) -> list[Any]:
        raw = data.get(key, [])
        return [_valid(model, item, context) for item in raw] if isinstance(raw, list) else []

    raw_maps = _name_point_maps(data.get("point_maps", {}))
    maps = (
        {name: _valid(PointMap, body, context) for name, body in raw_maps.items()}
        if isinstance(raw_maps, Mapping)
        else None
    )
    dev_mode = data.get("dev_mode", False)
    return _Parts(
        dev_mode=dev_mode if isinstance(dev_mode, bool) else None,
        broker=_valid(BrokerConfig, data.get("broker"), context),
        maps=maps,
        controllers=entries("opcua_controllers", OpcUaControllerConfig),
        mqtt_lamps=entries("mqtt_lamps", MqttLampsConfig),
        sensors=entries("mqtt_sensors", MqttSensorConfig),
    )


def _cross_issues(parts: _Parts, *, complete: bool) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    if parts.dev_mode is False:
        issues += _credential_issues(parts.broker, parts.controllers)
    if parts.maps is not None:
        issues += _point_map_issues(parts.maps)
        issues += _controller_issues(parts.controllers, parts.maps)
    issues += _mqtt_lamp_issues(parts.mqtt_lamps)
    lamp_ids = _lamp_owner_issues(parts.controllers, parts.mqtt_lamps, issues)
    # A lamp on a controller entry that did not validate is unknown: do not call it missing.
    all_lamps_known = None not in parts.controllers and None not in parts.mqtt_lamps
    issues += _sensor_issues(parts.sensors, lamp_ids if all_lamps_known else None, parts.mqtt_lamps)
    for section, items in (
        ("opcua_controllers", parts.controllers),
        ("mqtt_sensors", parts.sensors),
        ("mqtt_lamps", parts.mqtt_lamps),
    ):
        issues += _unique_names(section, [(i, item.name) for i, item in enumerate(items) if item])
    if complete and not (parts.controllers or parts.mqtt_lamps or parts.sensors):
        issues.append(
            ValidationIssue(
                "document",
                "the gateway has nothing to do; add opcua_controllers, mqtt_lamps or mqtt_sensors",
            )
        )
    return issues


def _credential_issues(
    broker: BrokerConfig | None, controllers: Sequence[OpcUaControllerConfig | None]
) -> list[ValidationIssue]:
    issues = []
    fix = "set this gateway's own credentials (or dev_mode = true on a development machine)"
    if broker is not None:
        password = broker.password.get_secret_value()
        if password == DEV_BROKER_PASSWORD:
            issues.append(
                ValidationIssue("broker.password", f"is the documented development password; {fix}")
            )
        elif broker.username and not password:
            issues.append(ValidationIssue("broker.password", f"is empty; {fix}"))
        has_cert = broker.tls is not None and broker.tls.cert_file is not None
        if not broker.username and not has_cert:
            issues.append(
                ValidationIssue(
                    "broker.username",
                    "each gateway needs its own credentials: set username and password, or a "
                    "client certificate in [broker.tls] (cert_file, key_file)",
                )
            )
        if broker.tls is not None and broker.tls.insecure:
            issues.append(
                ValidationIssue(
                    "broker.tls.insecure",
                    "skips the broker's certificate check; allowed only with dev_mode = true",
                )
            )
    for i, controller in enumerate(controllers):
        if controller and controller.username and not controller.password.get_secret_value():
            issues.append(ValidationIssue(f"opcua_controllers[{i}].password", f"is empty; {fix}"))
    return issues


def _point_map_issues(maps: Mapping[str, PointMap | None]) -> list[ValidationIssue]:
    issues = []
    for key, point_map in maps.items():
        if key in BUILTIN_POINT_MAPS:
            issues.append(
                ValidationIssue(
                    f"point_maps.{key}",
                    "is the name of a built-in map; built-in maps need no definition, "
                    "give yours another name",
                )
            )
        if point_map is not None and point_map.name != key:
            issues.append(
                ValidationIssue(
                    f"point_maps.{key}.name",
                    f"{point_map.name!r} differs from the table name {key!r}; remove name",
                )
            )
    return issues


def _controller_issues(
    controllers: Sequence[OpcUaControllerConfig | None], maps: Mapping[str, PointMap | None]
) -> list[ValidationIssue]:
    issues = []
    for i, controller in enumerate(controllers):
        if controller is None:
            continue
        where = f"opcua_controllers[{i}]"
        name = controller.point_map
        if name in maps:
            point_map = maps[name]
            if point_map is None:
                continue  # defined but invalid: reported by the schema pass
        elif name in BUILTIN_POINT_MAPS:
            point_map = BUILTIN_POINT_MAPS[name]
        else:
            defined = ", ".join(sorted(maps)) or "none"
            issues.append(
                ValidationIssue(
                    f"{where}.point_map",
                    f"no point map {name!r}; define [point_maps.{name}] or use a built-in "
                    f"one ({_BUILTIN_NAMES}); defined here: {defined}",
                )
            )
            continue
        for j, lamp in enumerate(controller.lamps):
            try:
                point_map.resolve(
                    lamp.lamp_id, node_prefix=lamp.node_prefix, substitutions=lamp.substitutions
                )
            except ValueError as err:
                issues.append(ValidationIssue(f"{where}.lamps[{j}]", str(err)))
    return issues


def _mqtt_lamp_issues(groups: Sequence[MqttLampsConfig | None]) -> list[ValidationIssue]:
    issues = []
    for i, group in enumerate(groups):
        if group is None:
            continue
        specs: list[tuple[str, str]] = [("setpoint", group.setpoint.topic)]
        if group.telemetry is not None:
            specs.append(("telemetry", group.telemetry.topic))
        for part, template_text in specs:
            template = TopicTemplate.parse(template_text)
            owners: dict[str, int] = {}
            for j, lamp in enumerate(group.lamps):
                where = f"mqtt_lamps[{i}].lamps[{j}]"
                try:
                    topic = template.format(lamp.values())
                except TopicError as err:
                    issues.append(ValidationIssue(where, f"{part} topic: {err.reason}"))
                    continue
                if topic in owners:
                    issues.append(
                        ValidationIssue(
                            where,
                            f"{part} topic {topic!r} is also lamps[{owners[topic]}]'s; use "
                            "{lamp} (or a substitution) in the topic so each lamp has its own",
                        )
                    )
                owners.setdefault(topic, j)
    return issues


def _lamp_owner_issues(
    controllers: Sequence[OpcUaControllerConfig | None],
    mqtt_lamps: Sequence[MqttLampsConfig | None],
    issues: list[ValidationIssue],
) -> set[str]:
    owner: dict[str, str] = {}
    groups = [(f"opcua_controllers[{i}]", c.lamps) for i, c in enumerate(controllers) if c] + [
        (f"mqtt_lamps[{i}]", g.lamps) for i, g in enumerate(mqtt_lamps) if g
    ]
    for where, lamps in groups:
        for j, lamp in enumerate(lamps):
            if lamp.lamp_id in owner:
                issues.append(
                    ValidationIssue(
                        f"{where}.lamps[{j}].lamp_id",
                        f"lamp {lamp.lamp_id} is already on {owner[lamp.lamp_id]}; "
                        "a lamp has one controller",
                    )
                )
            else:
                owner[lamp.lamp_id] = where
    return set(owner)


def _overlap(a: TopicTemplate, b: TopicTemplate) -> bool:
    """Whether some topic matches both templates."""
    if len(a.levels) != len(b.levels):
        return False
    return all(
        x == y or x.startswith("{") or y.startswith("{")
        for x, y in zip(a.levels, b.levels, strict=True)
    )


def _sensor_issues(
    sensors: Sequence[MqttSensorConfig | None],
    lamp_ids: set[str] | None,
    mqtt_lamps: Sequence[MqttLampsConfig | None],
) -> list[ValidationIssue]:
    issues = []
    subscriptions: list[tuple[str, TopicTemplate]] = [
        (f"mqtt_lamps[{i}].telemetry.topic", TopicTemplate.parse(g.telemetry.topic))
        for i, g in enumerate(mqtt_lamps)
        if g is not None and g.telemetry is not None
    ]
    for i, sensor in enumerate(sensors):
        if sensor is None:
            continue
        where = f"mqtt_sensors[{i}]"
        template = TopicTemplate.parse(sensor.topic)
        for other_where, other in subscriptions:
            if _overlap(template, other):
                issues.append(
                    ValidationIssue(
                        f"{where}.topic",
                        f"{sensor.topic!r} can match the same topics as {other_where} "
                        f"({other.template!r}); make the templates differ in a fixed level",
                    )
                )
        subscriptions.append((f"{where}.topic", template))
        if lamp_ids is None:
            continue
        for sensor_id, covered in sensor.lamps.items():
            for j, lamp in enumerate(covered):
                if lamp not in lamp_ids:
                    issues.append(
                        ValidationIssue(
                            f"{where}.lamps.{sensor_id}[{j}]",
                            f"lamp {lamp} is not on this gateway; add it to opcua_controllers "
                            "or mqtt_lamps, or remove it here",
                        )
                    )
    return issues


def _unique_names(section: str, names: Sequence[tuple[int, str]]) -> list[ValidationIssue]:
    first: dict[str, int] = {}
    issues = []
    for i, name in names:
        if name in first:
            issues.append(
                ValidationIssue(
                    f"{section}[{i}].name", f"{name!r} is also {section}[{first[name]}]'s name"
                )
            )
        first.setdefault(name, i)
    return issues

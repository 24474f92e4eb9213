"""Gateway configuration: the sample loads, every problem is listed with its location."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from domain.errors import ValidationIssue
from gateways.config import (
    DEV_BROKER_PASSWORD,
    GatewayConfig,
    GatewayConfigError,
    gateway_config_issues,
    load_gateway_config,
    parse_gateway_config,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "streetlight" / "samples" / "gateway.toml"


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    with SAMPLE.open("rb") as f:
        return tomllib.load(f)


def issues_of(doc: dict[str, Any], base_dir: Path | None = None) -> dict[str, str]:
    return {i.where: i.message for i in gateway_config_issues(doc, base_dir=base_dir)}


def minimal(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "gateway": {
            "id": "gw-1",
            "council_id": "c1",
            "tz": "Europe/London",
            "lat_deg": 51.5,
            "lon_deg": -0.1,
        },
        "broker": {"host": "broker.example", "username": "gw-1", "password": "s3cret-gw-1"},
        "queue": {"path": "q.db"},
        "opcua_controllers": [
            {
                "name": "c",
                "endpoint": "opc.tcp://10.0.0.1:4840/",
                "point_map": "streetlight-virtual-v1",
                "lamps": [{"lamp_id": "L1"}],
            }
        ],
    }
    doc.update(changes)
    return doc


# --- the sample ---------------------------------------------------------------------------------


def test_sample_loads_with_resolved_paths_and_node_ids() -> None:
    config = load_gateway_config(SAMPLE)
    assert config.schema_version == 1 and config.dev_mode
    assert config.gateway.id == "gw-sample-01"
    assert config.queue.path == SAMPLE.parent / "var" / "uplink-queue.db"
    assert config.autonomy.schedule_path == SAMPLE.parent / "var" / "edge-schedule.npz"
    assert config.topics.uplink == "streetlight/v1/gw-sample-01/uplink"
    assert config.mqtt_client_id == "streetlight-gw-gw-sample-01"
    assert config.lamp_ids() == ("L-0001", "L-0002", "L-0101", "L-0102", "L-0201")
    virtual, vendor = config.opcua_controllers
    assert config.resolved_lamps(virtual)[0].writable()["setpoint"] == "ns=2;s=Lamp.L-0001.Setpoint"
    lamps = config.resolved_lamps(vendor)
    assert lamps[1].writable()["setpoint"] == "ns=2;s=Vendor.Luminaire.Lum02.DimLevel"
    assert lamps[1].lamp_id == "L-0102"
    assert config.point_map("acme-lumi-v2").point("energy") is not None
    assert config.mqtt_sensors[0].lamps == {"CAM-01": ("L-0001", "L-0002")}


def test_config_is_frozen_and_hides_passwords() -> None:
    config = load_gateway_config(SAMPLE)
    with pytest.raises(ValidationError):
        config.dev_mode = False  # type: ignore[misc]
    assert DEV_BROKER_PASSWORD not in repr(config)
    assert config.broker.password.get_secret_value() == DEV_BROKER_PASSWORD


# --- credentials --------------------------------------------------------------------------------


def test_development_password_needs_dev_mode(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["dev_mode"] = False
    found = issues_of(doc, SAMPLE.parent)
    assert found == {
        "broker.password": "is the documented development password; set this gateway's own "
        "credentials (or dev_mode = true on a development machine)"
    }


@pytest.mark.parametrize(
    ("broker", "where", "message"),
    [
        ({"host": "b", "username": "gw-1"}, "broker.password", "is empty"),
        ({"host": "b"}, "broker.username", "each gateway needs its own credentials"),
        (
            {"host": "b", "username": "u", "password": "p", "tls": {"insecure": True}},
            "broker.tls.insecure",
            "allowed only with dev_mode = true",
        ),
    ],
)
def test_credentials_refused_outside_dev_mode(
    broker: dict[str, Any], where: str, message: str
) -> None:
    found = issues_of(minimal(broker=broker))
    assert message in found[where]
    assert issues_of(minimal(broker=broker, dev_mode=True)) == {}


def test_client_certificate_is_a_credential(tmp_path: Path) -> None:
    for name in ("gw.pem", "gw.key"):
        (tmp_path / name).write_text("x")
    tls = {"cert_file": "gw.pem", "key_file": "gw.key"}
    config = parse_gateway_config(
        minimal(broker={"host": "b", "port": 8883, "tls": tls}), base_dir=tmp_path
    )
    assert config.broker.tls is not None and config.broker.tls.cert_file == tmp_path / "gw.pem"
    missing = issues_of(minimal(broker={"host": "b", "tls": {"cert_file": "x.pem"}}), tmp_path)
    assert missing["broker.tls.cert_file"].startswith(f"file {tmp_path / 'x.pem'} does not exist")
    half = issues_of(minimal(broker={"host": "b", "tls": {"cert_file": "gw.pem"}}), tmp_path)
    assert "give cert_file and key_file together" in half["broker.tls"]


# --- OPC-UA controllers -------------------------------------------------------------------------


def controller(**fields: Any) -> dict[str, Any]:
    base = {
        "name": "c",
        "endpoint": "opc.tcp://10.0.0.1:4840/",
        "point_map": "streetlight-virtual-v1",
        "lamps": [{"lamp_id": "L1"}],
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_mode": "Sign"}, "security_policy and security_mode go together"),
        (
            {"security_mode": "SignAndEncrypt", "security_policy": "Basic256Sha256"},
            "needs this gateway's certificate and private_key files",
        ),
        ({"certificate": "c.der"}, "used only with security_policy Basic256Sha256"),
        ({"password": "x"}, "password given without username"),
    ],
)
def test_security_rules(fields: dict[str, Any], message: str) -> None:
    found = issues_of(minimal(opcua_controllers=[controller(**fields)]))
    assert message in found["opcua_controllers[0]"]


def test_signed_and_encrypted_controller(tmp_path: Path) -> None:
    for name in ("gw.der", "gw.pem", "server.der"):
        (tmp_path / name).write_text("x")
    secured = controller(
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate="gw.der",
        private_key="gw.pem",
        server_certificate="server.der",
        username="op",
        password="pw",
    )
    config = parse_gateway_config(minimal(opcua_controllers=[secured]), base_dir=tmp_path)
    c = config.opcua_controllers[0]
    assert c.certificate == tmp_path / "gw.der" and c.password.get_secret_value() == "pw"
    no_password = controller(username="op")
    assert (
        "is empty"
        in issues_of(minimal(opcua_controllers=[no_password]))["opcua_controllers[0].password"]
    )


def test_point_map_references_and_substitutions() -> None:
    custom = {
        "acme": {
            "schema_version": 1,
            "points": [{"key": "setpoint", "node_id": "ns=2;s={cabinet}.{lamp}.Dim", "unit": "%"}],
        }
    }
    found = issues_of(
        minimal(
            point_maps=custom,
            opcua_controllers=[controller(point_map="acme"), controller(name="d", point_map="zz")],
        )
    )
    assert found["opcua_controllers[0].lamps[0]"].startswith(
        "point map acme uses {cabinet} but lamp L1 gives no value"
    )
    assert found["opcua_controllers[1].point_map"].startswith(
        "no point map 'zz'; define [point_maps.zz] or use a built-in one"
    )
    ok = minimal(
        point_maps=custom,
        opcua_controllers=[
            controller(
                point_map="acme", lamps=[{"lamp_id": "L1", "substitutions": {"cabinet": "C4"}}]
            )
        ],
    )
    config = parse_gateway_config(ok)
    assert config.resolved_lamps(config.opcua_controllers[0])[0].writable() == {
        "setpoint": "ns=2;s=C4.L1.Dim"
    }
    assert config.point_maps["acme"].name == "acme"


def test_builtin_names_cannot_be_redefined() -> None:
    shadow = {
        "streetlight-virtual-v1": {
            "schema_version": 1,
            "points": [{"key": "setpoint", "node_id": "i=1"}],
        }
    }
    found = issues_of(minimal(point_maps=shadow))
    assert "built-in map" in found["point_maps.streetlight-virtual-v1"]


def test_a_lamp_has_one_controller_and_names_are_unique() -> None:
    found = issues_of(minimal(opcua_controllers=[controller(), controller()]))
    assert found["opcua_controllers[1].lamps[0].lamp_id"] == (
        "lamp L1 is already on opcua_controllers[0]; a lamp has one controller"
    )
    assert found["opcua_controllers[1].name"] == "'c' is also opcua_controllers[0]'s name"


# --- MQTT sensors and lamps ---------------------------------------------------------------------


def test_sensors_cover_only_this_gateways_lamps_and_topics_do_not_overlap() -> None:
    sensors = [
        {
            "name": "cams",
            "topic": "sensors/{sensor_id}/counts",
            "payload": {"kind": "footfall_count", "value": "$.n"},
            "lamps": {"CAM-1": ["L1", "L9"]},
        },
        {"name": "pir", "topic": "sensors/{id}/{sensor_id}", "payload": {"kind": "presence"}},
    ]
    found = issues_of(minimal(mqtt_sensors=sensors))
    assert found["mqtt_sensors[0].lamps.CAM-1[1]"].startswith("lamp L9 is not on this gateway")
    assert "can match the same topics as mqtt_sensors[0].topic" in found["mqtt_sensors[1].topic"]


def test_mqtt_lamp_topics_must_differ_per_lamp() -> None:
    group = {
        "name": "nodes",
        "setpoint": {"topic": "nodes/{site}/set"},
        "lamps": [
            {"lamp_id": "N1", "substitutions": {"site": "a"}},
            {"lamp_id": "N2", "substitutions": {"site": "a"}},
            {"lamp_id": "N3"},
        ],
    }
    found = issues_of(minimal(mqtt_lamps=[group]))
    assert "is also lamps[0]'s" in found["mqtt_lamps[0].lamps[1]"]
    assert (
        found["mqtt_lamps[0].lamps[2]"]
        == "setpoint topic: 'nodes/{site}/set' needs a value for {site}"
    )


# --- whole documents ----------------------------------------------------------------------------


def test_every_problem_is_listed_with_its_location(sample: dict[str, Any]) -> None:
    doc = copy.deepcopy(sample)
    doc["gateway"]["tz"] = "Mars/Olympus"
    doc["gateway"]["lat_deg"] = 95
    doc["uplink"]["batch_intervl_s"] = 2
    doc["queue"]["when_full"] = "drop_newest"
    doc["point_maps"]["acme-lumi-v2"]["points"][0]["unit"] = "V"
    doc["opcua_controllers"][0]["point_map"] = "nope"
    doc["opcua_controllers"][1]["lamps"].append({"lamp_id": "L-0001"})
    doc["mqtt_sensors"][1]["payload"]["time_unit"] = "minutes"
    with pytest.raises(GatewayConfigError) as info:
        parse_gateway_config(doc, base_dir=SAMPLE.parent, source="gateway.toml")
    found = {i.where: i.message for i in info.value.issues}
    assert found == {
        "gateway.tz": "'Mars/Olympus' is not an IANA time zone; write e.g. Europe/London",
        "gateway.lat_deg": "95 must be at most 90.0",
        "uplink.batch_intervl_s": "unknown field batch_intervl_s; did you mean batch_interval_s?",
        "queue.when_full": "the text 'drop_newest' is not allowed; use 'drop_oldest' or 'reject_new'",
        "point_maps.acme-lumi-v2.points[0]": "point setpoint: unit 'V' is not known for setpoint; "
        "use one of frac, %, permille",
        "mqtt_sensors[1].payload.time_unit": "the text 'minutes' is not allowed; use 's', 'ms', "
        "'us', 'ns' or 'iso8601'",
        # Cross-references still checked among the sections that parsed:
        "opcua_controllers[0].point_map": "no point map 'nope'; define [point_maps.nope] or use a "
        "built-in one (streetlight-virtual-v1, vendor-example-v1); defined here: acme-lumi-v2",
        "opcua_controllers[1].lamps[2].lamp_id": "lamp L-0001 is already on opcua_controllers[0]; "
        "a lamp has one controller",
    }
    assert all(isinstance(i, ValidationIssue) for i in info.value.issues)
    assert str(info.value).startswith(
        "gateway configuration gateway.toml is invalid (8 problem(s))"
    )
    assert isinstance(info.value, ValueError)


def test_schema_version_and_missing_sections() -> None:
    found = issues_of({"schema_version": 2})
    assert found["schema_version"] == "2 is not supported; this gateway reads schema_version 1"
    assert found["gateway"] == "required; add gateway"
    assert found["queue"] == "required; add queue"
    assert issues_of(minimal(opcua_controllers=[]))["document"].startswith(
        "the gateway has nothing to do"
    )


def test_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="cannot read the file"):
        load_gateway_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("schema_version = 1\n[gateway\n")
    with pytest.raises(GatewayConfigError, match=r"not valid TOML: .*line 2") as info:
        load_gateway_config(bad)
    assert info.value.issues[0].where == str(bad)


def test_direct_model_use_needs_no_files() -> None:
    config = GatewayConfig.model_validate(minimal())
    assert config.queue.path == Path("q.db")  # unresolved without a base directory
    assert config.uplink.qos == 1 and config.uplink.batch_max_readings == 500
    assert config.autonomy.fail_safe_level_frac == 1.0

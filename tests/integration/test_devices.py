"""The device simulator against real clients: asyncua clients and a real mosquitto.

Every test runs its own event loop under ``asyncio.wait_for`` and a pytest timeout, so nothing
can hang. Controllers listen on free loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
from asyncua import Client, Node, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.dimming.power import lamp_power_w
from simulation.devices.config import (
    MAX_RAMP_S,
    DeviceConfigError,
    DevicesConfig,
    load_devices,
    parse_devices,
)
from simulation.devices.fleet import DeviceFleet, run_devices
from simulation.devices.mqtt_sensors import MALFORMED, BrokerError, SimClock
from simulation.devices.opcua_lamps import LampBank, VirtualController
from tests.integration.conftest import Broker, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T = TypeVar("T")
SAMPLE = Path(__file__).parents[2] / "streetlight" / "samples" / "devices.toml"


def run(factory: Callable[[], Awaitable[T]], timeout_s: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout_s)

    return asyncio.run(bounded())


def controllers(*entries: dict[str, Any], **top: Any) -> DevicesConfig:
    return parse_devices({"schema_version": 1, "controllers": list(entries), **top})


def cabinet(name: str, n: int = 5, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "lamps": {"count": n},
        "rated_power_w": 100.0,
        "standby_power_w": 0.5,
        "energy_publish_s": 0.2,
        **kw,
    }


async def wait_until(
    read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 3.0
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await read()
        if ok(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


class Changes:
    """A data-change handler collecting values."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.values.append(val)


# --- default scheme: nodes, fade, power, energy, subscriptions ---------------------------------


def test_fleet_starts_fast_and_lamps_fade_with_the_power_model() -> None:
    config = controllers(*(cabinet(f"cab-{k}", 50) for k in range(3)))

    async def scenario() -> dict[str, float]:
        started = time.perf_counter()
        async with DeviceFleet(config) as fleet:
            startup_s = time.perf_counter() - started
            assert len({c.port for c in fleet.controllers.values()}) == 3
            cab = fleet.controller("cab-1")
            ids = cab.node_ids["L007"]
            assert ids == {
                "setpoint": "ns=2;s=Lamp.L007.Setpoint",
                "ramp_time": "ns=2;s=Lamp.L007.RampTime_s",
                "level": "ns=2;s=Lamp.L007.Level",
                "power": "ns=2;s=Lamp.L007.Power_W",
                "energy": "ns=2;s=Lamp.L007.Energy_Wh",
                "status": "ns=2;s=Lamp.L007.Status",
            }
            async with Client(cab.endpoint, timeout=5) as client:
                n = {role: client.get_node(nid) for role, nid in ids.items()}
                setpoint, ramp, level, power, energy, status = await client.read_values(
                    list(n.values())
                )
                assert (setpoint, ramp, level, power, status) == (0.0, 0.0, 0.0, 0.5, 0)
                assert 0.0 <= energy < 0.01  # standby only, since start-up
                assert await n["status"].read_data_type_as_variant_type() == ua.VariantType.UInt32
                await n["ramp_time"].write_value(1.0, ua.VariantType.Double)
                await n["setpoint"].write_value(0.6, ua.VariantType.Double)
                written = time.monotonic()
                levels = []
                while time.monotonic() - written < 3.0:
                    levels.append(await n["level"].read_value())
                    if levels[-1] >= 0.6 - 1e-12:
                        break
                    await asyncio.sleep(0.05)
                fade_s = time.monotonic() - written
                assert levels == sorted(levels), "a fade up never goes down"
                assert any(0.1 < v < 0.5 for v in levels), f"no intermediate levels: {levels}"
                assert levels[-1] == pytest.approx(0.6)
                assert 0.8 < fade_s < 1.5
                expected_w = float(lamp_power_w(0.6, 100.0, 0.5))
                assert await n["power"].read_value() == pytest.approx(expected_w, rel=1e-9)
                e0, t0 = await n["energy"].read_value(), time.monotonic()
                await asyncio.sleep(1.0)
                e1, t1 = await n["energy"].read_value(), time.monotonic()
                ratio = (e1 - e0) / (expected_w * (t1 - t0) / 3600.0)
                assert 0.6 < ratio < 1.4, f"energy grew {e1 - e0} Wh in {t1 - t0:.2f} s"
                # Other lamps are untouched; a value outside [0, 1] is refused.
                assert await client.get_node(cab.node_ids["L008"]["level"]).read_value() == 0.0
                with pytest.raises(ua.UaStatusCodeError, match="BadOutOfRange"):
                    await n["setpoint"].write_value(1.5, ua.VariantType.Double)
                with pytest.raises(ua.UaStatusCodeError, match="BadTypeMismatch"):
                    await n["setpoint"].write_value(1, ua.VariantType.Int32)
                with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                    await n["level"].write_value(0.3, ua.VariantType.Double)
                assert cab.lamp("L007").setpoint_frac == 0.6
        return {"startup_s": startup_s}

    result = run(scenario)
    print(f"3 controllers x 50 lamps up in {result['startup_s']:.2f} s")
    assert result["startup_s"] < 10.0


def test_a_data_change_subscription_sees_the_fade() -> None:
    config = controllers(cabinet("cab-sub", 3))

    async def scenario() -> list[float]:
        async with DeviceFleet(config) as fleet:
            cab = fleet.controller("cab-sub")
            ids = cab.node_ids["L002"]
            async with Client(cab.endpoint, timeout=5) as client:
                changes = Changes()
                sub = await client.create_subscription(50, changes)
                await sub.subscribe_data_change(client.get_node(ids["level"]))
                await wait_until(lambda: asyncio.sleep(0, len(changes.values)), lambda k: k >= 1)
                await client.get_node(ids["ramp_time"]).write_value(0.5, ua.VariantType.Double)
                await client.get_node(ids["setpoint"]).write_value(1.0, ua.VariantType.Double)
                await wait_until(
                    lambda: asyncio.sleep(0, changes.values[-1]), lambda v: v >= 1.0 - 1e-12
                )
                await sub.delete()
                return list(changes.values)

    values = run(scenario)
    assert values[0] == 0.0 and values[-1] == pytest.approx(1.0)
    assert len([v for v in values if 0.0 < v < 1.0]) >= 2, values
    assert values == sorted(values)


# --- a vendor scheme known only to the configuration -------------------------------------------

VENDOR_TOML = """
schema_version = 1

[schemes.vendor-x]
namespace_uri = "urn:vendor-x:controller"
lamp_object = "ns=2;s=Vendor.Luminaire.{lamp}"
setpoint = { node_id = "ns=2;s=Vendor.Luminaire.{lamp}.DimLevel", scale = 100.0, writable = true }
ramp_time = { node_id = "ns=2;s=Vendor.Luminaire.{lamp}.FadeTime", data_type = "UInt16", scale = 10.0, writable = true }
level = { node_id = "ns=2;s=Vendor.Luminaire.{lamp}.ActualDim", scale = 100.0 }
power = { node_id = "ns=2;s=Vendor.Luminaire.{lamp}.ActivePower", data_type = "Float" }
energy = { node_id = "ns=2;s=Vendor.Luminaire.{lamp}.EnergyMeter_kWh", scale = 0.001 }
status = { node_id = "ns=2;s=Vendor.Luminaire.{lamp}.Alarms", data_type = "UInt16" }
status_bits = { lamp_failure = 3, day_burner = 5, comms_fault = 7 }

[[controllers]]
name = "vendor-cab"
scheme = "vendor-x"
lamps = { ids = ["LX-A", "LX-B"] }
rated_power_w = 120.0
standby_power_w = 1.0
energy_publish_s = 0.2
"""


def test_vendor_scheme_serves_exactly_the_configured_string_node_ids(tmp_path: Path) -> None:
    (tmp_path / "devices.toml").write_text(VENDOR_TOML)
    config = load_devices(tmp_path / "devices.toml")
    configured = {
        f"ns=2;s=Vendor.Luminaire.{lamp}.{point}"
        for lamp in ("LX-A", "LX-B")
        for point in (
            "DimLevel",
            "FadeTime",
            "ActualDim",
            "ActivePower",
            "EnergyMeter_kWh",
            "Alarms",
        )
    }

    async def scenario() -> None:
        async with DeviceFleet(config) as fleet:
            cab = fleet.controller("vendor-cab")
            async with Client(cab.endpoint, timeout=5) as client:
                assert await client.get_namespace_index("urn:vendor-x:controller") == 2
                folder = client.get_node("ns=2;s=vendor-cab")
                lamps = await folder.get_children()
                assert {n.nodeid.to_string() for n in lamps} == {
                    "ns=2;s=Vendor.Luminaire.LX-A",
                    "ns=2;s=Vendor.Luminaire.LX-B",
                }
                served = set()
                for lamp in lamps:
                    for child in await lamp.get_children():
                        served.add(child.nodeid.to_string())
                        assert (
                            await child.read_browse_name()
                        ).Name == child.nodeid.Identifier.rsplit(".", 1)[-1]
                assert served == configured
                # The default scheme's ids do not exist here.
                with pytest.raises(ua.UaStatusCodeError, match="BadNodeIdUnknown"):
                    await client.get_node("ns=2;s=Lamp.LX-A.Level").read_value()

                node = {
                    p: client.get_node(f"ns=2;s=Vendor.Luminaire.LX-B.{p}")
                    for p in ("DimLevel", "FadeTime", "ActualDim", "ActivePower", "Alarms")
                }
                assert await node["ActivePower"].read_data_type_as_variant_type() == (
                    ua.VariantType.Float
                )
                await node["FadeTime"].write_value(0, ua.VariantType.UInt16)
                await node["DimLevel"].write_value(50.0, ua.VariantType.Double)  # percent
                level = await wait_until(node["ActualDim"].read_value, lambda v: v == 50.0)
                assert level == 50.0
                assert cab.lamp("LX-B").level_frac == 0.5
                power = await wait_until(node["ActivePower"].read_value, lambda v: v > 2.0)
                assert power == pytest.approx(float(lamp_power_w(0.5, 120.0, 1.0)), rel=1e-6)
                with pytest.raises(ua.UaStatusCodeError, match="BadOutOfRange"):
                    await node["DimLevel"].write_value(150.0, ua.VariantType.Double)
                # FadeTime is in 0.1 s: 20 -> a 2 s fade.
                await node["FadeTime"].write_value(20, ua.VariantType.UInt16)
                assert cab.lamp("LX-B").ramp_s == 2.0
                cab.fail_lamp("LX-B")
                alarms = await wait_until(node["Alarms"].read_value, lambda v: v != 0)
                assert alarms == 1 << 3
                cab.fail_lamp("LX-B", False)
                cab.day_burner("LX-A")
                alarms_a = client.get_node("ns=2;s=Vendor.Luminaire.LX-A.Alarms")
                assert await wait_until(alarms_a.read_value, lambda v: v != 0) == 1 << 5
                energy = client.get_node("ns=2;s=Vendor.Luminaire.LX-A.EnergyMeter_kWh")
                kwh = await wait_until(energy.read_value, lambda v: v > 0)
                assert 0 < kwh < 0.001  # a 120 W lamp for ~1 s is ~0.03 Wh

    run(scenario)


# --- faults ------------------------------------------------------------------------------------


def test_faults_set_status_bits_and_override_the_setpoint() -> None:
    config = controllers(cabinet("cab-faults", 4))

    async def scenario() -> None:
        async with DeviceFleet(config) as fleet:
            cab = fleet.controller("cab-faults")
            async with Client(cab.endpoint, timeout=5) as client:

                def node(lamp: str, role: str) -> Node:
                    return client.get_node(cab.node_ids[lamp][role])

                # Lamp failure: no light, standby power only, bit 0.
                await node("L001", "setpoint").write_value(1.0, ua.VariantType.Double)
                await wait_until(node("L001", "level").read_value, lambda v: v == 1.0)
                cab.fail_lamp("L001")
                assert await wait_until(node("L001", "status").read_value, lambda v: v) == 0b001
                assert await node("L001", "level").read_value() == 0.0
                assert await node("L001", "power").read_value() == 0.5
                # Repaired: back to its setpoint.
                cab.fail_lamp("L001", failed=False)
                assert await wait_until(node("L001", "level").read_value, lambda v: v == 1.0) == 1.0
                assert await node("L001", "status").read_value() == 0

                # Day-burner: full output whatever the setpoint, bit 1.
                cab.day_burner("L002")
                assert await wait_until(node("L002", "status").read_value, lambda v: v) == 0b010
                assert await node("L002", "setpoint").read_value() == 0.0
                assert await node("L002", "level").read_value() == 1.0
                assert await node("L002", "power").read_value() == pytest.approx(100.5)

                # Comms fault: the lamp holds its level; the setpoint applies once comms return.
                cab.comms_fault("L003")
                assert await wait_until(node("L003", "status").read_value, lambda v: v) == 0b100
                await node("L003", "setpoint").write_value(0.7, ua.VariantType.Double)
                await asyncio.sleep(0.3)
                assert await node("L003", "level").read_value() == 0.0
                cab.comms_fault("L003", on=False)
                assert await wait_until(node("L003", "level").read_value, lambda v: v > 0) == (
                    pytest.approx(0.7)
                )
                with pytest.raises(KeyError, match="no lamp 'nope'"):
                    cab.fail_lamp("nope")

    run(scenario)


def test_drop_off_and_come_back_on_the_same_port_with_the_same_state() -> None:
    config = controllers(cabinet("cab-restart", 3))

    async def scenario() -> None:
        async with DeviceFleet(config) as fleet:
            cab = fleet.controller("cab-restart")
            endpoint, port = cab.endpoint, cab.port
            ids = cab.node_ids["L003"]
            client = Client(endpoint, timeout=2)
            await client.connect()
            try:
                changes = Changes()
                sub = await client.create_subscription(50, changes)
                await sub.subscribe_data_change(client.get_node(ids["level"]))
                await client.get_node(ids["setpoint"]).write_value(0.4, ua.VariantType.Double)
                await wait_until(
                    lambda: asyncio.sleep(0, changes.values[-1:]), lambda v: v == [0.4]
                )
                cab.day_burner("L001")
                before = cab.lamp("L003")

                await cab.drop_off()
                assert not cab.online
                with pytest.raises((ConnectionError, ua.UaError, TimeoutError, OSError)):
                    await client.get_node(ids["level"]).read_value()
                with pytest.raises((ConnectionError, OSError, TimeoutError)):
                    async with Client(endpoint, timeout=1) as other:
                        await other.get_node(ids["level"]).read_value()
                await asyncio.sleep(0.3)  # the lamps keep burning while the cabinet is away
            finally:
                with contextlib.suppress(ConnectionError, ua.UaError, TimeoutError, OSError):
                    await client.disconnect()

            await cab.come_back()
            assert cab.online and cab.port == port and cab.endpoint == endpoint
            async with Client(endpoint, timeout=5) as again:
                values = await again.read_values(
                    [again.get_node(ids[r]) for r in ("setpoint", "level", "energy")]
                )
                assert values[:2] == [0.4, 0.4]
                assert values[2] >= before.energy_wh
                status_1 = again.get_node(cab.node_ids["L001"]["status"])
                assert await status_1.read_value() == 0b010
                # Subscriptions did not survive the restart: a new one works.
                changes = Changes()
                sub = await again.create_subscription(50, changes)
                await sub.subscribe_data_change(again.get_node(ids["level"]))
                await again.get_node(ids["setpoint"]).write_value(0.9, ua.VariantType.Double)
                seen = await wait_until(
                    lambda: asyncio.sleep(0, changes.values[-1:]), lambda v: v == [0.9]
                )
                assert seen == [0.9]
            # Coming back twice is harmless; so is dropping off twice.
            await cab.come_back()
            await cab.drop_off()
            await cab.drop_off()

    run(scenario)


# --- security ----------------------------------------------------------------------------------


def _client_certificate(folder: Path, uri: str) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        "streetlight test client",
        {"organizationName": "streetlight tests"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    folder.mkdir(parents=True, exist_ok=True)
    # Keys stay out of the trust folder: it loads every *.der / *.pem file as a certificate.
    key_path = folder.parent / f"{folder.name}-client.key.pem"
    cert_path = folder / "client.der"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


def test_basic256sha256_accepts_only_trusted_client_certificates(tmp_path: Path) -> None:
    uri = "urn:streetlight:test-client"
    trusted_dir = tmp_path / "trusted"
    cert, key = _client_certificate(trusted_dir, uri)
    stranger_cert, stranger_key = _client_certificate(tmp_path / "stranger", uri)
    (tmp_path / "server-certs").mkdir()
    config = controllers(
        cabinet(
            "cab-secure",
            2,
            security="Basic256Sha256_SignAndEncrypt",
            trusted_clients_dir=str(trusted_dir),
        ),
        cabinet("cab-signed", 2, security="Basic256Sha256_Sign"),
        cert_dir=str(tmp_path / "server-certs"),
    )

    async def secure_client(
        endpoint: str, server_cert: Path, cert: Path, key: Path, mode: ua.MessageSecurityMode
    ) -> Client:
        client = Client(endpoint, timeout=5)
        client.application_uri = uri
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(cert),
            str(key),
            server_certificate=str(server_cert),
            mode=mode,
        )
        return client

    async def scenario() -> None:
        async with DeviceFleet(config) as fleet:
            secure, signed = fleet.controller("cab-secure"), fleet.controller("cab-signed")
            assert secure.certificate_path == tmp_path / "server-certs" / "cab-secure.der"
            level_id = secure.node_ids["L001"]["level"]
            encrypt = ua.MessageSecurityMode.SignAndEncrypt
            client = await secure_client(
                secure.endpoint, secure.certificate_path, cert, key, encrypt
            )
            async with client:
                await client.get_node(secure.node_ids["L001"]["setpoint"]).write_value(
                    0.25, ua.VariantType.Double
                )
                assert await wait_until(client.get_node(level_id).read_value, lambda v: v) == 0.25
            # An unknown certificate is refused; so is a client without security.
            stranger = await secure_client(
                secure.endpoint, secure.certificate_path, stranger_cert, stranger_key, encrypt
            )
            with pytest.raises((ua.UaError, ConnectionError, TimeoutError)):
                async with stranger:
                    await stranger.get_node(level_id).read_value()
            with pytest.raises((ua.UaError, ConnectionError, TimeoutError)):
                async with Client(secure.endpoint, timeout=3) as plain:
                    await plain.get_node(level_id).read_value()
            # Sign only, without a trust list: any client certificate is accepted.
            assert signed.certificate_path is not None
            sign = ua.MessageSecurityMode.Sign
            client = await secure_client(signed.endpoint, signed.certificate_path, cert, key, sign)
            async with client:
                assert await client.get_node(signed.node_ids["L002"]["level"]).read_value() == 0.0
            # Certificates survive a restart: the same file, the same endpoint.
            await secure.drop_off()
            await secure.come_back()
            client = await secure_client(
                secure.endpoint, secure.certificate_path, cert, key, encrypt
            )
            async with client:
                assert await client.get_node(level_id).read_value() == 0.25

    run(scenario, timeout_s=45)


# --- MQTT sensors ------------------------------------------------------------------------------


def sensor_config(broker: Broker, *groups: dict[str, Any], **broker_kw: Any) -> DevicesConfig:
    return parse_devices(
        {
            "schema_version": 1,
            "broker": {"host": "127.0.0.1", "port": broker.port, **broker_kw},
            "sensors": list(groups),
            # A busy winter evening, one simulated hour per real second.
            "clock": {"speedup": 3600.0, "start": "2026-12-21T16:30:00Z", "tz": "Europe/London"},
        }
    )


PRESENCE = {
    "kind": "presence",
    "id_prefix": "pir-",
    "streets": 2,
    "per_street": 5,
    "footfall_peak_per_h": 300.0,
    "traffic_peak_per_h": 100.0,
}
FOOTFALL = {"kind": "footfall", "id_prefix": "ff-", "count": 2, "interval_s": 300.0}


async def collect(client: aiomqtt.Client, n: int, timeout_s: float) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []

    async def read() -> None:
        async for message in client.messages:
            got.append(message)
            if len(got) >= n:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout_s)
    return got


def test_presence_and_count_events_reach_a_subscriber(mosquitto: Broker) -> None:
    config = sensor_config(mosquitto, PRESENCE, FOOTFALL)

    async def scenario() -> tuple[list[aiomqtt.Message], Any]:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-sub") as sub:
            await sub.subscribe("sensors/#", qos=0)
            async with DeviceFleet(config) as fleet:
                assert fleet.sensors is not None
                messages = await collect(sub, 10_000, 2.5)
                return messages, fleet.sensors.stats

    messages, stats = run(scenario)
    presence = [m for m in messages if str(m.topic).endswith("/presence")]
    counts = [m for m in messages if str(m.topic).endswith("/count")]
    assert len(presence) > 50, stats
    ids = {f"pir-{k:03d}" for k in range(1, 11)}
    start_ms = int(dt.datetime(2026, 12, 21, 16, 30, tzinfo=dt.UTC).timestamp() * 1000)
    for m in presence:
        doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
        assert set(doc) == {"id", "t", "presence"} and doc["presence"] == 1
        assert doc["id"] in ids and str(m.topic) == f"sensors/{doc['id']}/presence"
        assert start_ms <= doc["t"] < start_ms + 4 * 3_600_000
    assert len({json.loads(bytes(m.payload))["id"] for m in presence}) >= 8  # type: ignore[arg-type]
    assert counts, stats
    for m in counts:
        doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
        assert set(doc) == {"id", "count", "interval_s", "t"}
        assert doc["id"] in {"ff-001", "ff-002"} and doc["interval_s"] == 300.0
        assert doc["count"] >= 0 and (doc["t"] - start_ms) % 300_000 == 0
    # 600 people/h at the 17:00 peak: each 5-minute count is in the tens.
    assert sum(json.loads(bytes(m.payload))["count"] for m in counts) > 10  # type: ignore[arg-type]


def test_malformed_payloads_and_a_burst(mosquitto: Broker) -> None:
    config = sensor_config(
        mosquitto, {**PRESENCE, "footfall_peak_per_h": 0.0, "traffic_peak_per_h": 0.0}
    )

    async def scenario() -> tuple[list[aiomqtt.Message], list[aiomqtt.Message], float]:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-sub") as sub:
            await sub.subscribe("sensors/pir-003/presence", qos=0)
            async with DeviceFleet(config) as fleet:
                sensors = fleet.sensors
                assert sensors is not None
                kinds = await sensors.publish_malformed(sensor_id="pir-003")
                assert kinds == tuple(MALFORMED)
                bad = await collect(sub, len(kinds), 5.0)
                burst = await sensors.publish_burst(5000, sensor_id="pir-003")
                good = await collect(sub, 5000, 10.0)
                with pytest.raises(ValueError, match="unknown malformed kinds"):
                    await sensors.publish_malformed(["nope"])
                return bad, good, burst.per_s

    bad, good, per_s = run(scenario)
    print(f"burst: {per_s:,.0f} msg/s published (aiomqtt QoS 0)")
    assert len(bad) == len(MALFORMED)
    received = dict(zip(MALFORMED, (bytes(m.payload) for m in bad), strict=True))  # type: ignore[arg-type]
    for kind in ("empty", "not_an_object", "wrong_types", "not_utf8", "missing_time"):
        assert received[kind] == MALFORMED[kind]("pir-003", 0), kind
    for m in bad:
        payload = bytes(m.payload)  # type: ignore[arg-type]
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            continue
        well_formed = (
            isinstance(doc, dict)
            and doc.get("id") == "pir-003"
            and isinstance(doc.get("t"), int)
            and doc["t"] < 2_000_000_000_000
            and set(doc) in ({"id", "t", "presence"}, {"id", "t", "count", "interval_s"})
            and doc.get("count", 0) >= 0
        )
        assert not well_formed, payload[:80]
    assert len(good) == 5000
    times = [json.loads(bytes(m.payload))["t"] for m in good]  # type: ignore[arg-type]
    assert times == sorted(times) and len(set(times)) == 5000
    assert per_s > 500


def test_sensors_authenticate_and_refuse_bad_credentials(mosquitto_auth: Broker) -> None:
    good = sensor_config(mosquitto_auth, PRESENCE, username="gw-1", password="s3cret-gw")
    bad = sensor_config(mosquitto_auth, PRESENCE, username="gw-1", password="wrong")

    async def scenario() -> int:
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto_auth.port, username="gw-1", password="s3cret-gw"
        ) as sub:
            await sub.subscribe("sensors/+/presence")
            async with DeviceFleet(good):
                received = len(await collect(sub, 20, 3.0))
        with pytest.raises(BrokerError, match="username/password"):
            async with DeviceFleet(bad):
                pass
        return received

    assert run(scenario) >= 20


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = cert_gen.generate_private_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streetlight test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = cert_gen.generate_private_key()
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return ca_pem, cert_pem, key_pem


def test_sensors_publish_over_tls(tmp_path: Path) -> None:
    ca, cert, key = _tls_files(tmp_path)
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
        "allow_anonymous true",
        "persistence false",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    broker = Broker(port, conf, tmp_path / "mosquitto.log")
    broker.start()
    try:
        config = sensor_config(broker, PRESENCE, tls={"ca_file": str(ca)})

        async def scenario() -> int:
            tls = aiomqtt.TLSParameters(ca_certs=str(ca))
            async with aiomqtt.Client("127.0.0.1", port, tls_params=tls) as sub:
                await sub.subscribe("sensors/#")
                async with DeviceFleet(config):
                    return len(await collect(sub, 10, 3.0))

        assert run(scenario) >= 10
        # Without the CA the broker's certificate is not trusted.
        untrusted = sensor_config(broker, PRESENCE, tls={"ca_file": str(cert)})

        async def refused() -> None:
            async with DeviceFleet(untrusted):
                pass

        with pytest.raises(BrokerError):
            run(refused)
    finally:
        broker.stop()


# --- configuration and the CLI entry -----------------------------------------------------------


def test_the_sample_file_is_valid_and_run_devices_prints_and_writes_a_manifest(
    tmp_path: Path, mosquitto: Broker
) -> None:
    sample = load_devices(SAMPLE)
    assert [c.name for c in sample.controllers] == ["cabinet-north", "cabinet-high-street"]
    assert sample.scheme_of(sample.controllers[1]).setpoint.scale == 100.0
    text = re.sub(r"(?m)^port = 484\d", "port = 0", SAMPLE.read_text())
    text = re.sub(r"(?m)^port = 1883", f"port = {mosquitto.port}", text)
    path = tmp_path / "devices.toml"
    path.write_text(text)
    printed: list[str] = []

    async def scenario() -> dict[str, Any]:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_devices(
                path, manifest_path=tmp_path / "manifest.json", out=printed.append, stop=stop
            )
        )
        while not (tmp_path / "manifest.json").exists() and not task.done():
            await asyncio.sleep(0.05)
        manifest: dict[str, Any] = json.loads((tmp_path / "manifest.json").read_text())
        stop.set()
        await task
        return manifest

    manifest = run(scenario)
    assert any(
        line.startswith("controller cabinet-north: opc.tcp://127.0.0.1:") for line in printed
    )
    north, high = manifest["controllers"]
    assert north["lamps"]["N-040"]["level"] == "ns=2;s=Lamp.N-040.Level"
    assert high["lamps"]["HS-06"]["setpoint"] == "ns=2;s=Vendor.Luminaire.HS-06.DimLevel"
    assert manifest["sensors"]["topics"]["pir-020"] == "sensors/pir-020/presence"


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            {"controllers": [{"name": "c", "lamps": {"count": 2}, "scheme": "nope"}]},
            "controllers.0.scheme",
            "neither built in nor under [schemes]",
        ),
        (
            {
                "controllers": [
                    {"name": "c", "lamps": {"count": 2}},
                    {"name": "c", "lamps": {"count": 1}},
                ]
            },
            "controllers.1.name",
            "names must be unique",
        ),
        (
            {"controllers": [{"name": "c", "lamps": {"count": 2, "ids": ["a"]}}]},
            "controllers.0.lamps",
            "exactly one of count",
        ),
        (
            {
                "controllers": [
                    {
                        "name": "c",
                        "lamps": {"count": 1},
                        "points": {
                            "setpoint": {"node_id": "ns=2;s=X.Setpoint", "writable": True},
                            "level": {"node_id": "ns=2;s=X.{lamp}.Level"},
                        },
                    }
                ]
            },
            "controllers.0.points.setpoint.node_id",
            "needs {lamp}",
        ),
        (
            {
                "controllers": [
                    {"name": "c", "lamps": {"count": 1}, "default_ramp_s": MAX_RAMP_S + 1}
                ]
            },
            "controllers.0.default_ramp_s",
            "less than or equal",
        ),
        (
            {"sensors": [{"kind": "presence", "topic": "sensors/+/x"}]},
            "sensors.0.presence.topic",
            "needs {sensor_id}",
        ),
        ({"sensors": [{"kind": "presence"}]}, "broker", "sensors need a [broker] section"),
        ({"clock": {"start": "2026-12-21T16:00:00"}}, "clock.start", "needs a zone"),
        (
            {"controllers": [{"name": "c", "lamps": {"count": 1}, "colour": 1}]},
            "controllers.0.colour",
            "unknown key",
        ),
    ],
)
def test_config_errors_are_located(change: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(DeviceConfigError) as caught:
        parse_devices({"schema_version": 1, **change})
    issues = caught.value.issues
    assert any(i.where == where and message in i.message for i in issues), [str(i) for i in issues]


def test_sim_clock_runs_faster_than_real_time() -> None:
    now = [100.0]
    clock = SimClock(start_ns=0, speedup=60.0, origin_s=100.0, monotonic=lambda: now[0])
    now[0] = 101.5
    assert clock.now_ns() == 90_000_000_000
    assert clock.real_s_until(150_000_000_000) == pytest.approx(1.0)


def test_a_controller_refuses_security_without_a_certificate_folder() -> None:
    config = controllers(cabinet("c", 1, security="Basic256Sha256_Sign"))
    with pytest.raises(ValueError, match="give cert_dir"):
        VirtualController(config.controllers[0], scheme=config.scheme_of(config.controllers[0]))


def test_lamp_bank_fades_linearly_and_integrates_energy() -> None:
    bank = LampBank(["a", "b"], rated_power_w=100.0, standby_power_w=0.5, now_s=0.0)
    bank.set_ramp(0, 2.0)
    bank.command(0, 0.8, now_s=10.0)
    for now_s, level in ((10.5, 0.2), (11.0, 0.4), (12.0, 0.8), (20.0, 0.8)):
        bank.advance(now_s)
        assert bank.level_frac[0] == pytest.approx(level)
        assert bank.level_frac[1] == 0.0
    # A new setpoint mid-fade starts from where the lamp is.
    bank.command(0, 0.0, now_s=21.0)
    bank.advance(22.0)
    assert bank.level_frac[0] == pytest.approx(0.4)
    # Energy of the idle lamp: standby only, exactly.
    assert bank.energy_wh[1] == pytest.approx(0.5 * 22.0 / 3600.0)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        bank.command(1, 1.2, now_s=23.0)
    with pytest.raises(ValueError, match="ramp time"):
        bank.set_ramp(1, -1.0)

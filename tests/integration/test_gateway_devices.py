"""The gateway's OPC-UA connector against the project's device simulator.

Basic256Sha256 SignAndEncrypt with a trust list on the controller, the built-in
``streetlight-virtual-v1`` point map, and a controller that drops off the network and comes back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from asyncua import ua

from gateways.opcua import LampNodes, OpcUaController, Security
from gateways.pointmap import BUILTIN_POINT_MAPS
from simulation.devices.fleet import DeviceFleet
from tests.integration.conftest import until
from tests.integration.test_devices import _client_certificate, cabinet, controllers

pytestmark = pytest.mark.timeout(120)
URI = "urn:streetlight:gateway"


def test_secure_controller_setpoints_telemetry_and_drop_off(tmp_path: Path) -> None:
    trusted = tmp_path / "trusted"
    cert, key = _client_certificate(trusted, URI)
    (tmp_path / "server-certs").mkdir()
    config = controllers(
        cabinet(
            "cab", 3, security="Basic256Sha256_SignAndEncrypt", trusted_clients_dir=str(trusted)
        ),
        cert_dir=str(tmp_path / "server-certs"),
    )
    point_map = BUILTIN_POINT_MAPS["streetlight-virtual-v1"]

    async def scenario() -> None:
        async with DeviceFleet(config) as fleet:
            cab = fleet.controller("cab")
            lamps = []
            for lamp in cab.node_ids:
                resolved = point_map.resolve(lamp)
                lamps.append(LampNodes(lamp, resolved.writable(), resolved.telemetry()))
            seen: list[tuple[str, str, float, float]] = []
            ctl = OpcUaController(
                endpoint=cab.endpoint,
                lamps=lamps,
                on_telemetry=lambda lamp, key, raw, t: seen.append(
                    (lamp, key, raw, time.monotonic())
                ),
                security=Security(
                    policy="Basic256Sha256",
                    mode="SignAndEncrypt",
                    certificate=str(cert),
                    private_key=str(key),
                    server_certificate=str(cab.certificate_path),
                    application_uri=URI,
                ),
                probe_interval_s=0.5,
            )
            first = lamps[0].lamp_id
            async with ctl:
                await ctl.wait_connected(10)
                setpoint = point_map.points[
                    [p.key.value for p in point_map.points].index("setpoint")
                ]
                failures = await ctl.write(
                    {
                        (first, "setpoint"): ua.Variant(
                            setpoint.encode(0.4), ua.VariantType[setpoint.data_type]
                        )
                    }
                )
                assert failures == {}
                # The virtual lamp fades to the setpoint and reports it over the encrypted session.
                await until(
                    lambda: any(
                        s[0] == first and s[1] == "level" and abs(s[2] - 0.4) < 1e-6 for s in seen
                    ),
                    10,
                )
                # The controller drops off the network and comes back with its state.
                await cab.drop_off()
                await until(lambda: not ctl.connected, 10)
                back = time.monotonic()
                await cab.come_back()
                await ctl.wait_connected(10)
                assert (
                    await ctl.write(
                        {
                            (first, "setpoint"): ua.Variant(
                                setpoint.encode(0.9), ua.VariantType[setpoint.data_type]
                            )
                        }
                    )
                    == {}
                )
                await until(
                    lambda: any(
                        s[0] == first and s[1] == "level" and s[3] > back and abs(s[2] - 0.9) < 1e-6
                        for s in seen
                    ),
                    10,
                )
                assert time.monotonic() - back < 10
                assert ctl.counters.connects == 2

    asyncio.run(scenario())

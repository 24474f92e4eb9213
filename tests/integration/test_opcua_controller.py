"""The gateway's OPC-UA connector against real asyncua servers on loopback.

The server here uses vendor-style string node ids that appear nowhere in the connector's code:
they reach it only through the ``LampNodes`` configuration.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asyncua import ua
from asyncua.server.server import Server

from gateways.opcua import ControllerUnavailable, LampNodes, OpcUaController
from tests.integration.conftest import free_port, until

pytestmark = pytest.mark.timeout(120)

LAMPS = ("L-0001", "L-0002", "L-0003")


def vendor_nodes(lamp: str) -> LampNodes:
    base = f"ns=2;s=Acme.Cabinet7.Luminaire[{lamp}]"
    return LampNodes(
        lamp_id=lamp,
        writable={"setpoint": f"{base}.DimCommand_pct"},
        telemetry={"level": f"{base}.DimActual_pct", "power": f"{base}.ActivePower_W"},
    )


async def start_server(port: int, state: dict[str, float]) -> tuple[Server, dict[str, object]]:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/acme/")
    ns = await server.register_namespace("urn:acme:luminaires")
    assert ns == 2
    objects = server.nodes.objects
    nodes: dict[str, object] = {}
    for lamp in LAMPS:
        base = f"Acme.Cabinet7.Luminaire[{lamp}]"
        obj = await objects.add_object(ua.NodeId(base, ns), f"Luminaire {lamp}")
        for name in ("DimCommand_pct", "DimActual_pct", "ActivePower_W"):
            node_id = ua.NodeId(f"{base}.{name}", ns)
            var = await obj.add_variable(
                node_id, name, ua.Variant(state.get(f"{lamp}.{name}", 0.0), ua.VariantType.Double)
            )
            if name == "DimCommand_pct":
                await var.set_writable()
            nodes[f"{lamp}.{name}"] = var
    await server.start()
    return server, nodes


async def _scenario() -> None:
    port = free_port()
    state: dict[str, float] = {}
    server, nodes = await start_server(port, state)
    seen: list[tuple[str, str, object, float]] = []

    def on_telemetry(lamp: str, key: str, value: object, time_ns: int) -> None:
        seen.append((lamp, key, value, time.monotonic()))

    ctl = OpcUaController(
        endpoint=f"opc.tcp://127.0.0.1:{port}/acme/",
        lamps=[vendor_nodes(x) for x in LAMPS],
        on_telemetry=on_telemetry,
        probe_interval_s=0.5,
    )
    async with ctl:
        await ctl.wait_connected(10)
        # Batched write of setpoints lands on the vendor's nodes.
        failures = await ctl.write(
            {
                (lamp, "setpoint"): ua.Variant(40.0 + k, ua.VariantType.Double)
                for k, lamp in enumerate(LAMPS)
            }
            | {("L-0001", "ramp"): ua.Variant(1.0, ua.VariantType.Double)}
        )
        assert failures == {("L-0001", "ramp"): "no writable point 'ramp' for lamp 'L-0001'"}
        for k, lamp in enumerate(LAMPS):
            assert await nodes[f"{lamp}.DimCommand_pct"].read_value() == 40.0 + k  # type: ignore[attr-defined]
        # Telemetry arrives through the subscription.
        await nodes["L-0002.DimActual_pct"].write_value(55.0)  # type: ignore[attr-defined]
        await until(lambda: any(s[:3] == ("L-0002", "level", 55.0) for s in seen), 5)

        # The controller restarts: down for 2 s, back on the same port with the same nodes.
        await server.stop()
        await asyncio.sleep(2.0)
        with pytest.raises(ControllerUnavailable):
            await ctl.write({("L-0001", "setpoint"): ua.Variant(10.0, ua.VariantType.Double)})
        server, nodes = await start_server(port, {"L-0003.DimActual_pct": 12.0})
        restarted = time.monotonic()
        await ctl.wait_connected(5)
        await nodes["L-0003.DimActual_pct"].write_value(77.0)  # type: ignore[attr-defined]
        await until(
            lambda: any(s[:3] == ("L-0003", "level", 77.0) and s[3] > restarted for s in seen), 5
        )
        assert time.monotonic() - restarted < 5.0, "telemetry must resume within 5 s of the restart"
        assert ctl.counters.connects == 2 and ctl.counters.disconnects == 1
        # Writes work again after the reconnect.
        assert (
            await ctl.write({("L-0001", "setpoint"): ua.Variant(66.0, ua.VariantType.Double)}) == {}
        )
        assert await nodes["L-0001.DimCommand_pct"].read_value() == 66.0  # type: ignore[attr-defined]
    await server.stop()


def test_vendor_nodes_writes_telemetry_and_restart() -> None:
    asyncio.run(_scenario())


async def _missing_node() -> str:
    port = free_port()
    server, _ = await start_server(port, {})
    bad = LampNodes("L-0001", {}, {"level": "ns=2;s=Acme.Cabinet7.Luminaire[L-0001].NoSuchPoint"})
    ctl = OpcUaController(
        endpoint=f"opc.tcp://127.0.0.1:{port}/acme/", lamps=[bad], on_telemetry=lambda *a: None
    )
    try:
        async with ctl:
            await asyncio.sleep(2.0)
            assert not ctl.connected
            return ctl.counters.last_error
    finally:
        await server.stop()


def test_a_node_missing_on_the_server_is_reported_not_ignored() -> None:
    error = asyncio.run(_missing_node())
    assert "NoSuchPoint" in error and "check the point map" in error

"""The central service end to end: API -> live controller -> mosquitto -> gateway -> OPC-UA.

Real mosquitto, a real asyncua lamp controller with vendor node ids, the real gateway agent,
and the whole central process (`streetlight.serve.serve`): ingest, historian, live loop,
downlink publisher and the API under uvicorn. The clock is real time shifted into a winter
night, so the test does not depend on when it runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import pytest
from pydantic import SecretStr

from api.seed import create_council_with_admin
from api.settings import ApiSettings
from domain.records import Sensor, SensorKind
from gateways.agent import GatewayAgent
from gateways.config import load_gateway_config
from gateways.mqtt import BrokerSettings
from sensor_ingest.config import IngestConfig
from streetlight.central import CentralConfig
from streetlight.serve import ServeOptions, Services, serve
from tests.integration.conftest import Broker, free_port, until
from tests.integration.test_gateway_agent import gateway_toml
from tests.integration.test_opcua_controller import LAMPS, start_server

pytestmark = pytest.mark.timeout(240)
PASSWORD = "correct horse battery staple"
NIGHT = dt.datetime(2026, 1, 15, 21, 30, tzinfo=ZoneInfo("Europe/London"))

PRESENCE_POLICY = """
schema_version: 1
name: quiet-street
version: 1
lighting_classes: [P4]
switching:
  on: {event: sunset}
  off: {event: sunrise}
calendar:
  - profile: night
profiles:
  night:
    presence:
      base_level_frac: 0.5
      boost_level_frac: 1.0
      hold_s: 20
      fade_up_s: 1
      fade_down_s: 5
      neighbours: {ahead: 0, behind: 0}  # only the lamps the sensor names
fail_safe_level_frac: 1.0
"""


class NightClock:
    """Real time, shifted so that the test starts at 21:30 on a January night in London."""

    def __init__(self) -> None:
        self.offset_ns = int(NIGHT.timestamp() * 1e9) - time.time_ns()

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    async def sleep_until(self, time_ns: int) -> None:
        await asyncio.sleep(max(0.0, (time_ns - self.now_ns()) / 1e9))


def test_policy_override_presence_and_telemetry_through_the_whole_chain(
    mosquitto: Broker, tmp_path: Path
) -> None:
    clock = NightClock()
    api_port = free_port()
    settings = ApiSettings(
        environment="test",
        secret_key=SecretStr("x" * 40),
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )
    options = ServeOptions(
        api=settings,
        broker=BrokerSettings(port=mosquitto.port, client_id="central-e2e"),
        historian_path=tmp_path / "history.sqlite",
        api_port=api_port,
        # The OPC-UA server stamps telemetry with the real time, months after the shifted
        # night clock: let ingest accept device times that far "ahead".
        ingest=IngestConfig(max_future_skew_s=400 * 86400.0),
        central=CentralConfig(
            reload_s=0.5,
            health_every_s=1.0,
            sensors=(Sensor("pir-1", "test", SensorKind.PRESENCE, -2.58, 51.45, LAMPS[:2]),),
        ),
    )

    async def scenario() -> None:
        opc_port = free_port()
        server, nodes = await start_server(opc_port, {})
        gateway = load_gateway_config(gateway_toml(tmp_path, mosquitto.port, opc_port))
        ready: asyncio.Queue[Services] = asyncio.Queue()
        stop = asyncio.Event()
        central = asyncio.create_task(serve(options, stop, clock=clock, on_ready=ready.put))
        services = await asyncio.wait_for(ready.get(), 30)

        async def setpoint(lamp: str) -> float:
            return float(await nodes[f"{lamp}.DimCommand_pct"].read_value())  # type: ignore[attr-defined]

        try:
            with services.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
                create_council_with_admin(
                    session, "test", "Test Council", "admin", PASSWORD, now_ns=clock.now_ns()
                )
                session.commit()
            async with (
                httpx.AsyncClient(base_url=services.api_url, timeout=30) as http,
                GatewayAgent(gateway, clock=clock.now_ns) as agent,
            ):
                token = await http.post(
                    "/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
                )
                auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
                for k, lamp in enumerate(LAMPS):
                    r = await http.post(
                        "/api/v1/lamps",
                        headers=auth,
                        json={
                            "lamp_id": lamp,
                            "lon_deg": -2.58 + 0.0002 * k,
                            "lat_deg": 51.45,
                            "rated_power_w": 40.0,
                            "street": "High Street",
                            "order_on_street": k,
                            "dimming_curve": "linear",
                            "gateway_id": "gw-test",
                        },
                    )
                    assert r.status_code == 201, r.text
                await agent.controllers[0].wait_connected(10)

                # No policy yet: the fail-bright fallback lights every lamp fully at night.
                for lamp in LAMPS:
                    await until(lambda lamp=lamp: _close(setpoint(lamp), 100.0), 20, f"{lamp} full")

                # A presence policy on a group: the lamps idle at 50 %.
                group = await http.post("/api/v1/groups", headers=auth, json={"name": "high"})
                group_id = group.json()["id"]
                r = await http.post(
                    f"/api/v1/groups/{group_id}/lamps", headers=auth, json={"lamp_ids": list(LAMPS)}
                )
                assert r.status_code in (200, 201), r.text
                policy = await http.post(
                    "/api/v1/policies", headers=auth, json={"document": PRESENCE_POLICY}
                )
                assert policy.status_code == 201, policy.text
                policy_id = policy.json()["id"]
                r = await http.post(
                    f"/api/v1/policies/{policy_id}/versions/1/activate",
                    headers=auth,
                    json={"group_id": group_id},
                )
                assert r.status_code in (200, 201), r.text
                for lamp in LAMPS:
                    await until(lambda lamp=lamp: _close(setpoint(lamp), 50.0), 20, f"{lamp} 50")

                # A presence event on the gateway's sensor: the central controller raises the
                # sensor's lamps (the gateway leaves light on demand to the central side while
                # it hears from it).
                async with aiomqtt.Client("127.0.0.1", mosquitto.port) as mqtt:
                    await mqtt.publish(
                        "sensors/pir-1/presence",
                        json.dumps({"presence": 1, "t": clock.now_ns() // 1_000_000}).encode(),
                        qos=1,
                    )
                for lamp in LAMPS[:2]:
                    await until(lambda lamp=lamp: _close(setpoint(lamp), 100.0), 15, "boost")
                assert await setpoint(LAMPS[2]) == pytest.approx(50.0)  # not under pir-1
                assert services.central.counters["presence"] >= 1

                # An override from the API reaches the controller; cancelling it resumes. (Above the
                # P4 safety floor of 0.4: no override can take a lit lamp below its floor.)
                r = await http.post(
                    "/api/v1/overrides",
                    headers=auth,
                    json={
                        "lamp_id": LAMPS[2],
                        "level_frac": 0.8,
                        "expires_ns": clock.now_ns() + 600 * 10**9,
                    },
                )
                assert r.status_code == 201, r.text
                await until(lambda: _close(setpoint(LAMPS[2]), 80.0), 15, "override")
                r = await http.delete(f"/api/v1/overrides/{r.json()['id']}", headers=auth)
                assert r.status_code in (200, 204), r.text
                await until(lambda: _close(setpoint(LAMPS[2]), 50.0), 15, "override cancelled")

                # Telemetry from the controller lands in the historian and in live status.
                await nodes[f"{LAMPS[2]}.DimActual_pct"].write_value(50.0)  # type: ignore[attr-defined]
                await nodes[f"{LAMPS[2]}.ActivePower_W"].write_value(21.5)  # type: ignore[attr-defined]

                async def live_ok() -> bool:
                    r = await http.get(f"/api/v1/live/lamps/{LAMPS[2]}", headers=auth)
                    body = r.json()
                    return (
                        r.status_code == 200
                        and body.get("level_frac") == pytest.approx(0.5)
                        and body.get("power_w") == pytest.approx(21.5)
                    )

                await until(live_ok, 15, "live status")
                gateways = (await http.get("/api/v1/gateways", headers=auth)).json()
                assert [g["gateway_id"] for g in gateways["items"]] == ["gw-test"]
                assert gateways["items"][0]["online"] is True
                audit = (await http.get("/api/v1/audit?limit=100", headers=auth)).json()
                actions = {entry["action"] for entry in audit["items"]}
                assert {"override.create", "override.cancel"} <= actions, actions
                # Every command was acknowledged by the gateway; nothing failed.
                counters = services.publisher.counters
                assert counters.acked >= 3 and counters.failed == 0, counters
                assert services.pipeline.counters()["readings_accepted"] > 0
                assert agent.status()["mode"] == "central"
        finally:
            stop.set()
            await asyncio.wait_for(central, 30)
            await server.stop()

    asyncio.run(scenario())


async def _close(value: object, expected: float) -> bool:
    got = await value  # type: ignore[misc]
    return abs(float(got) - expected) < 0.01

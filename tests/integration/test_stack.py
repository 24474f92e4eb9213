"""The whole local stack (`make run`) in one test: embedded broker, virtual OPC-UA town with
sensors, gateway, central service, API and dashboard page; driven through the API as a user
would, checked at the virtual lamp controllers."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from streetlight.stack import DEMO_PASSWORD, DEMO_USER, OTHER_USER, Stack, StackOptions, run_stack
from tests.integration.conftest import free_port, until

pytestmark = pytest.mark.timeout(300)
LATE = dt.datetime(2026, 1, 15, 23, 30, tzinfo=ZoneInfo("Europe/London"))


def test_the_local_stack_runs_a_night_and_obeys_the_api(tmp_path: Path) -> None:
    options = StackOptions(
        data_dir=tmp_path / "stack",
        api_port=free_port(),
        broker_port=free_port(),
        lamps=60,
        speed=1.0,
        start=LATE,
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        ready: asyncio.Queue[Stack] = asyncio.Queue()
        task = asyncio.create_task(run_stack(options, stop, on_ready=ready.put))
        stack = await asyncio.wait_for(ready.get(), 120)
        try:
            lamps = [lamp.lamp_id for lamp in stack.town.lamps]
            assert len(lamps) == 60
            async with httpx.AsyncClient(base_url=stack.services.api_url, timeout=30) as http:
                page = await http.get("/")
                assert page.status_code == 200 and "<html" in page.text.lower()

                async def login(user: str) -> dict[str, str]:
                    r = await http.post(
                        "/api/v1/auth/token", data={"username": user, "password": DEMO_PASSWORD}
                    )
                    assert r.status_code == 200, r.text
                    return {"Authorization": f"Bearer {r.json()['access_token']}"}

                demo = await login(DEMO_USER)

                # Every lamp is commanded by the central controller (nothing dark at night).
                await until(
                    lambda: all(stack.setpoint_frac(i) > 0 for i in lamps), 60, "all lamps lit"
                )
                setpoints = np.array([stack.setpoint_frac(i) for i in lamps])
                assert setpoints.min() >= 0.25  # the policies' floors, at least

                # Telemetry from every controller reaches live status through the gateway.
                async def reporting() -> bool:
                    r = await http.get("/api/v1/live/lamps?limit=500", headers=demo)
                    items = r.json()["items"]
                    return len(items) == 60 and all(x["level_frac"] is not None for x in items)

                await until(reporting, 60, "live status of every lamp")

                # An override from the API lands on the virtual OPC-UA controller.
                target = next(lamp.lamp_id for lamp in stack.town.lamps if lamp.group == "centre")
                r = await http.post(
                    "/api/v1/overrides",
                    headers=demo,
                    json={
                        "lamp_id": target,
                        "level_frac": 0.9,
                        "expires_ns": stack.clock.now_ns() + 3600 * 10**9,
                    },
                )
                assert r.status_code == 201, r.text
                await until(lambda: abs(stack.setpoint_frac(target) - 0.9) < 1e-6, 30, "override")

                # A lamp fails at its controller: the status bit travels up and the health
                # monitor raises a lamp_failure alarm that the API lists.
                broken = lamps[-1]
                cabinet = next(
                    c for c in stack.fleet.controllers.values() if broken in c.bank.lamp_ids
                )
                cabinet.fail_lamp(broken)

                async def alarmed() -> bool:
                    r = await http.get(
                        f"/api/v1/alarms?lamp_id={broken}&kind=lamp_failure", headers=demo
                    )
                    return r.status_code == 200 and r.json()["total"] == 1

                await until(alarmed, 60, "lamp failure alarm")

                # The other council sees its own lamps and nothing of the demo council's.
                other = await login(OTHER_USER)
                r = await http.get("/api/v1/lamps?limit=500", headers=other)
                theirs = {x["lamp_id"] for x in r.json()["items"]}
                assert theirs and not theirs & set(lamps)
                r = await http.get(f"/api/v1/live/lamps/{target}", headers=other)
                assert r.status_code == 404
                assert target not in r.text
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)

    asyncio.run(scenario())

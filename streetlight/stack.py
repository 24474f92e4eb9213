"""The whole system on one machine: ``streetlight stack`` (``make run``).

What starts, in this order, all in one process and on loopback:

1. the embedded MQTT broker (amqtt; :mod:`streetlight.broker`);
2. a virtual town: a district of real lamp positions (the ``--lamps`` lamps of Bristol's
   inventory nearest the city centre, read from ``../shared/data`` when it is there; the
   generated sample town otherwise), as virtual OPC-UA lamp controllers (cabinets of up to 200
   lamps, :mod:`simulation.devices`), with presence sensors on lamp columns whose road users
   follow a real footfall profile (the mean day of Melbourne's pedestrian counters, when the
   data is there);
3. one gateway (:class:`gateways.agent.GatewayAgent`) mapping those controllers and sensors;
4. the central service and the API with the dashboard (:func:`streetlight.serve.serve`) on
   ``http://127.0.0.1:8000``, over a fresh store seeded with two councils: the demo council
   owning the town (two groups, a presence policy on one, part-night on the other) and a
   second council with a few lamps of its own, to show that each council sees only its data.

Every part reads one simulated clock (:class:`simulation.devices.mqtt_sensors.SimClock`):
``--speed 60`` runs an hour a minute, ``--start`` chooses when the night begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import SecretStr

from api.seed import create_council_with_admin
from api.settings import ApiSettings
from controller.policy.calendar import zone
from domain.importer import ColumnMapping, import_csv
from domain.inventory import InventoryArrays
from domain.records import Lamp, Sensor, SensorKind
from gateways.agent import GatewayAgent
from gateways.config import load_gateway_config
from gateways.mqtt import BrokerSettings
from sensor_ingest.config import IngestConfig
from simulation.counts import load_melbourne_pedestrian
from simulation.devices.config import DevicesConfig, sensor_ids
from simulation.devices.fleet import DeviceFleet
from simulation.devices.mqtt_sensors import SimClock
from simulation.sample_town import sample_town
from streetlight.broker import EmbeddedBroker
from streetlight.central import CentralConfig
from streetlight.serve import ServeOptions, Services, serve

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USER",
    "OTHER_USER",
    "Stack",
    "StackOptions",
    "Town",
    "run_stack",
]

_log = logging.getLogger(__name__)
NS_PER_S = 1_000_000_000
DEMO_USER = "demo"
OTHER_USER = "other-demo"
DEMO_PASSWORD = "streetlight-demo"  # printed at start: a loopback demonstration only
DEMO_COUNCIL = "bristol"
OTHER_COUNCIL = "other-town"
GATEWAY_ID = "gw-demo"
CABINET_LAMPS = 200
BRISTOL_CENTRE = (-2.5879, 51.4545)  # lon, lat
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = Path(__file__).resolve().parent / "samples"
PRESENCE_POLICY = SAMPLES / "policy_presence_adaptive.yaml"
PART_NIGHT_POLICY = SAMPLES / "policy_part_night.yaml"


@dataclass(frozen=True)
class StackOptions:
    data_dir: Path = Path("var/stack")
    api_port: int = 8000
    broker_port: int = 1883
    lamps: int = 400
    speed: float = 1.0
    #: When the simulated clock starts (aware); None: 30 minutes before tonight's dusk... or now
    #: if the night has begun.
    start: dt.datetime | None = None
    shared_data: Path = SHARED_DATA
    tz: str = "Europe/London"

    def __post_init__(self) -> None:
        if not 1 <= self.lamps <= 5000:
            raise ValueError(f"lamps must be 1..5000, got {self.lamps}")
        if not 0 < self.speed <= 3600:
            raise ValueError(
                f"speed must be within (0, 3600] simulated seconds a second, got {self.speed}"
            )
        if self.start is not None and self.start.utcoffset() is None:
            raise ValueError("start needs a time zone, e.g. 2026-12-21T16:00:00+00:00")


@dataclass(frozen=True)
class Town:
    """The demo council's lamps and where they came from."""

    lamps: tuple[Lamp, ...]
    source: str


def load_town(options: StackOptions) -> Town:
    """The ``options.lamps`` Bristol lamps nearest the centre, or the generated sample town."""
    path = options.shared_data / "bristol_streetlights_lonlat.csv"
    if path.is_file():
        inv, _report = import_csv(
            path,
            ColumnMapping(
                council_id=DEMO_COUNCIL,
                x_column="longitude",
                y_column="latitude",
                default_power_w=60.0,
                id_prefix="BRS",
            ),
        )
        lon0, lat0 = BRISTOL_CENTRE
        d2 = ((inv.lon_deg - lon0) * np.cos(np.radians(lat0))) ** 2 + (inv.lat_deg - lat0) ** 2
        nearest = np.sort(np.argsort(d2)[: options.lamps])
        inv = inv.subset(nearest)
        source = f"{len(inv)} lamps of Bristol's inventory nearest the centre ({path.name})"
    else:
        per_street = 20
        inv = sample_town(streets=max(1, options.lamps // per_street), lamps_per_street=per_street)
        source = f"{len(inv)} lamps of the generated sample town ({path} not found)"
    lamps = _relabel(inv)
    return Town(tuple(lamps), source)


def _relabel(inv: InventoryArrays) -> list[Lamp]:
    """Lamps of the demo council; the two halves of the streets (by index) are the two groups."""
    lamps = inv.lamps()
    n_streets = max(1, len(inv.street_names))
    out = []
    for lamp, street in zip(lamps, inv.street_index.tolist(), strict=True):
        group = "centre" if street < (n_streets + 1) // 2 else "outer"
        out.append(
            Lamp(
                lamp.lamp_id,
                DEMO_COUNCIL,
                lamp.lon_deg,
                lamp.lat_deg,
                lamp.rated_power_w,
                lamp.standby_power_w,
                lamp.lighting_class,
                lamp.street,
                lamp.order_on_street,
                dimming_curve=lamp.dimming_curve,
                group=group,
            )
        )
    return out


def footfall_shape(options: StackOptions) -> tuple[float, ...]:
    """The mean day of Melbourne's pedestrian counters (real counts), or () for the default."""
    path = options.shared_data / "melbourne_pedestrian_hourly_2019-01.csv"
    if not path.is_file():
        return ()
    profile = load_melbourne_pedestrian(path).pooled_profile_by_hour()
    if not np.all(np.isfinite(profile)) or profile.max() <= 0:
        return ()
    return tuple(float(v) for v in profile)


def _sensor_layout(town: Town, n_streets: int, per_street: int) -> dict[str, tuple[str, ...]]:
    """Presence sensor id -> the lamp it sits on: sensor ``k`` of street ``s`` on the ``k``-th
    lamp of the ``s``-th longest street."""
    by_street: dict[str, list[Lamp]] = {}
    for lamp in town.lamps:
        by_street.setdefault(lamp.street, []).append(lamp)
    streets = sorted(by_street.values(), key=len, reverse=True)[:n_streets]
    layout: dict[str, tuple[str, ...]] = {}
    ids = iter(range(1, n_streets * per_street + 1))
    for street in streets:
        ordered = sorted(street, key=lambda lamp: lamp.order_on_street)
        for k in range(per_street):
            n = next(ids)
            if k < len(ordered):
                layout[f"pir-{n:03d}"] = (ordered[k].lamp_id,)
    return layout


def devices_config(
    town: Town, options: StackOptions, clock: SimClock, shape: tuple[float, ...]
) -> tuple[DevicesConfig, dict[str, tuple[str, ...]]]:
    lamp_ids = [lamp.lamp_id for lamp in town.lamps]
    cabinets = [lamp_ids[a : a + CABINET_LAMPS] for a in range(0, len(lamp_ids), CABINET_LAMPS)]
    streets = len({lamp.street for lamp in town.lamps})
    n_streets, per_street = min(4, streets), 8
    start = dt.datetime.fromtimestamp(clock.start_ns / NS_PER_S, dt.UTC)
    presence: dict[str, Any] = {
        "kind": "presence",
        "id_prefix": "pir-",
        "streets": n_streets,
        "per_street": per_street,
        "spacing_m": 30.0,
        "footfall_peak_per_h": 120.0,
        "traffic_peak_per_h": 20.0,
        "topic": "sensors/{sensor_id}/presence",
        "qos": 1,
    }
    if shape:
        presence["footfall_shape"] = shape
    config = DevicesConfig.model_validate(
        {
            "schema_version": 1,
            "controllers": [
                {
                    "name": f"cabinet-{k + 1}",
                    "port": 0,
                    "scheme": "streetlight-virtual-v1",
                    "lamps": {"ids": ids},
                    "rated_power_w": 60.0,
                    "initial_level_frac": 0.0,
                    "default_ramp_s": 2.0,
                }
                for k, ids in enumerate(cabinets)
            ],
            "sensors": [presence],
            "broker": {"host": "127.0.0.1", "port": options.broker_port, "client_id": "devices"},
            "clock": {"speedup": clock.speedup, "start": start, "tz": options.tz},
        }
    )
    layout = _sensor_layout(town, n_streets, per_street)
    known = set(sensor_ids(config.sensors[0]))
    return config, {sid: lamps for sid, lamps in layout.items() if sid in known}


def gateway_toml(
    options: StackOptions,
    endpoints: dict[str, tuple[str, tuple[str, ...]]],
    sensors: dict[str, tuple[str, ...]],
    town: Town,
) -> str:
    lon = float(np.mean([lamp.lon_deg for lamp in town.lamps]))
    lat = float(np.mean([lamp.lat_deg for lamp in town.lamps]))
    queue = (options.data_dir / "gateway-queue.db").resolve()
    parts = [
        f"""schema_version = 1
dev_mode = true

[gateway]
id = "{GATEWAY_ID}"
council_id = "{DEMO_COUNCIL}"
tz = "{options.tz}"
lat_deg = {lat}
lon_deg = {lon}

[broker]
host = "127.0.0.1"
port = {options.broker_port}
keepalive_s = 15

[uplink]
batch_max_readings = 500
batch_interval_s = 0.5

[queue]
path = "{queue}"

[autonomy]
uplink_timeout_s = 60
"""
    ]
    for name, (endpoint, lamp_ids) in endpoints.items():
        lamps = ", ".join(f'{{ lamp_id = "{i}" }}' for i in lamp_ids)
        parts.append(
            f"""
[[opcua_controllers]]
name = "{name}"
endpoint = "{endpoint}"
point_map = "streetlight-virtual-v1"
lamps = [{lamps}]
"""
        )
    mapping = ", ".join(f'"{sid}" = ["{lamps[0]}"]' for sid, lamps in sensors.items())
    parts.append(
        f"""
[[mqtt_sensors]]
name = "pir"
topic = "sensors/{{sensor_id}}/presence"
lamps = {{ {mapping} }}
[mqtt_sensors.payload]
kind = "presence"
value = "$.presence"
time = "$.t"
time_unit = "ms"
"""
    )
    return "".join(parts)


def default_start(options: StackOptions, now_ns: int) -> int:
    """21:00 local today (the evening, after dusk all year round in Bristol), or now if later."""
    local = dt.datetime.fromtimestamp(now_ns / NS_PER_S, zone(options.tz))
    evening = local.replace(hour=21, minute=0, second=0, microsecond=0)
    if local.hour < 12:
        return now_ns  # already in the small hours of a night
    return max(now_ns, int(evening.timestamp()) * NS_PER_S)


@dataclass(frozen=True)
class Stack:
    """A running stack, for the CLI's banner and for tests."""

    services: Services
    town: Town
    clock: StackClock
    fleet: DeviceFleet
    sensors: dict[str, tuple[str, ...]]

    def setpoint_frac(self, lamp_id: str) -> float:
        """The level last written to ``lamp_id`` on its virtual OPC-UA controller."""
        for controller in self.fleet.controllers.values():
            bank = controller.bank
            if lamp_id in bank.lamp_ids:
                return float(bank.setpoint_frac[bank.lamp_ids.index(lamp_id)])
        raise KeyError(f"no virtual controller has lamp {lamp_id!r}")


class StackClock:
    """The controller-side face of the shared :class:`SimClock` (``now_ns``, ``sleep_until``)."""

    def __init__(self, sim: SimClock) -> None:
        self.sim = sim

    def now_ns(self) -> int:
        return self.sim.now_ns()

    async def sleep_until(self, time_ns: int) -> None:
        await asyncio.sleep(max(0.0, self.sim.real_s_until(time_ns)))


def seed(services: Services, options: StackOptions, clock: StackClock) -> None:
    """A fresh store: the demo council with its town, groups and policies; a second council."""
    ctx = services.app.state.ctx  # type: ignore[attr-defined]
    now = clock.now_ns()
    with ctx.sessions() as session:
        create_council_with_admin(
            session,
            DEMO_COUNCIL,
            "Bristol (demo district)",
            DEMO_USER,
            DEMO_PASSWORD,
            tz=options.tz,
            passwords=ctx.passwords,
            now_ns=now,
        )
        create_council_with_admin(
            session,
            OTHER_COUNCIL,
            "Other Town",
            OTHER_USER,
            DEMO_PASSWORD,
            tz=options.tz,
            passwords=ctx.passwords,
            now_ns=now,
        )
        session.commit()


async def _api_setup(services: Services, town: Town) -> None:
    """Inventory, groups and policies through the API itself, as an engineer would."""
    async with httpx.AsyncClient(base_url=services.api_url, timeout=60) as http:

        async def login(user: str) -> dict[str, str]:
            r = await http.post(
                "/api/v1/auth/token", data={"username": user, "password": DEMO_PASSWORD}
            )
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        auth = await login(DEMO_USER)
        groups: dict[str, int] = {}
        for name in ("centre", "outer"):
            r = await http.post("/api/v1/groups", headers=auth, json={"name": name})
            r.raise_for_status()
            groups[name] = r.json()["id"]
        for lamp in town.lamps:
            r = await http.post(
                "/api/v1/lamps",
                headers=auth,
                json={
                    "lamp_id": lamp.lamp_id,
                    "lon_deg": lamp.lon_deg,
                    "lat_deg": lamp.lat_deg,
                    "rated_power_w": lamp.rated_power_w,
                    "lighting_class": lamp.lighting_class.value,
                    "street": lamp.street,
                    "order_on_street": lamp.order_on_street,
                    "gateway_id": GATEWAY_ID,
                },
            )
            r.raise_for_status()
        for name, group_id in groups.items():
            members = [lamp.lamp_id for lamp in town.lamps if lamp.group == name]
            for a in range(0, len(members), 5000):
                r = await http.post(
                    f"/api/v1/groups/{group_id}/lamps",
                    headers=auth,
                    json={"lamp_ids": members[a : a + 5000]},
                )
                r.raise_for_status()
        for path, group in ((PRESENCE_POLICY, "centre"), (PART_NIGHT_POLICY, "outer")):
            r = await http.post(
                "/api/v1/policies", headers=auth, json={"document": path.read_text()}
            )
            r.raise_for_status()
            policy_id = r.json()["id"]
            r = await http.post(
                f"/api/v1/policies/{policy_id}/versions/1/activate",
                headers=auth,
                json={"group_id": groups[group]},
            )
            r.raise_for_status()
        # The other council's few lamps, somewhere else, on no gateway.
        other = await login(OTHER_USER)
        for k in range(12):
            r = await http.post(
                "/api/v1/lamps",
                headers=other,
                json={
                    "lamp_id": f"OT-{k + 1:03d}",
                    "lon_deg": -1.5491 + 0.0004 * k,
                    "lat_deg": 53.8008,
                    "rated_power_w": 45.0,
                },
            )
            r.raise_for_status()


async def run_stack(
    options: StackOptions,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[Stack], Awaitable[None] | None] | None = None,
    wall_ns: Callable[[], int] | None = None,
) -> None:
    """Run the whole stack until ``stop`` is set (see the module docstring)."""
    import time

    data = options.data_dir
    if data.exists():
        shutil.rmtree(data)  # a fresh demo every time: the store is seeded below
    data.mkdir(parents=True)
    now = (wall_ns or time.time_ns)()
    start_ns = (
        int(options.start.timestamp() * NS_PER_S) if options.start else default_start(options, now)
    )
    sim = SimClock(start_ns, options.speed, time.monotonic(), time.monotonic)
    clock = StackClock(sim)
    town = load_town(options)
    shape = footfall_shape(options)
    devices, sensor_map = devices_config(town, options, sim, shape)
    sensors = tuple(
        Sensor(sid, DEMO_COUNCIL, SensorKind.PRESENCE, 0.0, 0.0, lamps)
        for sid, lamps in sensor_map.items()
    )
    api = ApiSettings(
        environment="development",
        database_url=f"sqlite:///{(data / 'streetlight.db').resolve()}",
        secret_key=SecretStr("demo-only-" + "x" * 32),
    )
    serve_options = ServeOptions(
        api=api,
        broker=BrokerSettings(port=options.broker_port, client_id="streetlight-central"),
        historian_path=data / "history.sqlite",
        api_port=options.api_port,
        central=CentralConfig(sensors=sensors, reload_s=2.0),
        sensor_lamps=town.lamps,
        # A fast clock makes device times run ahead of real receive times between ticks.
        ingest=IngestConfig(max_future_skew_s=max(300.0, 120.0 * options.speed)),
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(EmbeddedBroker(port=options.broker_port))
        fleet = await stack.enter_async_context(DeviceFleet(devices, sim_clock=sim))
        endpoints = {
            name: (controller.endpoint, tuple(controller.config.lamps.lamp_ids()))
            for name, controller in fleet.controllers.items()
        }
        gateway_file = data / "gateway.toml"
        gateway_file.write_text(gateway_toml(options, endpoints, sensor_map, town))
        ready: asyncio.Queue[Services] = asyncio.Queue()
        central = asyncio.create_task(
            serve(serve_options, stop, clock=clock, on_ready=ready.put), name="central"
        )
        getter = asyncio.create_task(ready.get())
        await asyncio.wait({central, getter}, return_when=asyncio.FIRST_COMPLETED)
        if central.done():
            getter.cancel()
            central.result()  # raise why the central service stopped
            return
        services = getter.result()
        seed(services, options, clock)
        await _api_setup(services, town)
        await stack.enter_async_context(
            GatewayAgent(load_gateway_config(gateway_file), clock=sim.now_ns)
        )
        if on_ready is not None:
            result = on_ready(Stack(services, town, clock, fleet, sensor_map))
            if result is not None:
                await result
        await central

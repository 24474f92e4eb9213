"""``streetlight serve``: the central service and its API in one process.

Builds the stages from :class:`ServeOptions` and runs them until ``stop`` is set:
the embedded historian, the API (with the dashboard and its live feed) under uvicorn, the
ingest consumer, the downlink publisher (commands, retries, heartbeats) and the central loop
(:class:`streetlight.central.CentralService`). Every part gets the same clock, so a demo
night can run faster than real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from api.app import create_app
from api.feed import LiveFeed
from api.settings import ApiSettings
from controller.live import Clock, SystemClock
from domain.records import Lamp, Sensor
from gateways.mqtt import BrokerSettings, MqttLink
from sensor_ingest.config import IngestConfig
from sensor_ingest.consumer import IngestConsumer
from sensor_ingest.historian import EmbeddedHistorian
from sensor_ingest.influx import InfluxSettings, InfluxSink
from sensor_ingest.pipeline import IngestPipeline, Sink
from sensor_ingest.windows import DemandWindows, zones_from_inventory
from streetlight.central import CentralConfig, CentralService
from streetlight.downlink import DownlinkPublisher

__all__ = ["ServeOptions", "Services", "serve"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    api: ApiSettings
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    prefix: str = "streetlight/v1"
    historian_path: Path = Path("streetlight-history.sqlite")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    central: CentralConfig = field(default_factory=CentralConfig)
    influx: InfluxSettings | None = None
    #: Lamps the sensors sit on (for demand zones by street); sensors come from ``central``.
    sensor_lamps: tuple[Lamp, ...] = ()
    #: How long a reading may be old/ahead of the receive time (a fast demo clock needs more).
    ingest: IngestConfig = field(default_factory=IngestConfig)


@dataclass
class Services:
    """What a running :func:`serve` exposes (to the CLI's status line and to tests)."""

    historian: EmbeddedHistorian
    feed: LiveFeed
    pipeline: IngestPipeline
    consumer: IngestConsumer
    publisher: DownlinkPublisher
    central: CentralService
    api_url: str
    app: object


async def serve(
    options: ServeOptions,
    stop: asyncio.Event,
    *,
    clock: Clock | None = None,
    on_ready: Callable[[Services], Awaitable[None] | None] | None = None,
) -> None:
    """Run the central service until ``stop`` is set; ``on_ready`` once everything listens."""
    clock = clock or SystemClock()
    options.historian_path.parent.mkdir(parents=True, exist_ok=True)
    historian = EmbeddedHistorian(str(options.historian_path))
    feed = LiveFeed()
    app = create_app(options.api, telemetry=historian, clock=clock.now_ns, feed=feed)
    sessions = app.state.ctx.sessions
    # The downlink has its own session next to the ingest consumer's.
    client_id = options.broker.client_id or "streetlight-central"
    link = MqttLink(dataclasses.replace(options.broker, client_id=f"{client_id}-downlink"))
    publisher = DownlinkPublisher(link, options.prefix, clock.now_ns)
    sensors: tuple[Sensor, ...] = options.central.sensors
    windows = DemandWindows(zones_from_inventory(sensors, options.sensor_lamps))
    central = CentralService(sessions, publisher, clock, options.central, feed)

    def demand(now_ns: int) -> dict[str, float]:
        zones, counts = windows.snapshot(now_ns)
        return {z: float(counts[k].sum()) for k, z in enumerate(zones)}

    central.demand = demand if windows.zones else None
    sinks: list[Sink] = [central]
    influx = InfluxSink(options.influx) if options.influx is not None else None
    if influx is not None:
        sinks.append(influx)
    pipeline = IngestPipeline(
        historian,
        windows,
        sinks,
        options.ingest,
        clock.now_ns,
        on_status=central.on_status,
        on_ack=central.on_ack,
    )
    consumer = IngestConsumer(
        pipeline,
        host=options.broker.host,
        port=options.broker.port,
        prefix=options.prefix,
        username=options.broker.username,
        password=options.broker.password,
        client_id=options.broker.client_id or "streetlight-central",
        ca_file=options.broker.ca_file,
        cert_file=options.broker.cert_file,
        key_file=options.broker.key_file,
        tls_insecure=options.broker.tls_insecure,
        clock=clock.now_ns,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=options.api_host,
            port=options.api_port,
            log_level="warning",
            lifespan="on",
        )
    )
    try:
        async with link, consumer:
            api_task = asyncio.create_task(server.serve(), name="api")
            loop_task = asyncio.create_task(central.run(stop), name="central-loop")
            downlink_task = asyncio.create_task(publisher.run(stop), name="downlink")
            while not server.started and not api_task.done():
                await asyncio.sleep(0.05)
            if api_task.done():
                api_task.result()  # uvicorn could not bind: raise its error
            services = Services(
                historian,
                feed,
                pipeline,
                consumer,
                publisher,
                central,
                f"http://{options.api_host}:{options.api_port}",
                app,
            )
            if on_ready is not None:
                result = on_ready(services)
                if result is not None:
                    await result
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {stopper, loop_task, downlink_task, api_task}, return_when=asyncio.FIRST_COMPLETED
            )
            stop.set()
            feed.close()  # ends the open live streams, or uvicorn would wait for them
            server.should_exit = True
            for task in (loop_task, downlink_task, api_task, stopper):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        if influx is not None:
            influx.close()
        feed.close()
        historian.close()

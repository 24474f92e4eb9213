"""The ``streetlight`` command line: the composition root's entry point.

Each subcommand loads its inputs once, calls the stages, and prints with rich. Errors the user
can fix (bad files, bad options) end with a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from domain.errors import StreetlightError

app = typer.Typer(
    name="streetlight",
    help="Smart street-lighting control: dimming core, policies, inventories.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def _utc(ns: int) -> str:
    """``HH:MM:SS`` UTC, with the date when it is not the row's date."""
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


@app.command()
def sun(
    lat: Annotated[float, typer.Option(help="latitude, degrees north")],
    lon: Annotated[float, typer.Option(help="longitude, degrees east")],
    on: Annotated[str, typer.Option("--date", help="first date, YYYY-MM-DD")] = str(date.today()),
    days: Annotated[int, typer.Option(min=1, max=366)] = 1,
    civil: Annotated[
        bool, typer.Option(help="civil twilight (sun 6 deg below) instead of sunrise/sunset")
    ] = False,
) -> None:
    """Sunrise, solar noon and sunset (NOAA), in UTC, for a place and dates."""
    from controller.dimming.solar import (
        ZENITH_CIVIL_DEG,
        ZENITH_OFFICIAL_DEG,
        SunStatus,
        sun_events,
    )

    try:
        first = np.datetime64(on, "D")
    except ValueError:
        raise _fail(f"--date must be YYYY-MM-DD, got {on!r}") from None
    dates = first + np.arange(days)
    try:
        ev = sun_events(dates, lat, lon, ZENITH_CIVIL_DEG if civil else ZENITH_OFFICIAL_DEG)
    except ValueError as err:
        raise _fail(str(err)) from None
    table = Table(
        title=f"sun at {lat:.4f}, {lon:.4f} ({'civil twilight' if civil else 'sunrise/sunset'}, UTC)"
    )
    for col in ("date", "rise", "noon", "set", "status"):
        table.add_column(col, no_wrap=True)
    for k, d in enumerate(dates):
        status = SunStatus(int(ev.status[k]))
        normal = status is SunStatus.NORMAL
        row = [
            _utc(ev.rise_ns[k]) if normal else "-",
            _utc(ev.noon_ns[k]),
            _utc(ev.set_ns[k]) if normal else "-",
        ]
        table.add_row(str(d), *(t.removeprefix(f"{d} ") for t in row), status.name.lower())
    console.print(table)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="inventory file (.csv or .geojson)")],
    mapping: Annotated[Path | None, typer.Option(help="column mapping file (YAML or JSON)")] = None,
    lon: Annotated[str | None, typer.Option(help="x / longitude column")] = None,
    lat: Annotated[str | None, typer.Option(help="y / latitude column")] = None,
    crs: Annotated[str | None, typer.Option(help="source CRS, e.g. EPSG:3857")] = None,
    wattage: Annotated[str | None, typer.Option(help="wattage column")] = None,
    default_power_w: Annotated[
        float | None, typer.Option(help="power for lamps with no wattage")
    ] = None,
    council: Annotated[str | None, typer.Option(help="council id")] = None,
    show: Annotated[int, typer.Option(help="bad rows to list")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Import an inventory and report what was kept and which rows were refused, and why."""
    from domain.importer import ColumnMapping, import_inventory

    options = {
        key: value
        for key, value in {
            "x_column": lon,
            "y_column": lat,
            "source_crs": crs,
            "wattage_column": wattage,
            "default_power_w": default_power_w,
            "council_id": council,
        }.items()
        if value is not None
    }
    try:
        base = ColumnMapping.from_file(mapping) if mapping else ColumnMapping()
        merged = ColumnMapping.from_dict({**_mapping_dict(base), **options}) if options else base
        inventory, report = import_inventory(path, merged)
    except (StreetlightError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    if as_json:
        print(
            json.dumps(
                {
                    "source": report.source,
                    "rows_read": report.rows_read,
                    "rows_imported": report.rows_imported,
                    "bad_rows": [
                        {"row": b.row_number, "reason": b.reason} for b in report.bad_rows
                    ],
                    "wattage_missing": report.wattage_missing,
                    "duplicate_ids": list(report.duplicate_ids),
                    "row_numbering": report.row_numbering,
                }
            )
        )
        return
    console.print(
        f"[bold]{report.source}[/]: {report.rows_imported:,} of {report.rows_read:,} rows imported"
    )
    if len(inventory):
        console.print(
            f"  lon {inventory.lon_deg.min():.5f} .. {inventory.lon_deg.max():.5f}, "
            f"lat {inventory.lat_deg.min():.5f} .. {inventory.lat_deg.max():.5f}; "
            f"{len(inventory.street_names):,} streets; total rated power "
            f"{inventory.rated_power_w.sum() / 1000:,.1f} kW"
        )
    console.print(
        f"  wattage missing on {report.wattage_missing:,} rows; row numbers: {report.row_numbering}"
    )
    if report.bad_rows:
        table = Table(
            title=f"{len(report.bad_rows):,} bad rows (first {min(show, len(report.bad_rows))})"
        )
        table.add_column("row", justify="right")
        table.add_column("reason")
        for bad in report.bad_rows[:show]:
            table.add_row(str(bad.row_number), bad.reason)
        console.print(table)


@app.command()
def validate(
    policy: Annotated[Path, typer.Argument(help="policy document (YAML or JSON)")],
) -> None:
    """Validate a policy document; list every problem with its location."""
    from controller.policy import validate_policy
    from domain.errors import PolicyError

    try:
        doc = validate_policy(policy)
    except PolicyError as err:
        console.print(f"[bold red]{policy}: invalid[/] ({len(err.issues)} problem(s))")
        for issue in err.issues:
            console.print(f"  [yellow]{issue.where}[/]: {issue.message}")
        raise typer.Exit(code=1) from None
    console.print(f"[bold green]{policy}: valid[/] - {doc.name} version {doc.version}")


@app.command()
def night(
    policy: Annotated[Path, typer.Argument(help="policy document")],
    on: Annotated[
        str, typer.Option("--date", help="local date the night starts, YYYY-MM-DD")
    ] = "2026-12-21",
    tz: Annotated[str, typer.Option(help="IANA time zone")] = "Europe/London",
    inventory: Annotated[
        Path | None, typer.Option(help="inventory file (default: the sample town)")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="column mapping for --inventory")] = None,
) -> None:
    """Compile a policy for one night and report energy and switching, without presence."""
    from controller.dimming.levels import run_night
    from controller.dimming.power import LampElectrics
    from controller.policy import compile_night_full, validate_policy
    from domain.importer import ColumnMapping, import_inventory
    from simulation.sample_town import sample_town

    try:
        doc = validate_policy(policy)
        inv = (
            import_inventory(
                inventory, ColumnMapping.from_file(mapping) if mapping else ColumnMapping()
            )[0]
            if inventory
            else sample_town()
        )
        compiled = compile_night_full(doc, inv, on, tz)
        program = compiled.program
        # No demand measured here: every adaptive zone stays at its normal class.
        zones_at_normal = np.zeros((len(program.zone_names), program.n_steps // 900 + 1), np.int8)
        res = run_night(program, LampElectrics.from_inventory(inv), adaptive_steps=zones_at_normal)
    except (StreetlightError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    lit_h = sum(b - a for a, b in compiled.lit_ns) / 3.6e12
    console.print(
        f"[bold]{doc.name}[/] v{doc.version}, night of {on} ({tz}), {len(inv):,} lamps, "
        f"profile '{compiled.profile}', lit {lit_h:.2f} h"
    )
    console.print(
        f"  energy {res.energy_kwh:,.1f} kWh; burning {res.on_s.sum() / 3600:,.0f} lamp-hours; "
        f"{int(res.commands.sum()):,} commands; {int(res.switch_ons.sum()):,} switch-ons"
    )


@app.command()
def simulate(
    scenario: Annotated[
        Path, typer.Argument(help="scenario file (YAML or TOML), see docs/scenarios.md")
    ],
    out: Annotated[
        Path | None, typer.Option(help="output folder (default artifacts/<scenario name>)")
    ] = None,
) -> None:
    """Replay nights for a town under several policies; compare energy, cost, CO2 and compliance."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulation.report import print_comparison, write_all
    from simulation.run import run_scenario
    from simulation.scenario import load_scenario

    try:
        spec = load_scenario(scenario)
    except (StreetlightError, ValueError) as err:
        raise _fail(str(err)) from None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"simulating {spec.name}", total=len(spec.policies) * spec.nights.count)

        def advance(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=label)

        try:
            report = run_scenario(spec, progress=advance)
        except (StreetlightError, ValueError, OSError) as err:
            raise _fail(str(err)) from None
    print_comparison(report, console)
    paths = write_all(report, out or Path("artifacts") / spec.name)
    console.print(
        f"wall {report.wall_s:.1f} s, of which kernels {report.kernel_s:.1f} s; "
        f"report: [bold]{paths['html']}[/] and {paths['json']}"
    )


@app.command()
def gateway(
    config: Annotated[
        Path,
        typer.Option("--config", help="gateway configuration (TOML), see docs/gateway-config.md"),
    ],
    clock_start: Annotated[
        str | None,
        typer.Option(help="run as if it were this UTC time now (ISO, e.g. 2026-12-21T23:00)"),
    ] = None,
) -> None:
    """Run the edge gateway agent until interrupted (Ctrl-C or SIGTERM stop it cleanly)."""
    import asyncio
    import logging
    import signal

    from gateways.agent import GatewayAgent
    from gateways.config import load_gateway_config

    try:
        settings = load_gateway_config(config)
    except (StreetlightError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    offset_ns = 0
    if clock_start is not None:
        try:
            offset_ns = int(np.datetime64(clock_start, "ns").astype(np.int64)) - time.time_ns()
        except ValueError:
            raise _fail(f"--clock-start must be an ISO date-time, got {clock_start!r}") from None

    def clock() -> int:
        return time.time_ns() + offset_ns

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with GatewayAgent(settings, clock=clock) as agent:
            console.print(
                f"gateway {settings.gateway.id}: {len(agent.lamp_ids)} lamps, {len(agent.controllers)} controllers"
            )
            await stop.wait()

    asyncio.run(main())


@app.command()
def devices(
    config: Annotated[
        Path, typer.Option("--config", help="device fleet (TOML), see docs/devices.md")
    ],
    manifest: Annotated[
        Path | None, typer.Option(help="write endpoints, node ids and topics here (JSON)")
    ] = None,
) -> None:
    """Start virtual lamp controllers (real OPC-UA servers) and virtual MQTT sensors until Ctrl-C."""
    import asyncio

    from simulation.devices.config import DeviceConfigError, DeviceError
    from simulation.devices.fleet import run_devices

    try:
        asyncio.run(run_devices(config, manifest_path=manifest, out=console.print))
    except (DeviceConfigError, DeviceError, OSError) as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        console.print("devices stopped")


@app.command()
def stack(
    speed: Annotated[
        float, typer.Option(help="simulated seconds per real second (60: an hour a minute)")
    ] = 1.0,
    start: Annotated[
        str | None,
        typer.Option(
            help="when the simulated night starts, ISO with a zone (default 21:00 tonight)"
        ),
    ] = None,
    lamps: Annotated[int, typer.Option(help="lamps in the virtual district")] = 400,
    port: Annotated[int, typer.Option(help="API and dashboard port")] = 8000,
    mqtt_port: Annotated[int, typer.Option(help="embedded MQTT broker port")] = 1883,
    data_dir: Annotated[Path, typer.Option(help="state of this run (recreated)")] = Path(
        "var/stack"
    ),
) -> None:
    """Run everything locally: broker, virtual town, gateway, central service and dashboard."""
    import asyncio
    import datetime as dt
    import logging
    import signal

    from streetlight.stack import (
        DEMO_PASSWORD,
        DEMO_USER,
        OTHER_USER,
        Stack,
        StackOptions,
        run_stack,
    )

    try:
        start_at = dt.datetime.fromisoformat(start) if start else None
        options = StackOptions(
            data_dir=data_dir,
            api_port=port,
            broker_port=mqtt_port,
            lamps=lamps,
            speed=speed,
            start=start_at,
        )
    except ValueError as err:
        raise _fail(str(err)) from None
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(running: Stack) -> None:
            services, town, clock = running.services, running.town, running.clock
            now = dt.datetime.fromtimestamp(clock.now_ns() / 1e9, dt.UTC)
            console.print(f"virtual town: {town.source}")
            console.print(f"simulated clock: {now:%Y-%m-%d %H:%M} UTC, x{speed:g}")
            console.print(f"dashboard: [bold]{services.api_url}/[/bold]")
            console.print(
                f"log in as [bold]{DEMO_USER}[/bold] / {DEMO_PASSWORD} "
                f"(another council: {OTHER_USER} / {DEMO_PASSWORD}); Ctrl-C stops"
            )

        await run_stack(options, stop, on_ready=ready)
        console.print("stopped")

    asyncio.run(main())


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="sweep file (YAML), see docs/sweeps.md")],
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (default: a local cluster)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="workers of the local cluster")] = 2,
    out: Annotated[
        Path | None, typer.Option(help="results JSON (default artifacts/<name>/sweep.json)")
    ] = None,
) -> None:
    """Run a grid of policies x parameters x nights on Dask; print the table, write the JSON."""
    from simulation.sweep import sweep_command

    try:
        sweep_command(sweep_file, scheduler, workers, out)
    except (StreetlightError, ValueError, OSError) as err:
        raise _fail(str(err)) from None


def _mapping_dict(mapping: object) -> dict[str, object]:
    from dataclasses import asdict

    return {k: (str(v) if hasattr(v, "value") else v) for k, v in asdict(mapping).items()}  # type: ignore[call-overload]


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

"""A real dashboard for the browser tests, and a real browser to drive it.

The server is the whole service as deployed: :func:`api.app.create_app` over a temporary SQLite
store with a real :class:`~sensor_ingest.historian.EmbeddedHistorian` as telemetry, the dashboard
installed with a :class:`~api.feed.LiveFeed`, served by uvicorn on a free loopback port in a
background thread. Two councils are seeded through the API itself, each with an admin and an
engineer and a few dozen lamps imported (``POST /lamps/import``) from real inventories in
``../shared/data``: Bristol City Council's lamps around the city centre and the City of
Champaign's downtown, with the group column creating two groups each. Bristol's
"harbourside" group runs the sample part-night policy, version 1.

The clock is the real one (the browser's clock and the service's must agree for charts and
override expiry); the tests publish on the feed exactly as the central service does.

The browser is Debian's chromium driven by Playwright; each test gets a fresh context (so a
fresh sessionStorage). Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.app import create_app
from api.dashboard import HEARTBEAT_S
from api.feed import LiveFeed
from api.security import Passwords
from api.seed import create_council_with_admin
from api.settings import ApiSettings
from domain.records import Reading, ReadingKind
from sensor_ingest.historian import EmbeddedHistorian
from tests.api.conftest import PASSWORD, SECRET, ServerThread

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("STREETLIGHT_CHROMIUM", "/usr/bin/chromium")
POLICY = ROOT / "streetlight" / "samples" / "policy_part_night.yaml"
TZ = "Europe/London"
#: How long the UI may take to show a change pushed to it.
UI_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class TownSample:
    """Which lamps of a real inventory a council gets: the ``count`` nearest a point."""

    council_id: str
    name: str
    csv_path: Path
    lon_column: str
    lat_column: str
    id_prefix: str
    id_column: str | None
    wattage_column: str | None
    centre_lat: float
    centre_lon: float
    count: int
    groups: tuple[str, str]


BRISTOL = TownSample(
    council_id="bristol",
    name="Bristol City Council",
    csv_path=SHARED_DATA / "bristol_streetlights_lonlat.csv",
    lon_column="longitude",
    lat_column="latitude",
    id_prefix="BRS",
    id_column=None,  # positions only: ids from the source row number
    wattage_column=None,
    centre_lat=51.4545,
    centre_lon=-2.5879,
    count=40,
    groups=("harbourside", "old-city"),
)
CHAMPAIGN = TownSample(
    council_id="champaign",
    name="City of Champaign",
    csv_path=SHARED_DATA / "champaign_il_streetlights_latlon.csv",
    lon_column="Longitude",
    lat_column="Latitude",
    id_prefix="CHA",
    id_column="OBJECTID",
    wattage_column="Lamp_Wattage",
    centre_lat=40.1164,
    centre_lon=-88.2434,
    count=30,
    groups=("downtown-west", "downtown-east"),
)


@dataclass
class Lamp:
    lamp_id: str
    lon_deg: float
    lat_deg: float
    group: str
    nearest_m: float = 0.0


@dataclass
class Council:
    id: str
    name: str
    engineer: str
    headers: dict[str, str]
    lamps: list[Lamp]
    groups: dict[str, int] = field(default_factory=dict)

    @property
    def lamp_ids(self) -> list[str]:
        return [lamp.lamp_id for lamp in self.lamps]

    def isolated(self, k: int) -> list[str]:
        """``k`` lamp ids whose dots overlap no other (a click lands on them), farthest first."""
        ranked = sorted(self.lamps, key=lambda lamp: -lamp.nearest_m)
        return [lamp.lamp_id for lamp in ranked[:k]]


@dataclass
class Dashboard:
    """The running service and what the tests need to drive it."""

    app: FastAPI
    url: str
    client: httpx.Client
    feed: LiveFeed
    historian: EmbeddedHistorian
    bristol: Council
    champaign: Council
    policy_id: int

    def write(self, readings: list[Reading]) -> None:
        self.historian.write(readings)

    def get(self, council: Council, path: str, **params: Any) -> Any:
        response = self.client.get(path, headers=council.headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def sample_lamps(town: TownSample) -> list[Lamp]:
    """The ``count`` lamps of the inventory nearest the town's centre point."""
    cos_lat = math.cos(math.radians(town.centre_lat))

    def metres(lon: float, lat: float, lon0: float, lat0: float) -> float:
        return math.hypot((lon - lon0) * cos_lat * 111_320.0, (lat - lat0) * 111_320.0)

    rows = []
    with town.csv_path.open(encoding="utf-8-sig", newline="") as source:
        for row_number, row in enumerate(csv.DictReader(source), start=2):
            try:
                lon, lat = float(row[town.lon_column]), float(row[town.lat_column])
            except (TypeError, ValueError):
                continue  # blank positions: the importer would report them as bad rows
            key = row[town.id_column] if town.id_column else str(row_number)
            rows.append((metres(lon, lat, town.centre_lon, town.centre_lat), key, lon, lat, row))
    rows.sort(key=lambda item: item[0])
    chosen = rows[: town.count]
    median_lon = sorted(item[2] for item in chosen)[len(chosen) // 2]
    lamps = [
        Lamp(
            lamp_id=f"{town.id_prefix}-{key}",
            lon_deg=lon,
            lat_deg=lat,
            group=town.groups[0] if lon < median_lon else town.groups[1],
        )
        for _, key, lon, lat, _ in chosen
    ]
    for lamp in lamps:
        lamp.nearest_m = min(
            metres(o.lon_deg, o.lat_deg, lamp.lon_deg, lamp.lat_deg) for o in lamps if o is not lamp
        )
    return lamps


def _wattage(text: str) -> str:
    digits = ""
    for char in text.strip():
        if not char.isdigit():
            break
        digits += char
    return digits  # "286(LED)" -> 286, "250/85" -> 250, "Not Specified" -> blank (default)


def inventory_csv(town: TownSample, lamps: list[Lamp]) -> bytes:
    """The chosen lamps as the council would upload them."""
    by_id = {lamp.lamp_id: lamp for lamp in lamps}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["lamp_id", "lon", "lat", "watts", "group"])
    wattages = {}
    if town.wattage_column:
        with town.csv_path.open(encoding="utf-8-sig", newline="") as source:
            for row in csv.DictReader(source):
                lamp_id = f"{town.id_prefix}-{row[town.id_column or '']}"
                if lamp_id in by_id:
                    wattages[lamp_id] = _wattage(row[town.wattage_column])
    for lamp in lamps:
        writer.writerow(
            [
                lamp.lamp_id,
                repr(lamp.lon_deg),
                repr(lamp.lat_deg),
                wattages.get(lamp.lamp_id, ""),
                lamp.group,
            ]
        )
    return out.getvalue().encode("utf-8")


def _token(client: httpx.Client, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def seed_council(app: FastAPI, client: httpx.Client, town: TownSample) -> Council:
    ctx = app.state.ctx
    admin = f"{town.council_id}-admin"
    with ctx.sessions() as session:
        create_council_with_admin(
            session,
            town.council_id,
            town.name,
            admin,
            PASSWORD,
            tz=TZ,
            passwords=ctx.passwords,
            now_ns=time.time_ns(),
        )
    admin_headers = _token(client, admin)
    engineer = f"{town.council_id}-engineer"
    response = client.post(
        "/api/v1/users",
        json={"username": engineer, "password": PASSWORD, "role": "engineer"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    headers = _token(client, engineer)
    lamps = sample_lamps(town)
    mapping = {
        "id_column": "lamp_id",
        "x_column": "lon",
        "y_column": "lat",
        "wattage_column": "watts",
        "default_power_w": 70.0,
        "group_column": "group",
    }
    response = client.post(
        "/api/v1/lamps/import",
        files={"file": (f"{town.council_id}.csv", inventory_csv(town, lamps), "text/csv")},
        data={"mapping": json.dumps(mapping)},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["bad_rows"]) == (town.count, []), report
    groups = {
        g["name"]: g["id"] for g in client.get("/api/v1/groups", headers=headers).json()["items"]
    }
    assert set(groups) == set(town.groups)
    return Council(town.council_id, town.name, engineer, headers, lamps, groups)


def make_dashboard(tmp: Path, *, heartbeat_s: float = HEARTBEAT_S) -> Iterator[Dashboard]:
    """The service with the dashboard, seeded; the feed is closed before the server stops."""
    historian = EmbeddedHistorian(tmp / "telemetry.db", hot_rows=1000)
    feed = LiveFeed()
    app = create_app(
        ApiSettings(
            environment="test",
            secret_key=SECRET,
            database_url=f"sqlite:///{tmp / 'api.db'}",
        ),
        telemetry=historian,
        passwords=Passwords(time_cost=1, memory_kib=64),
        feed=feed,
        stream_heartbeat_s=heartbeat_s,
    )
    with (
        historian,
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as client,
    ):
        try:
            bristol = seed_council(app, client, BRISTOL)
            champaign = seed_council(app, client, CHAMPAIGN)
            policy = client.post(
                "/api/v1/policies",
                json={"document": POLICY.read_text(encoding="utf-8")},
                headers=bristol.headers,
            )
            assert policy.status_code == 201, policy.text
            policy_id = int(policy.json()["id"])
            activation = client.post(
                f"/api/v1/policies/{policy_id}/versions/1/activate",
                json={"group_id": bristol.groups["harbourside"]},
                headers=bristol.headers,
            )
            assert activation.status_code == 201, activation.text
            yield Dashboard(app, server.url, client, feed, historian, bristol, champaign, policy_id)
        finally:
            # Open streams end first, so that uvicorn's shutdown does not wait on them.
            feed.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    yield from make_dashboard(tmp_path_factory.mktemp("dashboard"))


# Module scope, not session: while Playwright's sync API is active it keeps an asyncio loop
# running in the main thread, and later tests that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium is not installed at {CHROMIUM} (Debian package 'chromium')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab; the test fails if the page's script threw an uncaught error."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=TZ)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    yield tab
    context.close()
    assert script_errors == []


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Page, dashboard: Dashboard, council: Council) -> None:
    """Open the dashboard, log in as the council's engineer and wait for its lamps and stream."""
    if not page.url.startswith(dashboard.url):
        page.goto(dashboard.url + "/")
    page.get_by_test_id("login-username").fill(council.engineer)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("council-name")).to_have_text(council.name)
    expect(page.get_by_test_id("lamp-dot")).to_have_count(len(council.lamps))
    expect(page.get_by_test_id("stream-status")).to_have_text("live")


def reading(lamp_id: str, kind: ReadingKind, value: float, time_ns: int) -> Reading:
    return Reading(source_id=lamp_id, kind=kind, value=value, time_ns=time_ns)

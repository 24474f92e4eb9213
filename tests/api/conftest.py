"""A real API server for each test: uvicorn on a free loopback port, over a temporary SQLite
store, with two councils ("north" and "south"), a user of each role in each, and an API key.

Time is a :class:`FakeClock` the test moves; the server reads it for token expiry, override
states and audit times. Passwords use argon2id at a low cost so that tests stay fast.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.db import Role
from api.security import Passwords
from api.seed import create_council_with_admin
from api.settings import ApiSettings
from sensor_ingest.historian import EmbeddedHistorian

#: 2026-03-01 12:00 UTC.
START_NS = 1_772_366_400_000_000_000
SECRET = "test-secret-key-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery"


class FakeClock:
    """UTC epoch ns that only moves when a test says so."""

    def __init__(self, now_ns: int = START_NS) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10.0)


@dataclass
class Council:
    """One seeded council: its id, credentials per role, and an engineer API key."""

    id: str
    headers: dict[Role, dict[str, str]] = field(default_factory=dict)
    usernames: dict[Role, str] = field(default_factory=dict)
    api_key: str = ""

    @property
    def admin(self) -> dict[str, str]:
        return self.headers[Role.ADMIN]

    @property
    def engineer(self) -> dict[str, str]:
        return self.headers[Role.ENGINEER]

    @property
    def viewer(self) -> dict[str, str]:
        return self.headers[Role.VIEWER]

    @property
    def key_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


@dataclass
class Api:
    """The running service and what the tests need to drive it."""

    app: FastAPI
    url: str
    client: httpx.Client
    clock: FakeClock
    north: Council
    south: Council
    tmp: Path
    historian: EmbeddedHistorian

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _seed(api: Api, council: Council, name: str) -> None:
    ctx = api.app.state.ctx
    admin = f"{council.id}-admin"
    with ctx.sessions() as session:
        create_council_with_admin(
            session,
            council.id,
            name,
            admin,
            PASSWORD,
            tz="Europe/London",
            passwords=ctx.passwords,
            now_ns=api.clock(),
        )
    council.usernames[Role.ADMIN] = admin
    council.headers[Role.ADMIN] = bearer(api.login(admin))
    for role in (Role.ENGINEER, Role.VIEWER):
        username = f"{council.id}-{role.value}"
        response = api.client.post(
            "/api/v1/users",
            json={"username": username, "password": PASSWORD, "role": role.value},
            headers=council.admin,
        )
        assert response.status_code == 201, response.text
        council.usernames[role] = username
        council.headers[role] = bearer(api.login(username))
    response = api.client.post(
        "/api/v1/api-keys",
        json={"name": f"{council.id}-ingest", "role": "engineer"},
        headers=council.admin,
    )
    assert response.status_code == 201, response.text
    council.api_key = response.json()["key"]


def make_api(tmp_path: Path, **settings: Any) -> Iterator[Api]:
    """The service over a temporary store and a real embedded historian (SQLite file)."""
    clock = FakeClock()
    historian = EmbeddedHistorian(tmp_path / "telemetry.db", hot_rows=1000)
    app = create_app(
        ApiSettings(
            environment="test",
            secret_key=SECRET,
            database_url=f"sqlite:///{tmp_path / 'api.db'}",
            **settings,
        ),
        clock=clock,
        telemetry=historian,
        passwords=Passwords(time_cost=1, memory_kib=64),
    )
    with (
        historian,
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as client,
    ):
        api = Api(
            app, server.url, client, clock, Council("north"), Council("south"), tmp_path, historian
        )
        _seed(api, api.north, "North Council")
        _seed(api, api.south, "South Council")
        yield api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


# --- data helpers -------------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "streetlight" / "samples"


def policy_text(name: str = "policy_part_night.yaml") -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def lamp_body(lamp_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lamp_id": lamp_id,
        "lon_deg": -2.59,
        "lat_deg": 51.45,
        "rated_power_w": 35.0,
        "lighting_class": "P4",
    }
    body.update(extra)
    return body


def make_group(api: Api, council: Council, name: str, lamp_ids: list[str]) -> int:
    response = api.client.post("/api/v1/groups", json={"name": name}, headers=council.engineer)
    assert response.status_code == 201, response.text
    group_id = int(response.json()["id"])
    for k, lamp_id in enumerate(lamp_ids):
        body = lamp_body(lamp_id, group_id=group_id, lon_deg=-2.59 + 0.0003 * k, street="High St")
        response = api.client.post("/api/v1/lamps", json=body, headers=council.engineer)
        assert response.status_code == 201, response.text
    return group_id


def make_policy(api: Api, council: Council, text: str | None = None) -> int:
    response = api.client.post(
        "/api/v1/policies", json={"document": text or policy_text()}, headers=council.engineer
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def assert_problem(
    response: httpx.Response, status: int, detail: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The response is problem+json with this status and detail (and these errors)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"] == detail
    assert body["type"].startswith("urn:streetlight:problem:")
    assert body["title"]
    if errors is not None:
        assert body["errors"] == errors
    return body

"""The dashboard's server side over real HTTP: the live event stream, the page and its files.

The stream is read with httpx exactly as the browser reads it (bearer token, ``Accept:
text/event-stream``), against the seeded service of conftest.py with a short heartbeat.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.dashboard import wants_event_stream
from api.feed import LevelsEvent, PresenceEvent
from domain.records import ReadingKind
from tests.api.conftest import PASSWORD
from tests.browser.conftest import Dashboard, make_dashboard, reading

HEARTBEAT_S = 0.3
STREAM = "/api/v1/live/stream"
FOLLOW = {"Accept": "text/event-stream"}
NO_CREDENTIALS = (
    "authentication required: send 'Authorization: Bearer <token>' (from /api/v1/auth/token) "
    "or an 'X-API-Key' header"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    yield from make_dashboard(tmp_path_factory.mktemp("stream"), heartbeat_s=HEARTBEAT_S)


class Events:
    """Server-sent events read one at a time from a streaming response (comments included)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next(self) -> tuple[str, object]:
        """``(event name, parsed data)``, or ``(":", comment)``, or ``("retry", ms)``."""
        name, data = "message", []
        for line in self.lines:
            if line.startswith(":"):
                return ":", line[1:].strip()
            if line.startswith("retry:"):
                retry = int(line.split(":", 1)[1])
                next(self.lines)  # the blank line after it
                return "retry", retry
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "" and data:
                return name, json.loads("\n".join(data))
        raise EOFError("the stream ended")

    def next_event(self) -> tuple[str, object]:
        """The next event that is not a heartbeat."""
        while True:
            name, data = self.next()
            if name != ":":
                return name, data


@contextmanager
def follow(service: Dashboard, headers: dict[str, str]) -> Iterator[Events]:
    # A read timeout bounds every wait: a broken stream fails the test instead of hanging it.
    with service.client.stream(
        "GET", STREAM, headers=headers | FOLLOW, timeout=httpx.Timeout(5.0)
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        yield Events(response)


def test_without_follow_the_stream_is_the_councils_snapshot_alone(service: Dashboard) -> None:
    bristol, champaign = service.bristol, service.champaign
    now = time.time_ns()
    service.write(
        [
            reading(bristol.lamp_ids[0], ReadingKind.LEVEL_FRAC, 0.35, now),
            reading(bristol.lamp_ids[1], ReadingKind.POWER_W, 20.0, now),  # no level: left out
            reading(champaign.lamp_ids[0], ReadingKind.LEVEL_FRAC, 0.9, now),
        ]
    )
    # Accept */* (httpx's default): a generic client gets an answer that ends.
    response = service.client.get(STREAM, headers=bristol.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    snapshot = {"type": "snapshot", "time_ns": now, "levels": {bristol.lamp_ids[0]: 0.35}}
    assert response.text == (
        f"event: snapshot\ndata: {json.dumps(snapshot, separators=(',', ':'))}\n\n"
    )

    other = service.client.get(STREAM, headers=champaign.headers)
    body = other.text
    assert champaign.lamp_ids[0] in body
    assert not any(lamp_id in body for lamp_id in bristol.lamp_ids)


def test_followed_stream_carries_only_the_callers_council_with_heartbeats(
    service: Dashboard,
) -> None:
    bristol, champaign = service.bristol, service.champaign
    with follow(service, bristol.headers) as events:
        assert events.next() == ("retry", 3000)
        name, snapshot = events.next_event()
        assert name == "snapshot"
        assert isinstance(snapshot, dict) and set(snapshot["levels"]) <= set(bristol.lamp_ids)
        assert service.feed.subscribers(bristol.id) == 1

        t0 = time.time_ns()
        service.feed.publish(champaign.id, LevelsEvent(t0, {champaign.lamp_ids[0]: 0.1}))
        service.feed.publish(bristol.id, LevelsEvent(t0, {bristol.lamp_ids[2]: 0.2}))
        service.feed.publish(bristol.id, PresenceEvent(t0 + 1, "pir-9", (bristol.lamp_ids[2],)))
        assert events.next_event() == (
            "levels",
            {"type": "levels", "time_ns": t0, "levels": {bristol.lamp_ids[2]: 0.2}},
        )
        assert events.next_event() == (
            "presence",
            {
                "type": "presence",
                "time_ns": t0 + 1,
                "source_id": "pir-9",
                "lamp_ids": [bristol.lamp_ids[2]],
            },
        )
        started = time.monotonic()
        assert events.next() == (":", "heartbeat")
        assert time.monotonic() - started < HEARTBEAT_S * 5
    # The client left: its subscription is gone once the server notices (at the next write).
    deadline = time.monotonic() + 5.0
    while service.feed.subscribers(bristol.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.feed.subscribers(bristol.id) == 0


def test_a_slow_reader_is_told_how_many_events_it_missed(service: Dashboard) -> None:
    bristol = service.bristol
    with follow(service, bristol.headers) as events:
        assert events.next()[0] == "retry"
        assert events.next_event()[0] == "snapshot"
        t0 = time.time_ns()
        # One batch larger than a subscriber's buffer: it overflows before anyone can read.
        total = service.feed.max_queued + 40
        service.feed.publish_many(
            bristol.id,
            [LevelsEvent(t0 + k, {bristol.lamp_ids[3]: 0.5}) for k in range(total)],
        )
        assert events.next_event() == ("dropped", {"type": "dropped", "dropped": 40})
        kept = []
        for _ in range(service.feed.max_queued):
            name, data = events.next_event()
            assert name == "levels" and isinstance(data, dict)
            kept.append(data["time_ns"] - t0)
        assert kept == list(range(40, total))  # the newest, in order


def test_a_disabled_user_loses_the_stream_within_a_heartbeat(service: Dashboard) -> None:
    admin = _login(service, "bristol-admin")
    created = service.client.post(
        "/api/v1/users",
        json={"username": "bristol-night-watch", "password": PASSWORD, "role": "viewer"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    viewer = _login(service, "bristol-night-watch")
    with follow(service, viewer) as events:
        assert events.next()[0] == "retry"
        assert events.next_event()[0] == "snapshot"
        disabled = service.client.patch(
            f"/api/v1/users/{created.json()['id']}", json={"active": False}, headers=admin
        )
        assert disabled.status_code == 200, disabled.text
        # Events keep flowing (a busy council): the check is still made on time.
        stop = threading.Event()

        def busy() -> None:
            while not stop.wait(HEARTBEAT_S / 6):
                service.feed.publish("bristol", LevelsEvent(time.time_ns(), {"BRS-2": 0.5}))

        publisher = threading.Thread(target=busy, daemon=True)
        publisher.start()
        started = time.monotonic()
        try:
            while (event := events.next_event())[0] == "levels":
                pass
        finally:
            stop.set()
            publisher.join()
        assert event == (
            "end",
            {"type": "end", "reason": "the credentials are no longer valid; log in again"},
        )
        assert time.monotonic() - started < HEARTBEAT_S * 3
        with pytest.raises(EOFError):
            events.next()
    again = service.client.get(STREAM, headers=viewer | FOLLOW)
    assert again.status_code == 401
    assert again.json()["detail"] == (
        "the access token's user no longer exists or is disabled; log in again"
    )


def test_without_credentials_the_stream_is_refused(service: Dashboard) -> None:
    response = service.client.get(STREAM, headers=FOLLOW)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == NO_CREDENTIALS
    forged = service.client.get(STREAM, headers=FOLLOW | {"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    assert forged.json()["detail"] == (
        "the access token is not valid (malformed, or not signed by this service); "
        "log in again at /api/v1/auth/token"
    )


def test_closing_the_feed_ends_open_streams(tmp_path: Path) -> None:
    for service in make_dashboard(tmp_path, heartbeat_s=30.0):
        with follow(service, service.bristol.headers) as events:
            assert events.next()[0] == "retry"
            assert events.next_event()[0] == "snapshot"
            service.feed.close()
            assert events.next_event() == (
                "end",
                {"type": "end", "reason": "the service is stopping"},
            )
            with pytest.raises(EOFError):
                events.next()


def test_the_page_and_its_files_are_served_and_the_stream_is_documented(
    service: Dashboard,
) -> None:
    page = service.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"].startswith(
        "default-src 'none'; script-src 'self'"
    )
    assert '<script type="module" src="/static/app.js"></script>' in page.text
    script = service.client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert service.client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert service.client.get("/static/missing.js").status_code == 404

    spec = service.client.get("/api/v1/openapi.json").json()
    assert "/" not in spec["paths"]  # the page is not an API operation
    operation = spec["paths"][STREAM]["get"]
    assert operation["summary"] == "Live events of your council (server-sent events)"
    assert "text/event-stream" in operation["description"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    assert set(operation["responses"]) == {"200", "401", "403"}


@pytest.mark.parametrize(
    ("accept", "follows"),
    [
        ("text/event-stream", True),
        ("text/html, text/event-stream;q=0.5", True),
        ("TEXT/EVENT-STREAM", True),
        ("*/*", False),
        ("text/*", False),
        ("", False),
        ("text/event-stream;q=0", False),
        ("text/event-stream;q=bad", False),
    ],
)
def test_only_clients_naming_event_stream_follow_it(accept: str, follows: bool) -> None:
    assert wants_event_stream(accept) is follows


def _login(service: Dashboard, username: str) -> dict[str, str]:
    response = service.client.post(
        "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}

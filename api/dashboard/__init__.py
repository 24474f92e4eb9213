"""The web dashboard: one HTML page, its static JS/CSS, and the live event stream it reads.

:func:`install_dashboard` adds to an API application built by :func:`api.app.create_app`:

* ``GET /``: the single-page dashboard (docs/dashboard.md). It is open, like any static file:
  it holds no data; everything it shows comes from the API with the user's token.
* ``/static/...``: its script and style sheet, from ``api/dashboard/static/``.
* ``GET /api/v1/live/stream``: server-sent events (``text/event-stream``) of the caller's
  council, from a :class:`api.feed.LiveFeed` the central service publishes to.

The stream
----------
It is authenticated like every API route (bearer token or API key, any role): the browser reads
it with ``fetch()`` and a streaming reader, since ``EventSource`` cannot send headers. Only the
caller's council's channel is read, so other councils' credentials and ids never reach it.

A client that asks for ``text/event-stream`` by name in ``Accept`` gets the live stream: a
``retry`` hint, a ``snapshot`` event with the latest level of each of the council's lamps from
the telemetry historian (when the service has one), then ``levels``, ``presence`` and ``alarm``
events as they are published, a ``dropped`` event when its buffer overflowed (the client should
reload the levels), and a comment line every ``heartbeat_s`` seconds so proxies and the client
can tell a quiet stream from a dead one. Any other client (``Accept: */*``: curl, generic HTTP
tools, API test generators) gets the snapshot alone and the response ends, so a client that
does not know it is talking to a stream never hangs on it.

The credentials are checked again every ``heartbeat_s`` (busy or quiet), so a user who is
disabled or deleted, or whose token expires, loses the stream within one heartbeat (the stream
sends ``event: end`` and closes; reconnecting then answers 401).

The route is a generator endpoint with FastAPI's ``EventSourceResponse``, which writes the
events in the wire format, adds its own ``: ping`` comment after 15 s of silence, and documents
the stream in the OpenAPI document (``itemSchema``, here with each event's JSON schema).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.security.utils import get_authorization_scheme_param
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.db import LampRow
from api.deps import AppContext, CtxDep, SessionDep, Viewer, get_principal
from api.errors import ApiError
from api.feed import LevelsEvent, LiveEvent, LiveFeed
from api.routes.common import errors
from domain.errors import StreetlightError

__all__ = ["HEARTBEAT_S", "STATIC_DIR", "event_item", "install_dashboard", "wants_event_stream"]

log = logging.getLogger(__name__)

#: The API's path prefix (as in api.app, which imports this module, so it cannot be imported).
_API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Seconds between heartbeat comments on a quiet stream (and between credential checks).
HEARTBEAT_S = 15.0
#: How long a browser waits before reconnecting a dropped stream, ms (the SSE ``retry`` field).
RETRY_MS = 3000
EVENT_STREAM = "text/event-stream"

# The page loads only its own script and style sheet and talks only to its own origin; no
# inline script or style, no framing.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_STREAM_DESCRIPTION = """\
Server-sent events (`text/event-stream`) of the caller's council, for the dashboard.

Ask for `Accept: text/event-stream` to follow the stream live; any other `Accept` (such as
`*/*`) gets the snapshot alone and the response ends. Events, each one `data:` line of JSON
with a `type` field:

* `snapshot`: `{"time_ns", "levels": {lamp_id: level_frac}}`, the latest measured level of each
  lamp known to the telemetry historian (sent first; left out without a historian);
* `levels`: the same shape, lamp levels that changed (commanded or measured);
* `presence`: `{"time_ns", "source_id", "lamp_ids"}`, a detection and the lamps it raised;
* `alarm`: `{"time_ns", "alarm_id", "kind", "scope", "source_id", "started_ns", "ended_ns",
  "detail", "open"}`, raised or cleared;
* `dropped`: `{"dropped": n}`, the client read too slowly and missed n events; reload levels
  from `GET /api/v1/live/lamps`;
* `end`: `{"reason"}`, the stream is closing (credentials no longer valid, or the service is
  stopping).

A comment line (`: heartbeat`) is sent every 15 s when nothing else was, and the credentials
are checked again then. Times are UTC epoch ns, levels fractions of full output.
"""


def _object(event_type: str | list[str], /, **properties: dict[str, Any]) -> dict[str, Any]:
    kinds = [event_type] if isinstance(event_type, str) else event_type
    return {
        "type": "object",
        "required": ["type", *properties],
        "properties": {"type": {"type": "string", "enum": kinds}, **properties},
    }


_NS_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 0}
_TEXT: dict[str, Any] = {"type": "string"}
#: One event of the stream (OpenAPI 3.2 ``itemSchema`` of ``text/event-stream``, merged into
#: FastAPI's generic one): its name and its ``data`` line, a JSON document described by
#: ``contentSchema``. Nothing is required: the first item of a followed stream is a bare
#: ``retry`` hint.
_EVENT_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {
            "type": "string",
            "enum": ["snapshot", "levels", "presence", "alarm", "dropped", "end"],
        },
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [
                    _object(
                        ["snapshot", "levels"],
                        time_ns=_NS_SCHEMA,
                        levels={
                            "type": "object",
                            "additionalProperties": {
                                "type": "number",
                                "minimum": 0.0,
                                "maximum": 1.0,
                            },
                        },
                    ),
                    _object(
                        "presence",
                        time_ns=_NS_SCHEMA,
                        source_id=_TEXT,
                        lamp_ids={"type": "array", "items": _TEXT},
                    ),
                    _object(
                        "alarm",
                        time_ns=_NS_SCHEMA,
                        alarm_id=_TEXT,
                        kind=_TEXT,
                        scope={"type": "string", "enum": ["lamp", "gateway"]},
                        source_id=_TEXT,
                        started_ns=_NS_SCHEMA,
                        ended_ns={"anyOf": [_NS_SCHEMA, {"type": "null"}]},
                        detail=_TEXT,
                        open={"type": "boolean"},
                    ),
                    _object("dropped", dropped={"type": "integer", "minimum": 1}),
                    _object("end", reason=_TEXT),
                ]
            },
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}


def event_item(name: str, data: dict[str, Any]) -> ServerSentEvent:
    """One server-sent event: ``event: <name>`` and one ``data:`` line of compact JSON."""
    # json.dumps escapes newlines inside strings, so the data is always a single line.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return ServerSentEvent(event=name, raw_data=payload)


def _item(event: LiveEvent) -> ServerSentEvent:
    return event_item(event.type, event.as_json())


def wants_event_stream(accept: str) -> bool:
    """True if the ``Accept`` header names ``text/event-stream`` itself (with q > 0)."""
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() != EVENT_STREAM:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0.0:
            return True
    return False


def _council_lamp_ids(ctx: AppContext, council_id: str) -> list[str]:
    with ctx.sessions() as session:
        return list(
            session.scalars(
                select(LampRow.lamp_id)
                .where(LampRow.council_id == council_id)
                .order_by(LampRow.lamp_id)
            )
        )


def _snapshot(ctx: AppContext, lamp_ids: Collection[str]) -> LevelsEvent | None:
    """The latest measured level of each lamp the historian knows (None without a historian)."""
    if ctx.telemetry is None or not lamp_ids:
        return None
    latest = ctx.telemetry.latest(lamp_ids)
    levels: dict[str, float] = {}
    newest_ns = 0
    for lamp_id, state in latest.items():
        if state.level_frac is not None:
            levels[lamp_id] = min(1.0, max(0.0, float(state.level_frac)))
            newest_ns = max(newest_ns, state.time_ns or 0)
    return LevelsEvent(time_ns=newest_ns or ctx.clock(), levels=levels)


def _still_allowed(ctx: AppContext, council_id: str, token: str | None, key: str | None) -> bool:
    """Whether the stream's credentials still authenticate a caller of ``council_id``."""
    with ctx.sessions() as session:
        try:
            principal = get_principal(ctx, session, token, key)
        except ApiError:
            return False
    return principal.council_id == council_id


async def _live(
    request: Request,
    ctx: AppContext,
    feed: LiveFeed,
    council_id: str,
    lamp_ids: list[str],
    *,
    follow: bool,
    heartbeat_s: float,
) -> AsyncIterator[ServerSentEvent]:
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    bearer = token if scheme.lower() == "bearer" and token else None
    api_key = request.headers.get("x-api-key") or None
    # Subscribed here, not in the route: a generator that never starts (the client left
    # first) then leaves nothing behind, and events published while the snapshot is read
    # are buffered rather than missed.
    with feed.subscribe(council_id) as sub:
        if follow:
            yield ServerSentEvent(retry=RETRY_MS)
        try:
            snapshot = await run_in_threadpool(_snapshot, ctx, lamp_ids)
        except StreetlightError as err:
            # The live events still flow without it; the browser shows "no data" until then.
            log.warning("live stream: no snapshot for council %s: %s", sub.council_id, err)
            snapshot = None
        if snapshot is not None:
            yield event_item("snapshot", snapshot.as_json() | {"type": "snapshot"})
        if not follow:
            return
        loop = asyncio.get_running_loop()
        check_at = loop.time() + heartbeat_s
        while True:
            event = await sub.get(timeout_s=max(0.0, check_at - loop.time()))
            dropped = sub.take_dropped()
            if dropped:
                yield event_item("dropped", {"type": "dropped", "dropped": dropped})
            if event is not None:
                yield _item(event)
            elif sub.closed:
                yield event_item("end", {"type": "end", "reason": "the service is stopping"})
                return
            if loop.time() < check_at:
                continue
            # Due whether or not events kept flowing: a busy council must not keep a
            # disabled user's stream open.
            allowed = await run_in_threadpool(_still_allowed, ctx, sub.council_id, bearer, api_key)
            if not allowed:
                yield event_item(
                    "end",
                    {"type": "end", "reason": "the credentials are no longer valid; log in again"},
                )
                return
            check_at = loop.time() + heartbeat_s
            if event is None:
                yield ServerSentEvent(comment="heartbeat")


def install_dashboard(app: FastAPI, feed: LiveFeed, *, heartbeat_s: float = HEARTBEAT_S) -> None:
    """Add the dashboard page, its static files and the live stream to ``app``.

    ``feed`` is the hub the central service publishes live events to. ``heartbeat_s`` is the
    longest a followed stream stays silent (tests shorten it).
    """
    if not heartbeat_s > 0.0:
        raise ValueError(f"heartbeat_s must be a positive number of seconds, got {heartbeat_s!r}")
    if getattr(app.state, "dashboard_installed", False):
        # A second copy of the routes would be shadowed by the first: its feed never heard.
        raise RuntimeError(
            "the dashboard is already installed on this app; api.app.create_app installs it "
            "(pass feed= to create_app)"
        )
    app.state.dashboard_installed = True
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"the dashboard page is missing: {index}")

    async def dashboard_page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=_PAGE_HEADERS)

    app.add_api_route("/", dashboard_page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")

    router = APIRouter()

    @router.get(
        "/live/stream",
        response_class=EventSourceResponse,
        tags=["live"],
        summary="Live events of your council (server-sent events)",
        description=_STREAM_DESCRIPTION,
        responses={
            200: {
                "description": "The event stream (see the operation's description).",
                "content": {EVENT_STREAM: {"itemSchema": _EVENT_ITEM_SCHEMA}},
            },
            **errors(401, 403),
        },
    )
    async def live_stream(
        request: Request, ctx: CtxDep, session: SessionDep, principal: Viewer
    ) -> AsyncIterator[ServerSentEvent]:
        # The dependencies authenticated the caller before the stream starts (a 401 or 403 is
        # an ordinary problem+json answer). Their session would otherwise stay open for as
        # long as the stream does: give its connection back now.
        await run_in_threadpool(session.close)
        lamp_ids = await run_in_threadpool(_council_lamp_ids, ctx, principal.council_id)
        follow = wants_event_stream(request.headers.get("accept", ""))
        async for item in _live(
            request,
            ctx,
            feed,
            principal.council_id,
            lamp_ids,
            follow=follow,
            heartbeat_s=heartbeat_s,
        ):
            yield item

    app.include_router(router, prefix=_API_PREFIX)

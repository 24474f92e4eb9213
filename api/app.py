"""The multi-council control API: :func:`create_app` builds the FastAPI application.

Routes live under ``/api/v1``. The council of every request comes from its credentials (bearer
token from the OAuth2 password flow, or an ``X-API-Key`` header), never from the URL, so no URL
can address another council's objects. Only ``/api/v1/health`` and ``/api/v1/auth/token`` are
open. Every error is ``application/problem+json`` (:mod:`api.errors`); lists are paginated with
``limit``/``offset`` and report ``total``. docs/api.md is the guide.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.dashboard import HEARTBEAT_S, install_dashboard
from api.db import create_schema, make_engine, make_session_factory
from api.deps import AppContext, Clock, CtxDep
from api.errors import PROBLEM_MEDIA_TYPE, PayloadTooLargeError, install_problem_handlers, problem
from api.feed import LiveFeed
from api.jobs import DryRunRunner
from api.live import TelemetryReader
from api.routes import audit, auth, inventory, overrides, policies, reports, status
from api.schemas import Health
from api.security import Passwords
from api.settings import ApiSettings

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
_UPLOAD_PATHS = (f"{API_PREFIX}/lamps/import",)


class BodyLimit:
    """Refuse request bodies over the limit with 413, before the application reads them.

    A declared ``Content-Length`` over the limit is answered at once; a chunked body is
    counted as it arrives and the request fails as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if scope["path"] in _UPLOAD_PATHS else self.max_body_bytes
        detail = f"the request body is larger than {limit} bytes, the most this endpoint accepts"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    response = problem(413, detail, slug=PayloadTooLargeError.slug)
                    await response(scope, receive, send)
                    return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException, which FastAPI lets through its body parsing unchanged.
                    raise StarletteHTTPException(413, detail)
            return message

        await self.app(scope, counting_receive, send)


def _problem_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Every error response is problem+json with the Problem schema (FastAPI would document
    its own validation-error shape and application/json)."""
    ref = {"$ref": "#/components/schemas/Problem"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                # Starlette answers 400 itself when it cannot decode or split the body.
                operation["responses"].setdefault(
                    "400", {"description": "The request body cannot be parsed."}
                )
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": ref}}
                    if code == "422":
                        response["description"] = (
                            "The request is invalid; `errors` lists each problem."
                        )
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def create_app(
    settings: ApiSettings,
    *,
    telemetry: TelemetryReader | None = None,
    clock: Clock = time.time_ns,
    passwords: Passwords | None = None,
    feed: LiveFeed | None = None,
    stream_heartbeat_s: float = HEARTBEAT_S,
) -> FastAPI:
    """The API over the store at ``settings.database_url`` (tables are created if missing).

    The dashboard (``/``) and its live stream are always installed; ``feed`` is the hub the
    central service publishes live events to (None: a hub nobody publishes to, so the stream
    carries the telemetry snapshot and heartbeats only). It is ``app.state.feed``.
    ``stream_heartbeat_s`` is the longest the live stream stays silent (tests shorten it).

    ``telemetry`` is the historian live status and reports read (None: those routes answer
    503). ``clock`` gives UTC epoch ns: token expiry, override states and audit times follow
    it, so tests move time instead of sleeping. ``passwords`` replaces the argon2 hasher built
    from the settings (tests pass a cheaper one).
    """
    engine = make_engine(settings.database_url)
    create_schema(engine)
    sessions = make_session_factory(engine)
    jobs = DryRunRunner(sessions, clock, workers=settings.job_workers)
    jobs.fail_interrupted()
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock,
        passwords=passwords
        or Passwords(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib),
        jobs=jobs,
        telemetry=telemetry,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()
        engine.dispose()

    app = FastAPI(
        title="Street-lighting control API",
        version="1",
        description=(
            "Councils' lamps, groups, dimming policies (validate, dry-run, activate, roll back), "
            "overrides, live status, reports and audit. See docs/api.md."
        ),
        openapi_url=OPENAPI_URL,
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )

    @app.get(f"{API_PREFIX}/health", response_model=Health, tags=["health"])
    def health(ctx: CtxDep) -> Health:
        """Liveness: open to everyone, says nothing about any council."""
        return Health(status="ok", time_ns=ctx.clock())

    for module in (auth, inventory, policies, overrides, status, reports, audit):
        app.include_router(module.router, prefix=API_PREFIX)
    app.state.feed = feed if feed is not None else LiveFeed()
    install_dashboard(app, app.state.feed, heartbeat_s=stream_heartbeat_s)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_openapi(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

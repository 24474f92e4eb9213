"""Entry point: serve the API with uvicorn (the composition root's CLI calls :func:`serve`)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from api.live import TelemetryReader
from api.settings import ApiSettings


def serve(settings: ApiSettings, *, telemetry: TelemetryReader | None = None) -> None:
    """Run the API on ``settings.host``:``settings.port`` until interrupted."""
    app = create_app(settings, telemetry=telemetry)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)

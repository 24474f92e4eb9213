"""Errors sensor_ingest raises on purpose, under the project's root ``StreetlightError``.

Bad *input* (a malformed uplink, an out-of-range reading) is never raised: the pipeline counts
and drops it. These errors are for bad configuration and for failing infrastructure.
"""

from __future__ import annotations

from domain.errors import StreetlightError


class IngestError(StreetlightError):
    """Root of the errors of the ingest stage."""


class HistorianError(IngestError):
    """The embedded store cannot be opened or used (``path`` names it)."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(f"historian {path}: {message}")


class SinkWriteError(IngestError):
    """One write to a time-series server failed.

    ``status`` is the HTTP status (``None`` when no answer came back); ``retryable`` says
    whether the same batch may succeed later (server busy or unreachable) or never will
    (refused as malformed, unknown database, no permission).
    """

    def __init__(self, message: str, *, status: int | None, retryable: bool) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message)

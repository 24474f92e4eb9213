"""The API's errors and their one conversion to ``application/problem+json`` (RFC 9457).

Route code raises an :class:`ApiError` subclass (or lets a project :class:`DocumentError` through);
the handlers installed by :func:`install_problem_handlers` turn every error, including FastAPI's
request validation errors and Starlette's 404/405, into the same shape::

    {"type": "...", "title": "...", "status": 404, "detail": "...", "errors": [...]}

``errors`` lists located problems (``{"where": ..., "message": ...}``, the project's
:class:`~domain.errors.ValidationIssue`) for validation failures and is omitted otherwise.
Unknown and foreign ids give the same 404 so that the existence of another council's objects
never leaks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import DocumentError, InventoryError, StreetlightError, ValidationIssue

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:streetlight:problem:"


class ApiError(StreetlightError):
    """An error with an HTTP status, answered as problem+json."""

    status = 500
    slug = "internal-error"

    def __init__(
        self,
        detail: str,
        *,
        issues: Sequence[ValidationIssue] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.issues = list(issues)
        self.headers = headers or {}


class AuthenticationError(ApiError):
    """No credentials, or credentials that are not valid (expired, forged, revoked)."""

    status = 401
    slug = "unauthenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'})


class PermissionDeniedError(ApiError):
    """Valid credentials whose role does not allow the operation."""

    status = 403
    slug = "forbidden"


class NotFoundError(ApiError):
    """No such object in the caller's council (it may exist in another one: same answer)."""

    status = 404
    slug = "not-found"

    def __init__(self, kind: str) -> None:
        # The id is not echoed: a 404 body must read the same whoever owns the id.
        super().__init__(f"there is no such {kind} in your council")
        self.kind = kind


class ConflictError(ApiError):
    """The request contradicts the current state (a duplicate name, deleting what is in use)."""

    status = 409
    slug = "conflict"


class PayloadTooLargeError(ApiError):
    status = 413
    slug = "payload-too-large"


class InvalidInputError(ApiError):
    """Well-formed request whose content is wrong; ``issues`` says where and why."""

    status = 422
    slug = "invalid-input"


class PolicyInvalidError(InvalidInputError):
    """A policy document fails validation (and so cannot be activated)."""

    slug = "policy-invalid"


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    issues: Sequence[ValidationIssue] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response. ``type`` is a URN naming the kind of problem (docs/api.md)."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": _TYPE_PREFIX + (slug or phrase.lower().replace(" ", "-")),
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    if issues:
        body["errors"] = [{"where": i.where, "message": i.message} for i in issues]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _where(loc: Sequence[int | str]) -> str:
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text or "request"


def request_issues(errors: Sequence[Any]) -> list[ValidationIssue]:
    """FastAPI's validation errors as located issues (``body.level_frac: ...``)."""
    issues = []
    for error in errors:
        msg = str(error.get("msg", "invalid value"))
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if error.get("type") == "missing":
            msg = "required field is missing"
        elif error.get("type") == "extra_forbidden":
            msg = "unknown field; check the spelling against the OpenAPI document"
        issues.append(ValidationIssue(_where(error.get("loc", ())), msg))
    return issues


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem(
        exc.status, exc.detail, slug=exc.slug, issues=exc.issues, headers=exc.headers or None
    )


async def _document_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DocumentError)
    return problem(
        422,
        f"the {exc.document} is invalid ({len(exc.issues)} problem(s))",
        slug=f"{exc.document}-invalid",
        issues=exc.issues,
    )


async def _inventory_error(_: Request, exc: Exception) -> JSONResponse:
    return problem(422, str(exc), slug="inventory-unreadable")


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = request_issues(exc.errors())
    return problem(
        422,
        f"the request is invalid ({len(issues)} problem(s))",
        slug="invalid-request",
        issues=issues,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource; see /api/v1/openapi.json for the paths"
    elif exc.status_code == 405:
        detail = "this method is not allowed on this path; see the OpenAPI document"
    slug = PayloadTooLargeError.slug if exc.status_code == 413 else None
    return problem(exc.status_code, detail, slug=slug, headers=dict(exc.headers or {}) or None)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # Say nothing about the cause to the client (it may hold another council's data); the
    # log has it.
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "the server failed to handle the request; the error has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through :func:`problem`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DocumentError, _document_error)
    app.add_exception_handler(InventoryError, _inventory_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

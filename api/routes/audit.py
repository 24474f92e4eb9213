"""The audit log: every change and every command, who made it and when."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from api.db import AuditEntry
from api.deps import SessionDep, Viewer
from api.routes.common import PageParams, errors, page_params, paginate
from api.schemas import MAX_NS, AuditOut, Page

router = APIRouter()
Paging = Annotated[PageParams, Depends(page_params)]


@router.get(
    "/audit", response_model=Page[AuditOut], tags=["audit"], responses=errors(401, 403, 422)
)
def list_audit(
    session: SessionDep,
    principal: Viewer,
    paging: Paging,
    action: Annotated[str | None, Query(max_length=60, description="e.g. override.create")] = None,
    actor: Annotated[str | None, Query(max_length=120, description="e.g. user:alice")] = None,
    target: Annotated[str | None, Query(max_length=200, description="e.g. lamp:L-17")] = None,
    since_ns: Annotated[int | None, Query(ge=0, le=MAX_NS)] = None,
    until_ns: Annotated[int | None, Query(ge=0, le=MAX_NS)] = None,
) -> Page[AuditOut]:
    """The council's audit entries, newest first."""
    stmt = select(AuditEntry).where(AuditEntry.council_id == principal.council_id)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if actor is not None:
        stmt = stmt.where(AuditEntry.actor == actor)
    if target is not None:
        stmt = stmt.where(AuditEntry.target == target)
    if since_ns is not None:
        stmt = stmt.where(AuditEntry.time_ns >= since_ns)
    if until_ns is not None:
        stmt = stmt.where(AuditEntry.time_ns < until_ns)
    stmt = stmt.order_by(AuditEntry.time_ns.desc(), AuditEntry.id.desc())
    return paginate(session, stmt, paging, AuditOut.model_validate)

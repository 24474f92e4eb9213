"""Overrides: hold a lamp or a group at a level for a while (TALQ: latest wins, null resumes).

The API stores overrides; the live controller applies them, reading them through
:func:`api.db.active_overrides`. An override's ``state`` describes the override alone: a newer
override on the same lamps replaces it whatever its state says.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Select, func, or_, select

from api.db import LampRow, OverrideRow
from api.deps import CtxDep, Engineer, SessionDep, Viewer
from api.errors import ConflictError, InvalidInputError, NotFoundError
from api.routes.common import (
    IdPath,
    PageParams,
    audit,
    errors,
    get_group,
    get_lamp,
    page_params,
    paginate,
)
from api.schemas import MAX_ID, MAX_NS, LampId, OverrideCreate, OverrideOut, OverrideState, Page
from domain.errors import ValidationIssue

router = APIRouter()
Paging = Annotated[PageParams, Depends(page_params)]
_NS = 1_000_000_000


def override_state(row: OverrideRow, now_ns: int) -> OverrideState:
    if row.cancelled_ns is not None:
        return "cancelled"
    if row.expires_ns is not None and now_ns >= row.expires_ns:
        return "expired"
    return "pending" if now_ns < row.starts_ns else "active"


def override_out(row: OverrideRow, now_ns: int) -> OverrideOut:
    return OverrideOut(
        id=row.id,
        lamp_id=row.lamp.lamp_id if row.lamp is not None else None,
        group_id=row.group_id,
        group_name=row.group.name if row.group is not None else None,
        level_frac=row.level_frac,
        issued_ns=row.issued_ns,
        starts_ns=row.starts_ns,
        expires_ns=row.expires_ns,
        reason=row.reason,
        created_by=row.created_by,
        cancelled_by=row.cancelled_by,
        cancelled_ns=row.cancelled_ns,
        state=override_state(row, now_ns),
    )


def _in_state(stmt: Select[OverrideRow], state: str, now_ns: int) -> Select[OverrideRow]:
    running = OverrideRow.cancelled_ns.is_(None) & or_(
        OverrideRow.expires_ns.is_(None), OverrideRow.expires_ns > now_ns
    )
    if state == "current":
        return stmt.where(running)
    if state == "active":
        return stmt.where(running, OverrideRow.starts_ns <= now_ns)
    if state == "pending":
        return stmt.where(running, OverrideRow.starts_ns > now_ns)
    if state == "expired":
        return stmt.where(OverrideRow.cancelled_ns.is_(None), OverrideRow.expires_ns <= now_ns)
    if state == "cancelled":
        return stmt.where(OverrideRow.cancelled_ns.is_not(None))
    return stmt


@router.get(
    "/overrides",
    response_model=Page[OverrideOut],
    tags=["overrides"],
    responses=errors(401, 403, 404, 422),
)
def list_overrides(
    ctx: CtxDep,
    session: SessionDep,
    principal: Viewer,
    paging: Paging,
    state: Annotated[
        Literal["current", "active", "pending", "expired", "cancelled", "all"],
        Query(description="current = active or pending"),
    ] = "current",
    lamp_id: Annotated[LampId | None, Query(description="only overrides of this lamp")] = None,
    group_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only of this group")
    ] = None,
) -> Page[OverrideOut]:
    """The council's overrides, newest first."""
    now_ns = ctx.clock()
    stmt = select(OverrideRow).where(OverrideRow.council_id == principal.council_id)
    if lamp_id is not None:
        stmt = stmt.where(
            OverrideRow.lamp_pk == get_lamp(session, principal.council_id, lamp_id).id
        )
    if group_id is not None:
        stmt = stmt.where(
            OverrideRow.group_id == get_group(session, principal.council_id, group_id).id
        )
    stmt = _in_state(stmt, state, now_ns).order_by(
        OverrideRow.issued_ns.desc(), OverrideRow.id.desc()
    )
    return paginate(session, stmt, paging, lambda row: override_out(row, now_ns))


@router.post(
    "/overrides",
    response_model=OverrideOut,
    status_code=201,
    tags=["overrides"],
    responses=errors(401, 403, 404, 413, 422),
)
def create_override(
    ctx: CtxDep, session: SessionDep, principal: Engineer, body: OverrideCreate
) -> OverrideOut:
    """Override a lamp or a group from ``starts_ns`` (default now) until ``expires_ns`` (or for
    ``duration_s``; neither: until replaced or cancelled). ``level_frac: null`` resumes the
    program on those lamps (it replaces older overrides)."""
    issues = []
    if (body.lamp_id is None) == (body.group_id is None):
        issues.append(ValidationIssue("body", "give exactly one of lamp_id and group_id"))
    if body.expires_ns is not None and body.duration_s is not None:
        issues.append(ValidationIssue("body.duration_s", "give expires_ns or duration_s, not both"))
    if issues:
        raise InvalidInputError("the override is invalid", issues=issues)
    now_ns = ctx.clock()
    starts_ns = max(now_ns, body.starts_ns if body.starts_ns is not None else now_ns)
    expires_ns = body.expires_ns
    if body.duration_s is not None:
        expires_ns = starts_ns + round(body.duration_s * _NS)
    if expires_ns is not None and expires_ns > MAX_NS:
        raise InvalidInputError(
            "the override ends too late",
            issues=[ValidationIssue("body.duration_s", "ends after the year 2262; shorten it")],
        )
    if expires_ns is not None and expires_ns <= starts_ns:
        raise InvalidInputError(
            "the override would end before it starts",
            issues=[
                ValidationIssue(
                    "body.expires_ns",
                    f"{expires_ns} is not after the start {starts_ns}; an override must last "
                    "some time (omit expiry for none)",
                )
            ],
        )
    row = OverrideRow(
        council_id=principal.council_id,
        level_frac=body.level_frac,
        issued_ns=now_ns,
        starts_ns=starts_ns,
        expires_ns=expires_ns,
        reason=body.reason,
        created_by=principal.actor,
    )
    if body.lamp_id is not None:
        lamp = get_lamp(session, principal.council_id, body.lamp_id)
        row.lamp_pk = lamp.id
        target = f"lamp:{lamp.lamp_id}"
    else:
        assert body.group_id is not None
        group = get_group(session, principal.council_id, body.group_id)
        members = session.scalar(select(func.count(LampRow.id)).where(LampRow.group_id == group.id))
        if not members:
            raise InvalidInputError(
                "the group has no lamps",
                issues=[ValidationIssue("body.group_id", "the group has no lamps to override")],
            )
        row.group_id = group.id
        target = f"group:{group.id}"
    session.add(row)
    session.flush()
    audit(
        session,
        principal,
        "override.create",
        target,
        now_ns,
        {
            "override_id": row.id,
            "level_frac": body.level_frac,
            "starts_ns": starts_ns,
            "expires_ns": expires_ns,
            "reason": body.reason,
        },
    )
    session.commit()
    session.refresh(row)
    return override_out(row, now_ns)


def _override(session: SessionDep, council_id: str, override_id: int) -> OverrideRow:
    row = session.scalar(
        select(OverrideRow).where(
            OverrideRow.council_id == council_id, OverrideRow.id == override_id
        )
    )
    if row is None:
        raise NotFoundError("override")
    return row


@router.get(
    "/overrides/{override_id}",
    response_model=OverrideOut,
    tags=["overrides"],
    responses=errors(401, 403, 404, 422),
)
def read_override(
    ctx: CtxDep, session: SessionDep, principal: Viewer, override_id: IdPath
) -> OverrideOut:
    return override_out(_override(session, principal.council_id, override_id), ctx.clock())


@router.delete(
    "/overrides/{override_id}",
    response_model=OverrideOut,
    tags=["overrides"],
    responses=errors(401, 403, 404, 409, 422),
)
def cancel_override(
    ctx: CtxDep, session: SessionDep, principal: Engineer, override_id: IdPath
) -> OverrideOut:
    """End an override now. Its lamps go back to their program (an older override they had
    does not come back: latest wins). A pending override is dropped as if never issued."""
    row = _override(session, principal.council_id, override_id)
    now_ns = ctx.clock()
    state = override_state(row, now_ns)
    if state in ("cancelled", "expired"):
        raise ConflictError(f"the override has already ended ({state})")
    row.cancelled_ns = now_ns
    row.cancelled_by = principal.actor
    if state == "active":
        row.expires_ns = now_ns
    target = f"lamp:{row.lamp.lamp_id}" if row.lamp is not None else f"group:{row.group_id}"
    audit(
        session, principal, "override.cancel", target, now_ns, {"override_id": row.id, "was": state}
    )
    session.commit()
    return override_out(row, now_ns)

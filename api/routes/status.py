"""Live status of lamps (from the telemetry historian), gateways and alarms."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db import Alarm, Gateway, LampRow, active_overrides
from api.deps import AppContext, CtxDep, SessionDep, Viewer
from api.errors import ApiError, InvalidInputError, NotFoundError
from api.live import TelemetryReader, status_flags
from api.routes.common import PageParams, errors, get_group, get_lamp, page_params, paginate
from api.schemas import MAX_ID, AlarmOut, GatewayOut, LampId, LampStatus, Page
from controller.policy import OverrideTable
from domain.errors import ValidationIssue
from domain.records import ReadingKind

router = APIRouter()
Paging = Annotated[PageParams, Depends(page_params)]
_NS = 1_000_000_000


class TelemetryUnavailableError(ApiError):
    status = 503
    slug = "telemetry-unavailable"


def telemetry_of(ctx: AppContext) -> TelemetryReader:
    if ctx.telemetry is None:
        raise TelemetryUnavailableError(
            "this service was started without a telemetry historian, so there is no live status"
        )
    return ctx.telemetry


def _override_levels(
    session: Session, council_id: str, lamps: Sequence[LampRow], now_ns: int
) -> dict[str, float]:
    """The override level in force now on each of ``lamps`` (latest wins), where there is one."""
    overrides = active_overrides(session, council_id, now_ns)
    if not overrides:
        return {}
    ids = [row.lamp_id for row in lamps]
    groups = [row.group.name if row.group is not None else "" for row in lamps]
    wanted_ids, wanted_groups = set(ids), set(groups)
    relevant = [
        o
        for o in overrides
        if any(x in wanted_ids for x in o.lamp_ids) or any(g in wanted_groups for g in o.groups)
    ]
    if not relevant:
        return {}
    # Narrow each override to the lamps of this page so the table knows every name it sees.
    narrowed = [
        o.model_copy(
            update={
                "lamp_ids": tuple(x for x in o.lamp_ids if x in wanted_ids),
                "groups": tuple(g for g in o.groups if g in wanted_groups),
            }
        )
        for o in relevant
    ]
    table = OverrideTable(ids, groups, narrowed)
    in_force = table.apply(now_ns)
    winners = table.winners(now_ns)
    # The table computes in float32; report the level exactly as the override gave it.
    return {
        lamp_id: level
        for lamp_id, k, applied in zip(ids, winners.tolist(), in_force.tolist(), strict=True)
        if applied == applied and (level := table.overrides[k].level_frac) is not None
    }


def _open_alarms(
    session: Session, council_id: str, lamp_ids: Sequence[str]
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    rows = session.execute(
        select(Alarm.lamp_id, Alarm.kind)
        .where(
            Alarm.council_id == council_id, Alarm.ended_ns.is_(None), Alarm.lamp_id.in_(lamp_ids)
        )
        .order_by(Alarm.kind)
    )
    for lamp_id, kind in rows:
        if lamp_id is not None:
            out[lamp_id].append(kind)
    return out


def lamp_statuses(
    ctx: AppContext, session: Session, council_id: str, rows: Sequence[LampRow]
) -> list[LampStatus]:
    telemetry = telemetry_of(ctx)
    now_ns = ctx.clock()
    ids = [row.lamp_id for row in rows]
    latest = telemetry.latest(ids) if ids else {}
    overrides = _override_levels(session, council_id, rows, now_ns)
    alarms = _open_alarms(session, council_id, ids)
    out = []
    for row in rows:
        t = latest.get(row.lamp_id)
        out.append(
            LampStatus(
                lamp_id=row.lamp_id,
                group_name=row.group.name if row.group is not None else None,
                gateway_id=row.gateway_id,
                level_frac=t.level_frac if t is not None else None,
                power_w=t.power_w if t is not None else None,
                energy_wh=t.energy_wh if t is not None else None,
                status=t.status if t is not None else None,
                status_flags=status_flags(t.status if t is not None else None),
                time_ns=t.time_ns if t is not None else None,
                override_level_frac=overrides.get(row.lamp_id),
                open_alarms=alarms.get(row.lamp_id, []),
            )
        )
    return out


@router.get(
    "/live/lamps",
    response_model=Page[LampStatus],
    tags=["live"],
    responses=errors(401, 403, 404, 422, 503),
)
def live_lamps(
    ctx: CtxDep,
    session: SessionDep,
    principal: Viewer,
    paging: Paging,
    group_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this group")] = None,
) -> Page[LampStatus]:
    """Latest telemetry of the council's lamps, with the override in force and open alarms."""
    stmt = select(LampRow).where(LampRow.council_id == principal.council_id)
    if group_id is not None:
        stmt = stmt.where(LampRow.group_id == get_group(session, principal.council_id, group_id).id)
    telemetry_of(ctx)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = (
        session.scalars(stmt.order_by(LampRow.lamp_id).limit(paging.limit).offset(paging.offset))
        .unique()
        .all()
    )
    return Page[LampStatus](
        items=lamp_statuses(ctx, session, principal.council_id, rows),
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/live/lamps/{lamp_id}",
    response_model=LampStatus,
    tags=["live"],
    responses=errors(401, 403, 404, 422, 503),
)
def live_lamp(ctx: CtxDep, session: SessionDep, principal: Viewer, lamp_id: str) -> LampStatus:
    row = get_lamp(session, principal.council_id, lamp_id)
    return lamp_statuses(ctx, session, principal.council_id, [row])[0]


@router.get(
    "/live/lamps/{lamp_id}/series",
    response_model=list[tuple[int, float]],
    tags=["live"],
    responses=errors(401, 403, 404, 422, 503),
)
def lamp_series(
    ctx: CtxDep,
    session: SessionDep,
    principal: Viewer,
    lamp_id: str,
    kind: Annotated[ReadingKind, Query(description="which measurement")],
    start_ns: Annotated[int, Query(ge=0, le=2**63 - 1)],
    end_ns: Annotated[int, Query(ge=0, le=2**63 - 1)],
) -> list[tuple[int, float]]:
    """``[time_ns, value]`` pairs of one lamp's readings of one kind in ``[start_ns, end_ns)``."""
    row = get_lamp(session, principal.council_id, lamp_id)
    if end_ns < start_ns:
        raise InvalidInputError(
            "the time range is empty",
            issues=[ValidationIssue("query.end_ns", f"{end_ns} is before start_ns {start_ns}")],
        )
    return [
        (int(t), float(v)) for t, v in telemetry_of(ctx).series(row.lamp_id, kind, start_ns, end_ns)
    ]


def gateway_out(ctx: AppContext, session: Session, row: Gateway, now_ns: int) -> GatewayOut:
    lamps = session.scalar(
        select(func.count(LampRow.id)).where(
            LampRow.council_id == row.council_id, LampRow.gateway_id == row.gateway_id
        )
    )
    fresh = (
        row.last_seen_ns is not None
        and now_ns - row.last_seen_ns <= ctx.settings.gateway_stale_s * _NS
    )
    return GatewayOut(
        gateway_id=row.gateway_id,
        status=row.status,
        last_seen_ns=row.last_seen_ns,
        online=row.status == "online" and fresh,
        lamps=lamps or 0,
        detail=row.detail,
    )


@router.get(
    "/gateways", response_model=Page[GatewayOut], tags=["live"], responses=errors(401, 403, 422)
)
def list_gateways(
    ctx: CtxDep, session: SessionDep, principal: Viewer, paging: Paging
) -> Page[GatewayOut]:
    """The council's gateways with their last reported status."""
    now_ns = ctx.clock()
    stmt = (
        select(Gateway)
        .where(Gateway.council_id == principal.council_id)
        .order_by(Gateway.gateway_id)
    )
    return paginate(session, stmt, paging, lambda row: gateway_out(ctx, session, row, now_ns))


@router.get(
    "/gateways/{gateway_id}",
    response_model=GatewayOut,
    tags=["live"],
    responses=errors(401, 403, 404, 422),
)
def read_gateway(
    ctx: CtxDep,
    session: SessionDep,
    principal: Viewer,
    gateway_id: Annotated[str, Path(min_length=1, max_length=100)],
) -> GatewayOut:
    row = session.scalar(
        select(Gateway).where(
            Gateway.council_id == principal.council_id, Gateway.gateway_id == gateway_id
        )
    )
    if row is None:
        raise NotFoundError("gateway")
    return gateway_out(ctx, session, row, ctx.clock())


def alarm_out(row: Alarm) -> AlarmOut:
    return AlarmOut(
        id=row.id,
        alarm_id=row.alarm_key,
        lamp_id=row.lamp_id,
        gateway_id=row.gateway_id,
        kind=row.kind,
        started_ns=row.started_ns,
        ended_ns=row.ended_ns,
        detail=row.detail,
        open=row.ended_ns is None,
    )


@router.get(
    "/alarms", response_model=Page[AlarmOut], tags=["live"], responses=errors(401, 403, 404, 422)
)
def list_alarms(
    session: SessionDep,
    principal: Viewer,
    paging: Paging,
    state: Annotated[Literal["open", "closed", "all"], Query()] = "open",
    lamp_id: Annotated[LampId | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=50)] = None,
) -> Page[AlarmOut]:
    """Alarms raised by the live controller's health monitor, newest first."""
    stmt = select(Alarm).where(Alarm.council_id == principal.council_id)
    if state == "open":
        stmt = stmt.where(Alarm.ended_ns.is_(None))
    elif state == "closed":
        stmt = stmt.where(Alarm.ended_ns.is_not(None))
    if lamp_id is not None:
        stmt = stmt.where(Alarm.lamp_id == get_lamp(session, principal.council_id, lamp_id).lamp_id)
    if kind is not None:
        stmt = stmt.where(Alarm.kind == kind)
    stmt = stmt.order_by(Alarm.started_ns.desc(), Alarm.id.desc())
    return paginate(session, stmt, paging, alarm_out)

"""Energy and compliance reports by local day and group, from telemetry.

*Energy*: the historian's metered energy (``energy_wh``) of the group's lamps over each local
day of the council's time zone, in kWh; ``lamps_reporting`` counts lamps the historian had
energy for.

*Compliance*: at each presence detection reported by a lamp (a lamp-mounted detector, so the
reading's source is the lamp id), the lamp's measured level (its latest ``level_frac`` reading
at or before the detection, at most :data:`LEVEL_MAX_AGE_S` old) is compared with the safety
floor of its lighting class under the policy in force on its group at that moment (the
policy's ``floor_frac`` overrides on the default floors; the default floors without a policy).
Only detections at a lit lamp (measured level > 0) are judged: a switched-off lamp is either a
switch-off window the policy states or a fault the health monitor raises as an alarm.
``below_floor_share`` = detections below the floor / detections judged.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import Activation, Council, Group, LampRow
from api.deps import AppContext, CtxDep, SessionDep, Viewer
from api.errors import InvalidInputError
from api.routes.common import errors, get_group
from api.routes.status import telemetry_of
from api.schemas import MAX_ID, ComplianceReport, ComplianceRow, EnergyReport, EnergyRow
from controller.policy import DEFAULT_FLOOR_FRAC, floor_table, validate_policy
from domain.errors import PolicyError, ValidationIssue
from domain.records import LightingClass, ReadingKind

router = APIRouter()
_NS = 1_000_000_000
#: Longest span a report covers.
MAX_REPORT_DAYS = 92
#: A level reading older than this at a detection is not evidence of the level then.
LEVEL_MAX_AGE_S = 3600.0
_FLOOR_TOLERANCE = 1e-6

FirstDay = Annotated[dt.date, Query(description="first local day (YYYY-MM-DD)")]
LastDay = Annotated[dt.date, Query(description="last local day, inclusive")]
GroupFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this group")]


@dataclass(frozen=True)
class _Scope:
    tz: str
    days: list[tuple[dt.date, int, int]]  # (day, start_ns, end_ns)
    groups: list[tuple[Group | None, list[LampRow]]]


def _local_midnight_ns(day: dt.date, tz: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=tz).timestamp()) * _NS


def _scope(
    session: Session, council_id: str, first_day: dt.date, last_day: dt.date, group_id: int | None
) -> _Scope:
    issues = []
    if last_day < first_day:
        issues.append(
            ValidationIssue("query.last_day", f"{last_day} is before first_day {first_day}")
        )
    elif (last_day - first_day).days + 1 > MAX_REPORT_DAYS:
        issues.append(
            ValidationIssue(
                "query.last_day", f"the report may cover at most {MAX_REPORT_DAYS} days; shorten it"
            )
        )
    elif first_day.year < 1971 or last_day.year > 2261:
        issues.append(ValidationIssue("query.first_day", "days must lie within 1971-2261"))
    if issues:
        raise InvalidInputError("the report period is invalid", issues=issues)
    council = session.get(Council, council_id)
    assert council is not None
    tz = ZoneInfo(council.tz)
    days = []
    day = first_day
    while day <= last_day:
        nxt = day + dt.timedelta(days=1)
        days.append((day, _local_midnight_ns(day, tz), _local_midnight_ns(nxt, tz)))
        day = nxt
    lamps = session.scalars(
        select(LampRow).where(LampRow.council_id == council_id).order_by(LampRow.lamp_id)
    ).unique()
    by_group: dict[int | None, list[LampRow]] = {}
    for lamp in lamps:
        by_group.setdefault(lamp.group_id, []).append(lamp)
    if group_id is not None:
        group = get_group(session, council_id, group_id)
        groups: list[tuple[Group | None, list[LampRow]]] = [(group, by_group.get(group.id, []))]
    else:
        all_groups = session.scalars(
            select(Group).where(Group.council_id == council_id).order_by(Group.name)
        )
        groups = [(g, by_group.get(g.id, [])) for g in all_groups]
        if by_group.get(None):
            groups.append((None, by_group[None]))
    return _Scope(council.tz, days, groups)


@router.get(
    "/reports/energy",
    response_model=EnergyReport,
    tags=["reports"],
    responses=errors(401, 403, 404, 422, 503),
)
def energy_report(
    ctx: CtxDep,
    session: SessionDep,
    principal: Viewer,
    first_day: FirstDay,
    last_day: LastDay,
    group_id: GroupFilter = None,
) -> EnergyReport:
    """Metered energy per local day and group (lamps without a group: group_id null)."""
    scope = _scope(session, principal.council_id, first_day, last_day, group_id)
    telemetry = telemetry_of(ctx)
    rows = []
    for day, start_ns, end_ns in scope.days:
        for group, lamps in scope.groups:
            ids = [lamp.lamp_id for lamp in lamps]
            energy = telemetry.energy_wh(ids, start_ns, end_ns) if ids else {}
            rows.append(
                EnergyRow(
                    day=day,
                    group_id=group.id if group is not None else None,
                    group_name=group.name if group is not None else None,
                    lamps=len(ids),
                    lamps_reporting=sum(1 for lamp_id in ids if lamp_id in energy),
                    energy_kwh=sum(energy.get(lamp_id, 0.0) for lamp_id in ids) / 1000.0,
                )
            )
    return EnergyReport(tz=scope.tz, first_day=first_day, last_day=last_day, rows=rows)


@dataclass(frozen=True)
class _Period:
    start_ns: int
    end_ns: int | None
    policy_id: int
    version: int
    floors: dict[LightingClass, float]


def _periods(session: Session, council_id: str, group_id: int) -> list[_Period]:
    out = []
    for act in session.scalars(
        select(Activation)
        .where(Activation.council_id == council_id, Activation.group_id == group_id)
        .order_by(Activation.activated_ns)
    ).unique():
        try:
            policy = validate_policy(act.version.document)
        except PolicyError:
            continue  # cannot have been in force: activation validates
        out.append(
            _Period(
                act.activated_ns,
                act.deactivated_ns,
                act.version.policy_id,
                act.version.number,
                floor_table(policy.floor_frac),
            )
        )
    return out


def _in_force(periods: Sequence[_Period], time_ns: int) -> _Period | None:
    found = None
    for period in periods:
        if period.start_ns <= time_ns and (period.end_ns is None or time_ns < period.end_ns):
            found = period
    return found


@router.get(
    "/reports/compliance",
    response_model=ComplianceReport,
    tags=["reports"],
    responses=errors(401, 403, 404, 422, 503),
)
def compliance_report(
    ctx: CtxDep,
    session: SessionDep,
    principal: Viewer,
    first_day: FirstDay,
    last_day: LastDay,
    group_id: GroupFilter = None,
) -> ComplianceReport:
    """Share of presence detections at lit lamps whose measured level was below the safety
    floor of the policy in force (see docs/api.md for the exact definition)."""
    scope = _scope(session, principal.council_id, first_day, last_day, group_id)
    telemetry_of(ctx)
    rows = []
    for group, lamps in scope.groups:
        periods = _periods(session, principal.council_id, group.id) if group is not None else []
        for day, start_ns, end_ns in scope.days:
            rows.append(_compliance_row(ctx, lamps, group, periods, day, start_ns, end_ns))
    return ComplianceReport(tz=scope.tz, first_day=first_day, last_day=last_day, rows=rows)


def _compliance_row(
    ctx: AppContext,
    lamps: Sequence[LampRow],
    group: Group | None,
    periods: Sequence[_Period],
    day: dt.date,
    start_ns: int,
    end_ns: int,
) -> ComplianceRow:
    telemetry = telemetry_of(ctx)
    readings = judged = below = 0
    lookback_ns = int(LEVEL_MAX_AGE_S * _NS)
    for lamp in lamps:
        detections = telemetry.series(lamp.lamp_id, ReadingKind.PRESENCE, start_ns, end_ns)
        if not detections:
            continue
        readings += len(detections)
        levels = telemetry.series(
            lamp.lamp_id, ReadingKind.LEVEL_FRAC, max(0, start_ns - lookback_ns), end_ns
        )
        times = [t for t, _ in levels]
        for t, _ in detections:
            k = bisect.bisect_right(times, t) - 1
            if k < 0 or t - times[k] > lookback_ns or levels[k][1] <= 0.0:
                continue
            judged += 1
            period = _in_force(periods, t)
            floors = period.floors if period is not None else DEFAULT_FLOOR_FRAC
            if levels[k][1] < floors[lamp.lighting_class] - _FLOOR_TOLERANCE:
                below += 1
    last = _in_force(periods, end_ns - 1)
    return ComplianceRow(
        day=day,
        group_id=group.id if group is not None else None,
        group_name=group.name if group is not None else None,
        policy_id=last.policy_id if last is not None else None,
        version=last.version if last is not None else None,
        presence_readings=readings,
        judged=judged,
        below_floor=below,
        below_floor_share=below / judged if judged else None,
    )

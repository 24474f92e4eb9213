"""Lamps (CRUD and bulk import with the importer's per-row report) and groups."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db import Activation, Group, LampRow
from api.deps import CtxDep, Engineer, SessionDep, Viewer
from api.errors import ConflictError, InvalidInputError, NotFoundError
from api.routes.common import (
    IdPath,
    PageParams,
    audit,
    check_groups_covered,
    deduplicate,
    errors,
    get_group,
    get_lamp,
    page_params,
    paginate,
)
from api.schemas import (
    MAX_ID,
    ActiveRef,
    BadRowOut,
    GroupCreate,
    GroupOut,
    GroupPatch,
    ImportOut,
    LampCreate,
    LampOut,
    LampPatch,
    Membership,
    MembershipOut,
    Page,
)
from domain.errors import InventoryError, ValidationIssue
from domain.importer import ColumnMapping, import_inventory

router = APIRouter()
Paging = Annotated[PageParams, Depends(page_params)]
_LAMP_ID_OK = re.compile(r"^[^\x00-\x1f\x7f/\s]([^\x00-\x1f\x7f/]*[^\x00-\x1f\x7f/\s])?$")


def lamp_out(row: LampRow) -> LampOut:
    return LampOut(
        lamp_id=row.lamp_id,
        lon_deg=row.lon_deg,
        lat_deg=row.lat_deg,
        rated_power_w=row.rated_power_w,
        standby_power_w=row.standby_power_w,
        lighting_class=row.lighting_class,
        street=row.street,
        order_on_street=row.order_on_street,
        driver_curve=row.driver_curve,
        dimming_curve=row.dimming_curve,
        controller_address=row.controller_address,
        lamp_type=row.lamp_type,
        gateway_id=row.gateway_id,
        group_id=row.group_id,
        group_name=row.group.name if row.group is not None else None,
        created_ns=row.created_ns,
        updated_ns=row.updated_ns,
    )


# --- lamps ----------------------------------------------------------------------------------------


@router.get(
    "/lamps", response_model=Page[LampOut], tags=["lamps"], responses=errors(401, 403, 404, 422)
)
def list_lamps(
    session: SessionDep,
    principal: Viewer,
    paging: Paging,
    group_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only this group")] = None,
) -> Page[LampOut]:
    """The council's lamps, by lamp id."""
    stmt = select(LampRow).where(LampRow.council_id == principal.council_id)
    if group_id is not None:
        get_group(session, principal.council_id, group_id)
        stmt = stmt.where(LampRow.group_id == group_id)
    return paginate(session, stmt.order_by(LampRow.lamp_id), paging, lamp_out)


@router.post(
    "/lamps",
    response_model=LampOut,
    status_code=201,
    tags=["lamps"],
    responses=errors(401, 403, 404, 409, 413, 422),
)
def create_lamp(ctx: CtxDep, session: SessionDep, principal: Engineer, body: LampCreate) -> LampOut:
    council = principal.council_id
    existing = session.scalar(
        select(LampRow.id).where(LampRow.council_id == council, LampRow.lamp_id == body.lamp_id)
    )
    if existing is not None:
        raise ConflictError("a lamp with this id already exists in your council; PATCH it instead")
    if body.group_id is not None:
        get_group(session, council, body.group_id)
    now_ns = ctx.clock()
    row = LampRow(council_id=council, created_ns=now_ns, updated_ns=now_ns, **body.model_dump())
    session.add(row)
    check_groups_covered(session, council, [row.group_id])
    audit(
        session,
        principal,
        "lamp.create",
        f"lamp:{row.lamp_id}",
        now_ns,
        body.model_dump(mode="json"),
    )
    session.commit()
    session.refresh(row)
    return lamp_out(row)


@router.get(
    "/lamps/{lamp_id}", response_model=LampOut, tags=["lamps"], responses=errors(401, 403, 404, 422)
)
def read_lamp(session: SessionDep, principal: Viewer, lamp_id: str) -> LampOut:
    return lamp_out(get_lamp(session, principal.council_id, lamp_id))


@router.patch(
    "/lamps/{lamp_id}",
    response_model=LampOut,
    tags=["lamps"],
    responses=errors(401, 403, 404, 413, 422),
)
def patch_lamp(
    ctx: CtxDep, session: SessionDep, principal: Engineer, lamp_id: str, body: LampPatch
) -> LampOut:
    row = get_lamp(session, principal.council_id, lamp_id)
    changes = body.model_dump(exclude_none=True, exclude={"clear_group"})
    if body.clear_group and body.group_id is not None:
        raise InvalidInputError(
            "give group_id or clear_group, not both",
            issues=[ValidationIssue("body.clear_group", "cannot be true together with group_id")],
        )
    if body.group_id is not None:
        get_group(session, principal.council_id, body.group_id)
    if body.clear_group:
        changes["group_id"] = None
    for key, value in changes.items():
        setattr(row, key, value)
    check_groups_covered(session, principal.council_id, [row.group_id])
    now_ns = ctx.clock()
    row.updated_ns = now_ns
    audit(
        session,
        principal,
        "lamp.update",
        f"lamp:{row.lamp_id}",
        now_ns,
        body.model_dump(mode="json", exclude_none=True),
    )
    session.commit()
    session.refresh(row)
    return lamp_out(row)


@router.delete(
    "/lamps/{lamp_id}", status_code=204, tags=["lamps"], responses=errors(401, 403, 404, 422)
)
def delete_lamp(ctx: CtxDep, session: SessionDep, principal: Engineer, lamp_id: str) -> Response:
    """Delete a lamp; its overrides go with it."""
    row = get_lamp(session, principal.council_id, lamp_id)
    session.delete(row)
    audit(session, principal, "lamp.delete", f"lamp:{row.lamp_id}", ctx.clock())
    session.commit()
    return Response(status_code=204)


def _mapping(text: str | None, council_id: str) -> ColumnMapping:
    options: Any = {}
    if text:
        try:
            options = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidInputError(
                "the column mapping is not valid JSON",
                issues=[
                    ValidationIssue("mapping", f"not valid JSON: {err.msg} at position {err.pos}")
                ],
            ) from None
        if not isinstance(options, dict):
            raise InvalidInputError(
                "the column mapping must be a JSON object",
                issues=[ValidationIssue("mapping", "must be a JSON object of ColumnMapping keys")],
            )
    options = {**options, "council_id": council_id}
    return ColumnMapping.from_dict(options, source="mapping")


@router.post(
    "/lamps/import",
    response_model=ImportOut,
    tags=["lamps"],
    responses=errors(401, 403, 413, 422),
)
def import_lamps(
    ctx: CtxDep,
    session: SessionDep,
    principal: Engineer,
    file: Annotated[UploadFile, File(description="CSV or GeoJSON inventory")],
    mapping: Annotated[
        str | None,
        Form(
            max_length=20_000,
            description="JSON object of domain.importer.ColumnMapping keys (council_id is yours)",
        ),
    ] = None,
    format: Annotated[
        Literal["csv", "geojson"] | None,
        Form(description="default: by the file name (.geojson/.json = GeoJSON, else CSV)"),
    ] = None,
) -> ImportOut:
    """Create or update lamps from a council inventory file.

    Good rows are stored (new ids created, known ids updated); bad rows are reported with
    their row numbers and reasons, as :mod:`domain.importer` judges them. Group names in the
    group column create groups that do not exist yet.
    """
    column_mapping = _mapping(mapping, principal.council_id)
    name = Path(file.filename or "inventory").name
    kind = format or ("geojson" if name.lower().endswith((".geojson", ".json")) else "csv")
    with tempfile.TemporaryDirectory(prefix="streetlight-import-") as tmp:
        path = Path(tmp) / ("inventory.geojson" if kind == "geojson" else "inventory.csv")
        with path.open("wb") as upload:
            shutil.copyfileobj(file.file, upload)
        try:
            inventory, report = import_inventory(path, column_mapping)
        except InventoryError as err:
            # The message names the temporary path; name the upload instead.
            raise InventoryError(str(err).replace(str(path), name)) from None
    now_ns = ctx.clock()
    council = principal.council_id
    records = inventory.lamps()
    refused = [lamp.lamp_id for lamp in records if not _LAMP_ID_OK.match(lamp.lamp_id)]
    records = [lamp for lamp in records if _LAMP_ID_OK.match(lamp.lamp_id)]
    groups = {g.name: g for g in session.scalars(select(Group).where(Group.council_id == council))}
    created_groups = []
    for group_name in deduplicate([lamp.group for lamp in records if lamp.group]):
        if group_name not in groups:
            group = Group(
                council_id=council, name=group_name[:100], description="", created_ns=now_ns
            )
            session.add(group)
            groups[group_name] = group
            created_groups.append(group_name)
    session.flush()
    existing = {
        row.lamp_id: row
        for row in session.scalars(select(LampRow).where(LampRow.council_id == council))
    }
    created = updated = 0
    for lamp in records:
        values: dict[str, Any] = {
            "lon_deg": lamp.lon_deg,
            "lat_deg": lamp.lat_deg,
            "rated_power_w": lamp.rated_power_w,
            "standby_power_w": lamp.standby_power_w,
            "lighting_class": lamp.lighting_class,
            "street": lamp.street[:200],
            "order_on_street": lamp.order_on_street,
            "dimming_curve": lamp.dimming_curve,
            "lamp_type": lamp.lamp_type[:50],
            "updated_ns": now_ns,
        }
        if lamp.group:
            values["group_id"] = groups[lamp.group].id
        row = existing.get(lamp.lamp_id)
        if row is None:
            session.add(
                LampRow(council_id=council, lamp_id=lamp.lamp_id, created_ns=now_ns, **values)
            )
            created += 1
        else:
            for key, value in values.items():
                setattr(row, key, value)
            updated += 1
    check_groups_covered(session, council, [g.id for g in groups.values()])
    out = ImportOut(
        source=name,
        rows_read=report.rows_read,
        rows_imported=report.rows_imported,
        created=created,
        updated=updated,
        bad_rows=[BadRowOut(row_number=b.row_number, reason=b.reason) for b in report.bad_rows],
        wattage_missing=report.wattage_missing,
        duplicate_ids=list(report.duplicate_ids),
        streets_derived=report.streets_derived,
        row_numbering=report.row_numbering,
        groups_created=created_groups,
        refused_ids=refused,
    )
    audit(
        session,
        principal,
        "lamp.import",
        f"import:{name}",
        now_ns,
        {
            "rows_read": report.rows_read,
            "created": created,
            "updated": updated,
            "bad_rows": len(report.bad_rows),
            "refused_ids": len(refused),
            "groups_created": created_groups,
        },
    )
    session.commit()
    return out


# --- groups ---------------------------------------------------------------------------------------


def group_out(session: Session, group: Group) -> GroupOut:
    lamps = session.scalar(
        select(func.count(LampRow.id)).where(
            LampRow.council_id == group.council_id, LampRow.group_id == group.id
        )
    )
    act = session.scalar(
        select(Activation).where(
            Activation.council_id == group.council_id,
            Activation.group_id == group.id,
            Activation.active.is_(True),
        )
    )
    active = (
        ActiveRef(
            activation_id=act.id,
            policy_id=act.version.policy_id,
            policy_name=act.version.policy.name,
            version=act.version.number,
            activated_ns=act.activated_ns,
        )
        if act is not None
        else None
    )
    return GroupOut(
        id=group.id,
        name=group.name,
        description=group.description,
        lamps=lamps or 0,
        active=active,
        created_ns=group.created_ns,
    )


def _name_free(session: Session, council_id: str, name: str) -> None:
    if session.scalar(select(Group.id).where(Group.council_id == council_id, Group.name == name)):
        raise ConflictError("a group with this name already exists in your council")


@router.get(
    "/groups", response_model=Page[GroupOut], tags=["groups"], responses=errors(401, 403, 422)
)
def list_groups(session: SessionDep, principal: Viewer, paging: Paging) -> Page[GroupOut]:
    """The council's groups, by name, with lamp counts and the active policy."""
    stmt = select(Group).where(Group.council_id == principal.council_id).order_by(Group.name)
    return paginate(session, stmt, paging, lambda g: group_out(session, g))


@router.post(
    "/groups",
    response_model=GroupOut,
    status_code=201,
    tags=["groups"],
    responses=errors(401, 403, 409, 413, 422),
)
def create_group(
    ctx: CtxDep, session: SessionDep, principal: Engineer, body: GroupCreate
) -> GroupOut:
    _name_free(session, principal.council_id, body.name)
    now_ns = ctx.clock()
    group = Group(
        council_id=principal.council_id,
        name=body.name,
        description=body.description,
        created_ns=now_ns,
    )
    session.add(group)
    session.flush()
    audit(session, principal, "group.create", f"group:{group.id}", now_ns, {"name": body.name})
    session.commit()
    return group_out(session, group)


@router.get(
    "/groups/{group_id}",
    response_model=GroupOut,
    tags=["groups"],
    responses=errors(401, 403, 404, 422),
)
def read_group(session: SessionDep, principal: Viewer, group_id: IdPath) -> GroupOut:
    return group_out(session, get_group(session, principal.council_id, group_id))


@router.patch(
    "/groups/{group_id}",
    response_model=GroupOut,
    tags=["groups"],
    responses=errors(401, 403, 404, 409, 413, 422),
)
def patch_group(
    ctx: CtxDep, session: SessionDep, principal: Engineer, group_id: IdPath, body: GroupPatch
) -> GroupOut:
    group = get_group(session, principal.council_id, group_id)
    if body.name is not None and body.name != group.name:
        _name_free(session, principal.council_id, body.name)
        group.name = body.name
    if body.description is not None:
        group.description = body.description
    audit(
        session,
        principal,
        "group.update",
        f"group:{group.id}",
        ctx.clock(),
        body.model_dump(exclude_none=True),
    )
    session.commit()
    return group_out(session, group)


@router.delete(
    "/groups/{group_id}",
    status_code=204,
    tags=["groups"],
    responses=errors(401, 403, 404, 409, 422),
)
def delete_group(
    ctx: CtxDep, session: SessionDep, principal: Engineer, group_id: IdPath
) -> Response:
    """Delete a group: its lamps stay (without a group); its overrides and history go.
    Refused while a policy is active on it (deactivate it first)."""
    group = get_group(session, principal.council_id, group_id)
    active = session.scalar(
        select(Activation.id).where(Activation.group_id == group.id, Activation.active.is_(True))
    )
    if active is not None:
        raise ConflictError(
            "a policy is active on this group; DELETE /api/v1/groups/{id}/activation first"
        )
    session.delete(group)
    audit(
        session, principal, "group.delete", f"group:{group.id}", ctx.clock(), {"name": group.name}
    )
    session.commit()
    return Response(status_code=204)


@router.get(
    "/groups/{group_id}/lamps",
    response_model=Page[LampOut],
    tags=["groups"],
    responses=errors(401, 403, 404, 422),
)
def group_lamps(
    session: SessionDep, principal: Viewer, group_id: IdPath, paging: Paging
) -> Page[LampOut]:
    group = get_group(session, principal.council_id, group_id)
    stmt = (
        select(LampRow)
        .where(LampRow.council_id == principal.council_id, LampRow.group_id == group.id)
        .order_by(LampRow.lamp_id)
    )
    return paginate(session, stmt, paging, lamp_out)


@router.post(
    "/groups/{group_id}/lamps",
    response_model=MembershipOut,
    tags=["groups"],
    responses=errors(401, 403, 404, 413, 422),
)
def add_group_lamps(
    ctx: CtxDep, session: SessionDep, principal: Engineer, group_id: IdPath, body: Membership
) -> MembershipOut:
    """Put lamps in the group (a lamp is in at most one group: it leaves its old one)."""
    group = get_group(session, principal.council_id, group_id)
    wanted = deduplicate(body.lamp_ids)
    rows = list(
        session.scalars(
            select(LampRow).where(
                LampRow.council_id == principal.council_id, LampRow.lamp_id.in_(wanted)
            )
        ).unique()
    )
    if len(rows) != len(wanted):
        raise NotFoundError("lamp")
    now_ns = ctx.clock()
    for row in rows:
        row.group_id = group.id
        row.updated_ns = now_ns
    check_groups_covered(session, principal.council_id, [group.id])
    audit(
        session,
        principal,
        "group.add_lamps",
        f"group:{group.id}",
        now_ns,
        {"lamp_ids": wanted[:100], "count": len(wanted)},
    )
    session.commit()
    total = session.scalar(select(func.count(LampRow.id)).where(LampRow.group_id == group.id))
    return MembershipOut(group_id=group.id, added=len(rows), lamps=total or 0)


@router.delete(
    "/groups/{group_id}/lamps/{lamp_id}",
    status_code=204,
    tags=["groups"],
    responses=errors(401, 403, 404, 422),
)
def remove_group_lamp(
    ctx: CtxDep, session: SessionDep, principal: Engineer, group_id: IdPath, lamp_id: str
) -> Response:
    group = get_group(session, principal.council_id, group_id)
    row = get_lamp(session, principal.council_id, lamp_id)
    if row.group_id != group.id:
        raise NotFoundError("lamp")
    now_ns = ctx.clock()
    row.group_id = None
    row.updated_ns = now_ns
    audit(
        session,
        principal,
        "group.remove_lamp",
        f"group:{group.id}",
        now_ns,
        {"lamp_id": row.lamp_id},
    )
    session.commit()
    return Response(status_code=204)

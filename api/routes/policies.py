"""Policies and their versions: validate, dry-run, activate on a group, roll back.

A version's document is validated when it is saved (:func:`controller.policy.validate_policy`,
plus :func:`~controller.policy.check_update` against the latest valid version: same name, higher
``version`` field). Invalid versions are stored with their issues, so an engineer can keep a
draft, but activation and dry runs refuse them with the issues in problem+json ``errors``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import Activation, Council, DryRun, Group, JobStatus, LampRow, PolicyRow, PolicyVersion
from api.deps import CtxDep, Engineer, SessionDep, Viewer
from api.errors import ConflictError, InvalidInputError, NotFoundError, PolicyInvalidError
from api.jobs import recent_first_night
from api.routes.common import (
    IdPath,
    PageParams,
    audit,
    class_issues,
    errors,
    get_group,
    get_policy,
    get_version,
    page_params,
    paginate,
)
from api.schemas import (
    ActivateIn,
    ActivationOut,
    DocumentIn,
    DryRunIn,
    Issue,
    JobOut,
    Page,
    PolicyCreate,
    PolicyOut,
    PolicyPatch,
    RollbackIn,
    ValidationOut,
    VersionCreate,
    VersionOut,
    VersionSummary,
)
from api.security import Principal
from controller.policy import Policy, check_update, load_policy_text, validate_policy
from domain.errors import PolicyError, ValidationIssue
from simulation.results import SimulationReport

router = APIRouter()
Paging = Annotated[PageParams, Depends(page_params)]
JobIdPath = Annotated[str, Path(min_length=1, max_length=36)]


# --- validation -----------------------------------------------------------------------------------


def _parse(document: str) -> tuple[Policy | None, list[ValidationIssue]]:
    try:
        return validate_policy(document), []
    except PolicyError as err:
        return None, list(err.issues)


def _latest_valid(session: Session, policy: PolicyRow) -> Policy | None:
    latest = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.policy_id == policy.id, PolicyVersion.valid.is_(True))
        .order_by(PolicyVersion.number.desc())
        .limit(1)
    )
    return None if latest is None else _parse(latest.document)[0]


def judge(document: str, policy_name: str, previous: Policy | None) -> list[ValidationIssue]:
    """Every reason ``document`` cannot be a new version of the policy ``policy_name``."""
    parsed, issues = _parse(document)
    if parsed is None:
        return issues
    if previous is not None:
        try:
            check_update(previous, parsed)
        except PolicyError as err:
            return list(err.issues)
    elif parsed.name != policy_name:
        return [
            ValidationIssue(
                "name",
                f"'{parsed.name}' does not match the policy's name '{policy_name}'; a version "
                "keeps its policy's name",
            )
        ]
    return []


def _issues_out(issues: list[Any]) -> list[Issue]:
    return [Issue(where=i["where"], message=i["message"]) for i in issues]


def _active_groups(session: Session, version_ids: list[int]) -> list[int]:
    return list(
        session.scalars(
            select(Activation.group_id)
            .where(Activation.policy_version_id.in_(version_ids), Activation.active.is_(True))
            .order_by(Activation.group_id)
        )
    )


def _summary(version: PolicyVersion) -> VersionSummary:
    return VersionSummary(
        number=version.number,
        valid=version.valid,
        issues=len(version.issues),
        created_by=version.created_by,
        created_ns=version.created_ns,
    )


def _versions(session: Session, policy: PolicyRow) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.policy_id == policy.id)
            .order_by(PolicyVersion.number)
        ).unique()
    )


def policy_out(session: Session, policy: PolicyRow) -> PolicyOut:
    versions = _versions(session, policy)
    return PolicyOut(
        id=policy.id,
        name=policy.name,
        description=policy.description,
        created_by=policy.created_by,
        created_ns=policy.created_ns,
        versions=len(versions),
        latest=_summary(versions[-1]),
        active_on_groups=_active_groups(session, [v.id for v in versions]),
    )


def version_out(session: Session, version: PolicyVersion) -> VersionOut:
    return VersionOut(
        policy_id=version.policy_id,
        policy_name=version.policy.name,
        number=version.number,
        document=version.document,
        valid=version.valid,
        issues=_issues_out(version.issues),
        created_by=version.created_by,
        created_ns=version.created_ns,
        active_on_groups=_active_groups(session, [version.id]),
    )


def _add_version(
    session: Session, principal: Principal, policy: PolicyRow, document: str, now_ns: int
) -> PolicyVersion:
    issues = judge(document, policy.name, _latest_valid(session, policy))
    last = session.scalar(
        select(PolicyVersion.number)
        .where(PolicyVersion.policy_id == policy.id)
        .order_by(PolicyVersion.number.desc())
        .limit(1)
    )
    version = PolicyVersion(
        council_id=policy.council_id,
        policy_id=policy.id,
        number=(last or 0) + 1,
        document=document,
        valid=not issues,
        issues=[{"where": i.where, "message": i.message} for i in issues],
        created_by=principal.actor,
        created_ns=now_ns,
    )
    session.add(version)
    session.flush()
    audit(
        session,
        principal,
        "policy.version.create",
        f"policy:{policy.id}",
        now_ns,
        {"policy": policy.name, "version": version.number, "valid": version.valid},
    )
    return version


# --- policies -------------------------------------------------------------------------------------


@router.get(
    "/policies", response_model=Page[PolicyOut], tags=["policies"], responses=errors(401, 403, 422)
)
def list_policies(session: SessionDep, principal: Viewer, paging: Paging) -> Page[PolicyOut]:
    stmt = (
        select(PolicyRow)
        .where(PolicyRow.council_id == principal.council_id)
        .order_by(PolicyRow.name)
    )
    return paginate(session, stmt, paging, lambda p: policy_out(session, p))


@router.post(
    "/policies/validate",
    response_model=ValidationOut,
    tags=["policies"],
    responses=errors(401, 403, 413, 422),
)
def validate_document(principal: Viewer, body: DocumentIn) -> ValidationOut:
    """Validate a document without saving it: 200 if valid, else 422 listing every issue."""
    policy, issues = _parse(body.document)
    if policy is None:
        raise PolicyInvalidError(f"the policy is invalid ({len(issues)} problem(s))", issues=issues)
    return ValidationOut(valid=True, name=policy.name, version=policy.version)


@router.post(
    "/policies",
    response_model=PolicyOut,
    status_code=201,
    tags=["policies"],
    responses=errors(401, 403, 409, 413, 422),
)
def create_policy(
    ctx: CtxDep, session: SessionDep, principal: Engineer, body: PolicyCreate
) -> PolicyOut:
    """Save a new policy with its first version (stored even if invalid, with its issues)."""
    name = body.name
    if name is None:
        try:
            raw = load_policy_text(body.document)
        except yaml.YAMLError:  # reported by validation below
            raw = None
        doc_name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(doc_name, str) or not doc_name.strip() or len(doc_name) > 100:
            _, issues = _parse(body.document)
            raise PolicyInvalidError(
                "the document has no usable name; give one in the document or as 'name'",
                issues=issues or [ValidationIssue("name", "must be text of 1-100 characters")],
            )
        name = doc_name.strip()
    if session.scalar(
        select(PolicyRow.id).where(
            PolicyRow.council_id == principal.council_id, PolicyRow.name == name
        )
    ):
        raise ConflictError(
            "a policy with this name already exists in your council; add a version to it instead"
        )
    now_ns = ctx.clock()
    policy = PolicyRow(
        council_id=principal.council_id,
        name=name,
        description=body.description,
        created_by=principal.actor,
        created_ns=now_ns,
    )
    session.add(policy)
    session.flush()
    audit(session, principal, "policy.create", f"policy:{policy.id}", now_ns, {"name": name})
    _add_version(session, principal, policy, body.document, now_ns)
    session.commit()
    return policy_out(session, policy)


@router.get(
    "/policies/{policy_id}",
    response_model=PolicyOut,
    tags=["policies"],
    responses=errors(401, 403, 404, 422),
)
def read_policy(session: SessionDep, principal: Viewer, policy_id: IdPath) -> PolicyOut:
    return policy_out(session, get_policy(session, principal.council_id, policy_id))


@router.patch(
    "/policies/{policy_id}",
    response_model=PolicyOut,
    tags=["policies"],
    responses=errors(401, 403, 404, 413, 422),
)
def patch_policy(
    ctx: CtxDep, session: SessionDep, principal: Engineer, policy_id: IdPath, body: PolicyPatch
) -> PolicyOut:
    policy = get_policy(session, principal.council_id, policy_id)
    policy.description = body.description
    audit(
        session,
        principal,
        "policy.update",
        f"policy:{policy.id}",
        ctx.clock(),
        {"description": body.description},
    )
    session.commit()
    return policy_out(session, policy)


@router.delete(
    "/policies/{policy_id}",
    status_code=204,
    tags=["policies"],
    responses=errors(401, 403, 404, 409, 422),
)
def delete_policy(
    ctx: CtxDep, session: SessionDep, principal: Engineer, policy_id: IdPath
) -> Response:
    """Delete a policy and its versions; refused while any version is active on a group."""
    policy = get_policy(session, principal.council_id, policy_id)
    versions = _versions(session, policy)
    if _active_groups(session, [v.id for v in versions]):
        raise ConflictError("a version of this policy is active on a group; deactivate it first")
    session.delete(policy)
    audit(
        session,
        principal,
        "policy.delete",
        f"policy:{policy.id}",
        ctx.clock(),
        {"name": policy.name},
    )
    session.commit()
    return Response(status_code=204)


@router.get(
    "/policies/{policy_id}/versions",
    response_model=Page[VersionSummary],
    tags=["policies"],
    responses=errors(401, 403, 404, 422),
)
def list_versions(
    session: SessionDep, principal: Viewer, policy_id: IdPath, paging: Paging
) -> Page[VersionSummary]:
    policy = get_policy(session, principal.council_id, policy_id)
    stmt = (
        select(PolicyVersion)
        .where(
            PolicyVersion.council_id == principal.council_id, PolicyVersion.policy_id == policy.id
        )
        .order_by(PolicyVersion.number)
    )
    return paginate(session, stmt, paging, _summary)


@router.post(
    "/policies/{policy_id}/versions",
    response_model=VersionOut,
    status_code=201,
    tags=["policies"],
    responses=errors(401, 403, 404, 413, 422),
)
def create_version(
    ctx: CtxDep, session: SessionDep, principal: Engineer, policy_id: IdPath, body: VersionCreate
) -> VersionOut:
    """Save a new version (stored even if invalid; ``valid`` and ``issues`` say)."""
    policy = get_policy(session, principal.council_id, policy_id)
    version = _add_version(session, principal, policy, body.document, ctx.clock())
    session.commit()
    return version_out(session, version)


@router.get(
    "/policies/{policy_id}/versions/{number}",
    response_model=VersionOut,
    tags=["policies"],
    responses=errors(401, 403, 404, 422),
)
def read_version(
    session: SessionDep, principal: Viewer, policy_id: IdPath, number: IdPath
) -> VersionOut:
    return version_out(session, get_version(session, principal.council_id, policy_id, number))


# --- activation and rollback ----------------------------------------------------------------------


def _runnable(session: Session, version: PolicyVersion, group: Group) -> Policy:
    """The validated policy of ``version``, refused if invalid or unfit for ``group``'s lamps."""
    what = f"policy '{version.policy.name}' version {version.number}"
    policy, issues = _parse(version.document)
    if not version.valid or policy is None:
        raise PolicyInvalidError(
            f"{what} is invalid, so it cannot be used; save a corrected version",
            issues=issues or [ValidationIssue(i["where"], i["message"]) for i in version.issues],
        )
    issues = class_issues(session, policy, group)
    if issues:
        raise PolicyInvalidError(f"{what} does not cover the lamps of the group", issues=issues)
    return policy


def activation_out(act: Activation) -> ActivationOut:
    return ActivationOut(
        id=act.id,
        group_id=act.group_id,
        group_name=act.group.name,
        policy_id=act.version.policy_id,
        policy_name=act.version.policy.name,
        version=act.version.number,
        active=act.active,
        activated_by=act.activated_by,
        activated_ns=act.activated_ns,
        deactivated_by=act.deactivated_by,
        deactivated_ns=act.deactivated_ns,
        rolled_back_from=act.rolled_back_from,
        dry_run_id=act.dry_run_id,
    )


def _current(session: Session, group: Group) -> Activation | None:
    return session.scalar(
        select(Activation).where(
            Activation.council_id == group.council_id,
            Activation.group_id == group.id,
            Activation.active.is_(True),
        )
    )


def _put_in_force(
    session: Session,
    principal: Principal,
    version: PolicyVersion,
    group: Group,
    now_ns: int,
    *,
    rolled_back_from: int | None = None,
) -> Activation:
    _runnable(session, version, group)
    previous = _current(session, group)
    if previous is not None:
        previous.active = False
        previous.deactivated_by = principal.actor
        previous.deactivated_ns = now_ns
        session.flush()
    dry_run = session.scalar(
        select(DryRun.id)
        .where(
            DryRun.council_id == group.council_id,
            DryRun.policy_version_id == version.id,
            DryRun.group_id == group.id,
            DryRun.status == JobStatus.SUCCEEDED,
        )
        .order_by(DryRun.finished_ns.desc())
        .limit(1)
    )
    act = Activation(
        council_id=group.council_id,
        group_id=group.id,
        policy_version_id=version.id,
        active=True,
        activated_by=principal.actor,
        activated_ns=now_ns,
        rolled_back_from=rolled_back_from,
        dry_run_id=dry_run,
    )
    session.add(act)
    session.flush()
    audit(
        session,
        principal,
        "policy.rollback" if rolled_back_from is not None else "policy.activate",
        f"group:{group.id}",
        now_ns,
        {
            "group": group.name,
            "policy_id": version.policy_id,
            "policy": version.policy.name,
            "version": version.number,
            "activation_id": act.id,
            "replaced_activation_id": previous.id if previous is not None else None,
        },
    )
    return act


@router.post(
    "/policies/{policy_id}/versions/{number}/activate",
    response_model=ActivationOut,
    status_code=201,
    tags=["policies"],
    responses=errors(401, 403, 404, 413, 422),
)
def activate(
    ctx: CtxDep,
    session: SessionDep,
    principal: Engineer,
    policy_id: IdPath,
    number: IdPath,
    body: ActivateIn,
) -> ActivationOut:
    """Put this version in force on a group (replacing the group's active version).

    Refused (422, issues in ``errors``) if the version fails validation or does not list the
    lighting classes of the group's lamps.
    """
    version = get_version(session, principal.council_id, policy_id, number)
    group = get_group(session, principal.council_id, body.group_id)
    act = _put_in_force(session, principal, version, group, ctx.clock())
    session.commit()
    return activation_out(act)


@router.get(
    "/groups/{group_id}/activations",
    response_model=Page[ActivationOut],
    tags=["groups"],
    responses=errors(401, 403, 404, 422),
)
def list_activations(
    session: SessionDep, principal: Viewer, group_id: IdPath, paging: Paging
) -> Page[ActivationOut]:
    """The group's activation history, newest first."""
    group = get_group(session, principal.council_id, group_id)
    stmt = (
        select(Activation)
        .where(Activation.council_id == principal.council_id, Activation.group_id == group.id)
        .order_by(Activation.activated_ns.desc(), Activation.id.desc())
    )
    return paginate(session, stmt, paging, activation_out)


@router.post(
    "/groups/{group_id}/rollback",
    response_model=ActivationOut,
    status_code=201,
    tags=["groups"],
    responses=errors(401, 403, 404, 409, 413, 422),
)
def rollback(
    ctx: CtxDep, session: SessionDep, principal: Engineer, group_id: IdPath, body: RollbackIn
) -> ActivationOut:
    """Put an earlier activation's policy version back in force (a new activation records it)."""
    group = get_group(session, principal.council_id, group_id)
    current = _current(session, group)
    if body.activation_id is not None:
        target = session.scalar(
            select(Activation).where(
                Activation.council_id == principal.council_id,
                Activation.group_id == group.id,
                Activation.id == body.activation_id,
            )
        )
        if target is None:
            raise NotFoundError("activation of this group")
        if current is not None and target.id == current.id:
            raise ConflictError("that activation is the one in force; pick an earlier one")
    else:
        stmt = select(Activation).where(
            Activation.council_id == principal.council_id,
            Activation.group_id == group.id,
            Activation.active.is_(False),
        )
        if current is not None:
            stmt = stmt.where(Activation.id < current.id)
        target = session.scalar(stmt.order_by(Activation.id.desc()).limit(1))
        if target is None:
            raise ConflictError("the group has no earlier activation to roll back to")
    act = _put_in_force(
        session,
        principal,
        target.version,
        group,
        ctx.clock(),
        rolled_back_from=current.id if current is not None else target.id,
    )
    session.commit()
    return activation_out(act)


@router.delete(
    "/groups/{group_id}/activation",
    status_code=204,
    tags=["groups"],
    responses=errors(401, 403, 404, 409, 422),
)
def deactivate(ctx: CtxDep, session: SessionDep, principal: Engineer, group_id: IdPath) -> Response:
    """Take the group's policy out of force: its lamps fall back to the fail-bright default."""
    group = get_group(session, principal.council_id, group_id)
    current = _current(session, group)
    if current is None:
        raise ConflictError("no policy is active on this group")
    now_ns = ctx.clock()
    current.active = False
    current.deactivated_by = principal.actor
    current.deactivated_ns = now_ns
    audit(
        session,
        principal,
        "policy.deactivate",
        f"group:{group.id}",
        now_ns,
        {"group": group.name, "activation_id": current.id},
    )
    session.commit()
    return Response(status_code=204)


# --- dry runs ---------------------------------------------------------------------------------------


def job_out(job: DryRun) -> JobOut:
    return JobOut(
        id=job.id,
        status=job.status,
        progress_frac=job.progress_frac,
        stage=job.stage,
        policy_id=job.version.policy_id,
        policy_name=job.version.policy.name,
        version=job.version.number,
        group_id=job.group_id,
        params=job.params,
        error=job.error,
        created_by=job.created_by,
        created_ns=job.created_ns,
        started_ns=job.started_ns,
        finished_ns=job.finished_ns,
    )


@router.post(
    "/policies/{policy_id}/versions/{number}/dry-runs",
    response_model=JobOut,
    status_code=202,
    tags=["jobs"],
    responses=errors(401, 403, 404, 413, 422),
)
def start_dry_run(
    ctx: CtxDep,
    session: SessionDep,
    principal: Engineer,
    policy_id: IdPath,
    number: IdPath,
    body: DryRunIn,
) -> JobOut:
    """Simulate this version on a group's lamps over recent or chosen nights, in the background.

    Poll ``GET /api/v1/jobs/{id}`` for progress; the simulator's report is at
    ``GET /api/v1/jobs/{id}/report`` once the job has succeeded.
    """
    version = get_version(session, principal.council_id, policy_id, number)
    group = get_group(session, principal.council_id, body.group_id)
    _runnable(session, version, group)
    limits = ctx.settings
    n_lamps = len(
        session.scalars(
            select(LampRow.id).where(
                LampRow.council_id == principal.council_id, LampRow.group_id == group.id
            )
        ).all()
    )
    issues = []
    if n_lamps == 0:
        issues.append(ValidationIssue("body.group_id", "the group has no lamps to simulate"))
    elif n_lamps > limits.dry_run_max_lamps:
        issues.append(
            ValidationIssue(
                "body.group_id",
                f"the group has {n_lamps} lamps; a dry run takes at most "
                f"{limits.dry_run_max_lamps} (use the planner's simulator for whole towns)",
            )
        )
    if body.nights > limits.dry_run_max_nights:
        issues.append(
            ValidationIssue(
                "body.nights", f"{body.nights} is more than the {limits.dry_run_max_nights} allowed"
            )
        )
    if issues:
        raise InvalidInputError("the dry run cannot start", issues=issues)
    now_ns = ctx.clock()
    council_tz = group_tz(session, principal.council_id)
    first = body.first_night or recent_first_night(now_ns, council_tz, body.nights)
    params = body.model_dump(mode="json") | {"first_night": first.isoformat()}
    job = DryRun(
        id=str(uuid.uuid4()),
        council_id=principal.council_id,
        policy_version_id=version.id,
        group_id=group.id,
        status=JobStatus.QUEUED,
        progress_frac=0.0,
        stage="queued",
        params=params,
        created_by=principal.actor,
        created_ns=now_ns,
    )
    session.add(job)
    session.flush()
    audit(
        session,
        principal,
        "dry_run.start",
        f"job:{job.id}",
        now_ns,
        {"policy": version.policy.name, "version": version.number, "group": group.name} | params,
    )
    session.commit()
    ctx.jobs.submit(job.id)
    return job_out(job)


def group_tz(session: Session, council_id: str) -> str:
    council = session.get(Council, council_id)
    assert council is not None
    return council.tz


def _job(session: Session, council_id: str, job_id: str) -> DryRun:
    job = session.scalar(select(DryRun).where(DryRun.council_id == council_id, DryRun.id == job_id))
    if job is None:
        raise NotFoundError("job")
    return job


@router.get("/jobs", response_model=Page[JobOut], tags=["jobs"], responses=errors(401, 403, 422))
def list_jobs(session: SessionDep, principal: Viewer, paging: Paging) -> Page[JobOut]:
    """The council's dry-run jobs, newest first."""
    stmt = (
        select(DryRun)
        .where(DryRun.council_id == principal.council_id)
        .order_by(DryRun.created_ns.desc(), DryRun.id)
    )
    return paginate(session, stmt, paging, job_out)


@router.get(
    "/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=errors(401, 403, 404, 422)
)
def read_job(session: SessionDep, principal: Viewer, job_id: JobIdPath) -> JobOut:
    """A job's status and progress (0..1)."""
    return job_out(_job(session, principal.council_id, job_id))


@router.get(
    "/jobs/{job_id}/report",
    response_model=SimulationReport,
    tags=["jobs"],
    responses=errors(401, 403, 404, 409, 422),
)
def job_report(session: SessionDep, principal: Viewer, job_id: JobIdPath) -> Any:
    """The simulator's report (docs/simulation-report.md) of a job that succeeded."""
    job = _job(session, principal.council_id, job_id)
    if job.status is not JobStatus.SUCCEEDED or job.report is None:
        raise ConflictError(
            f"the job is {job.status.value}; a report exists only once it has succeeded"
            + (f" (error: {job.error})" if job.error else "")
        )
    return job.report

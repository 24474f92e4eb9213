"""Helpers every router uses: council-scoped lookups, pagination, audit and error docs.

The lookups are the only way routes fetch an object by id, and each one filters by the
caller's council: an id of another council's object gives the same 404 as an unknown one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.db import Activation, Group, LampRow, PolicyRow, PolicyVersion, add_audit
from api.errors import NotFoundError, PolicyInvalidError
from api.schemas import MAX_ID, Page, Problem
from api.security import Principal
from controller.policy import Policy, validate_policy
from domain.errors import PolicyError, ValidationIssue
from domain.records import LightingClass

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

#: Largest page a list returns.
PAGE_MAX = 500

#: An integer id in a URL path.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


def paginate(
    session: Session, stmt: Select[R], params: PageParams, convert: Callable[[R], M]
) -> Page[M]:
    """Run ``stmt`` for one page; ``total`` counts the whole list."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(params.limit).offset(params.offset)).unique().all()
    return Page[M](
        items=[convert(row) for row in rows], total=total, limit=params.limit, offset=params.offset
    )


def audit(
    session: Session,
    principal: Principal,
    action: str,
    target: str,
    now_ns: int,
    detail: dict[str, Any] | None = None,
) -> None:
    add_audit(session, principal.council_id, principal.actor, action, target, now_ns, detail)


def get_lamp(session: Session, council_id: str, lamp_id: str) -> LampRow:
    row = session.scalar(
        select(LampRow).where(LampRow.council_id == council_id, LampRow.lamp_id == lamp_id)
    )
    if row is None:
        raise NotFoundError("lamp")
    return row


def get_group(session: Session, council_id: str, group_id: int) -> Group:
    row = session.scalar(select(Group).where(Group.council_id == council_id, Group.id == group_id))
    if row is None:
        raise NotFoundError("group")
    return row


def get_policy(session: Session, council_id: str, policy_id: int) -> PolicyRow:
    row = session.scalar(
        select(PolicyRow).where(PolicyRow.council_id == council_id, PolicyRow.id == policy_id)
    )
    if row is None:
        raise NotFoundError("policy")
    return row


def get_version(session: Session, council_id: str, policy_id: int, number: int) -> PolicyVersion:
    row = session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.council_id == council_id,
            PolicyVersion.policy_id == policy_id,
            PolicyVersion.number == number,
        )
    )
    if row is None:
        raise NotFoundError("policy version")
    return row


_ERROR_TEXT = {
    401: "No credentials, or credentials that are not valid.",
    403: "The caller's role does not allow this operation.",
    404: "No such object in the caller's council.",
    409: "The request contradicts the current state.",
    413: "The request body is too large.",
    422: "The request is invalid; `errors` lists each problem.",
    503: "A service this operation needs is not configured.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, all problem+json (see api.app.openapi)."""
    return {code: {"model": Problem, "description": _ERROR_TEXT[code]} for code in codes}


def deduplicate(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def class_issues(session: Session, policy: Policy, group: Group) -> list[ValidationIssue]:
    """A problem for each lighting class among ``group``'s lamps that ``policy`` does not list
    (compiling a policy for a lamp of another class is refused, so it could not run)."""
    classes = Counter(
        session.scalars(
            select(LampRow.lighting_class).where(
                LampRow.council_id == group.council_id, LampRow.group_id == group.id
            )
        )
    )
    allowed = set(policy.lighting_classes)
    return [
        ValidationIssue(
            "lighting_classes",
            f"group '{group.name}' has {n} lamp(s) of class {cls.value}, which the policy does "
            f"not list; add {cls.value} to lighting_classes or move those lamps",
        )
        for cls, n in sorted(classes.items(), key=lambda item: item[0].value)
        if LightingClass(cls) not in allowed
    ]


def check_groups_covered(
    session: Session, council_id: str, group_ids: Iterable[int | None]
) -> None:
    """Refuse a change (before it is committed) that leaves a lamp in a group whose active
    policy does not list the lamp's lighting class."""
    session.flush()
    issues: list[ValidationIssue] = []
    for group_id in sorted({g for g in group_ids if g is not None}):
        act = session.scalar(
            select(Activation).where(
                Activation.council_id == council_id,
                Activation.group_id == group_id,
                Activation.active.is_(True),
            )
        )
        if act is None:
            continue
        try:
            policy = validate_policy(act.version.document)
        except PolicyError:
            continue  # validated when activated; a stricter validator is the controller's concern
        issues += class_issues(session, policy, act.group)
    if issues:
        raise PolicyInvalidError(
            "the change would put lamps under a policy that does not cover their lighting class",
            issues=issues,
        )

"""Login, the caller's council, and (for admins) users and API keys."""

from __future__ import annotations

import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Response
from sqlalchemy import select

from api.db import ApiKey, Council, User
from api.deps import Admin, CtxDep, SessionDep, Viewer
from api.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from api.routes.common import IdPath, PageParams, audit, errors, page_params, paginate
from api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    CouncilOut,
    CouncilPatch,
    Me,
    Page,
    Token,
    UserCreate,
    UserOut,
    UserPatch,
)
from api.security import api_key_hash, create_access_token, new_api_key
from domain.errors import ValidationIssue

router = APIRouter()
Paging = Annotated[PageParams, Depends(page_params)]


@router.post(
    "/auth/token",
    response_model=Token,
    tags=["auth"],
    summary="Log in (OAuth2 password flow)",
    responses=errors(401, 422),
)
def login(
    ctx: CtxDep,
    session: SessionDep,
    username: Annotated[str, Form(min_length=1, max_length=100)],
    password: Annotated[str, Form(min_length=1, max_length=200)],
) -> Token:
    """Exchange a username and password for a bearer token with an expiry."""
    user = session.scalar(select(User).where(User.username == username))
    ok = ctx.passwords.verify(password, user.password_hash if user is not None else None)
    if user is None or not ok or not user.active:
        raise AuthenticationError("wrong username or password")
    now_ns = ctx.clock()
    lifetime_s = ctx.settings.token_minutes * 60
    token, expires_ns = create_access_token(
        secret_key=ctx.settings.secret_key.get_secret_value(),
        user_id=user.id,
        council_id=user.council_id,
        now_ns=now_ns,
        lifetime_s=lifetime_s,
    )
    return Token(
        access_token=token, token_type="bearer", expires_in=lifetime_s, expires_ns=expires_ns
    )


@router.get("/auth/me", response_model=Me, tags=["auth"], responses=errors(401, 403))
def me(session: SessionDep, principal: Viewer) -> Me:
    """Who the credentials belong to."""
    council = session.get(Council, principal.council_id)
    assert council is not None  # users and keys are deleted with their council
    return Me(
        council_id=council.id,
        council_name=council.name,
        role=principal.role,
        actor=principal.actor,
    )


@router.get("/council", response_model=CouncilOut, tags=["council"], responses=errors(401, 403))
def get_council(session: SessionDep, principal: Viewer) -> Council:
    council = session.get(Council, principal.council_id)
    assert council is not None
    return council


@router.patch(
    "/council", response_model=CouncilOut, tags=["council"], responses=errors(401, 403, 422)
)
def patch_council(
    ctx: CtxDep, session: SessionDep, principal: Admin, body: CouncilPatch
) -> Council:
    council = session.get(Council, principal.council_id)
    assert council is not None
    changes = body.model_dump(exclude_none=True)
    if "tz" in changes:
        try:
            zoneinfo.ZoneInfo(changes["tz"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidInputError(
                "the time zone is not known",
                issues=[
                    ValidationIssue(
                        "body.tz",
                        f"{changes['tz']!r} is not an IANA time zone; write e.g. Europe/London",
                    )
                ],
            ) from None
    for key, value in changes.items():
        setattr(council, key, value)
    audit(session, principal, "council.update", f"council:{council.id}", ctx.clock(), changes)
    session.commit()
    return council


# --- users ----------------------------------------------------------------------------------------


def _user(session: SessionDep, council_id: str, user_id: int) -> User:
    user = session.scalar(select(User).where(User.council_id == council_id, User.id == user_id))
    if user is None:
        raise NotFoundError("user")
    return user


@router.get("/users", response_model=Page[UserOut], tags=["users"], responses=errors(401, 403, 422))
def list_users(session: SessionDep, principal: Admin, paging: Paging) -> Page[UserOut]:
    stmt = select(User).where(User.council_id == principal.council_id).order_by(User.username)
    return paginate(session, stmt, paging, UserOut.model_validate)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    tags=["users"],
    responses=errors(401, 403, 409, 422),
)
def create_user(ctx: CtxDep, session: SessionDep, principal: Admin, body: UserCreate) -> User:
    if session.scalar(select(User.id).where(User.username == body.username)) is not None:
        raise ConflictError("this username is taken; usernames are unique across the service")
    now_ns = ctx.clock()
    user = User(
        council_id=principal.council_id,
        username=body.username,
        password_hash=ctx.passwords.hash(body.password),
        role=body.role,
        active=True,
        created_ns=now_ns,
    )
    session.add(user)
    session.flush()
    audit(session, principal, "user.create", f"user:{user.username}", now_ns, {"role": body.role})
    session.commit()
    return user


@router.get(
    "/users/{user_id}", response_model=UserOut, tags=["users"], responses=errors(401, 403, 404, 422)
)
def get_user(session: SessionDep, principal: Admin, user_id: IdPath) -> User:
    return _user(session, principal.council_id, user_id)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    tags=["users"],
    responses=errors(401, 403, 404, 409, 422),
)
def patch_user(
    ctx: CtxDep, session: SessionDep, principal: Admin, user_id: IdPath, body: UserPatch
) -> User:
    user = _user(session, principal.council_id, user_id)
    if user.id == principal.user_id and (
        (body.role is not None and body.role != user.role) or body.active is False
    ):
        raise ConflictError("you cannot demote or disable yourself; ask another admin")
    detail: dict[str, object] = {}
    if body.role is not None:
        user.role = body.role
        detail["role"] = body.role
    if body.active is not None:
        user.active = body.active
        detail["active"] = body.active
    if body.password is not None:
        user.password_hash = ctx.passwords.hash(body.password)
        detail["password"] = "changed"
    audit(session, principal, "user.update", f"user:{user.username}", ctx.clock(), detail)
    session.commit()
    return user


@router.delete(
    "/users/{user_id}", status_code=204, tags=["users"], responses=errors(401, 403, 404, 409, 422)
)
def delete_user(ctx: CtxDep, session: SessionDep, principal: Admin, user_id: IdPath) -> Response:
    user = _user(session, principal.council_id, user_id)
    if user.id == principal.user_id:
        raise ConflictError("you cannot delete yourself; ask another admin")
    session.delete(user)
    audit(session, principal, "user.delete", f"user:{user.username}", ctx.clock())
    session.commit()
    return Response(status_code=204)


# --- API keys -------------------------------------------------------------------------------------


@router.get(
    "/api-keys", response_model=Page[ApiKeyOut], tags=["api-keys"], responses=errors(401, 403, 422)
)
def list_api_keys(session: SessionDep, principal: Admin, paging: Paging) -> Page[ApiKeyOut]:
    stmt = select(ApiKey).where(ApiKey.council_id == principal.council_id).order_by(ApiKey.id)
    return paginate(session, stmt, paging, ApiKeyOut.model_validate)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    tags=["api-keys"],
    responses=errors(401, 403, 422),
)
def create_api_key(
    ctx: CtxDep, session: SessionDep, principal: Admin, body: ApiKeyCreate
) -> ApiKeyCreated:
    """Create a key for a machine. The response holds the key; it cannot be shown again."""
    key = new_api_key()
    now_ns = ctx.clock()
    row = ApiKey(
        council_id=principal.council_id,
        name=body.name,
        prefix=key[:10],
        key_hash=api_key_hash(key),
        role=body.role,
        created_by=principal.actor,
        created_ns=now_ns,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        principal,
        "api_key.create",
        f"api_key:{row.id}",
        now_ns,
        {"name": body.name, "role": body.role},
    )
    session.commit()
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@router.delete(
    "/api-keys/{key_id}", status_code=204, tags=["api-keys"], responses=errors(401, 403, 404, 422)
)
def revoke_api_key(ctx: CtxDep, session: SessionDep, principal: Admin, key_id: IdPath) -> Response:
    """Revoke a key at once; it stays listed, with ``revoked_ns``."""
    row = session.scalar(
        select(ApiKey).where(ApiKey.council_id == principal.council_id, ApiKey.id == key_id)
    )
    if row is None:
        raise NotFoundError("API key")
    now_ns = ctx.clock()
    if row.revoked_ns is None:
        row.revoked_ns = now_ns
        audit(session, principal, "api_key.revoke", f"api_key:{row.id}", now_ns, {"name": row.name})
        session.commit()
    return Response(status_code=204)

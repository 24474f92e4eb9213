"""Request dependencies: the app context, a database session, and who is calling.

Every route except login and health depends on :func:`require` (through the ``Viewer``,
``Engineer`` and ``Admin`` aliases), which authenticates the request by bearer token or
``X-API-Key`` header and checks the role. The resulting :class:`~api.security.Principal` carries
the council that every query of the request is scoped to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.db import ApiKey, Role, User
from api.errors import AuthenticationError, PermissionDeniedError
from api.jobs import DryRunRunner
from api.live import TelemetryReader
from api.security import Passwords, Principal, api_key_hash, decode_access_token
from api.settings import ApiSettings

#: Returns the current time, UTC epoch nanoseconds.
Clock = Callable[[], int]

TOKEN_URL = "/api/v1/auth/token"


@dataclass(frozen=True, eq=False)
class AppContext:
    """Everything a request may need, built once by :func:`api.app.create_app`."""

    settings: ApiSettings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    passwords: Passwords
    jobs: DryRunRunner
    telemetry: TelemetryReader | None


def get_ctx(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

# auto_error=False: a missing credential is answered by get_principal as problem+json.
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key created by a council admin."
)


def get_principal(
    ctx: CtxDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    if api_key:
        key = session.scalar(
            select(ApiKey).where(
                ApiKey.key_hash == api_key_hash(api_key), ApiKey.revoked_ns.is_(None)
            )
        )
        if key is None:
            raise AuthenticationError("the API key is not valid (unknown or revoked)")
        return Principal(
            council_id=key.council_id, role=key.role, actor=f"api-key:{key.name}", api_key_id=key.id
        )
    if token:
        claims = decode_access_token(
            token, secret_key=ctx.settings.secret_key.get_secret_value(), now_ns=ctx.clock()
        )
        user = session.get(User, claims.user_id)
        if user is None or not user.active or user.council_id != claims.council_id:
            raise AuthenticationError(
                "the access token's user no longer exists or is disabled; log in again"
            )
        return Principal(
            council_id=user.council_id,
            role=user.role,
            actor=f"user:{user.username}",
            user_id=user.id,
        )
    raise AuthenticationError(
        f"authentication required: send 'Authorization: Bearer <token>' (from {TOKEN_URL}) "
        "or an 'X-API-Key' header"
    )


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting callers whose role is ``role`` or above."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.allows(role):
            raise PermissionDeniedError(
                f"this operation needs the {role.value} role; you have {principal.role.value}"
            )
        return principal

    return check


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Engineer = Annotated[Principal, Depends(require(Role.ENGINEER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

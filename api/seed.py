"""Creating a council and its first admin (the CLI and the demo use it; so do the tests)."""

from __future__ import annotations

import time
import zoneinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import Council, Role, User, add_audit
from api.security import Passwords


class SeedError(ValueError):
    """The council or user cannot be created as asked."""


def create_council_with_admin(
    session: Session,
    council_id: str,
    name: str,
    username: str,
    password: str,
    *,
    tz: str = "Europe/London",
    passwords: Passwords | None = None,
    now_ns: int | None = None,
) -> tuple[Council, User]:
    """Create council ``council_id`` with one admin user, and commit.

    Refuses an existing council id or username, an unknown time zone and a password shorter
    than 10 characters (the API's own rule for users).
    """
    if not council_id or len(council_id) > 64:
        raise SeedError(f"council id {council_id!r} must have 1-64 characters")
    if session.get(Council, council_id) is not None:
        raise SeedError(f"council {council_id!r} already exists")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise SeedError(f"username {username!r} is taken")
    if len(password) < 10:
        raise SeedError("the password must have at least 10 characters")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise SeedError(f"{tz!r} is not an IANA time zone; write e.g. Europe/London") from err
    now = time.time_ns() if now_ns is None else now_ns
    council = Council(id=council_id, name=name, tz=tz, created_ns=now)
    user = User(
        council_id=council_id,
        username=username,
        password_hash=(passwords or Passwords()).hash(password),
        role=Role.ADMIN,
        active=True,
        created_ns=now,
    )
    session.add_all([council, user])
    session.flush()
    add_audit(
        session,
        council_id,
        "system:seed",
        "council.create",
        f"council:{council_id}",
        now,
        {"admin": username},
    )
    session.commit()
    return council, user

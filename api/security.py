"""Credentials: argon2 password hashes, signed access tokens with expiry, and API keys.

* Passwords are hashed with argon2id through pwdlib. A login for an unknown user still spends one
  verification on a dummy hash, so response time does not tell which usernames exist.
* Access tokens are HS256 JWTs (PyJWT) carrying the user id, the council and an expiry. The
  expiry is checked against the service's clock (time is an argument), not the host's, so tests
  move time instead of sleeping. Each request reloads the user, so a deleted or demoted user
  loses access at once, token or not.
* API keys are 32 random bytes (``sl_`` + URL-safe base64). They are high-entropy, so one SHA-256
  is a sound hash for them (a slow password hash would only slow every machine request); only
  the hash is stored and the key is shown once, when created.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from api.db import Role
from api.errors import AuthenticationError

_ALGORITHM = "HS256"
_NS = 1_000_000_000
API_KEY_PREFIX = "sl_"


class Passwords:
    """Argon2id hashing with the configured cost."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHash((Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib),))
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        """True if ``password`` matches; with no hash (unknown user) spends the same time."""
        if password_hash is None:
            self._hasher.verify(password, self._dummy)
            return False
        return self._hasher.verify(password, password_hash)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    council_id: str
    expires_ns: int


def create_access_token(
    *, secret_key: str, user_id: int, council_id: str, now_ns: int, lifetime_s: int
) -> tuple[str, int]:
    """A signed token for ``user_id`` and its expiry time (ns)."""
    issued_s = now_ns // _NS
    expires_s = issued_s + lifetime_s
    token = jwt.encode(
        {
            "sub": str(user_id),
            "council": council_id,
            "iat": issued_s,
            "exp": expires_s,
            "typ": "access",
        },
        secret_key,
        algorithm=_ALGORITHM,
    )
    return token, expires_s * _NS


def decode_access_token(token: str, *, secret_key: str, now_ns: int) -> TokenClaims:
    """The claims of a valid, unexpired token; :class:`AuthenticationError` otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[_ALGORITHM],
            # Time claims are checked below against the service clock.
            options={"require": ["sub", "exp", "iat"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError as err:
        raise AuthenticationError(
            "the access token is not valid (malformed, or not signed by this service); "
            "log in again at /api/v1/auth/token"
        ) from err
    exp, sub, council = claims.get("exp"), claims.get("sub"), claims.get("council")
    if (
        claims.get("typ") != "access"
        or not isinstance(exp, int)
        or not isinstance(sub, str)
        or not sub.isdigit()
        or not isinstance(council, str)
    ):
        raise AuthenticationError(
            "the access token is not valid; log in again at /api/v1/auth/token"
        )
    if exp * _NS <= now_ns:
        raise AuthenticationError(
            "the access token has expired; log in again at /api/v1/auth/token"
        )
    return TokenClaims(user_id=int(sub), council_id=council, expires_ns=exp * _NS)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the council every query is scoped to, the role, and the audit name."""

    council_id: str
    role: Role
    #: ``user:<username>`` or ``api-key:<name>``; what audit entries record.
    actor: str
    user_id: int | None = None
    api_key_id: int | None = None

    def allows(self, role: Role) -> bool:
        return self.role.rank >= role.rank

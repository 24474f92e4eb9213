"""The control API's settings, read once at the entry point and passed down frozen.

Every field can be set from the environment with the ``STREETLIGHT_`` prefix
(``STREETLIGHT_DATABASE_URL``, ``STREETLIGHT_SECRET_KEY``...). The development secret is
refused outside ``environment="development"``: tokens signed with a key published in the source
would let anyone log in as anyone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Signs tokens in development only; any other environment must set its own key.
DEVELOPMENT_SECRET_KEY = "development-only-secret-key-change-me-0123456789"


class ApiSettings(BaseSettings):
    """Settings of the control API (see the module docstring for the environment variables)."""

    model_config = SettingsConfigDict(env_prefix="STREETLIGHT_", frozen=True, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./streetlight.db"
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET_KEY)
    #: Lifetime of an access token from the password flow.
    token_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    #: Largest inventory upload accepted; bigger requests get 413 before they are read.
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    #: Largest JSON request body accepted (policy documents, lamp records...).
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    #: Dry-run jobs running at once (each simulation uses a core).
    job_workers: int = Field(1, ge=1, le=16)
    #: Lamps a dry run may simulate, so that one request cannot occupy the service for hours.
    dry_run_max_lamps: int = Field(5000, ge=1)
    #: Nights a dry run may simulate.
    dry_run_max_nights: int = Field(14, ge=1, le=366)
    #: A gateway not heard from for this long is reported offline in live status.
    gateway_stale_s: float = Field(300.0, gt=0)
    #: Argon2 cost; the defaults are pwdlib's (RFC 9106 second recommendation, 64 MiB).
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=64)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @model_validator(mode="after")
    def _no_default_secret_outside_development(self) -> ApiSettings:
        secret = self.secret_key.get_secret_value()
        if self.environment != "development":
            if secret == DEVELOPMENT_SECRET_KEY:
                raise ValueError(
                    f"secret_key is the development default, which is refused in the "
                    f"{self.environment} environment; set STREETLIGHT_SECRET_KEY to a random "
                    "value of at least 32 characters (python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))')"
                )
            if len(secret) < 32:
                raise ValueError(
                    f"secret_key has {len(secret)} characters; use at least 32 random ones"
                )
        return self

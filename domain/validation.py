"""Checks and error conversions shared by every validated document (scenarios, sweeps, devices
and gateway configuration files): one wording for one mistake, wherever it is made."""

from __future__ import annotations

import zoneinfo

from pydantic import ValidationError

from domain.errors import ValidationIssue


def iana_time_zone(value: str) -> str:
    """``value`` if it names an IANA time zone; a ``ValueError`` saying what to write if not."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"{value!r} is not an IANA time zone; write e.g. Europe/London") from err
    return value


def schema_issues(err: ValidationError, *, unknown_key: str) -> list[ValidationIssue]:
    """pydantic's errors as located issues; ``unknown_key`` says where the valid keys are listed."""
    out = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(document)"
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; {unknown_key}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        out.append(ValidationIssue(where, msg))
    return out

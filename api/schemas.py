"""Request and response bodies of the control API (pydantic), shared by the routes.

Inputs refuse unknown fields, so a misspelt field is an error rather than silently ignored.
Times are UTC epoch nanoseconds (``*_ns``), levels fractions of full output (``*_frac``),
powers watts, energies watt-hours or kilowatt-hours as named.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.db import JobStatus, Role
from domain.records import DimmingCurve, LightingClass

#: Largest id and time a request may give (SQLite and PostgreSQL hold 64-bit integers).
MAX_ID = 2**31 - 1
MAX_NS = 2**63 - 1

T = TypeVar("T")


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("contains a NUL character; remove it")
    return text


#: A short display name: printable, no surrounding spaces.
Name = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$",
    ),
]
#: A lamp id: anything printable without '/', which a URL path could not carry.
LampId = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f/\s]([^\x00-\x1f\x7f/]*[^\x00-\x1f\x7f/\s])?$",
    ),
]
ShortText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_nul)]
LongText = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_no_nul)]
Document = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200_000),
    AfterValidator(_no_nul),
]
Ns = Annotated[int, Field(ge=0, le=MAX_NS)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Issue(BaseModel):
    where: str = Field(description="where the problem is: a field path or 'row 17'")
    message: str = Field(description="what is wrong and how to fix it")


class Problem(BaseModel):
    """An error (RFC 9457 problem details), media type application/problem+json."""

    type: str = Field(
        description="URN naming the kind of problem, e.g. urn:streetlight:problem:not-found"
    )
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what went wrong, for people")
    errors: list[Issue] | None = Field(None, description="located problems, for validation errors")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest or alphabetical first as each list says."""

    items: list[T]
    total: int = Field(description="items in the whole list, across pages")
    limit: int
    offset: int


class Health(BaseModel):
    status: Literal["ok"]
    time_ns: int


# --- auth and council ---------------------------------------------------------------------------


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds until the token expires (RFC 6749)")
    expires_ns: int


class Me(BaseModel):
    council_id: str
    council_name: str
    role: Role
    actor: str


class CouncilOut(_Out):
    id: str
    name: str
    tz: str


class CouncilPatch(_In):
    name: Name | None = None
    tz: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="IANA time zone of the council's lamps, e.g. Europe/London"
    )


Username = Annotated[
    str, StringConstraints(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")
]
Password = Annotated[str, StringConstraints(min_length=10, max_length=200), AfterValidator(_no_nul)]


class UserCreate(_In):
    username: Username
    password: Password
    role: Role


class UserPatch(_In):
    password: Password | None = None
    role: Role | None = None
    active: bool | None = None


class UserOut(_Out):
    id: int
    username: str
    role: Role
    active: bool
    created_ns: int


class ApiKeyCreate(_In):
    name: Name
    role: Role


class ApiKeyOut(_Out):
    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    role: Role
    created_by: str
    created_ns: int
    revoked_ns: int | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself; shown once, only its hash is stored")


# --- inventory ----------------------------------------------------------------------------------


class LampFields(_In):
    lon_deg: float = Field(ge=-180.0, le=180.0, description="WGS84 longitude")
    lat_deg: float = Field(ge=-90.0, le=90.0, description="WGS84 latitude")
    rated_power_w: float = Field(gt=0.0, le=5000.0, description="input power at full output")
    standby_power_w: float = Field(0.5, ge=0.0, le=100.0, description="node draw, 24 h a day")
    lighting_class: LightingClass = LightingClass.P4
    street: ShortText = ""
    order_on_street: int = Field(0, ge=0, le=MAX_ID)
    driver_curve: Annotated[str, StringConstraints(max_length=100), AfterValidator(_no_nul)] = (
        "default"
    )
    dimming_curve: DimmingCurve = DimmingCurve.DALI
    controller_address: ShortText = ""
    lamp_type: Annotated[str, StringConstraints(max_length=50), AfterValidator(_no_nul)] = ""
    gateway_id: Annotated[str, StringConstraints(max_length=100), AfterValidator(_no_nul)] = ""
    group_id: Id | None = None


class LampCreate(LampFields):
    lamp_id: LampId


class LampPatch(_In):
    lon_deg: float | None = Field(None, ge=-180.0, le=180.0)
    lat_deg: float | None = Field(None, ge=-90.0, le=90.0)
    rated_power_w: float | None = Field(None, gt=0.0, le=5000.0)
    standby_power_w: float | None = Field(None, ge=0.0, le=100.0)
    lighting_class: LightingClass | None = None
    street: ShortText | None = None
    order_on_street: int | None = Field(None, ge=0, le=MAX_ID)
    driver_curve: (
        Annotated[str, StringConstraints(max_length=100), AfterValidator(_no_nul)] | None
    ) = None
    dimming_curve: DimmingCurve | None = None
    controller_address: ShortText | None = None
    lamp_type: Annotated[str, StringConstraints(max_length=50), AfterValidator(_no_nul)] | None = (
        None
    )
    gateway_id: (
        Annotated[str, StringConstraints(max_length=100), AfterValidator(_no_nul)] | None
    ) = None
    group_id: Id | None = Field(
        None, description="move the lamp to this group (see also clear_group)"
    )
    clear_group: bool = Field(False, description="take the lamp out of its group")


class LampOut(_Out):
    lamp_id: str
    lon_deg: float
    lat_deg: float
    rated_power_w: float
    standby_power_w: float
    lighting_class: LightingClass
    street: str
    order_on_street: int
    driver_curve: str
    dimming_curve: DimmingCurve
    controller_address: str
    lamp_type: str
    gateway_id: str
    group_id: int | None
    group_name: str | None
    created_ns: int
    updated_ns: int


class BadRowOut(BaseModel):
    row_number: int
    reason: str


class ImportOut(BaseModel):
    """The importer's per-row report, plus what the store did with the good rows."""

    source: str
    rows_read: int
    rows_imported: int = Field(description="good rows; created + updated")
    created: int
    updated: int
    bad_rows: list[BadRowOut]
    wattage_missing: int
    duplicate_ids: list[str]
    streets_derived: bool
    row_numbering: str
    groups_created: list[str]
    refused_ids: list[str] = Field(
        description="good rows not stored: their lamp id has '/' or control characters, which "
        "a URL path cannot carry"
    )


class GroupCreate(_In):
    name: Name
    description: LongText = ""


class GroupPatch(_In):
    name: Name | None = None
    description: LongText | None = None


class ActiveRef(BaseModel):
    activation_id: int
    policy_id: int
    policy_name: str
    version: int
    activated_ns: int


class GroupOut(BaseModel):
    id: int
    name: str
    description: str
    lamps: int
    active: ActiveRef | None
    created_ns: int


class Membership(_In):
    lamp_ids: list[LampId] = Field(min_length=1, max_length=10_000)


class MembershipOut(BaseModel):
    group_id: int
    added: int
    lamps: int


# --- policies -----------------------------------------------------------------------------------


class PolicyCreate(_In):
    document: Document = Field(
        description="the policy document, YAML or JSON text (docs/policies.md)"
    )
    name: Name | None = Field(None, description="defaults to the document's name")
    description: LongText = ""


class PolicyPatch(_In):
    description: LongText


class VersionCreate(_In):
    document: Document


class DocumentIn(_In):
    document: Document


class VersionSummary(BaseModel):
    number: int
    valid: bool
    issues: int = Field(description="how many validation problems")
    created_by: str
    created_ns: int


class VersionOut(BaseModel):
    policy_id: int
    policy_name: str
    number: int
    document: str
    valid: bool
    issues: list[Issue]
    created_by: str
    created_ns: int
    active_on_groups: list[int]


class PolicyOut(BaseModel):
    id: int
    name: str
    description: str
    created_by: str
    created_ns: int
    versions: int
    latest: VersionSummary
    active_on_groups: list[int]


class ValidationOut(BaseModel):
    valid: Literal[True]
    name: str
    version: int = Field(description="the document's own version field")


class ActivateIn(_In):
    group_id: Id


class RollbackIn(_In):
    activation_id: Id | None = Field(
        None,
        description="an earlier activation of this group to restore; default: the one before "
        "the current",
    )


class ActivationOut(BaseModel):
    id: int
    group_id: int
    group_name: str
    policy_id: int
    policy_name: str
    version: int
    active: bool
    activated_by: str
    activated_ns: int
    deactivated_by: str | None
    deactivated_ns: int | None
    rolled_back_from: int | None
    dry_run_id: str | None


class DryRunIn(_In):
    group_id: Id
    first_night: dt.date | None = Field(
        None,
        ge=dt.date(1971, 1, 1),
        le=dt.date(2261, 12, 31),
        description="local date the first simulated night starts; default: the most recent "
        "nights, ending last night",
    )
    nights: int = Field(1, ge=1, le=366)
    footfall_peak_per_h: float = Field(40.0, ge=0.0, le=10_000.0)
    traffic_peak_per_h: float = Field(30.0, ge=0.0, le=10_000.0)
    seed: int = Field(42, ge=0, le=MAX_ID)


class JobOut(BaseModel):
    id: str
    status: JobStatus
    progress_frac: float = Field(description="0..1")
    stage: str
    policy_id: int
    policy_name: str
    version: int
    group_id: int
    params: dict[str, Any]
    error: str | None
    created_by: str
    created_ns: int
    started_ns: int | None
    finished_ns: int | None


# --- overrides and live status ----------------------------------------------------------------


class OverrideCreate(_In):
    lamp_id: LampId | None = Field(None, description="the lamp to override (or give group_id)")
    group_id: Id | None = Field(None, description="the group to override (or give lamp_id)")
    level_frac: float | None = Field(
        description="level to hold, 0..1; null resumes the program (TALQ empty override)",
        ge=0.0,
        le=1.0,
    )
    starts_ns: Ns | None = Field(None, description="default: now")
    expires_ns: Ns | None = Field(None, description="absolute expiry; or give duration_s")
    duration_s: float | None = Field(None, gt=0.0, le=366 * 86400.0)
    reason: LongText = ""


OverrideState = Literal["pending", "active", "expired", "cancelled"]


class OverrideOut(BaseModel):
    id: int
    lamp_id: str | None
    group_id: int | None
    group_name: str | None
    level_frac: float | None
    issued_ns: int
    starts_ns: int
    expires_ns: int | None
    reason: str
    created_by: str
    cancelled_by: str | None
    cancelled_ns: int | None
    state: OverrideState


class LampStatus(BaseModel):
    lamp_id: str
    group_name: str | None
    gateway_id: str
    level_frac: float | None
    power_w: float | None
    energy_wh: float | None
    status: int | None
    status_flags: list[str]
    time_ns: int | None = Field(description="time of the latest reading; null if never heard")
    override_level_frac: float | None = Field(description="level of the override in force")
    open_alarms: list[str] = Field(description="kinds of the lamp's open alarms")


class GatewayOut(BaseModel):
    gateway_id: str
    status: str
    last_seen_ns: int | None
    online: bool = Field(description="reported online and heard from within gateway_stale_s")
    lamps: int
    detail: dict[str, Any]


class AlarmOut(BaseModel):
    id: int
    alarm_id: str
    lamp_id: str | None
    gateway_id: str | None
    kind: str
    started_ns: int
    ended_ns: int | None
    detail: str
    open: bool


# --- reports and audit --------------------------------------------------------------------------


class EnergyRow(BaseModel):
    day: dt.date
    group_id: int | None
    group_name: str | None
    lamps: int
    lamps_reporting: int
    energy_kwh: float


class EnergyReport(BaseModel):
    tz: str
    first_day: dt.date
    last_day: dt.date
    rows: list[EnergyRow]


class ComplianceRow(BaseModel):
    day: dt.date
    group_id: int | None
    group_name: str | None
    policy_id: int | None
    version: int | None
    presence_readings: int = Field(description="presence readings reported by the group's lamps")
    judged: int = Field(description="readings at a lit lamp with a recent measured level")
    below_floor: int
    below_floor_share: float | None = Field(description="below_floor / judged; null if none judged")


class ComplianceReport(BaseModel):
    tz: str
    first_day: dt.date
    last_day: dt.date
    rows: list[ComplianceRow]


class AuditOut(_Out):
    id: int
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    time_ns: int

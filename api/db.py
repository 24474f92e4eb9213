"""The configuration store: councils, users, inventory, policies, overrides, alarms and audit.

Theory of operation
-------------------
SQLAlchemy 2.0 typed models over SQLite (the embedded default) or PostgreSQL by URL. Every row
that belongs to a council carries ``council_id``, child rows included, so every query can and
does filter by it: a request's council comes from its credentials, never from the URL.

Times are int64 UTC epoch nanoseconds (``*_ns``), like the rest of the project. Levels are
fractions of full output (``level_frac``).

The composition root reads and writes the store through the functions at the end of this
module (:func:`inventory_lamps`, :func:`active_policies`, :func:`active_overrides`,
:func:`record_alarm`, :func:`record_gateway_status`). They take an open session and never
commit: the caller owns the transaction (``with factory() as s: ...; s.commit()``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)
from sqlalchemy.pool import StaticPool

from controller.policy import Override, Policy, validate_policy
from domain.errors import PolicyError, ValidationIssue
from domain.records import DimmingCurve, Lamp, LightingClass


class Role(enum.StrEnum):
    """What a user or API key may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.VIEWER: 0, Role.ENGINEER: 1, Role.ADMIN: 2}


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _enum(kind: type[enum.Enum]) -> Enum:
    # Store the values ("engineer"), not the member names, and as plain strings so PostgreSQL
    # needs no enum type migrations when a member is added.
    return Enum(kind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


_COUNCIL_FK = "councils.id"


class Council(Base):
    __tablename__ = "councils"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: IANA zone of the council's lamps: days in reports and dry-run nights are local.
    tz: Mapped[str] = mapped_column(String(64), default="Europe/London")
    created_ns: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    #: Unique across councils: the password flow has no council field.
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """A machine credential. Only the SHA-256 of the key is kept; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    #: The key's first characters, to tell keys apart in lists (not enough to guess the rest).
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("council_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    created_ns: Mapped[int] = mapped_column(BigInteger)


class LampRow(Base):
    """A light point: the fields of :class:`domain.records.Lamp`, plus its gateway.

    A lamp belongs to at most one group (``group_id``), as :class:`~domain.records.Lamp` has one
    ``group``: a policy is activated per group, so one lamp can only follow one policy.
    """

    __tablename__ = "lamps"
    __table_args__ = (UniqueConstraint("council_id", "lamp_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    lamp_id: Mapped[str] = mapped_column(String(100))
    lon_deg: Mapped[float] = mapped_column(Float)
    lat_deg: Mapped[float] = mapped_column(Float)
    rated_power_w: Mapped[float] = mapped_column(Float)
    standby_power_w: Mapped[float] = mapped_column(Float, default=0.5)
    lighting_class: Mapped[LightingClass] = mapped_column(_enum(LightingClass))
    street: Mapped[str] = mapped_column(String(200), default="")
    order_on_street: Mapped[int] = mapped_column(Integer, default=0)
    driver_curve: Mapped[str] = mapped_column(String(100), default="default")
    dimming_curve: Mapped[DimmingCurve] = mapped_column(_enum(DimmingCurve))
    controller_address: Mapped[str] = mapped_column(String(200), default="")
    lamp_type: Mapped[str] = mapped_column(String(50), default="")
    gateway_id: Mapped[str] = mapped_column(String(100), default="")
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="SET NULL"), index=True, default=None
    )
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)

    group: Mapped[Group | None] = relationship(lazy="joined")

    def record(self) -> Lamp:
        """The lamp as the rest of the project sees it."""
        return Lamp(
            lamp_id=self.lamp_id,
            council_id=self.council_id,
            lon_deg=self.lon_deg,
            lat_deg=self.lat_deg,
            rated_power_w=self.rated_power_w,
            standby_power_w=self.standby_power_w,
            lighting_class=self.lighting_class,
            street=self.street,
            order_on_street=self.order_on_street,
            driver_curve=self.driver_curve,
            dimming_curve=self.dimming_curve,
            controller_address=self.controller_address,
            lamp_type=self.lamp_type,
            group=self.group.name if self.group is not None else "",
        )


class PolicyRow(Base):
    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("council_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)


class PolicyVersion(Base):
    """One saved document of a policy. Invalid documents are kept (and cannot be activated)."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    #: 1, 2, 3... per policy, assigned by the store.
    number: Mapped[int] = mapped_column(Integer)
    #: The YAML or JSON text as submitted.
    document: Mapped[str] = mapped_column(Text)
    valid: Mapped[bool] = mapped_column(Boolean)
    #: Validation issues, ``[{"where": ..., "message": ...}]``; empty when valid.
    issues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)

    policy: Mapped[PolicyRow] = relationship(lazy="joined")


class DryRun(Base):
    """A dry-run job: a policy version simulated on a group's lamps; ``report`` when done."""

    __tablename__ = "dry_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus))
    progress_frac: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(200), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The simulator's report (simulation.results.SimulationReport as JSON).
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    started_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    finished_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)

    version: Mapped[PolicyVersion] = relationship(lazy="joined")


class Activation(Base):
    """A policy version put in force on a group. Rows are never deleted while the group
    exists: the history is what rollback reads; at most one row per group is ``active``."""

    __tablename__ = "activations"
    __table_args__ = (Index("ix_activations_group_active", "group_id", "active"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    active: Mapped[bool] = mapped_column(Boolean)
    activated_by: Mapped[str] = mapped_column(String(120))
    activated_ns: Mapped[int] = mapped_column(BigInteger)
    deactivated_by: Mapped[str | None] = mapped_column(String(120), default=None)
    deactivated_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: Set when this activation was made by rolling back: the activation it replaced.
    rolled_back_from: Mapped[int | None] = mapped_column(Integer, default=None)
    #: The latest finished dry run of this version on this group, when there was one.
    dry_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("dry_runs.id", ondelete="SET NULL"), default=None
    )

    version: Mapped[PolicyVersion] = relationship(lazy="joined")
    group: Mapped[Group] = relationship(lazy="joined")


class OverrideRow(Base):
    """A manual level for one lamp or one group (TALQ: latest wins, no level resumes)."""

    __tablename__ = "overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    lamp_pk: Mapped[int | None] = mapped_column(
        ForeignKey("lamps.id", ondelete="CASCADE"), default=None
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), default=None
    )
    #: None: resume the program (an empty override).
    level_frac: Mapped[float | None] = mapped_column(Float, default=None)
    issued_ns: Mapped[int] = mapped_column(BigInteger)
    starts_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(120))
    cancelled_by: Mapped[str | None] = mapped_column(String(120), default=None)
    cancelled_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)

    lamp: Mapped[LampRow | None] = relationship(lazy="joined")
    group: Mapped[Group | None] = relationship(lazy="joined")


class Alarm(Base):
    """A lamp or gateway alarm from the live controller's health monitor."""

    __tablename__ = "alarms"
    __table_args__ = (UniqueConstraint("council_id", "alarm_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    #: The health monitor's own alarm id; raising or clearing the same id updates one row.
    alarm_key: Mapped[str] = mapped_column(String(100))
    lamp_id: Mapped[str | None] = mapped_column(String(100), default=None)
    gateway_id: Mapped[str | None] = mapped_column(String(100), default=None)
    kind: Mapped[str] = mapped_column(String(50))
    started_ns: Mapped[int] = mapped_column(BigInteger)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class Gateway(Base):
    __tablename__ = "gateways"
    __table_args__ = (UniqueConstraint("council_id", "gateway_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"), index=True)
    gateway_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(50), default="unknown")
    last_seen_ns: Mapped[int | None] = mapped_column(BigInteger, default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    """Who did what, to what, when: every change and every command."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_council_time", "council_id", "time_ns"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    council_id: Mapped[str] = mapped_column(ForeignKey(_COUNCIL_FK, ondelete="CASCADE"))
    #: ``user:<username>`` or ``api-key:<name>``.
    actor: Mapped[str] = mapped_column(String(120))
    #: ``<resource>.<verb>``, e.g. ``lamp.create``, ``override.cancel``.
    action: Mapped[str] = mapped_column(String(60))
    #: ``<resource>:<id>``, e.g. ``lamp:L-17``.
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    time_ns: Mapped[int] = mapped_column(BigInteger)


# --- engine and sessions ----------------------------------------------------------------------


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url``; SQLite gets foreign keys, WAL and a busy timeout."""
    if not database_url.startswith("sqlite"):
        return create_engine(database_url, pool_pre_ping=True)
    in_memory = database_url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        database_url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # An in-memory database lives and dies with its connection: share one.
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            # Readers do not wait for the writer (dry-run jobs write while requests read).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def create_schema(engine: Engine) -> None:
    """Create missing tables (a new deployment; migrations are future work)."""
    Base.metadata.create_all(engine)


# --- audit ------------------------------------------------------------------------------------


def add_audit(
    session: Session,
    council_id: str,
    actor: str,
    action: str,
    target: str,
    time_ns: int,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record an audit entry in the caller's transaction, so it lands with the change or not at all."""
    entry = AuditEntry(
        council_id=council_id,
        actor=actor,
        action=action,
        target=target,
        detail=detail or {},
        time_ns=time_ns,
    )
    session.add(entry)
    return entry


# --- what the composition root reads and writes ------------------------------------------------


def inventory_lamps(session: Session, council_id: str) -> list[Lamp]:
    """Every lamp of the council as :class:`domain.records.Lamp`, ordered by lamp id."""
    rows = session.scalars(
        select(LampRow).where(LampRow.council_id == council_id).order_by(LampRow.lamp_id)
    )
    return [row.record() for row in rows]


def lamp_gateways(session: Session, council_id: str) -> dict[str, str]:
    """Lamp id -> gateway id for the council's lamps that have a gateway."""
    rows = session.execute(
        select(LampRow.lamp_id, LampRow.gateway_id).where(
            LampRow.council_id == council_id, LampRow.gateway_id != ""
        )
    )
    return {lamp_id: gateway_id for lamp_id, gateway_id in rows}


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    """The policy version in force on one group.

    ``policy`` is the validated document; it is None only if a document that validated when it
    was activated no longer does (a stricter validator), and then ``issues`` says why: the live
    controller should hold the group at its fail-safe default rather than guess.
    """

    group_id: int
    group_name: str
    lamp_ids: tuple[str, ...]
    policy_id: int
    policy_name: str
    version: int
    document: str
    policy: Policy | None
    issues: tuple[ValidationIssue, ...]
    activation_id: int
    activated_ns: int
    activated_by: str


def active_policies(session: Session, council_id: str) -> list[ActivePolicy]:
    """The active policy version of every group of the council that has one, by group name."""
    activations = session.scalars(
        select(Activation)
        .where(Activation.council_id == council_id, Activation.active.is_(True))
        .join(Group, Activation.group_id == Group.id)
        .order_by(Group.name)
    ).unique()
    out = []
    for act in activations:
        lamp_ids = tuple(
            session.scalars(
                select(LampRow.lamp_id)
                .where(LampRow.council_id == council_id, LampRow.group_id == act.group_id)
                .order_by(LampRow.lamp_id)
            )
        )
        policy: Policy | None
        try:
            policy = validate_policy(act.version.document)
            issues: tuple[ValidationIssue, ...] = ()
        except PolicyError as err:
            policy, issues = None, tuple(err.issues)
        out.append(
            ActivePolicy(
                group_id=act.group_id,
                group_name=act.group.name,
                lamp_ids=lamp_ids,
                policy_id=act.version.policy_id,
                policy_name=act.version.policy.name,
                version=act.version.number,
                document=act.version.document,
                policy=policy,
                issues=issues,
                activation_id=act.id,
                activated_ns=act.activated_ns,
                activated_by=act.activated_by,
            )
        )
    return out


def override_record(row: OverrideRow) -> Override:
    """The stored override as the controller's :class:`~controller.policy.Override`."""
    return Override(
        override_id=str(row.id),
        lamp_ids=(row.lamp.lamp_id,) if row.lamp is not None else (),
        groups=(row.group.name,) if row.group is not None else (),
        level_frac=row.level_frac,
        issued_ns=row.issued_ns,
        start_ns=row.starts_ns,
        expiry_ns=row.expires_ns,
        reason=row.reason,
    )


def active_overrides(session: Session, council_id: str, now_ns: int) -> list[Override]:
    """The overrides that decide any lamp's level at ``now_ns`` or later, oldest first.

    That is every override not yet expired (running or pending), plus every expired one issued
    after the oldest of those: under latest-wins an expired newer override still hides an older
    one on the lamps they share (the older one never comes back). Feeding exactly these to a
    :class:`controller.policy.OverrideTable` gives the same levels as the full history for any
    time from ``now_ns`` on. A cancelled override is stored as expired at its cancellation; one
    cancelled before it started is left out, as if never issued.
    """
    alive = or_(OverrideRow.expires_ns.is_(None), OverrideRow.expires_ns > now_ns)
    # Cancelled before it started: it never took effect, so it is as if never issued.
    took_effect = or_(
        OverrideRow.cancelled_ns.is_(None), OverrideRow.cancelled_ns > OverrideRow.starts_ns
    )
    oldest_alive = session.scalar(
        select(func.min(OverrideRow.issued_ns)).where(
            OverrideRow.council_id == council_id, alive, took_effect
        )
    )
    if oldest_alive is None:
        return []
    rows = session.scalars(
        select(OverrideRow)
        .where(
            OverrideRow.council_id == council_id,
            took_effect,
            or_(alive, OverrideRow.issued_ns >= oldest_alive),
        )
        .order_by(OverrideRow.issued_ns, OverrideRow.id)
    ).unique()
    return [override_record(row) for row in rows]


def record_alarm(
    session: Session,
    council_id: str,
    *,
    alarm_id: str,
    kind: str,
    started_ns: int,
    ended_ns: int | None = None,
    detail: str = "",
    lamp_id: str | None = None,
    gateway_id: str | None = None,
) -> Alarm:
    """Raise or clear an alarm (idempotent): the same ``alarm_id`` updates one row.

    Pass what the health monitor reports: raising gives ``ended_ns=None``; clearing gives the
    same alarm with ``ended_ns`` set. An alarm names a lamp, a gateway, or both.
    """
    if lamp_id is None and gateway_id is None:
        raise ValueError(f"alarm {alarm_id!r} names neither a lamp nor a gateway; give one")
    if ended_ns is not None and ended_ns < started_ns:
        raise ValueError(
            f"alarm {alarm_id!r} ends at {ended_ns} ns, before it started at {started_ns} ns"
        )
    row = session.scalar(
        select(Alarm).where(Alarm.council_id == council_id, Alarm.alarm_key == alarm_id)
    )
    if row is None:
        row = Alarm(council_id=council_id, alarm_key=alarm_id)
        session.add(row)
    row.kind = kind
    row.started_ns = started_ns
    row.ended_ns = ended_ns
    row.detail = detail
    row.lamp_id = lamp_id
    row.gateway_id = gateway_id
    session.flush()
    return row


def record_gateway_status(
    session: Session,
    council_id: str,
    gateway_id: str,
    status: str,
    seen_ns: int,
    detail: dict[str, Any] | None = None,
) -> Gateway:
    """Note that ``gateway_id`` reported ``status`` at ``seen_ns`` (creates it when new)."""
    row = session.scalar(
        select(Gateway).where(Gateway.council_id == council_id, Gateway.gateway_id == gateway_id)
    )
    if row is None:
        row = Gateway(council_id=council_id, gateway_id=gateway_id)
        session.add(row)
    # Reports can arrive out of order through store-and-forward; keep the newest.
    if row.last_seen_ns is None or seen_ns >= row.last_seen_ns:
        row.status = status
        row.last_seen_ns = seen_ns
        row.detail = detail or {}
    session.flush()
    return row


def council_ids(session: Session) -> Sequence[str]:
    """Every council's id (the composition root starts one controller per council)."""
    return list(session.scalars(select(Council.id).order_by(Council.id)))

"""The simulator's report: a stable, documented schema (pydantic), written as JSON.

``SimulationReport.model_json_schema()`` is the schema; ``docs/simulation-report.md`` explains
each field. The schema has a version: fields are only ever added within a version.
Energies are kWh, costs in the tariff's currency, CO2 in kg, levels fractions of full output,
times local to the scenario's time zone unless a name ends in ``_utc``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

REPORT_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Compliance(_Frozen):
    """Lighting compliance seen by the simulated road users.

    ``below_required_share``: road-user-seconds spent under a lamp below the level its class
    required at that moment, over all road-user-seconds under lamps while lamps were required
    to be lit. ``users_before_boost``: users who reached a lamp before it had reached its boost
    (presence policies only; 0 otherwise). ``dark_user_seconds``: road-user-seconds under a lamp
    that was off (switched off by the policy) while its class required light.
    """

    road_users: int
    user_seconds: float
    below_required_user_seconds: float
    below_required_share: float
    users_before_boost: int
    dark_user_seconds: float


class StreetFigures(_Frozen):
    street: str
    lamps: int
    energy_kwh: float
    below_required_share: float


class PolicyFigures(_Frozen):
    """One policy over the scenario's nights (sums; shares over the sums)."""

    policy: str
    policy_version: int
    energy_kwh: float
    cost: float
    co2_kg: float
    saving_vs_all_night_frac: float
    saving_vs_current_frac: float | None
    compliance: Compliance
    commands: int
    switch_ons: int
    burning_hours: float
    energy_by_hour_kwh: list[float] = Field(
        description="per hour of the night window, summed over nights"
    )
    below_required_share_by_hour: list[float]
    per_street: list[StreetFigures]


class NightFigures(_Frozen):
    night: str
    policy: str
    energy_kwh: float
    cost: float
    co2_kg: float
    below_required_share: float
    commands: int


class Heatmap(_Frozen):
    """Levels of a sample of lamps over the night, for the report's heat map (one per policy)."""

    policy: str
    night: str
    lamp_ids: list[str]
    bin_s: float
    first_bin_local: str
    level_frac: list[list[float]] = Field(description="[lamp][time bin], mean level in the bin")


class SimulationReport(_Frozen):
    schema_version: int = REPORT_SCHEMA_VERSION
    scenario: str
    seed: int
    lamps: int
    streets: int
    tz: str
    nights: list[str]
    hour_labels: list[str] = Field(description="local clock hour of each energy_by_hour entry")
    tariff_per_kwh: float
    currency: str
    carbon_kg_per_kwh: float
    carbon_factor_year: int
    current_policy: str | None
    all_night_energy_kwh: float
    policies: list[PolicyFigures]
    per_night: list[NightFigures]
    heatmaps: list[Heatmap]
    demand_notes: list[str] = Field(description="gaps and bad values found in count sources")
    wall_s: float
    kernel_s: float

"""Scenario files: what a planner asks the simulator (docs/scenarios.md).

A scenario names an inventory, a demand source, one or more policies, the nights, the place
and time zone, an electricity tariff and a dated grid carbon factor. Files are YAML or TOML;
paths inside are relative to the scenario file. Validation reports every problem with its
location, like policies do.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from domain.errors import DocumentError, ValidationIssue
from domain.validation import iana_time_zone, schema_issues

SCENARIO_SCHEMA_VERSION = 1


class ScenarioError(DocumentError):
    """A scenario file is invalid; ``issues`` lists every problem."""

    document = "scenario"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SampleTown(_Model):
    """The generated sample town (no data files needed)."""

    streets: int = Field(12, ge=1, le=500)
    lamps_per_street: int = Field(40, ge=2, le=500)
    spacing_m: float = Field(30.0, gt=5, le=200)
    lat_deg: float = Field(51.4545, ge=-66, le=66)
    lon_deg: float = Field(-2.5879, ge=-180, le=180)


class InventorySource(_Model):
    """Either ``sample_town`` or ``file`` (CSV/GeoJSON) with a column ``mapping``."""

    sample_town: SampleTown | None = None
    file: str | None = None
    mapping: dict[str, Any] | None = None
    mapping_file: str | None = None
    limit_lamps: int | None = Field(None, ge=1, description="keep the first N lamps (quick runs)")

    @model_validator(mode="after")
    def _one_source(self) -> InventorySource:
        if (self.sample_town is None) == (self.file is None):
            raise ValueError("give exactly one of sample_town or file")
        if self.mapping is not None and self.mapping_file is not None:
            raise ValueError("give mapping or mapping_file, not both")
        return self


class CountSource(_Model):
    """Real hourly counts replayed as demand."""

    kind: Literal["leeds_footfall", "melbourne_pedestrian", "i94_traffic"]
    path: str
    sites: list[str] | None = None
    #: Count date whose hourly shape drives the simulated night (None: the median profile).
    replay_date: dt.date | None = None
    #: Road users per hour on a street per counted unit at the site (counts are per site).
    scale: float = Field(0.02, gt=0, le=100)


class Detection(_Model):
    miss_walk: float = Field(0.05, ge=0, le=1)
    miss_cycle: float = Field(0.10, ge=0, le=1)
    miss_drive: float = Field(0.30, ge=0, le=1)
    latency_s: float = Field(1.0, ge=0, le=30)
    #: Share of lamps that carry a presence sensor.
    sensor_share: float = Field(1.0, ge=0, le=1)


class Demand(_Model):
    """Where the road users come from (see simulation.demand)."""

    model: Literal["synthetic", "counts"] = "synthetic"
    counts: CountSource | None = None
    #: Synthetic model: people on foot per hour per street at the day's peak (some cycle).
    footfall_peak_per_h: float = Field(40.0, ge=0, le=10000)
    #: Synthetic model: vehicles per hour per street at the day's peak.
    traffic_peak_per_h: float = Field(30.0, ge=0, le=10000)
    cycle_share: float = Field(0.1, ge=0, le=1)
    detection: Detection = Field(default_factory=lambda: Detection())

    @model_validator(mode="after")
    def _source(self) -> Demand:
        if self.model == "counts" and self.counts is None:
            raise ValueError("model 'counts' needs a 'counts' section (kind, path, ...)")
        return self


class Compliance(_Model):
    """The reference a lamp's requirement is judged against, the same for every policy.

    The class a street needs at a moment is its normal class stepped down by measured demand
    (all road users per hour) with these thresholds (CEN/TR 13201-1 adaptive lighting; no
    published table maps volumes to classes, so they are configurable). An empty list: the
    normal class all night.
    """

    thresholds: list[tuple[float, float]] = Field(
        default_factory=lambda: [(60.0, 90.0), (20.0, 35.0)],
        description="(down_below_per_h, up_above_per_h) per class step",
    )


class PolicyRef(_Model):
    file: str
    name: str | None = None


class Tariff(_Model):
    per_kwh: float = Field(0.25, ge=0, le=10)
    currency: str = "GBP"


class Carbon(_Model):
    """Grid carbon factor, dated (DESNZ: 0.20705 kgCO2e/kWh for 2024)."""

    kg_per_kwh: float = Field(0.20705, ge=0, le=2)
    year: int = Field(2024, ge=1990, le=2100)


class Nights(_Model):
    first: dt.date
    count: int = Field(1, ge=1, le=366)


class Scenario(_Model):
    schema_version: Literal[1] = 1
    name: str = Field(min_length=1)
    tz: Annotated[str, AfterValidator(iana_time_zone)] = "Europe/London"
    inventory: InventorySource
    demand: Demand = Field(default_factory=lambda: Demand())
    policies: list[PolicyRef] = Field(min_length=1)
    #: Name of the council's current policy (one of ``policies``) for "saving vs current".
    current_policy: str | None = None
    nights: Nights
    tariff: Tariff = Field(default_factory=lambda: Tariff())
    carbon: Carbon = Field(default_factory=lambda: Carbon())
    compliance: Compliance = Field(default_factory=lambda: Compliance())
    seed: int = 42
    #: Lamps drawn in each policy's level heat map.
    heatmap_lamps: int = Field(200, ge=1, le=5000)
    heatmap_bin_s: float = Field(300.0, ge=60, le=3600)
    base_dir: str = Field("", exclude=True)

    def path(self, relative: str) -> Path:
        """A path from the file, relative to the scenario file's folder."""
        p = Path(relative)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


def parse_scenario(data: dict[str, Any], *, base_dir: str | Path = "") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError([ValidationIssue("(document)", "a scenario is a mapping of keys")])
    try:
        return Scenario.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as err:
        raise ScenarioError(
            schema_issues(err, unknown_key="check the spelling against docs/scenarios.md")
        ) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``.yaml``/``.yml`` or ``.toml``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(
            [ValidationIssue(str(p), f"cannot read the file: {err.strerror}")]
        ) from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ScenarioError(
            [
                ValidationIssue(
                    str(p), f"not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {err}"
                )
            ]
        ) from None
    return parse_scenario(data, base_dir=p.resolve().parent)

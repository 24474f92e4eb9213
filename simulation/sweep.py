"""Policy sweeps: a grid of policies x parameters x nights, run on Dask (``streetlight sweep``).

Theory of operation
-------------------
1. *Plan* (driver). A sweep file (docs/sweeps.md) names a scenario, the policy documents and a
   grid of dotted paths into those documents, each with a list of values. For each policy the
   parameters whose path exists in its document are crossed (Cartesian product); every
   combination edits a copy of the document, which :func:`validate_policy` then checks.
   Parameters a policy lacks are not varied for it (a note says so), so no two variants of one
   policy are the same document; a path found in no policy is an error. A variant that fails
   validation, or lacks a lighting class the town has, becomes an invalid row with its
   messages and the sweep goes on.
2. *Night* (driver, once per night). :func:`simulation.run.prepare_night` with every valid
   variant, so all variants are judged over the same window, meet the same road users (seeded
   from the scenario seed exactly as :func:`simulation.run.run_scenario` does) and the same
   requirement. :func:`simulation.run.make_jobs` then gives each variant's kernel job; demand
   steps and filtered detections that variants share are computed once.
3. *Ship*. A job becomes a flat dict of arrays and scalars (:func:`job_to_arrays`). The arrays
   every job of the night holds alike (electrics, triggers, requirement, probes, and for a
   typical grid the adaptive steps and most of the program), with the road user of each
   passage, are scattered once to every worker; what is left of each variant (often a few
   numbers) goes to one worker, round robin, and its task runs there. No Python object graph
   (trace, setup, policy) leaves the driver.
4. *Run and account* (worker). :func:`run_arrays`: :func:`job_from_arrays`, the kernel and
   :func:`simulation.run.account_passages`; back come the night's figures with per-lamp and
   per-passage arrays summed away (a few hundred bytes, whatever the town's size). Tasks use
   the serial kernel: the parallelism is Dask's, one core per task. The serial sweep calls the
   same :func:`run_arrays` in process.
5. *Sum* (driver). Each variant's nights are summed with the formulas of
   :func:`simulation.run.run_scenario`. While the workers run one night the driver prepares
   the next.

Rules: figures are kept per (variant, night) and summed in a fixed order, so rows do not depend
on the order tasks finish in, the number of workers or the cluster: a Dask sweep equals
:func:`run_sweep_serial` bit for bit, and two runs of one sweep file are equal.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_origin, get_type_hints

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.table import Table

from controller.dimming.levels import NightResult, run_night
from controller.dimming.power import LampElectrics
from controller.dimming.program import NightProgram
from controller.policy import Policy, load_policy_text, validate_policy
from domain.errors import DocumentError, PolicyError, ValidationIssue
from domain.inventory import CLASS_ORDER
from domain.validation import schema_issues
from simulation.run import (
    INTERVAL_S,
    NightSetup,
    PolicyNight,
    PolicyNightJob,
    Progress,
    Town,
    account_passages,
    all_night_energy_kwh,
    load_town,
    make_jobs,
    prepare_night,
    run_job,
)
from simulation.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

SWEEP_SCHEMA_VERSION = 1

#: A job or a result as plain data: numpy arrays and Python scalars, keyed by dotted field name.
Arrays = dict[str, npt.NDArray[Any] | float | int]


class SweepError(DocumentError):
    """A sweep file is invalid; ``issues`` lists every problem with its location."""

    document = "sweep"


# --- the sweep file -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepPolicy(_Model):
    file: str
    name: str | None = None


class SweepSpec(_Model):
    """A sweep file (docs/sweeps.md). Paths inside are relative to the file's folder."""

    schema_version: Literal[1] = 1
    name: str | None = Field(None, min_length=1)
    scenario: str
    #: Policy files to vary (default: the scenario's policies).
    policies: list[SweepPolicy] | None = Field(None, min_length=1)
    #: Dotted path into a policy document -> the values to try.
    parameters: dict[str, list[Any]] = Field(default_factory=dict)
    base_dir: str = Field("", exclude=True)

    @field_validator("policies", mode="before")
    @classmethod
    def _bare_files(cls, value: Any) -> Any:
        # A bare file name is the common case; a mapping adds a display name.
        if isinstance(value, list):
            return [{"file": v} if isinstance(v, str) else v for v in value]
        return value

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")

Key = str | int


def parse_path(path: str) -> tuple[Key, ...]:
    """``profiles.part_night.steps[1].from`` -> ``("profiles", "part_night", "steps", 1, "from")``."""
    keys: list[Key] = []
    for part in path.split("."):
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise ValueError(
                f"{path!r} is not a dotted path into a policy document; write keys separated "
                "by dots and list items as [index], e.g. profiles.estate.presence.hold_s or "
                "profiles.part_night.steps[1].from"
            )
        keys.append(match.group(1))
        keys.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(keys)


def parse_sweep(data: Any, *, base_dir: str | Path = "") -> SweepSpec:
    if not isinstance(data, dict):
        raise SweepError([ValidationIssue("(document)", "a sweep is a mapping of keys")])
    try:
        spec = SweepSpec.model_validate({**data, "base_dir": str(base_dir)})
    except ValidationError as err:
        raise SweepError(
            schema_issues(
                err, unknown_key="the keys are schema_version, name, scenario, policies, parameters"
            )
        ) from None
    issues = []
    for path, values in spec.parameters.items():
        try:
            parse_path(path)
        except ValueError as err:
            issues.append(ValidationIssue(f"parameters.{path}", str(err)))
        if not values:
            issues.append(ValidationIssue(f"parameters.{path}", "give at least one value"))
    if issues:
        raise SweepError(issues)
    return spec


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (YAML, with the YAML 1.2 scalars policies use)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise SweepError(
            [ValidationIssue(str(p), f"cannot read the file: {err.strerror}")]
        ) from None
    try:
        # Policy loader: "23:00" stays a string and on/off stay keys, as in the policy files the
        # values are written into.
        data = load_policy_text(text)
    except yaml.YAMLError as err:
        raise SweepError([ValidationIssue(str(p), f"not valid YAML: {err}")]) from None
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": p.stem}
    return parse_sweep(data, base_dir=p.resolve().parent)


# --- the plan: variants of policy documents -----------------------------------------------------


@dataclass(frozen=True, eq=False)
class Variant:
    """One edited policy document; ``policy`` is None when it is invalid (see ``issues``)."""

    index: int
    policy_name: str
    parameters: dict[str, Any]
    document: dict[str, Any]
    policy: Policy | None
    issues: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class SweepPlan:
    name: str
    scenario: Scenario
    grid: dict[str, list[Any]]
    variants: tuple[Variant, ...]
    notes: tuple[str, ...]


def _depth(doc: Any, keys: Sequence[Key]) -> int:
    """How many of ``keys`` resolve in ``doc``, from the first."""
    node = doc
    for n, key in enumerate(keys):
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                return n
        elif not isinstance(node, Mapping) or key not in node:
            return n
        node = node[key]
    return len(keys)


def _set(doc: Any, keys: Sequence[Key], value: Any) -> None:
    node = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = copy.deepcopy(value)


def _path_text(keys: Sequence[Key]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _read_policy(path: Path, where: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SweepError(
            [ValidationIssue(where, f"cannot read {path}: {err.strerror or err}")]
        ) from None
    try:
        doc = load_policy_text(text)
    except yaml.YAMLError as err:
        raise SweepError([ValidationIssue(where, f"{path} is not valid YAML: {err}")]) from None
    try:
        validate_policy(doc)
    except PolicyError as err:
        # The base documents must be valid: an invalid variant is a finding, an invalid base a
        # mistake in the sweep.
        raise SweepError(
            [ValidationIssue(f"{where} ({path.name})", str(issue)) for issue in err.issues]
        ) from None
    assert isinstance(doc, dict)
    return doc


def _base_policies(spec: SweepSpec, scenario: Scenario) -> list[tuple[str, dict[str, Any]]]:
    if spec.policies is not None:
        refs = [(f"policies[{i}]", spec.path(p.file), p.name) for i, p in enumerate(spec.policies)]
    else:
        refs = [
            (f"scenario policies[{i}]", scenario.path(p.file), p.name)
            for i, p in enumerate(scenario.policies)
        ]
    out = []
    for where, path, name in refs:
        doc = _read_policy(path, where)
        out.append((name or str(doc["name"]), doc))
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SweepError(
            [
                ValidationIssue(
                    "policies",
                    f"two policies are named {', '.join(dupes)}; give one a name "
                    "({file: ..., name: ...}) so rows can be told apart",
                )
            ]
        )
    return out


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Load the scenario and policies and build every variant (validated, not yet run)."""
    scenario = load_scenario(spec.path(spec.scenario))
    bases = _base_policies(spec, scenario)
    grid = {path: list(values) for path, values in spec.parameters.items()}
    keys = {path: parse_path(path) for path in grid}
    issues = []
    notes = []
    for path, k in keys.items():
        depths = [_depth(doc, k) for _, doc in bases]
        if max(depths) < len(k):
            name, doc = bases[int(np.argmax(depths))]
            found = _path_text(k[: max(depths)]) or "(document)"
            issues.append(
                ValidationIssue(
                    f"parameters.{path}",
                    f"is in none of the policies ({', '.join(n for n, _ in bases)}); the "
                    f"nearest is policy '{name}', where {found} has no {k[max(depths)]!r}. "
                    "Keys are case-sensitive and list items count from [0]; to sweep a key a "
                    "policy leaves at its default, write the key into the policy file",
                )
            )
        for (name, _), depth in zip(bases, depths, strict=True):
            if depth < len(k) and max(depths) == len(k):
                notes.append(
                    f"parameters.{path}: not in policy '{name}'; its variants keep the policy's "
                    "own value"
                )
    if issues:
        raise SweepError(issues)
    variants: list[Variant] = []
    for name, base in bases:
        applicable = [path for path in grid if _depth(base, keys[path]) == len(keys[path])]
        for combo in itertools.product(*(grid[path] for path in applicable)):
            doc = copy.deepcopy(base)
            for path, value in zip(applicable, combo, strict=True):
                _set(doc, keys[path], value)
            params = dict(zip(applicable, combo, strict=True))
            try:
                policy: Policy | None = validate_policy(doc)
                problems: tuple[str, ...] = ()
            except PolicyError as err:
                policy, problems = None, tuple(str(issue) for issue in err.issues)
            variants.append(Variant(len(variants), name, params, doc, policy, problems))
    return SweepPlan(
        spec.name or f"{scenario.name}-sweep", scenario, grid, tuple(variants), tuple(notes)
    )


def _town_issues(policy: Policy, town: Town) -> tuple[str, ...]:
    """What keeps a valid policy from compiling for this town (its lighting classes)."""
    present = {CLASS_ORDER[int(i)] for i in np.unique(town.inventory.class_index)}
    missing = sorted(c.value for c in present - set(policy.lighting_classes))
    if not missing:
        return ()
    return (
        f"lighting_classes: the town has lamps of class {', '.join(missing)}, which this "
        "variant does not list",
    )


# --- jobs as plain arrays -----------------------------------------------------------------------


def _flatten(obj: Any, prefix: str, out: Arrays) -> None:
    for f in fields(obj):
        key = prefix + f.name
        value = getattr(obj, f.name)
        if is_dataclass(value):
            _flatten(value, key + ".", out)
        elif isinstance(value, np.ndarray):
            out[key] = value
        elif isinstance(value, tuple):  # names (profile_names, zone_names)
            out[key] = np.array([str(v) for v in value], dtype=np.str_)
        elif isinstance(value, dict):  # NightProgram.meta
            out[key + ".keys"] = np.array([str(k) for k in value], dtype=np.str_)
            out[key + ".values"] = np.array([str(v) for v in value.values()], dtype=np.str_)
        elif isinstance(value, bool | int | float | np.integer | np.floating):
            out[key] = value.item() if isinstance(value, np.generic) else value
        elif value is not None:
            raise TypeError(f"{key}: cannot ship a {type(value).__name__} as an array")


def _build(cls: type[Any], prefix: str, arrays: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[f.name] = _build(hint, key + ".", arrays)
        elif get_origin(hint) is dict:
            if key + ".keys" in arrays:
                kwargs[f.name] = dict(
                    zip(
                        (str(k) for k in arrays[key + ".keys"]),
                        (str(v) for v in arrays[key + ".values"]),
                        strict=True,
                    )
                )
        elif key in arrays:
            value = arrays[key]
            kwargs[f.name] = tuple(str(v) for v in value) if get_origin(hint) is tuple else value
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"the arrays lack {key!r}, which a {cls.__name__} requires")
    return cls(**kwargs)


def job_to_arrays(job: PolicyNightJob) -> Arrays:
    """A kernel job as a flat dict of numpy arrays and scalars (no copies).

    Keys are dotted field names (``program.program_frac``, ``electrics.rated_power_w``,
    ``triggers.step``, ``adaptive``, ``start_step``); names become string arrays and
    ``program.meta`` two string arrays (``program.meta.keys``/``program.meta.values``).
    """
    out: Arrays = {}
    _flatten(job, "", out)
    return out


def job_from_arrays(arrays: Mapping[str, npt.NDArray[Any] | float | int]) -> PolicyNightJob:
    """The inverse of :func:`job_to_arrays`; keys of fields with defaults may be left out.

    The dataclasses' own checks run again, so arrays that arrive damaged are refused.
    """
    job = _build(PolicyNightJob, "", arrays)
    assert isinstance(job, PolicyNightJob)
    return job


#: Descriptive fields the kernel never reads; they stay on the driver.
_DRIVER_ONLY = ("program.profile_names", "program.zone_names", "program.meta.")


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    return bool(type(a) is type(b) and a == b)


def _split(jobs: list[Arrays]) -> tuple[Arrays, list[Arrays]]:
    """The arrays every job of a night holds alike, and what is left of each job.

    Compared by value (identity first), not trusted by name: whatever a grid varies travels
    with its job, everything else once per night.
    """
    first, rest = jobs[0], jobs[1:]
    shared = {k: v for k, v in first.items() if all(k in job and _same(v, job[k]) for job in rest)}
    return shared, [{k: v for k, v in job.items() if k not in shared} for job in jobs]


# --- the worker's side --------------------------------------------------------------------------

#: Keys of a night's shared arrays that accounting reads besides the job: each passage's road
#: user and the night's number of users (:func:`simulation.run.account_passages`).
_PASSAGE_USER = "passages.user"
_N_USERS = "passages.n_users"


def _run_kernel(job: PolicyNightJob) -> tuple[NightResult, float]:
    """:func:`simulation.run.run_job` with the serial kernel.

    A task owns one core (Dask runs one task per worker thread); the parallel kernel would
    start a thread per core in every task and oversubscribe the machine.
    """
    return run_job(job, parallel=False)


def run_arrays(own: Arrays, shared: Arrays) -> Arrays:
    """What a worker runs: one job from its arrays, its kernel and its accounting.

    Back comes the job's :class:`simulation.run.PolicyNight` as arrays (:func:`_slim`: per-lamp
    and per-passage arrays summed away, so a few hundred bytes whatever the town's size) and
    ``kernel_s``, the seconds spent in the kernel.
    """
    arrays = {**shared, **own}
    job = job_from_arrays(arrays)
    result, kernel_s = _run_kernel(job)
    figures = account_passages(
        job,
        result,
        passage_user=np.asarray(arrays[_PASSAGE_USER]),
        n_users=int(arrays[_N_USERS]),
    )
    out: Arrays = {}
    _flatten(_slim(figures), "", out)
    out["kernel_s"] = kernel_s
    return out


def _slim(f: PolicyNight) -> PolicyNight:
    # Summed where the kernel ran: an answer holds a few numbers per hour of the night, never
    # one per lamp or per passage, and a big sweep keeps only those per variant-night.
    return replace(
        f,
        energy_wh_by_lamp=np.array([f.energy_wh_by_lamp.sum()]),
        user_seconds_by_lamp=np.zeros(0),
        below_user_seconds_by_lamp=np.zeros(0),
        samples=np.zeros((0, 0), np.float32),
    )


def _policy_night(out: Arrays) -> PolicyNight:
    """A :func:`run_arrays` answer back as figures (the driver's whole share of a job's work)."""
    figures = _build(PolicyNight, "", out)
    assert isinstance(figures, PolicyNight)
    return figures


# --- executors ----------------------------------------------------------------------------------


class _Serial:
    """Runs each job in this process when its results are asked for."""

    description = "serial (in process)"

    def share(self, shared: Arrays) -> Arrays:
        return shared

    def submit(self, shared: Arrays, own: Arrays) -> Callable[[], Arrays]:
        return partial(run_arrays, own, shared)

    def completed(self, handles: list[Callable[[], Arrays]]) -> Iterator[tuple[int, Arrays]]:
        for i, run in enumerate(handles):
            yield i, run()


class _Dask:
    """Runs jobs on a Dask cluster that may still be starting (``connecting``)."""

    def __init__(self, connecting: ConcurrentFuture[tuple[Client, Any]], description: str) -> None:
        self.connecting = connecting
        self.description = description

    @property
    def client(self) -> Client:
        return self.connecting.result()[0]

    def share(self, shared: Arrays) -> Future[Arrays]:
        # distributed ships py.typed but leaves scatter, as_completed, Client and LocalCluster
        # untyped: hence the ignores in this section.
        # A one-element list: the shared dict travels as one piece, to every worker, once.
        return self.client.scatter([shared], broadcast=True, hash=False)[0]  # type: ignore[no-untyped-call,no-any-return]

    def submit(self, shared: Future[Arrays], own: Arrays) -> Future[Arrays]:
        # A job's own arrays go to one worker (scatter takes turns over the workers), and the
        # task runs where they already are.
        own_future = self.client.scatter([own], hash=False)[0]  # type: ignore[no-untyped-call]
        return self.client.submit(run_arrays, own_future, shared, pure=False)

    def completed(self, handles: list[Future[Arrays]]) -> Iterator[tuple[int, Arrays]]:
        from distributed import as_completed

        index = {f.key: i for i, f in enumerate(handles)}
        for future in as_completed(handles):  # type: ignore[no-untyped-call]
            yield index[future.key], future.result()


# --- results ------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepFigures(_Frozen):
    """One variant over the sweep's nights (sums; shares over the sums), as in the report."""

    energy_kwh: float
    cost: float
    co2_kg: float
    saving_vs_all_night_frac: float
    below_required_share: float
    road_users: int
    users_before_boost: int
    dark_user_seconds: float
    commands: int
    switch_ons: int
    burning_hours: float


class SweepRow(_Frozen):
    variant: int
    policy: str
    #: The grid's values this variant was given (parameters its policy lacks are absent).
    parameters: dict[str, Any]
    valid: bool
    issues: list[str]
    figures: SweepFigures | None


class SweepResult(_Frozen):
    schema_version: int = SWEEP_SCHEMA_VERSION
    sweep: str
    scenario: str
    seed: int
    lamps: int
    nights: list[str]
    window_h: list[int] = Field(description="hours of each night's simulated window")
    grid: dict[str, list[Any]]
    tariff_per_kwh: float
    currency: str
    all_night_energy_kwh: float
    rows: list[SweepRow]
    notes: list[str]
    executor: str
    wall_s: float
    kernel_s: float

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return p


def _share(below: float, total: float) -> float:
    return below / total if total > 0 else 0.0


def _figures(scenario: Scenario, fs: list[PolicyNight], all_night_kwh: float) -> SweepFigures:
    """One variant's nights summed with :func:`simulation.run.run_scenario`'s formulas."""
    kwh = sum(float(f.energy_wh_by_lamp.sum()) for f in fs) / 1000.0
    n_hours = max(len(f.user_seconds_by_hour) for f in fs)
    users_h = np.zeros(n_hours)
    below_h = np.zeros(n_hours)
    for f in fs:
        users_h[: len(f.user_seconds_by_hour)] += f.user_seconds_by_hour
        below_h[: len(f.below_user_seconds_by_hour)] += f.below_user_seconds_by_hour
    return SweepFigures(
        energy_kwh=kwh,
        cost=kwh * scenario.tariff.per_kwh,
        co2_kg=kwh * scenario.carbon.kg_per_kwh,
        saving_vs_all_night_frac=1.0 - kwh / all_night_kwh if all_night_kwh else 0.0,
        below_required_share=_share(float(below_h.sum()), float(users_h.sum())),
        road_users=sum(f.users for f in fs),
        users_before_boost=sum(f.users_before_boost for f in fs),
        dark_user_seconds=sum(f.dark_user_seconds for f in fs),
        commands=sum(f.commands for f in fs),
        switch_ons=sum(f.switch_ons for f in fs),
        burning_hours=sum(f.burning_h for f in fs),
    )


@dataclass(eq=False)
class _Batch:
    night: int
    date: dt.date
    handles: list[Any]


def _submit_night(
    executor: _Serial | _Dask, night: int, scenario: Scenario, town: Town, setup: NightSetup
) -> _Batch:
    """Make every variant's job, share what they hold alike and hand each job its own rest."""
    jobs = [
        {k: v for k, v in job_to_arrays(job).items() if not k.startswith(_DRIVER_ONLY)}
        # No heat map in a sweep: samples would be the largest array a worker makes.
        for job in (replace(j, sample_every_s=0.0) for j in make_jobs(scenario, town, setup))
    ]
    shared, own = _split(jobs)
    shared[_PASSAGE_USER] = setup.trace.user
    shared[_N_USERS] = setup.trace.n_users
    handle: Any = executor.share(shared)  # the dict itself in process, a future on Dask
    return _Batch(night, setup.night, [executor.submit(handle, o) for o in own])


def _execute(plan: SweepPlan, executor: _Serial | _Dask, progress: Progress | None) -> SweepResult:
    t_start = time.perf_counter()
    scenario = plan.scenario
    town = load_town(scenario)
    variants = []
    for v in plan.variants:
        problems = _town_issues(v.policy, town) if v.policy is not None else ()
        variants.append(replace(v, policy=None, issues=problems) if problems else v)
    valid = [v for v in variants if v.policy is not None]
    nights = [scenario.nights.first + dt.timedelta(days=k) for k in range(scenario.nights.count)]
    notes = list(plan.notes) + list(town.notes)
    figures: dict[tuple[int, int], PolicyNight] = {}
    window_h: list[int] = []
    all_night_kwh = 0.0
    kernel_s = 0.0
    total = len(valid) * len(nights)
    done = 0

    def collect(batch: _Batch) -> None:
        nonlocal kernel_s, done
        for i, out in executor.completed(batch.handles):
            figures[(i, batch.night)] = _policy_night(out)
            kernel_s += float(out["kernel_s"])
            done += 1
            if progress:
                progress(f"{batch.date} {valid[i].policy_name} #{valid[i].index}", done, total)

    pending: _Batch | None = None
    for k, night in enumerate(nights if valid else []):
        policies = [v.policy for v in valid if v.policy is not None]
        setup = prepare_night(scenario, town, policies, night, scenario.seed + k)
        notes.extend(f"{night}: {note}" for note in setup.notes if f"{night}: {note}" not in notes)
        all_night_kwh += all_night_energy_kwh(town, setup)
        window_h.append(setup.n_steps // 3600)
        batch = _submit_night(executor, k, scenario, town, setup)
        # The workers run this night while the driver collects the last one and prepares the next.
        if pending is not None:
            collect(pending)
        pending = batch
    if pending is not None:
        collect(pending)
    pending = None  # drops the last night's futures: the workers free their copies

    slot = {v.index: i for i, v in enumerate(valid)}
    rows = []
    for v in variants:
        figs = None
        if v.policy is not None:
            fs = [figures[(slot[v.index], k)] for k in range(len(nights))]
            figs = _figures(scenario, fs, all_night_kwh)
        rows.append(
            SweepRow(
                variant=v.index,
                policy=v.policy_name,
                parameters=v.parameters,
                valid=v.policy is not None,
                issues=list(v.issues),
                figures=figs,
            )
        )
    return SweepResult(
        sweep=plan.name,
        scenario=scenario.name,
        seed=scenario.seed,
        lamps=len(town.inventory),
        nights=[str(n) for n in nights],
        window_h=window_h,
        grid=plan.grid,
        tariff_per_kwh=scenario.tariff.per_kwh,
        currency=scenario.tariff.currency,
        all_night_energy_kwh=all_night_kwh,
        rows=rows,
        notes=notes,
        executor=executor.description,
        wall_s=time.perf_counter() - t_start,
        kernel_s=kernel_s,
    )


def run_sweep_serial(spec: SweepSpec, *, progress: Progress | None = None) -> SweepResult:
    """The sweep in this process, one job after another (the same work as :func:`run_sweep`)."""
    return _execute(plan_sweep(spec), _Serial(), progress)


def _warm_worker() -> None:
    """Import the kernels and load their compiled code, before the first job arrives.

    A one-lamp, one-hour night with the argument types of real jobs, so numba loads the same
    cached machine code a job needs.
    """
    steps = 3600
    program = NightProgram(
        start_ns=0,
        step_s=1.0,
        program_frac=np.ones((1, steps), np.float32),
        floor_frac=np.full((1, steps), 0.2, np.float32),
        boost_frac=np.zeros(1, np.float32),
        hold_s=np.zeros(1, np.float32),
        fade_up_frac_per_s=np.ones(1, np.float32),
        fade_down_frac_per_s=np.ones(1, np.float32),
        class_factor=np.ones((1, 1), np.float32),
        lamp_profile=np.zeros(1, np.int32),
        lamp_zone=np.full(1, -1, np.int32),
        ceiling_frac=np.ones(1, np.float32),
        neighbour_indptr=np.zeros(2, np.int64),
        neighbour_indices=np.zeros(0, np.int32),
    )
    run_night(
        program,
        LampElectrics.uniform(1, 60.0),
        adaptive_interval_s=INTERVAL_S,
        required_frac=np.zeros((1, steps // round(INTERVAL_S)), np.float32),
        lamp_required_row=np.zeros(1, np.int32),
        probe_lamp=np.zeros(1, np.int32),
        probe_step=np.zeros(1, np.int64),
        parallel=False,
    )


def _connect(
    scheduler: str | None, n_workers: int, threads_per_worker: int
) -> tuple[Client, LocalCluster | None]:
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # Tasks run the serial kernel; this keeps any parallel numba code a worker might
            # reach from starting a thread per core in every worker.
            env={"NUMBA_NUM_THREADS": str(threads_per_worker)},
        )
    client = Client(cluster if cluster is not None else scheduler)  # type: ignore[no-untyped-call]
    client.run(_warm_worker)
    return client, cluster


def run_sweep(
    spec: SweepSpec,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    progress: Progress | None = None,
) -> SweepResult:
    """The sweep on Dask: the cluster at ``scheduler`` (its workers must be able to import
    this project), or a LocalCluster of ``n_workers`` processes on 127.0.0.1, closed at the end.
    """
    plan = plan_sweep(spec)  # a bad sweep file fails before any cluster starts
    # The cluster starts, and its workers load the kernels, while the driver builds the town
    # and prepares the first night: seconds that would otherwise come first.
    pool = ThreadPoolExecutor(1, thread_name_prefix="sweep-connect")
    connecting = pool.submit(_connect, scheduler, n_workers, threads_per_worker)
    pool.shutdown(wait=False)  # the thread ends with its one task
    label = (
        f"Dask scheduler {scheduler}"
        if scheduler is not None
        else f"Dask LocalCluster ({n_workers} workers x {threads_per_worker} thread)"
    )
    try:
        return _execute(plan, _Dask(connecting, label), progress)
    finally:
        # A failed start-up surfaces where the sweep first needs the cluster (a sweep without
        # valid variants never does); either way there is nothing to close.
        if connecting.exception() is None:
            client, cluster = connecting.result()
            client.close()  # type: ignore[no-untyped-call]
            if cluster is not None:
                cluster.close()


# --- presentation -------------------------------------------------------------------------------


def _short(path: str) -> str:
    """The last segment of a path (``steps[1].from``): short, and clear next to its policy."""
    last = path.split(".")[-1]
    before = path.split(".")[-2] if "." in path else ""
    # A bare field of a list item ("from") says little without its item ("steps[1]").
    return f"{before}.{last}" if before.endswith("]") else last


def _value(value: Any) -> str:
    return (
        value
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
    )


#: Figure columns of the table: header and how a value reads.
_FIGURE_COLUMNS: tuple[tuple[str, Callable[[SweepFigures], str]], ...] = (
    ("kWh", lambda f: f"{f.energy_kwh:,.1f}"),
    ("saving", lambda f: f"{f.saving_vs_all_night_frac:.1%}"),
    ("below\nreq.", lambda f: f"{f.below_required_share:.2%}"),
    ("before\nboost", lambda f: f"{f.users_before_boost:,}"),
    ("commands", lambda f: f"{f.commands:,}"),
)


def print_sweep(result: SweepResult, console: Console) -> None:
    """One row per variant, the messages of invalid variants under the table.

    Numbers are never cut short: on a narrow terminal the policy and parameter columns wrap.
    """
    figures = [
        [show(r.figures) for _, show in _FIGURE_COLUMNS] if r.figures is not None else None
        for r in result.rows
    ]
    table = Table(
        title=f"sweep {result.sweep}: {result.scenario}, {result.lamps:,} lamps, "
        f"{len(result.nights)} night(s)"
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("policy", overflow="fold")
    table.add_column("parameters", overflow="fold")
    for k, (header, _) in enumerate(_FIGURE_COLUMNS):
        widest = max(
            [len(line) for line in header.splitlines()] + [len(f[k]) for f in figures if f]
        )
        table.add_column(header, justify="right", no_wrap=True, min_width=widest)
    for row, cells in zip(result.rows, figures, strict=True):
        params = " ".join(f"{_short(p)}={_value(v)}" for p, v in row.parameters.items())
        if cells is None:
            params = f"{params} [red]invalid[/]".strip()
            cells = ["-"] * len(_FIGURE_COLUMNS)
        table.add_row(str(row.variant), row.policy, params or "(as written)", *cells)
    console.print(table)
    for row in result.rows:
        for issue in row.issues:
            console.print(f"[red]#{row.variant} invalid[/]: {issue}")
    console.print(
        f"all-night reference {result.all_night_energy_kwh:,.1f} kWh; {result.executor}: wall "
        f"{result.wall_s:.1f} s, kernels {result.kernel_s:.1f} s"
    )
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")


def sweep_command(sweep_file: Path, scheduler: str | None, workers: int, out: Path | None) -> None:
    """``streetlight sweep``: run a sweep file, print the table and write the JSON.

    ``out`` is the JSON file (default ``artifacts/<sweep name>/sweep.json``). Raises
    :class:`SweepError`, :class:`simulation.scenario.ScenarioError` or ``OSError``; the CLI
    turns them into a message and an exit code.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    console = Console()
    spec = load_sweep(sweep_file)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Bar(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"sweep {sweep_file.name}", total=None)

        def advance(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=label)

        result = run_sweep(spec, scheduler=scheduler, n_workers=workers, progress=advance)
    print_sweep(result, console)
    path = result.to_json(out or Path("artifacts") / result.sweep / "sweep.json")
    console.print(f"results: [bold]{path}[/]")

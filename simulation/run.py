"""Replay nights for a town under several policies: the planner's simulator.

Theory of operation
-------------------
1. *Town* (once): the inventory, its electrics, its neighbour graph and street geometry.
2. *Window* (per night): every policy is compiled for the night (noon to noon, 1 s steps); the
   run covers whole hours from one hour before the earliest switch-on to one hour after the
   latest switch-off of any policy, so every policy is judged over the same seconds.
3. *Demand* (per night, shared by every policy): road users drawn from the demand model move
   along the streets (:mod:`simulation.demand`); their passages give presence triggers and
   demand per zone. The same users meet every policy.
4. *Requirement* (per night, shared): the level each lamp's class requires at each moment:
   the normal class stepped by measured demand with the scenario's reference thresholds,
   relative to full output, and 0 while the sun is up (official sunrise/sunset), judged in
   intervals of INTERVAL_S that lie wholly between sunset and sunrise.
5. *Run* (per policy and night): detections that imply a speed above the policy's
   ``presence.max_speed_mps`` between neighbouring lamps are dropped first
   (:mod:`controller.dimming.presence`); then :func:`controller.dimming.levels.run_night`, the kernel the
   live controller uses, with the policy's adaptive steps from the same demand, and probes at
   every passage's entry and exit, which give seconds below requirement per road user.
6. *Accounting*: energy, cost, CO2, savings, compliance, commands, switch-ons and burning
   hours, per hour and per street.

The kernel call is a pure function of compact arrays (:class:`PolicyNightJob`), and so is its
accounting (:func:`account_passages`: the job, its result and each passage's road user), so
sweeps can ship both to Dask workers without Python object graphs.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.levels import NightResult, Triggers, run_night
from controller.dimming.power import LampElectrics
from controller.dimming.presence import plausible_triggers
from controller.dimming.program import NightProgram
from controller.dimming.solar import ZENITH_OFFICIAL_DEG, dusk_dawn, solar_elevation_deg
from controller.policy import (
    CompiledNight,
    Policy,
    class_factor_row,
    compile_night_full,
    validate_policy,
)
from domain.importer import ColumnMapping, import_inventory
from domain.inventory import CLASS_ORDER, InventoryArrays
from domain.neighbours import NeighbourGraph, build_neighbour_graph
from simulation import counts as count_files
from simulation.demand import (
    DemandModel,
    Mode,
    RoadUserTrace,
    SensorModel,
    StreetGeometry,
    demand_per_h,
    simulate_night,
)
from simulation.results import (
    Compliance,
    Heatmap,
    NightFigures,
    PolicyFigures,
    SimulationReport,
    StreetFigures,
)
from simulation.sample_town import sample_town
from simulation.scenario import Scenario

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

#: Grid of adaptive steps and requirements inside the kernel, seconds.
INTERVAL_S = 300.0
#: Window over which demand is measured for adaptive classes (a multiple of INTERVAL_S).
DEMAND_WINDOW_S = 900.0
_HOUR_NS = 3_600_000_000_000
_NS = 1_000_000_000

Progress = Callable[[str, int, int], None]


# --- the town ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Town:
    inventory: InventoryArrays
    electrics: LampElectrics
    neighbours: NeighbourGraph
    streets: StreetGeometry
    notes: tuple[str, ...]


def load_town(scenario: Scenario) -> Town:
    src = scenario.inventory
    notes: list[str] = []
    if src.sample_town is not None:
        st = src.sample_town
        inv = sample_town(
            streets=st.streets,
            lamps_per_street=st.lamps_per_street,
            spacing_m=st.spacing_m,
            lat_deg=st.lat_deg,
            lon_deg=st.lon_deg,
        )
    else:
        assert src.file is not None
        if src.mapping_file:
            mapping = ColumnMapping.from_file(scenario.path(src.mapping_file))
        else:
            mapping = ColumnMapping.from_dict(src.mapping or {})
        inv, report = import_inventory(scenario.path(src.file), mapping)
        if report.bad_rows:
            notes.append(
                f"inventory: {len(report.bad_rows)} bad rows skipped (first: row "
                f"{report.bad_rows[0].row_number}: {report.bad_rows[0].reason})"
            )
    if src.limit_lamps is not None and src.limit_lamps < len(inv):
        inv = inv.subset(np.arange(src.limit_lamps))
    graph = build_neighbour_graph(
        inv.lon_deg, inv.lat_deg, street_index=inv.street_index, order_on_street=inv.order_on_street
    )
    return Town(
        inv,
        LampElectrics.from_inventory(inv),
        graph,
        StreetGeometry.from_inventory(inv),
        tuple(notes),
    )


def load_policies(scenario: Scenario) -> list[Policy]:
    return [validate_policy(scenario.path(ref.file)) for ref in scenario.policies]


def policy_names(scenario: Scenario, policies: list[Policy]) -> list[str]:
    return [ref.name or doc.name for ref, doc in zip(scenario.policies, policies, strict=True)]


# --- one night --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NightSetup:
    """What every policy of one night shares: the window, the users and the requirement."""

    night: dt.date
    compiled: tuple[CompiledNight, ...]
    start_step: int
    n_steps: int
    trace: RoadUserTrace
    triggers: Triggers  # in program steps
    required_frac: F32  # [row, interval from the program's first step]
    lamp_required_row: I32
    dark_s: float  # seconds of the window between official sunset and sunrise (centroid)
    notes: tuple[str, ...]
    #: Probes at every passage's entry, then at every passage's exit (program steps); the
    #: same for every policy, so built once.
    probe_lamp: I32 = field(default_factory=lambda: np.zeros(0, np.int32))
    probe_step: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def window_start_ns(self) -> int:
        return self.compiled[0].program.start_ns + self.start_step * _NS


def night_date_64(night: dt.date) -> np.datetime64:
    return np.datetime64(night.isoformat(), "D")


def _window(compiled: list[CompiledNight]) -> tuple[int, int]:
    """Whole hours from 1 h before the first switch-on to 1 h after the last switch-off."""
    program = compiled[0].program
    lit = [span for c in compiled for span in c.lit_ns]
    if not lit:
        return 0, program.n_steps
    first = min(a for a, _ in lit) - _HOUR_NS - program.start_ns
    last = max(b for _, b in lit) + _HOUR_NS - program.start_ns
    start_h = max(0, math.floor(first / _HOUR_NS))
    end_h = min(program.n_steps // 3600, math.ceil(last / _HOUR_NS))
    return start_h * 3600, (end_h - start_h) * 3600


def _demand_model(
    scenario: Scenario, town: Town, start_ns: int, n_hours: int
) -> tuple[DemandModel, list[str]]:
    d = scenario.demand
    n_streets = town.streets.n_streets
    if d.model == "synthetic" or d.counts is None:
        model = DemandModel.synthetic(
            n_streets,
            start_ns=start_ns,
            n_hours=n_hours,
            tz=scenario.tz,
            footfall_peak_per_h=d.footfall_peak_per_h,
            traffic_peak_per_h=d.traffic_peak_per_h,
            cycle_share=d.cycle_share,
        )
        return model, []
    c = d.counts
    loader = {
        "leeds_footfall": count_files.load_leeds_footfall,
        "melbourne_pedestrian": count_files.load_melbourne_pedestrian,
        "i94_traffic": count_files.load_i94_traffic,
    }[c.kind]
    counts = loader(scenario.path(c.path))
    notes = [f"{c.kind}: {counts.report.summary()}"]
    sites = c.sites or list(counts.sites)
    # Streets take the count sites in turn: each street replays one real site's hours.
    site_of_street = [sites[s % len(sites)] for s in range(n_streets)]
    profile = DemandModel.from_profile(
        counts, site_of_street, c.scale, start_ns=start_ns, n_hours=n_hours, tz=scenario.tz
    )
    if c.replay_date is not None:
        # The counted hours of that night, re-timed hour for hour onto the simulated window.
        from zoneinfo import ZoneInfo

        first = dt.datetime.fromtimestamp(start_ns / 1e9, tz=ZoneInfo(scenario.tz))
        counted = counts.night(
            c.replay_date, start_hour=first.hour, end_hour=(first.hour + n_hours) % 24
        )
        model = DemandModel.from_counts(counted, site_of_street, c.scale)
        if model.n_slots != n_hours:
            raise ValueError(
                f"counts of {c.replay_date} give {model.n_slots} hours, the simulated night has "
                f"{n_hours} (a clock change on one of the two dates): pick another replay_date"
            )
        model = replace(model, start_ns=start_ns)
        notes.append(f"replayed counts of the night of {c.replay_date} onto the simulated night")
        if model.gap.any():
            # Rates for hours the counts lack come from the median day; zone demand there stays
            # unknown, so adaptive zones keep their normal class (fail bright).
            model = model.with_gaps_filled(profile)
    else:
        model = profile
    if model.gap.any():
        notes.append(
            f"{int(model.gap.sum())} street-hours without counts: adaptive zones there stay at their normal class"
        )
    return model, notes


def _dark_mask(
    lat_deg: float, lon_deg: float, start_ns: int, n_intervals: int, interval_s: float
) -> npt.NDArray[np.bool_]:
    """True for intervals wholly between sunset and sunrise (sun below the official horizon).

    Compliance is judged per interval; an interval that straddles sunset or sunrise is not
    counted, so lamps switching exactly at sunset are never blamed for the minutes before it.
    """
    edges = start_ns + (np.arange(n_intervals + 1) * interval_s * _NS).astype(np.int64)
    below = solar_elevation_deg(edges, lat_deg, lon_deg) < (90.0 - ZENITH_OFFICIAL_DEG)
    return np.asarray(below[:-1] & below[1:])


def _reference_steps(
    scenario: Scenario,
    trace: RoadUserTrace,
    zone_of_lamp: npt.ArrayLike,
    n_zones: int,
    n_intervals: int,
    offset_intervals: int,
    down: F32,
    up: F32,
) -> npt.NDArray[np.int8]:
    """Class steps per zone on the kernel grid (program intervals) from a trace's demand."""
    per = round(DEMAND_WINDOW_S / INTERVAL_S)
    measured = demand_per_h(trace, zone_of_lamp, interval_s=DEMAND_WINDOW_S, n_zones=n_zones)
    steps = (
        adaptive_steps(measured, down, up) if down.shape[-1] else np.zeros(measured.shape, np.int8)
    )
    grid = np.zeros((n_zones, n_intervals), np.int8)
    fine = np.repeat(steps, per, axis=1)[:, : n_intervals - offset_intervals]
    grid[:, offset_intervals : offset_intervals + fine.shape[1]] = fine
    return grid


def _probes_of(trace: RoadUserTrace, start_step: int, n_steps: int) -> tuple[I32, I64]:
    leave = np.minimum(trace.leave_step + 1, n_steps) + start_step
    lamp = np.concatenate([trace.lamp, trace.lamp]).astype(np.int32)
    step = np.concatenate([trace.enter_step + start_step, leave]).astype(np.int64)
    return lamp, step


def prepare_night(
    scenario: Scenario, town: Town, policies: list[Policy], night: dt.date, seed: int
) -> NightSetup:
    inv = town.inventory
    compiled = [
        compile_night_full(doc, inv, night, scenario.tz, neighbours=town.neighbours)
        for doc in policies
    ]
    start_step, n_steps = _window(compiled)
    program0 = compiled[0].program
    start_ns = program0.start_ns + start_step * _NS
    model, notes = _demand_model(scenario, town, start_ns, n_steps // 3600)
    det = scenario.demand.detection
    rng = np.random.default_rng(np.random.SeedSequence([seed, night.toordinal()]))
    sensor_lamps = rng.random(len(inv)) < det.sensor_share if det.sensor_share < 1.0 else None
    trace, triggers = simulate_night(
        model,
        town.streets,
        start_ns=start_ns,
        n_steps=n_steps,
        seed=int(rng.integers(2**63 - 1)),
        sensors=SensorModel(
            miss_prob=(det.miss_walk, det.miss_cycle, det.miss_drive), latency_s=det.latency_s
        ),
        sensor_lamps=sensor_lamps,
    )
    triggers = Triggers(triggers.step + start_step, triggers.lamp)
    # Requirement rows: one per (street, class) pair present.
    n_int = -(-program0.n_steps // round(INTERVAL_S))
    offset = start_step // round(INTERVAL_S)
    ref = scenario.compliance.thresholds
    down = np.array([t[0] for t in ref], np.float32)
    up = np.array([t[1] for t in ref], np.float32)
    n_streets = town.streets.n_streets
    street_steps = _reference_steps(
        scenario, trace, inv.street_index, n_streets, n_int, offset, down, up
    )
    pair = inv.street_index.astype(np.int64) * len(CLASS_ORDER) + inv.class_index
    pairs, row_of_lamp = np.unique(pair, return_inverse=True)
    ratio = np.array([class_factor_row(c, len(ref)) for c in CLASS_ORDER], np.float32)  # [class, k]
    dark = _dark_mask(
        float(inv.lat_deg.mean()), float(inv.lon_deg.mean()), program0.start_ns, n_int, INTERVAL_S
    )
    required = ratio[pairs % len(CLASS_ORDER)][
        np.arange(len(pairs))[:, None], street_steps[pairs // len(CLASS_ORDER)]
    ]
    required = np.where(dark[None, :], required, 0.0).astype(np.float32)
    sunset_ns, sunrise_ns, _ = dusk_dawn(
        night_date_64(night), float(inv.lat_deg.mean()), float(inv.lon_deg.mean())
    )
    end_ns = start_ns + n_steps * _NS
    dark_s = max(0, min(int(sunrise_ns), end_ns) - max(int(sunset_ns), start_ns)) / _NS
    return NightSetup(
        night,
        tuple(compiled),
        start_step,
        n_steps,
        trace,
        triggers,
        required,
        row_of_lamp.astype(np.int32),
        float(dark_s),
        tuple(notes),
        *_probes_of(trace, start_step, n_steps),
    )


# --- the kernel job (what a Dask worker receives) -----------------------------------------------


@dataclass(frozen=True, eq=False)
class PolicyNightJob:
    """Compact arrays for one policy-night run."""

    program: NightProgram
    electrics: LampElectrics
    triggers: Triggers
    adaptive: npt.NDArray[np.int8]
    required_frac: F32
    lamp_required_row: I32
    probe_lamp: I32
    probe_step: I64
    start_step: int
    n_steps: int
    sample_every_s: float


def run_job(job: PolicyNightJob, *, parallel: bool | None = None) -> tuple[NightResult, float]:
    """Run one policy-night; returns the result and the seconds spent in the kernel.

    ``parallel=False`` keeps the kernel on one core (a Dask task owns one core).
    """
    t0 = time.perf_counter()
    result = run_night(
        job.program,
        job.electrics,
        triggers=job.triggers,
        adaptive_steps=job.adaptive,
        adaptive_interval_s=INTERVAL_S,
        start_step=job.start_step,
        n_steps=job.n_steps,
        sample_every_s=job.sample_every_s,
        required_frac=job.required_frac,
        lamp_required_row=job.lamp_required_row,
        probe_lamp=job.probe_lamp,
        probe_step=job.probe_step,
        parallel=parallel,
    )
    return result, time.perf_counter() - t0


def _measured_trace(trace: RoadUserTrace, measure: str) -> RoadUserTrace:
    """Only the users a policy's sensors count: people for footfall, vehicles for traffic."""
    modes = (Mode.WALK, Mode.CYCLE) if measure == "footfall" else (Mode.DRIVE,)
    keep = np.isin(trace.user_mode[trace.user], np.array(modes, dtype=trace.user_mode.dtype))
    return replace(
        trace,
        user=trace.user[keep],
        lamp=trace.lamp[keep],
        enter_step=trace.enter_step[keep],
        leave_step=trace.leave_step[keep],
    )


def make_job(
    scenario: Scenario, town: Town, setup: NightSetup, compiled: CompiledNight
) -> PolicyNightJob:
    return _make_job(scenario, town, setup, compiled, _JobMemo())


def make_jobs(scenario: Scenario, town: Town, setup: NightSetup) -> list[PolicyNightJob]:
    """:func:`make_job` for every policy of the night, in ``setup.compiled`` order.

    Policies that measure demand alike (same zones, thresholds and measure) or filter
    detections alike (same ``max_speed_mps``) get the same arrays, computed once: a sweep's
    variants mostly differ in a level or a hold time, and each of these steps reads the whole
    night's trace.
    """
    memo = _JobMemo()
    return [_make_job(scenario, town, setup, compiled, memo) for compiled in setup.compiled]


@dataclass(eq=False)
class _JobMemo:
    """Arrays one night's policies may share, keyed by what they depend on besides the night."""

    adaptive: dict[tuple[object, ...], npt.NDArray[np.int8]] = field(default_factory=dict)
    triggers: dict[float, Triggers] = field(default_factory=dict)


def _make_job(
    scenario: Scenario, town: Town, setup: NightSetup, compiled: CompiledNight, memo: _JobMemo
) -> PolicyNightJob:
    program = compiled.program
    n_int = -(-program.n_steps // round(INTERVAL_S))
    offset = setup.start_step // round(INTERVAL_S)
    th = compiled.thresholds
    n_zones = len(th.zone_names)
    if n_zones:
        key = (
            th.measure,
            n_zones,
            n_int,
            *(
                (a.dtype.str, a.shape, a.tobytes())
                for a in (program.lamp_zone, th.down_per_h, th.up_per_h)
            ),
        )
        if key not in memo.adaptive:
            trace = _measured_trace(setup.trace, th.measure)
            memo.adaptive[key] = _reference_steps(
                scenario,
                trace,
                program.lamp_zone,
                n_zones,
                n_int,
                offset,
                th.down_per_h,
                th.up_per_h,
            )
        adaptive = memo.adaptive[key]
    else:
        adaptive = np.zeros((0, n_int), np.int8)
    probe_lamp, probe_step = setup.probe_lamp, setup.probe_step
    triggers = setup.triggers
    if math.isfinite(compiled.max_speed_mps):
        if compiled.max_speed_mps not in memo.triggers:
            g = town.neighbours
            memo.triggers[compiled.max_speed_mps], _ = plausible_triggers(
                triggers,
                neighbour_indptr=g.indptr,
                neighbour_indices=g.indices,
                neighbour_distance_m=g.distance_m,
                max_speed_mps=compiled.max_speed_mps,
            )
        triggers = memo.triggers[compiled.max_speed_mps]
    return PolicyNightJob(
        program,
        town.electrics,
        triggers,
        adaptive,
        setup.required_frac,
        setup.lamp_required_row,
        probe_lamp,
        probe_step,
        setup.start_step,
        setup.n_steps,
        scenario.heatmap_bin_s,
    )


# --- accounting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyNight:
    """Figures of one policy on one night (the accounting of a :class:`NightResult`)."""

    energy_wh_by_lamp: F64
    energy_kwh_by_hour: F64
    commands: int
    switch_ons: int
    burning_h: float
    user_seconds_by_hour: F64
    below_user_seconds_by_hour: F64
    user_seconds_by_lamp: F64
    below_user_seconds_by_lamp: F64
    users: int
    users_before_boost: int
    dark_user_seconds: float
    samples: F32


def account(setup: NightSetup, job: PolicyNightJob, result: NightResult) -> PolicyNight:
    """The figures of ``job`` (made by :func:`make_job` for ``setup``) from its kernel result."""
    return account_passages(job, result, passage_user=setup.trace.user, n_users=setup.trace.n_users)


def account_passages(
    job: PolicyNightJob, result: NightResult, *, passage_user: I32, n_users: int
) -> PolicyNight:
    """:func:`account` from the job itself and the road user of each passage.

    The job's probes are the night's passages, every entry and then every exit
    (:class:`NightSetup`), so probe ``r`` and probe ``r + len(passage_user)`` are passage ``r``'s;
    ``n_users`` is the night's number of road users. Nothing else of the night is read: a Dask
    worker accounts where its kernel ran and sends back a few numbers, not per-passage arrays.
    """
    m = len(passage_user)
    if len(job.probe_lamp) != 2 * m or len(result.probe_level_frac) != 2 * m:
        raise ValueError(
            f"{m} passages need {2 * m} probes (entries, then exits); the job has "
            f"{len(job.probe_lamp)} and its result {len(result.probe_level_frac)}"
        )
    lamp = job.probe_lamp[:m]
    enter_abs = job.probe_step[:m]
    enter_level = result.probe_level_frac[:m]
    below = result.probe_below_required_s[m:] - result.probe_below_required_s[:m]
    # An exit probe sits at min(leave + 1, n_steps): its distance from the entry is the
    # passage's seconds inside the window.
    seconds = (job.probe_step[m:] - enter_abs).astype(np.float64)
    required_at_enter = job.required_frac[
        job.lamp_required_row[lamp], enter_abs // round(INTERVAL_S)
    ]
    counted = required_at_enter > 0  # passages while the class required light
    seconds = np.where(counted, seconds, 0.0)
    below = np.where(counted, below, 0.0)
    program = job.program
    prof = program.lamp_profile[lamp]
    boost = np.minimum(program.boost_frac[prof], program.ceiling_frac[lamp])
    presence = program.boost_frac[prof] > 0
    early = (
        counted
        & presence
        & (enter_level + 1e-6 < boost)
        & (program.program_frac[prof, enter_abs] > 0)
    )
    dark = counted & (enter_level <= 0.0)
    hour = ((enter_abs - job.start_step) // 3600).astype(np.int64)
    n_hours = job.n_steps // 3600
    n = len(job.electrics.rated_power_w)
    # Distinct users by marking, not np.unique: no sort of millions of passages.
    seen = np.zeros(n_users, np.bool_)
    seen[passage_user[early]] = True
    return PolicyNight(
        energy_wh_by_lamp=result.energy_wh.sum(axis=1),
        energy_kwh_by_hour=result.energy_wh.sum(axis=0) / 1000.0,
        commands=int(result.commands.sum()),
        switch_ons=int(result.switch_ons.sum()),
        burning_h=float(result.on_s.sum() / 3600.0),
        user_seconds_by_hour=np.bincount(hour, seconds, minlength=n_hours)[:n_hours].astype(
            np.float64
        ),
        below_user_seconds_by_hour=np.bincount(hour, below, minlength=n_hours)[:n_hours].astype(
            np.float64
        ),
        user_seconds_by_lamp=np.bincount(lamp, seconds, minlength=n).astype(np.float64),
        below_user_seconds_by_lamp=np.bincount(lamp, below, minlength=n).astype(np.float64),
        users=n_users,
        users_before_boost=int(np.count_nonzero(seen)),
        dark_user_seconds=float(seconds[dark].sum()),
        samples=result.samples,
    )


def all_night_energy_kwh(town: Town, setup: NightSetup) -> float:
    """Closed form: full output from sunset to sunrise, standby through the whole window."""
    e = town.electrics
    return float(
        (e.rated_power_w.sum() * setup.dark_s + e.standby_power_w.sum() * setup.n_steps) / 3.6e6
    )


def _share(below: float, total: float) -> float:
    return below / total if total > 0 else 0.0


def _hour_labels(tz: str, start_ns: int, n_hours: int) -> list[str]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    return [
        dt.datetime.fromtimestamp((start_ns + h * _HOUR_NS) / 1e9, tz=zone).strftime("%H:%M")
        for h in range(n_hours)
    ]


def _heatmap(scenario: Scenario, town: Town, setup: NightSetup, name: str, samples: F32) -> Heatmap:
    inv = town.inventory
    order = np.lexsort((inv.order_on_street, inv.street_index))
    pick = order[
        np.linspace(0, len(order) - 1, min(scenario.heatmap_lamps, len(order))).astype(int)
    ]
    from zoneinfo import ZoneInfo

    first = dt.datetime.fromtimestamp(setup.window_start_ns / 1e9, tz=ZoneInfo(scenario.tz))
    return Heatmap(
        policy=name,
        night=str(setup.night),
        lamp_ids=[str(x) for x in inv.lamp_id[pick]],
        bin_s=scenario.heatmap_bin_s,
        first_bin_local=first.isoformat(),
        level_frac=np.round(samples[pick], 4).tolist(),
    )


def run_scenario(scenario: Scenario, *, progress: Progress | None = None) -> SimulationReport:
    """Simulate every night of ``scenario`` under each policy and account for it."""
    t_start = time.perf_counter()
    town = load_town(scenario)
    policies = load_policies(scenario)
    names = policy_names(scenario, policies)
    if scenario.current_policy is not None and scenario.current_policy not in names:
        raise ValueError(
            f"current_policy {scenario.current_policy!r} is not one of the policies {names}"
        )
    nights = [scenario.nights.first + dt.timedelta(days=k) for k in range(scenario.nights.count)]
    inv = town.inventory
    totals: dict[str, list[PolicyNight]] = {name: [] for name in names}
    per_night: list[NightFigures] = []
    heatmaps: list[Heatmap] = []
    notes: list[str] = list(town.notes)
    all_night_kwh = 0.0
    kernel_s = 0.0
    hour_labels: list[str] = []
    n_hours = 0
    total_jobs = len(nights) * len(names)
    done = 0
    for k, night in enumerate(nights):
        setup = prepare_night(scenario, town, policies, night, scenario.seed + k)
        notes.extend(f"{night}: {note}" for note in setup.notes if note not in notes)
        all_night_kwh += all_night_energy_kwh(town, setup)
        if setup.n_steps // 3600 > n_hours:
            n_hours = setup.n_steps // 3600
            hour_labels = _hour_labels(scenario.tz, setup.window_start_ns, n_hours)
        for name, compiled in zip(names, setup.compiled, strict=True):
            job = make_job(scenario, town, setup, compiled)
            result, secs = run_job(job)
            kernel_s += secs
            figures = account(setup, job, result)
            totals[name].append(figures)
            kwh = float(figures.energy_wh_by_lamp.sum() / 1000.0)
            per_night.append(
                NightFigures(
                    night=str(night),
                    policy=name,
                    energy_kwh=kwh,
                    cost=kwh * scenario.tariff.per_kwh,
                    co2_kg=kwh * scenario.carbon.kg_per_kwh,
                    below_required_share=_share(
                        figures.below_user_seconds_by_hour.sum(), figures.user_seconds_by_hour.sum()
                    ),
                    commands=figures.commands,
                )
            )
            if k == 0:
                heatmaps.append(_heatmap(scenario, town, setup, name, figures.samples))
            done += 1
            if progress:
                progress(f"{night} {name}", done, total_jobs)
    energies = {
        name: sum(float(f.energy_wh_by_lamp.sum()) for f in fs) / 1000.0
        for name, fs in totals.items()
    }
    current = energies.get(scenario.current_policy) if scenario.current_policy else None
    figures_out = []
    for doc, name in zip(policies, names, strict=True):
        fs = totals[name]
        kwh = energies[name]
        by_hour = np.zeros(n_hours)
        users_h = np.zeros(n_hours)
        below_h = np.zeros(n_hours)
        for f in fs:
            by_hour[: len(f.energy_kwh_by_hour)] += f.energy_kwh_by_hour
            users_h[: len(f.user_seconds_by_hour)] += f.user_seconds_by_hour
            below_h[: len(f.below_user_seconds_by_hour)] += f.below_user_seconds_by_hour
        lamp_e = sum(f.energy_wh_by_lamp for f in fs)
        lamp_u = sum(f.user_seconds_by_lamp for f in fs)
        lamp_b = sum(f.below_user_seconds_by_lamp for f in fs)
        n_streets = len(inv.street_names) or 1
        st_e = np.bincount(inv.street_index, lamp_e, minlength=n_streets)
        st_u = np.bincount(inv.street_index, lamp_u, minlength=n_streets)
        st_b = np.bincount(inv.street_index, lamp_b, minlength=n_streets)
        st_n = np.bincount(inv.street_index, minlength=n_streets)
        user_s = float(users_h.sum())
        below_s = float(below_h.sum())
        figures_out.append(
            PolicyFigures(
                policy=name,
                policy_version=doc.version,
                energy_kwh=kwh,
                cost=kwh * scenario.tariff.per_kwh,
                co2_kg=kwh * scenario.carbon.kg_per_kwh,
                saving_vs_all_night_frac=1.0 - kwh / all_night_kwh if all_night_kwh else 0.0,
                saving_vs_current_frac=None
                if current is None
                else (1.0 - kwh / current if current else 0.0),
                compliance=Compliance(
                    road_users=sum(f.users for f in fs),
                    user_seconds=user_s,
                    below_required_user_seconds=below_s,
                    below_required_share=_share(below_s, user_s),
                    users_before_boost=sum(f.users_before_boost for f in fs),
                    dark_user_seconds=sum(f.dark_user_seconds for f in fs),
                ),
                commands=sum(f.commands for f in fs),
                switch_ons=sum(f.switch_ons for f in fs),
                burning_hours=sum(f.burning_h for f in fs),
                energy_by_hour_kwh=[round(x, 6) for x in by_hour],
                below_required_share_by_hour=[
                    _share(b, u) for b, u in zip(below_h, users_h, strict=True)
                ],
                per_street=[
                    StreetFigures(
                        street=inv.street_names[s] if inv.street_names else str(s),
                        lamps=int(st_n[s]),
                        energy_kwh=float(st_e[s] / 1000.0),
                        below_required_share=_share(st_b[s], st_u[s]),
                    )
                    for s in np.argsort(-st_e)[:50]
                ],
            )
        )
    return SimulationReport(
        scenario=scenario.name,
        seed=scenario.seed,
        lamps=len(inv),
        streets=len(inv.street_names),
        tz=scenario.tz,
        nights=[str(n) for n in nights],
        hour_labels=hour_labels,
        tariff_per_kwh=scenario.tariff.per_kwh,
        currency=scenario.tariff.currency,
        carbon_kg_per_kwh=scenario.carbon.kg_per_kwh,
        carbon_factor_year=scenario.carbon.year,
        current_policy=scenario.current_policy,
        all_night_energy_kwh=all_night_kwh,
        policies=figures_out,
        per_night=per_night,
        heatmaps=heatmaps,
        demand_notes=notes,
        wall_s=time.perf_counter() - t_start,
        kernel_s=kernel_s,
    )


def default_output_dir(scenario_path: str | Path) -> Path:
    return Path("artifacts") / Path(scenario_path).stem

"""Simulator benchmark: Bristol's street lights over one winter night at 1 s, three policies.

Workload (issue "Simulator"): the Bristol inventory (49,451 lamps, positions only, 60 W assumed)
on the night of 2026-12-21, with count-driven demand (Leeds city-centre footfall replayed onto
residential streets) and the three sample policies. The window is whole hours from one hour
before the first switch-on to one hour after the last switch-off (about 19 h in December); the
output states it and the lamp-steps it makes.

1. *Whole run*: :func:`simulation.run.run_scenario`, as ``streetlight simulate`` calls it. It
   prints the wall time, the time inside the kernels and their ratio (target: at most 2), and
   where the rest went (town, night preparation, jobs, accounting), timed by wrapping the
   run's own stages.
2. *Sweep*: 8 variants of the presence policy (hold time x idle level) run by
   :func:`simulation.sweep.run_sweep` on a LocalCluster of 2 worker processes (start-up
   included), against :func:`simulation.sweep.run_sweep_serial` doing the same work in this
   process, one job after another with the same serial kernel (target >= 1.7x). Both results
   must be equal. ``--threaded-baseline`` also times the in-process sweep with the parallel
   kernel (all cores in one job at a time). The Dask driver shares the cores with the workers,
   so what it spends is printed too: CPU seconds, preparing the night, making and shipping the
   jobs, and reading the answers (with their size per job).

    python -m benchmarks.simulation                 # full size: about 15 minutes on 2 cores
    python -m benchmarks.simulation --quick --json  # < 60 s, one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "streetlight" / "samples"
POLICIES = ("policy_all_night.yaml", "policy_part_night.yaml", "policy_presence_adaptive.yaml")

#: Quick mode: lamps kept and sweep variants, chosen so the whole benchmark takes < 60 s on 2 cores.
QUICK_LAMPS = 4000
FULL_GRID: dict[str, list[Any]] = {
    "profiles.estate.presence.hold_s": [30, 60, 120, 240],
    "profiles.estate.presence.base_level_frac": [0.5, 0.6],
}
QUICK_GRID: dict[str, list[Any]] = {
    "profiles.estate.presence.hold_s": [30, 120],
    "profiles.estate.presence.base_level_frac": [0.5, 0.6],
}


def scenario_document(limit_lamps: int | None) -> dict[str, Any]:
    """streetlight/samples/scenario_bristol_leeds.yaml with absolute paths and without
    ``replay_date``: the median hourly profile of the Leeds counts drives the night. (A replayed
    night has 18 count hours, one short of the 19-hour window of 2026-12-21, and is refused.)
    """
    inventory: dict[str, Any] = {
        "file": str(DATA / "bristol_streetlights_lonlat.csv"),
        "mapping": {
            "council_id": "bristol",
            "x_column": "longitude",
            "y_column": "latitude",
            "default_power_w": 60,
        },
    }
    if limit_lamps is not None:
        inventory["limit_lamps"] = limit_lamps
    return {
        "schema_version": 1,
        "name": "bristol-leeds-footfall",
        "tz": "Europe/London",
        "inventory": inventory,
        "demand": {
            "model": "counts",
            "counts": {
                "kind": "leeds_footfall",
                "path": str(DATA / "leeds_footfall_hourly_2009-2016.csv.gz"),
                "scale": 0.01,
            },
        },
        "policies": [{"file": str(SAMPLES / name)} for name in POLICIES],
        "current_policy": "all-night-class-step",
        "nights": {"first": "2026-12-21", "count": 1},
        "seed": 1,
    }


@contextmanager
def timed_stages(module: Any, names: tuple[str, ...]) -> Iterator[dict[str, float]]:
    """Seconds spent in each named function of ``module`` while the block runs.

    The run's stages are module globals that ``run_scenario`` looks up at call time, so
    wrapping them times the real run instead of a second, hand-written copy of it.
    """
    totals: dict[str, float] = defaultdict(float)
    originals = {name: getattr(module, name) for name in names}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - t0

        return timed

    for name, fn in originals.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield totals
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


def whole_run(scenario_path: Path) -> dict[str, Any]:
    from simulation import run
    from simulation.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    stages = ("load_town", "load_policies", "prepare_night", "make_job", "run_job", "account")
    t0 = time.perf_counter()
    with timed_stages(run, stages) as spent:
        report = run.run_scenario(scenario)
    wall_s = time.perf_counter() - t0
    window_h = len(report.hour_labels)
    accounted = sum(spent.values())
    return {
        "lamps": report.lamps,
        "policies": [p.policy for p in report.policies],
        "window_h": window_h,
        "window_first_hour_local": report.hour_labels[0],
        "lamp_steps_per_policy": report.lamps * window_h * 3600,
        "run_wall_s": wall_s,
        "kernel_s": report.kernel_s,
        "overhead_ratio": wall_s / report.kernel_s,
        "stages_s": {
            "load_town": spent["load_town"],
            "load_policies": spent["load_policies"],
            "prepare_night": spent["prepare_night"],
            "make_job": spent["make_job"],
            "kernel": report.kernel_s,
            "run_job_other": spent["run_job"] - report.kernel_s,
            "account": spent["account"],
            "report_assembly": wall_s - accounted,
        },
        "energy_kwh": {p.policy: p.energy_kwh for p in report.policies},
    }


def sweep(sweep_path: Path, n_workers: int, threaded_baseline: bool) -> dict[str, Any]:
    from simulation import sweep as sw
    from simulation.run import PolicyNight

    spec = sw.load_sweep(sweep_path)
    t0 = time.perf_counter()
    serial = sw.run_sweep_serial(spec)
    serial_s = time.perf_counter() - t0
    # The driver shares the cores with the workers: what it spends per job (making and
    # shipping jobs, reading answers) is taken from the kernels.
    answers: list[int] = []
    read = sw._policy_night

    def counted(out: sw.Arrays) -> PolicyNight:
        answers.append(sum(v.nbytes if isinstance(v, np.ndarray) else 8 for v in out.values()))
        return read(out)

    sw._policy_night = counted
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        with timed_stages(sw, ("prepare_night", "_submit_night", "_policy_night")) as driver:
            dask = sw.run_sweep(spec, n_workers=n_workers, threads_per_worker=1)
    finally:
        sw._policy_night = read
    dask_s = time.perf_counter() - t0
    dask_cpu_s = time.process_time() - cpu0
    out: dict[str, Any] = {
        "variants": len(serial.rows),
        "valid_variants": sum(r.valid for r in serial.rows),
        "workers": n_workers,
        "serial_s": serial_s,
        "serial_kernel_s": serial.kernel_s,
        "dask_s": dask_s,
        "dask_kernel_s": dask.kernel_s,
        "speedup": serial_s / dask_s,
        "identical": dask.rows == serial.rows,
        "dask_driver": {
            "cpu_s": dask_cpu_s,
            "prepare_night_s": driver["prepare_night"],
            "make_and_ship_jobs_s": driver["_submit_night"],
            "read_answers_s": driver["_policy_night"],
            "answer_bytes_per_job": sum(answers) / max(len(answers), 1),
        },
    }
    if threaded_baseline:
        # The in-process sweep again, each job on the parallel kernel (every core, one job at a
        # time): what a user would get from running the variants through run_scenario.
        original = sw._run_kernel

        def parallel_kernel(job: Any) -> Any:
            from simulation.run import run_job

            return run_job(job)

        sw._run_kernel = parallel_kernel
        try:
            t0 = time.perf_counter()
            threaded = sw.run_sweep_serial(spec)
            out["threaded_s"] = time.perf_counter() - t0
        finally:
            sw._run_kernel = original
        out["speedup_vs_threaded"] = out["threaded_s"] / dask_s
        out["threaded_identical"] = threaded.rows == serial.rows
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_LAMPS} lamps, 4 variants")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    ap.add_argument("--lamps", type=int, default=None, help="keep the first N lamps")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--threaded-baseline",
        action="store_true",
        help="also time the sweep in process on the parallel kernel",
    )
    args = ap.parse_args(argv)
    for name in ("bristol_streetlights_lonlat.csv", "leeds_footfall_hourly_2009-2016.csv.gz"):
        if not (DATA / name).is_file():
            ap.error(
                f"{DATA / name} is missing: the shared open data must sit beside the repository"
            )
    # Timings on a shared machine mean little without its load: it goes into the output.
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    t0 = time.perf_counter()
    import simulation.run
    import simulation.sweep  # noqa: F401

    import_s = time.perf_counter() - t0
    limit = args.lamps if args.lamps is not None else (QUICK_LAMPS if args.quick else None)
    grid = QUICK_GRID if args.quick else FULL_GRID
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        scenario_path = Path(tmp) / "scenario.yaml"
        scenario_path.write_text(yaml.safe_dump(scenario_document(limit)), encoding="utf-8")
        sweep_path = Path(tmp) / "sweep.yaml"
        sweep_path.write_text(
            yaml.safe_dump(
                {
                    "name": "presence-hold-and-idle",
                    "scenario": str(scenario_path),
                    "policies": [str(SAMPLES / "policy_presence_adaptive.yaml")],
                    "parameters": grid,
                }
            ),
            encoding="utf-8",
        )
        run = whole_run(scenario_path)
        swept = sweep(sweep_path, args.workers, args.threaded_baseline)
    out: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "import_s": import_s,
        **run,
        "sweep": swept,
        "sweep_speedup": swept["speedup"],
        "targets": {
            "overhead_ratio_le_2": run["overhead_ratio"] <= 2.0,
            "sweep_speedup_ge_1_7": swept["speedup"] >= 1.7,
        },
        "benchmark_s": time.perf_counter() - t_start,
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    if args.json:
        print(json.dumps(out))
        return out
    st = run["stages_s"]
    print(
        f"Bristol, {run['lamps']:,} lamps, night of 2026-12-21: window {run['window_h']} h from "
        f"{run['window_first_hour_local']} local = {run['lamp_steps_per_policy']:,} lamp-steps "
        f"per policy, {len(run['policies'])} policies"
    )
    print(f"  import                       : {import_s:6.1f} s")
    print(f"  whole run (run_scenario)     : {run['run_wall_s']:6.1f} s")
    print(f"  inside the kernels           : {run['kernel_s']:6.1f} s")
    print(f"  overhead ratio (target <= 2) : {run['overhead_ratio']:6.2f}")
    for name, secs in st.items():
        print(f"    {name:<26} : {secs:6.1f} s")
    print(
        f"Sweep: {swept['variants']} variants of the presence policy, {swept['workers']} Dask "
        f"workers vs serial in process"
    )
    print(
        f"  serial (serial kernel)       : {swept['serial_s']:6.1f} s (kernels {swept['serial_kernel_s']:.1f} s)"
    )
    print(
        f"  Dask, start-up included      : {swept['dask_s']:6.1f} s (kernels {swept['dask_kernel_s']:.1f} s)"
    )
    print(f"  speed-up (target >= 1.7)     : {swept['speedup']:6.2f}x")
    print(f"  identical results            : {swept['identical']}")
    drv = swept["dask_driver"]
    print(
        f"  Dask driver                  : {drv['cpu_s']:6.1f} s CPU; prepare night "
        f"{drv['prepare_night_s']:.1f} s, make and ship jobs {drv['make_and_ship_jobs_s']:.2f} s, "
        f"read answers {drv['read_answers_s']:.3f} s ({drv['answer_bytes_per_job']:,.0f} bytes/job)"
    )
    if "threaded_s" in swept:
        print(f"  serial, parallel kernel      : {swept['threaded_s']:6.1f} s")
        print(f"  speed-up over that           : {swept['speedup_vs_threaded']:6.2f}x")
    print(
        f"benchmark took {out['benchmark_s']:.0f} s; 1-minute load average "
        f"{load_before:.2f} before, {out['load_avg_1min']['after']:.2f} after (2 = both cores busy)"
    )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

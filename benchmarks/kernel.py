"""Dimming-kernel benchmark: a 14-hour winter night at 1 s for a large fleet.

Workload (issue "Foundation and the dimming core"): ``--lamps`` lamps (100,000) x ``--steps``
one-second steps (50,400 = 14 h), presence detections concentrated in the evening (on average
one per lamp per 10 minutes), adaptive class steps from a demand profile in 15-minute
intervals, and each detection raising 3 lamps ahead and 3 behind along the street.

It prints lamp-steps per second for the production kernel (serial and parallel), the
vectorised NumPy twin (``tests/naive_levels.night_numpy``) and plain Python on subsets, the
ratios, whether the kernel's results equal the twin's on the twin's subset, and the start-up
time of a fresh process with an empty numba cache (cold) and with a warm one (cached).

    python -m benchmarks.kernel                 # full size
    python -m benchmarks.kernel --quick --json  # < 30 s, one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from controller.dimming.adaptive import adaptive_steps
from controller.dimming.levels import Triggers, run_night
from controller.dimming.power import LampElectrics
from controller.dimming.program import NightProgram

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.naive_levels import night_numpy, night_python  # noqa: E402

LAMPS_PER_STREET = 20
NEIGHBOURS_EACH_WAY = 3
INTERVAL_S = 900


def evening_weights(n_steps: int) -> np.ndarray:
    """Relative presence rate through a night starting at 16:00: busy evening, quiet small hours."""
    hour = 16.0 + np.arange(n_steps) / 3600.0
    h = hour % 24.0
    w = np.where(h >= 16.0, np.interp(h, [16, 18, 21, 24], [1.0, 1.0, 0.5, 0.15]), 0.0)
    w = w + np.where(h < 16.0, np.interp(h, [0, 3, 5, 6, 7], [0.15, 0.05, 0.05, 0.2, 0.4]), 0.0)
    return w / w.sum()


def build(
    n_lamps: int, n_steps: int, seed: int = 1
) -> tuple[NightProgram, LampElectrics, Triggers, np.ndarray]:
    rng = np.random.default_rng(seed)
    hour = (16 + np.arange(n_steps) // 3600) % 24
    # Two profiles: residential (P4, part-night dimming) and main road (M5, step dimming).
    res = np.where((hour >= 22) | (hour < 6), 0.5, 1.0).astype(np.float32)
    main = np.where((hour >= 0) & (hour < 5), 0.6, 1.0).astype(np.float32)
    program = np.stack([res, main])
    floor = np.stack([np.full(n_steps, 0.2, np.float32), np.full(n_steps, 0.3, np.float32)])
    # Neighbours: lamps in streets of 20, 3 ahead and 3 behind.
    idx = np.arange(n_lamps)
    street_pos = idx % LAMPS_PER_STREET
    offsets = np.array([-3, -2, -1, 1, 2, 3])
    cand = idx[:, None] + offsets[None, :]
    ok = (street_pos[:, None] + offsets[None, :] >= 0) & (
        street_pos[:, None] + offsets[None, :] < LAMPS_PER_STREET
    )
    ok &= cand < n_lamps
    indptr = np.concatenate(([0], np.cumsum(ok.sum(axis=1)))).astype(np.int64)
    indices = cand[ok].astype(np.int32)
    n_zones = max(1, n_lamps // 1000)
    prog = NightProgram(
        start_ns=0,
        step_s=1.0,
        program_frac=program,
        floor_frac=floor,
        boost_frac=np.array([1.0, 1.0], np.float32),
        hold_s=np.array([60.0, 30.0], np.float32),
        fade_up_frac_per_s=np.array([1.0, 1.0], np.float32),
        fade_down_frac_per_s=np.array([0.05, 0.05], np.float32),
        class_factor=np.array([[1.0, 0.6, 0.4], [1.0, 0.7, 0.5]], np.float32),
        lamp_profile=(rng.random(n_lamps) < 0.3).astype(np.int32),
        lamp_zone=(idx * n_zones // n_lamps).astype(np.int32),
        ceiling_frac=rng.choice(np.array([1.0, 0.9, 0.85], np.float32), n_lamps),
        neighbour_indptr=indptr,
        neighbour_indices=indices,
    )
    electrics = LampElectrics(
        rated_power_w=rng.choice([35.0, 55.0, 70.0, 100.0], n_lamps),
        standby_power_w=np.full(n_lamps, 0.5),
        curve_index=np.zeros(n_lamps, np.int32),
        tables=LampElectrics.uniform(1, 1.0).tables,
    )
    count = n_lamps * n_steps // 600
    steps = rng.choice(n_steps, size=count, p=evening_weights(n_steps))
    triggers = Triggers.from_unsorted(steps, rng.integers(0, n_lamps, size=count))
    n_int = -(-n_steps // INTERVAL_S)
    profile = np.interp(
        np.arange(n_int) * INTERVAL_S / 3600.0, [0, 3, 6, 9, 12, 14], [600, 400, 150, 40, 120, 500]
    )
    demand = profile[None, :] * rng.uniform(0.5, 1.5, size=(n_zones, 1))
    steps_arr = adaptive_steps(demand, [200.0, 80.0], [260.0, 110.0])
    return prog, electrics, triggers, steps_arr


def subset(
    program: NightProgram,
    electrics: LampElectrics,
    triggers: Triggers,
    steps: np.ndarray,
    n: int,
    t: int,
):
    """The first ``n`` lamps over the first ``t`` steps, neighbours outside the subset dropped."""
    keep = program.neighbour_indices[: program.neighbour_indptr[n]] < n
    counts = (
        np.add.reduceat(keep.astype(np.int64), program.neighbour_indptr[:n]) if n else np.zeros(0)
    )
    counts = np.where(np.diff(program.neighbour_indptr[: n + 1]) == 0, 0, counts)
    sub = NightProgram(
        **{
            **program.__dict__,
            "program_frac": np.ascontiguousarray(program.program_frac[:, :t]),
            "floor_frac": np.ascontiguousarray(program.floor_frac[:, :t]),
            "lamp_profile": program.lamp_profile[:n],
            "lamp_zone": program.lamp_zone[:n],
            "ceiling_frac": program.ceiling_frac[:n],
            "neighbour_indptr": np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
            "neighbour_indices": program.neighbour_indices[: program.neighbour_indptr[n]][keep],
        }
    )
    m = (triggers.lamp < n) & (triggers.step < t)
    return sub, electrics.subset(np.arange(n)), Triggers(triggers.step[m], triggers.lamp[m]), steps


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


STARTUP_SNIPPET = """
import time; t0 = time.perf_counter()
import numpy as np
from benchmarks.kernel import build
from controller.dimming.levels import run_night
p, e, tr, st = build(200, 600)
run_night(p, e, triggers=tr, adaptive_steps=st, parallel=False)
run_night(p, e, triggers=tr, adaptive_steps=st, parallel=True)
print(time.perf_counter() - t0)
"""


def startup_times() -> tuple[float, float]:
    """Seconds to import and run a tiny night in a fresh process: empty cache, then warm cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", STARTUP_SNIPPET],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, finishes in < 30 s")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    ap.add_argument("--lamps", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    n_lamps = args.lamps or (20_000 if args.quick else 100_000)
    n_steps = args.steps or (7_200 if args.quick else 50_400)
    twin_lamps, twin_steps = (4_000, 600) if args.quick else (20_000, 1_800)
    py_lamps, py_steps = (20, 300) if args.quick else (50, 600)

    program, electrics, triggers, steps = build(n_lamps, n_steps)
    # Compile (or load from cache) outside the timings.
    warm = subset(program, electrics, triggers, steps, 50, 100)
    run_night(warm[0], warm[1], triggers=warm[2], adaptive_steps=warm[3], parallel=False)
    run_night(warm[0], warm[1], triggers=warm[2], adaptive_steps=warm[3], parallel=True)
    kw = dict(triggers=triggers, adaptive_steps=steps, adaptive_interval_s=INTERVAL_S)
    t_par, res = timed(
        lambda: run_night(program, electrics, parallel=True, **kw),
        repeat=1 if not args.quick else 2,
    )
    t_ser, _ = timed(lambda: run_night(program, electrics, parallel=False, **kw))
    lamp_steps = n_lamps * n_steps

    sp, se, st, ss = subset(program, electrics, triggers, steps, twin_lamps, twin_steps)
    skw = dict(triggers=st, adaptive_steps=ss, adaptive_interval_s=INTERVAL_S, sample_every_s=10.0)
    t_np, twin = timed(lambda: night_numpy(sp, se, **skw))
    mine = run_night(sp, se, parallel=True, **skw)
    identical = bool(
        np.array_equal(mine.samples, twin.samples)
        and np.array_equal(mine.state.level_frac, twin.state.level_frac)
        and np.array_equal(mine.commands, twin.commands)
        and np.allclose(mine.energy_wh, twin.energy_wh, rtol=1e-9, atol=0)
    )
    pp, pe, pt, ps = subset(program, electrics, triggers, steps, py_lamps, py_steps)
    t_py, _ = timed(lambda: night_python(pp, pe, pt, ps, INTERVAL_S))
    cold_s, cached_s = startup_times()

    out = {
        "lamps": n_lamps,
        "steps": n_steps,
        "presence_triggers": len(triggers),
        "lamp_steps_per_s": lamp_steps / t_par,
        "serial_lamp_steps_per_s": lamp_steps / t_ser,
        "numpy_lamp_steps_per_s": twin_lamps * twin_steps / t_np,
        "python_lamp_steps_per_s": py_lamps * py_steps / t_py,
        "ratio_vs_numpy": (lamp_steps / t_par) / (twin_lamps * twin_steps / t_np),
        "serial_ratio_vs_numpy": (lamp_steps / t_ser) / (twin_lamps * twin_steps / t_np),
        "ratio_vs_python": (lamp_steps / t_par) / (py_lamps * py_steps / t_py),
        "identical_to_twin": identical,
        "night_energy_kwh": res.energy_kwh,
        "cold_start_s": cold_s,
        "cached_start_s": cached_s,
        "threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"kernel benchmark: {n_lamps:,} lamps x {n_steps:,} steps, {len(triggers):,} presence triggers"
        )
        print(
            f"  production kernel, parallel : {out['lamp_steps_per_s'] / 1e6:10.1f} M lamp-steps/s  ({t_par:.2f} s)"
        )
        print(
            f"  production kernel, serial   : {out['serial_lamp_steps_per_s'] / 1e6:10.1f} M lamp-steps/s  ({t_ser:.2f} s)"
        )
        print(
            f"  NumPy twin ({twin_lamps:,} x {twin_steps:,})   : {out['numpy_lamp_steps_per_s'] / 1e6:10.1f} M lamp-steps/s"
        )
        print(
            f"  pure Python ({py_lamps} x {py_steps})     : {out['python_lamp_steps_per_s'] / 1e6:10.3f} M lamp-steps/s"
        )
        print(f"  ratio parallel / NumPy twin : {out['ratio_vs_numpy']:.1f}x (target >= 5x)")
        print(f"  ratio serial / NumPy twin   : {out['serial_ratio_vs_numpy']:.1f}x")
        print(f"  ratio parallel / Python     : {out['ratio_vs_python']:.0f}x")
        print(f"  identical to the twin       : {identical}")
        print(f"  start-up, cold / cached     : {cold_s:.2f} s / {cached_s:.2f} s")
    return out


if __name__ == "__main__":
    main()

"""Invariants of the live loop and of the health alarms, over random programs and inputs.

The live controller is checked against a slow twin kept here: the public ``tick`` stepped once a
tick with the same detections, override levels from a naive latest-wins scan, adaptive steps
from a naive hysteresis loop, and each lamp's target written out from the kernel's rules in
words (``tests/naive_levels.py``): program x class factor, boost while held and lit, CLO
ceiling, override, safety floor, full output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.dimming.levels import LampState, tick
from controller.dimming.program import NightProgram
from controller.health import AlarmKind, AlarmScope, HealthMonitor
from controller.live import ActiveProgram, LiveController
from controller.policy import CompiledNight, Override, ZoneThresholds
from domain.inventory import InventoryArrays
from domain.records import Lamp, LampCommand, LightingClass, Reading, ReadingKind, StatusFlag
from tests.programs import random_program

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
S = 1_000_000_000
N_PROGRAM = 6  # lamps driven by the random program
N_EXTRA = 2  # lamps no program covers: the fallback drives them
GROUPS = ("g0", "g1", "g2")
DOWN = np.array([[60.0, 20.0], [60.0, 20.0]], np.float32)
UP = np.array([[90.0, 35.0], [90.0, 35.0]], np.float32)
DEADBAND = 0.02


def _inventory() -> InventoryArrays:
    return InventoryArrays.from_lamps(
        [
            Lamp(
                lamp_id=f"L{i}",
                council_id="c",
                lon_deg=-2.59 + 0.0003 * i,
                lat_deg=51.45,
                rated_power_w=50.0,
                lighting_class=LightingClass.P4,
                group=GROUPS[i % 3],
            )
            for i in range(N_PROGRAM + N_EXTRA)
        ]
    )


INVENTORY = _inventory()
IDS = [f"L{i}" for i in range(N_PROGRAM + N_EXTRA)]


def _compiled(seed: int) -> CompiledNight:
    rng = np.random.default_rng(seed)
    program = random_program(rng, n_lamps=N_PROGRAM, n_steps=200)
    # Levels that wander by about 1 % a step, so targets move by less and by more than the
    # deadband between steps.
    walk = np.clip(1 + np.cumsum(rng.normal(0, 0.01, program.program_frac.shape), axis=1), 0.5, 1)
    wander = (program.program_frac * walk).astype(np.float32)
    program = dataclasses.replace(program, program_frac=wander)
    return CompiledNight(
        program=program,
        thresholds=ZoneThresholds(("z0", "z1"), "footfall", DOWN, UP),
        profile="random",
        rule_index=0,
        lit_ns=(),
        max_speed_mps=math.inf,
    )


def _naive_overrides(overrides: list[Override], t: int) -> np.ndarray:
    """Per program lamp: the level of its latest override issued by ``t`` if in force, else -1."""
    out = np.full(N_PROGRAM, -1.0, np.float32)
    for i in range(N_PROGRAM):
        latest = None
        for o in overrides:  # in issue order, later entries win ties (the table's rule)
            covers = IDS[i] in o.lamp_ids or GROUPS[i % 3] in o.groups
            if covers and o.issued_ns <= t and (latest is None or o.issued_ns >= latest.issued_ns):
                latest = o
        if (
            latest is not None
            and latest.level_frac is not None
            and latest.effective_start_ns <= t
            and (latest.expiry_ns is None or t < latest.expiry_ns)
        ):
            out[i] = latest.level_frac
    return out


def _naive_step(step: int, demand: float) -> int:
    """CEN/TR 13201-1 hysteresis: down below DOWN[k], back only above UP[k]."""
    n_down = sum(demand < d for d in DOWN[0])
    n_up = sum(demand < u for u in UP[0])
    return int(max(n_down, min(step, n_up)))


def _naive_target(
    program: NightProgram, hold: np.ndarray, s: int, steps: np.ndarray, ovr: np.ndarray
) -> np.ndarray:
    p = program.lamp_profile
    prog = program.program_frac[p, s]
    k = np.where(program.lamp_zone >= 0, steps[np.maximum(program.lamp_zone, 0)], 0)
    base = prog * program.class_factor[p, k]
    held = hold > s
    target = np.where(held & (prog > 0), np.maximum(base, program.boost_frac[p]), base)
    target = np.minimum(target, program.ceiling_frac)
    target = np.where(ovr >= 0, ovr, target)
    return np.minimum(np.maximum(target, program.floor_frac[p, s]), np.float32(1.0))


override_spec = st.tuples(
    st.integers(0, 150),  # issued, ticks after the start
    # Levels on a 0.01 grid: changes just over the deadband must be sent, others not.
    st.one_of(st.none(), st.just(0.0), st.integers(1, 100).map(lambda k: k / 100)),
    st.one_of(st.none(), st.integers(1, 60)),  # lasts, ticks (None: until replaced)
    st.lists(st.integers(0, N_PROGRAM + N_EXTRA - 1), max_size=2),
    st.lists(st.sampled_from(GROUPS), max_size=1),
)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    gaps=st.lists(st.integers(1, 9), min_size=5, max_size=40),
    detections=st.lists(st.tuples(st.integers(0, 190), st.integers(0, N_PROGRAM - 1)), max_size=25),
    specs=st.lists(override_spec, max_size=10),
    demand=st.lists(
        st.tuples(st.integers(0, 39), st.integers(0, 1), st.floats(0, 120)), max_size=8
    ),
)
def test_sent_levels_follow_the_kernel_targets_within_the_deadband(
    seed: int,
    gaps: list[int],
    detections: list[tuple[int, int]],
    specs: list[tuple[int, float | None, int | None, list[int], list[str]]],
    demand: list[tuple[int, int, float]],
) -> None:
    """After every step: each lamp's target is the kernel's (a slow twin agrees), its last sent
    level is within the deadband of it, the latest override wins, and no lamp is dark while its
    program (or the fallback, at night) has it lit."""
    compiled = _compiled(seed)
    program = compiled.program
    t0 = program.start_ns
    overrides = [
        Override(
            lamp_ids=tuple(IDS[i] for i in lamps),
            groups=tuple(groups),
            level_frac=level,
            issued_ns=t0 + issued * S,
            expiry_ns=None if lasts is None else t0 + (issued + lasts) * S,
        )
        for issued, level, lasts, lamps, groups in specs
        if lamps or groups
    ]
    overrides.sort(key=lambda o: o.issued_ns)  # stable: the naive scan's tie-break is list order
    live = LiveController(INVENTORY, dict.fromkeys(IDS, "gw"))
    live.set_programs([ActiveProgram(tuple(IDS[:N_PROGRAM]), compiled)])
    live.set_overrides(overrides)
    state = LampState.initial(N_PROGRAM)
    steps = np.zeros(2, np.int32)
    last = -1
    now_tick = 0
    for call, gap in enumerate(gaps):
        now_tick = min(now_tick + (gap if call else 0), program.n_steps - 1)
        if now_tick == last:
            break
        for when, zone, per_h in demand:
            if when == call:
                live.demand({f"z{zone}": per_h}, t0 + now_tick * S)
                steps[zone] = _naive_step(int(steps[zone]), per_h)
        for tick_no, lamp in detections:
            if last < tick_no <= now_tick:
                live.presence(IDS[lamp], t0 + tick_no * S + 1)
        live.step(t0 + now_tick * S + S // 2)
        for s in range(last + 1, now_tick + 1):
            trig = np.array(sorted({lamp for k, lamp in detections if k == s}), np.int32)
            ovr = _naive_overrides(overrides, t0 + s * S)
            state = tick(program, state, s, trigger_lamps=trig, steps_now=steps, override_frac=ovr)
        last = now_tick
        snap = live.snapshot()
        ovr = _naive_overrides(overrides, t0 + now_tick * S)
        want = _naive_target(program, state.hold_until_step, now_tick, steps, ovr)
        np.testing.assert_array_equal(snap.target_frac[:N_PROGRAM], want)
        np.testing.assert_array_equal(snap.level_frac[:N_PROGRAM], state.level_frac)
        assert np.all(np.abs(snap.sent_frac - snap.target_frac) <= DEADBAND)
        np.testing.assert_array_equal(snap.overridden[:N_PROGRAM], ovr >= 0)
        lit = program.program_frac[program.lamp_profile, now_tick] > 0
        for values in (snap.level_frac, snap.target_frac, snap.sent_frac):
            assert np.all(values[:N_PROGRAM][lit] > 0)
            assert np.all(values[N_PROGRAM:] > 0)  # the fallback at night
        assert snap.source[N_PROGRAM:] == ("fallback",) * N_EXTRA


event = st.one_of(
    st.tuples(st.just("power"), st.integers(0, 3), st.sampled_from([0.4, 40.0])),
    st.tuples(st.just("status"), st.integers(0, 3), st.integers(0, 31)),
    st.tuples(st.just("command"), st.integers(0, 3), st.sampled_from([0.0, 0.5, 1.0])),
    st.tuples(st.just("gateway"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("evaluate"), st.just(0), st.just(0)),
)


@SETTINGS
@given(
    # (seconds / 10 since the previous event, skew of the event's own clock in 10 s, event)
    events=st.lists(
        st.tuples(st.integers(0, 400), st.integers(-3, 3), event), min_size=1, max_size=80
    ),
    noon=st.booleans(),
)
def test_alarms_start_before_they_end_and_never_open_twice(
    events: list[tuple[int, int, tuple[str, int, float]]], noon: bool
) -> None:
    """Alarms never start after they are raised or end, never open twice for one condition,
    never start before the same kind's previous alarm on that source ended, and keep one id."""
    lamps = [Lamp(f"L{i}", "c", -2.59, 51.45, 50.0) for i in range(4)]
    gw = {f"L{i}": f"gw{i % 2}" for i in range(4)}
    t = 1_767_225_600 * S + (12 * 3600 * S if noon else 0)
    hm = HealthMonitor(lamps, gw, started_ns=t)  # default thresholds; events 0-4000 s apart
    open_: dict[tuple[str, str], str] = {}
    seen_ids: set[str] = set()
    ended: dict[tuple[str, str], int] = {}
    for dt, skew, (kind, who, value) in events:
        t += dt * 10 * S
        at = t + skew * 10 * S  # gateways' clocks are not the controller's
        if kind == "power":
            hm.telemetry([Reading(f"L{who}", ReadingKind.POWER_W, float(value), at)])
        elif kind == "status":
            hm.telemetry([Reading(f"L{who}", ReadingKind.STATUS, float(value), at)])
        elif kind == "command":
            hm.commanded([LampCommand(f"L{who}", float(value), issued_ns=at)])
        elif kind == "gateway":
            hm.gateway_status(f"gw{who}", bool(value), at)
        for alarm in hm.evaluate(t):
            key = (alarm.source_id, alarm.kind.value)
            assert alarm.started_ns <= t
            if alarm.ended_ns is None:
                assert key not in open_, f"second open {key}"
                assert alarm.alarm_id not in seen_ids
                assert alarm.started_ns >= ended.get(key, alarm.started_ns)
                open_[key] = alarm.alarm_id
                seen_ids.add(alarm.alarm_id)
            else:
                ended[key] = alarm.ended_ns
                assert open_.pop(key) == alarm.alarm_id
                assert alarm.started_ns <= alarm.ended_ns == t
            assert (alarm.scope is AlarmScope.GATEWAY) == alarm.source_id.startswith("gw")
        active = hm.active()
        assert {(a.source_id, a.kind.value): a.alarm_id for a in active} == open_
        assert len({(a.source_id, a.kind) for a in active}) == len(active)
    # Whatever happened before, a failure bit on every lamp leaves exactly one open
    # lamp_failure alarm per lamp.
    t += 100 * S  # past any skewed reading
    hm.telemetry(
        [Reading(f"L{i}", ReadingKind.STATUS, float(StatusFlag.LAMP_FAILURE), t) for i in range(4)]
    )
    hm.evaluate(t)
    failing = [a.source_id for a in hm.active() if a.kind is AlarmKind.LAMP_FAILURE]
    assert sorted(failing) == ["L0", "L1", "L2", "L3"]

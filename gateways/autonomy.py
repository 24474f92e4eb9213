"""Local autonomy: who drives the lamps, and at what level, when the central service is silent.

Theory of operation (sans-io: time is an argument, nothing here touches the network)
-----------------------------------------------------------------------------------
``CENTRAL``    the central service was heard from within ``uplink_timeout_s``: the gateway
               applies the commands it receives and this module stays out of the way.
``SCHEDULE``   the central service has been silent for longer than that, and the stored edge
               schedule (:mod:`controller.edge_schedule`) covers now: the gateway ticks the
               same level kernel the central controller and the simulator use, once a step,
               with its own presence detections. Adaptive zones stay at their normal class:
               the gateway has no demand windows of its own, so it errs bright.
``FAIL_SAFE``  silent, and no schedule covers now (lost, damaged or run out): every lamp goes
               to the fail-safe level whenever the sun is less than ``daylight_elevation_deg``
               above the horizon (local astronomical clock), and off in full daylight. When in
               doubt, fail bright.

A gateway that falls silent mid-night resumes the schedule from the current step with the
lamps' last levels; steps it missed (a stalled event loop) are ticked through, at most
``MAX_CATCH_UP_STEPS``, beyond which the lamps restart from the program's current levels.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from controller.dimming.levels import LampState, tick
from controller.dimming.program import NightProgram
from controller.dimming.solar import solar_elevation_deg
from controller.edge_schedule import EdgeSchedule

MAX_CATCH_UP_STEPS = 600


class Mode(enum.StrEnum):
    CENTRAL = "central"
    SCHEDULE = "schedule"
    FAIL_SAFE = "fail_safe"


class LocalAutonomy:
    """The gateway's fallback controller for ``lamp_ids``.

    ``levels(now_ns)`` returns the level of every lamp the gateway must apply now, or None in
    ``CENTRAL`` mode. Presence seen locally is passed with :meth:`presence`.
    """

    def __init__(
        self,
        *,
        lamp_ids: Sequence[str],
        schedule: EdgeSchedule | None,
        uplink_timeout_s: float,
        fail_safe_frac: float,
        lat_deg: float,
        lon_deg: float,
        daylight_elevation_deg: float = 3.0,
        started_ns: int = 0,
    ) -> None:
        if uplink_timeout_s <= 0:
            raise ValueError(f"uplink_timeout_s must be > 0, got {uplink_timeout_s!r}")
        if not 0.0 < fail_safe_frac <= 1.0:
            raise ValueError(f"fail_safe_frac must be in (0, 1], got {fail_safe_frac!r}")
        if not -90.0 <= lat_deg <= 90.0 or not -180.0 <= lon_deg <= 180.0:
            raise ValueError("lat_deg/lon_deg must be a position in degrees")
        self.lamp_ids = tuple(lamp_ids)
        self._index = {lamp: i for i, lamp in enumerate(self.lamp_ids)}
        if schedule is not None and schedule.lamp_ids != self.lamp_ids:
            raise ValueError("the edge schedule's lamps differ from the gateway's lamps")
        self._schedule = schedule
        self._timeout_ns = round(uplink_timeout_s * 1e9)
        self._fail_safe = float(fail_safe_frac)
        self._lat, self._lon = float(lat_deg), float(lon_deg)
        self._daylight_deg = float(daylight_elevation_deg)
        # Counting from start-up: a gateway that boots with no uplink takes over after the timeout.
        self._heard_ns = started_ns
        self._program: NightProgram | None = None
        self._state: LampState | None = None
        self._before: LampState | None = None
        self._step = -1
        self._pending: set[int] = set()

    # --- inputs -------------------------------------------------------------------------------

    def heard_from_central(self, now_ns: int) -> None:
        self._heard_ns = max(self._heard_ns, now_ns)

    def replace_schedule(self, schedule: EdgeSchedule | None) -> None:
        if schedule is not None and schedule.lamp_ids != self.lamp_ids:
            raise ValueError("the edge schedule's lamps differ from the gateway's lamps")
        self._schedule = schedule
        self._program = None

    def presence(self, lamp_ids: Iterable[str]) -> None:
        """Lamps whose sensors saw somebody since the last call (unknown ids are ignored)."""
        self._pending.update(self._index[x] for x in lamp_ids if x in self._index)

    def observed_levels(self, levels: Mapping[str, float]) -> None:
        """Levels last read from the controllers, the starting point when the gateway takes over."""
        if self._state is not None:
            lv = self._state.level_frac.copy()
            for lamp, value in levels.items():
                if lamp in self._index and 0.0 <= value <= 1.0:
                    lv[self._index[lamp]] = value
            self._state = LampState(lv, self._state.hold_until_step, self._state.sent_frac)

    # --- decisions ------------------------------------------------------------------------------

    def mode(self, now_ns: int) -> Mode:
        if now_ns - self._heard_ns <= self._timeout_ns:
            return Mode.CENTRAL
        if self._schedule is not None and self._schedule.program_at(now_ns) is not None:
            return Mode.SCHEDULE
        return Mode.FAIL_SAFE

    def levels(self, now_ns: int) -> dict[str, float] | None:
        mode = self.mode(now_ns)
        if mode is Mode.CENTRAL:
            self._pending.clear()
            self._program = None  # a later take-over restarts from the schedule's current step
            return None
        if mode is Mode.FAIL_SAFE:
            self._pending.clear()
            elevation = float(solar_elevation_deg(np.int64(now_ns), self._lat, self._lon))
            level = self._fail_safe if elevation < self._daylight_deg else 0.0
            return dict.fromkeys(self.lamp_ids, level)
        assert self._schedule is not None
        found = self._schedule.program_at(now_ns)
        assert found is not None
        program, step = found
        if (
            program is not self._program
            or self._state is None
            or not 0 <= step - self._step <= MAX_CATCH_UP_STEPS
        ):
            self._program = program
            start = program.program_frac[program.lamp_profile, max(step - 1, 0)]
            self._state = LampState.initial(program.n_lamps)
            self._state = LampState(
                start.astype(np.float32), self._state.hold_until_step, start.astype(np.float32)
            )
            self._step = step - 1
        triggers = np.array(sorted(self._pending), dtype=np.int32)
        self._pending.clear()
        if len(triggers) and self._step == step and self._before is not None:
            # Presence within the step already ticked: tick it again with the detection, so a
            # lamp rises at once rather than at the next step.
            self._state = self._before
            self._step = step - 1
        while self._step < step:
            self._before = self._state
            self._step += 1
            self._state = tick(
                program,
                self._state,
                self._step,
                trigger_lamps=triggers,
                steps_now=np.zeros(len(program.zone_names), np.int8),
            )
            triggers = np.zeros(0, dtype=np.int32)
        return {
            lamp: float(v) for lamp, v in zip(self.lamp_ids, self._state.level_frac, strict=True)
        }

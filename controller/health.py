"""Lamp health: telemetry against commanded state, raised and cleared as alarms.

Theory of operation (sans-io: time is an argument, nothing here touches the network)
-----------------------------------------------------------------------------------
:class:`HealthMonitor` keeps, per lamp, the latest telemetry (``level_frac``, ``power_w``,
``status`` readings, docs/gateway-protocol.md), the latest command the live controller sent it
(:class:`domain.records.LampCommand`) and whether each gateway says it is online. From those it
decides, at each :meth:`~HealthMonitor.evaluate`, which *conditions* hold:

``lamp_failure``  the status has ``lamp_failure`` or ``driver_fault`` set, or the lamp was
                  commanded lit and has measured dark for ``failure_grace_s`` after the
                  command's ramp.
``day_burner``    the status has ``day_burner`` set, or the lamp has measured lit for
                  ``day_burner_grace_s`` while the sun is more than ``daylight_elevation_deg``
                  above the horizon at the lamp and the controller has not commanded it lit
                  (an engineer testing lamps by day with an override is not a day burner).
``cycling``       more than ``cycling_max_transitions`` on/off switches within
                  ``cycling_window_s`` that no command asked for (a switch towards the commanded
                  state within ``command_grace_s`` of a command's ramp is asked for).
``unreachable``   for a lamp: no telemetry for ``unreachable_after_s``, or ``comms_fault`` set;
                  for a gateway: it reported ``offline``, or nothing was heard from it or any of
                  its lamps for ``unreachable_after_s``. While its gateway is unreachable a
                  lamp's own silence raises nothing (the gateway's alarm says it all).

*Measured lit or dark* comes from the freshest physical evidence: ``power_w`` above the lamp's
standby by ``lit_power_frac`` of its rated power when the lamp reports power (a controller may
echo its setpoint as ``level_frac`` while the lamp is out), else ``level_frac`` above
``lit_level_frac``. Telemetry older than ``unreachable_after_s`` is not evidence: conditions of
a silent lamp are neither raised nor cleared, only ``unreachable``.

*Alarms.* A condition that holds raises one :class:`Alarm` (``ended_ns`` None) and nothing more
while it lasts; it is cleared (the same alarm, ``ended_ns`` set) only on positive evidence that
it is over: a failed lamp measured lit with no failure bit, a day burner measured dark (or night
falls, or it is commanded lit), no unasked switch left in the cycling window, telemetry again
(or ``online``). ``started_ns`` is when the condition began as far as the evidence shows (the
reading that showed the lamp dark, the last telemetry heard, the first unasked switch...), not
when the grace period ran out, and never before the same alarm's previous end; ``ended_ns`` is
the time of the evaluation that saw it over. ``evaluate`` returns the transitions (raised and
cleared alarms); evaluating twice at the same time returns nothing new.

Public interface (the composition root calls these; the API stores the alarms)
------------------------------------------------------------------------------
``HealthMonitor(inventory, gateway_of, *, config=HealthConfig(), started_ns=0)``
``telemetry(readings: Iterable[Reading]) -> int``: readings used (lamp ids only).
``commanded(commands: Iterable[LampCommand]) -> None``: what the live controller sent.
``gateway_status(gateway_id, online, time_ns) -> None``: the gateway's status topic.
``evaluate(now_ns) -> list[Alarm]``: alarms raised or cleared since the last evaluation.
``active() -> list[Alarm]``: alarms open now.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.dimming.solar import solar_elevation_deg
from domain.errors import StreetlightError
from domain.inventory import InventoryArrays
from domain.records import Lamp, LampCommand, Reading, ReadingKind, StatusFlag

__all__ = [
    "Alarm",
    "AlarmKind",
    "AlarmScope",
    "HealthConfig",
    "HealthError",
    "HealthMonitor",
]

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

NS_PER_S = 1_000_000_000
#: "Never": far enough in the past that differences with real times cannot overflow int64.
_NEVER = -(2**62)


_FAILURE_BITS = int(StatusFlag.LAMP_FAILURE | StatusFlag.DRIVER_FAULT)
_DAY_BITS = int(StatusFlag.DAY_BURNER)
_COMMS_BITS = int(StatusFlag.COMMS_FAULT)
_KNOWN_BITS = int(sum(StatusFlag))


class AlarmKind(enum.StrEnum):
    LAMP_FAILURE = "lamp_failure"
    DAY_BURNER = "day_burner"
    CYCLING = "cycling"
    UNREACHABLE = "unreachable"


class AlarmScope(enum.StrEnum):
    """What ``Alarm.source_id`` names."""

    LAMP = "lamp"
    GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class Alarm:
    """One occurrence of a condition on a lamp or a gateway (times UTC epoch ns).

    ``alarm_id`` is ``"{scope}:{source_id}:{kind}:{started_ns}"``, the same in the raised and
    the cleared record; ``ended_ns`` is None while the alarm is active.
    """

    alarm_id: str
    source_id: str
    scope: AlarmScope
    kind: AlarmKind
    started_ns: int
    ended_ns: int | None
    detail: str

    @property
    def active(self) -> bool:
        return self.ended_ns is None


class HealthError(StreetlightError, ValueError):
    """The health monitor was set up with something it cannot use."""


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Thresholds of the health checks (defaults documented in docs/live-control.md)."""

    unreachable_after_s: float = 900.0
    failure_grace_s: float = 300.0
    day_burner_grace_s: float = 900.0
    daylight_elevation_deg: float = 6.0
    cycling_window_s: float = 1800.0
    cycling_max_transitions: int = 4
    command_grace_s: float = 60.0
    lit_level_frac: float = 0.02
    lit_power_frac: float = 0.05

    def __post_init__(self) -> None:
        for name in (
            "unreachable_after_s",
            "failure_grace_s",
            "day_burner_grace_s",
            "cycling_window_s",
            "command_grace_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.cycling_window_s <= 0 or self.unreachable_after_s <= 0:
            raise ValueError("cycling_window_s and unreachable_after_s must be > 0 seconds")
        if not -90.0 <= self.daylight_elevation_deg <= 90.0:
            raise ValueError(
                f"daylight_elevation_deg must be within [-90, 90], got {self.daylight_elevation_deg!r}"
            )
        if self.cycling_max_transitions < 1:
            raise ValueError(
                f"cycling_max_transitions must be >= 1, got {self.cycling_max_transitions!r}"
            )
        for name in ("lit_level_frac", "lit_power_frac"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be within [0, 1), got {value!r}")


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


class HealthMonitor:
    """Alarms for the lamps of one inventory and their gateways; see the module docstring."""

    def __init__(
        self,
        inventory: InventoryArrays | Sequence[Lamp],
        gateway_of: Mapping[str, str],
        *,
        config: HealthConfig | None = None,
        started_ns: int = 0,
    ) -> None:
        inv = (
            inventory
            if isinstance(inventory, InventoryArrays)
            else InventoryArrays.from_lamps(list(inventory))
        )
        n = len(inv)
        self.config = config or HealthConfig()
        self._ids = tuple(str(x) for x in inv.lamp_id.tolist())
        self._index = {lamp: i for i, lamp in enumerate(self._ids)}
        if len(self._index) != n:
            raise HealthError("lamp ids must be unique in the inventory")
        missing = [lamp for lamp in self._ids if not gateway_of.get(lamp)]
        if missing:
            raise HealthError(
                f"{len(missing)} lamp(s) have no gateway (e.g. {', '.join(missing[:3])}); "
                "give every lamp of the inventory a gateway id in gateway_of"
            )
        self._gateways = tuple(sorted({gateway_of[lamp] for lamp in self._ids}))
        self._gw_pos = {g: k for k, g in enumerate(self._gateways)}
        self._gw_index = np.array([self._gw_pos[gateway_of[x]] for x in self._ids], np.int64)
        self._lat = np.asarray(inv.lat_deg, np.float64)
        self._lon = np.asarray(inv.lon_deg, np.float64)
        cfg = self.config
        # A lamp counts as lit above this power, W: standby plus a share of its rated power.
        self._lit_power_w = np.asarray(
            inv.standby_power_w + cfg.lit_power_frac * inv.rated_power_w, np.float64
        )
        # Per lamp: the latest telemetry.
        self._heard = np.full(n, int(started_ns), np.int64)
        self._level_ns = np.full(n, _NEVER, np.int64)
        self._power_ns = np.full(n, _NEVER, np.int64)
        self._level = np.full(n, np.nan)
        self._power = np.full(n, np.nan)
        self._status = np.zeros(n, np.int64)
        self._status_ns = np.full(n, _NEVER, np.int64)
        self._lit = np.full(n, -1, np.int8)  # measured: -1 unknown, 0 dark, 1 lit
        self._lit_ns = np.full(n, _NEVER, np.int64)  # since when (the reading that showed it)
        self._since = {  # when each group of status bits was last set
            _FAILURE_BITS: np.full(n, _NEVER, np.int64),
            _DAY_BITS: np.full(n, _NEVER, np.int64),
            _COMMS_BITS: np.full(n, _NEVER, np.int64),
        }
        # Per lamp: the latest command.
        self._cmd_level = np.full(n, np.nan)
        self._cmd_ns = np.full(n, _NEVER, np.int64)
        self._cmd_flip_ns = np.full(n, _NEVER, np.int64)  # commanded on/off last changed
        self._cmd_settle_ns = np.full(n, _NEVER, np.int64)  # ... and that command's ramp ended
        self._unasked: dict[int, deque[int]] = {}  # switches no command asked for, by lamp
        # Daylight, at evaluation resolution.
        self._was_day = np.zeros(n, np.bool_)
        self._day_since = np.full(n, _NEVER, np.int64)
        # Gateways.
        g = len(self._gateways)
        self._gw_heard = np.full(g, int(started_ns), np.int64)
        self._gw_online = np.ones(g, np.bool_)
        self._gw_status_ns = np.full(g, _NEVER, np.int64)
        self._gw_offline_ns = np.full(g, _NEVER, np.int64)
        # Alarms: open ones by (scope, index, kind); the last end of each, so a new occurrence
        # never starts before the previous one ended.
        self._open: dict[tuple[AlarmScope, int, AlarmKind], Alarm] = {}
        self._last_end: dict[tuple[AlarmScope, int, AlarmKind], int] = {}
        self._last_id: dict[tuple[AlarmScope, int, AlarmKind], str] = {}
        self._open_mask = {kind: np.zeros(n, np.bool_) for kind in AlarmKind}
        self._last_eval_ns = _NEVER
        self.counters: dict[str, int] = {
            "readings_unknown_source": 0,
            "readings_late": 0,
            "status_unknown_gateway": 0,
        }

    # --- inputs --------------------------------------------------------------------------------

    def telemetry(self, readings: Iterable[Reading]) -> int:
        """Lamp readings (``level_frac``, ``power_w``, ``status``, ``energy_wh``); returns how
        many were lamp telemetry. Sensor readings and unknown sources are skipped (counted)."""
        used = 0
        cfg = self.config
        for r in readings:
            i = self._index.get(r.source_id)
            if i is None:
                self.counters["readings_unknown_source"] += 1
                continue
            kind, t = r.kind, int(r.time_ns)
            if kind not in (
                ReadingKind.LEVEL_FRAC,
                ReadingKind.POWER_W,
                ReadingKind.STATUS,
                ReadingKind.ENERGY_WH,
            ):
                continue
            used += 1
            self._heard[i] = max(int(self._heard[i]), t)
            g = self._gw_index[i]
            self._gw_heard[g] = max(int(self._gw_heard[g]), t)
            if kind is ReadingKind.STATUS:
                if t < self._status_ns[i]:
                    self.counters["readings_late"] += 1
                    continue
                self._set_status(i, int(r.value) & _KNOWN_BITS, t)
            elif kind is ReadingKind.POWER_W:
                if t < self._power_ns[i]:
                    self.counters["readings_late"] += 1
                    continue
                self._power_ns[i], self._power[i] = t, r.value
                self._observe(i, r.value > self._lit_power_w[i], t)
            elif kind is ReadingKind.LEVEL_FRAC:
                if t < self._level_ns[i]:
                    self.counters["readings_late"] += 1
                    continue
                self._level_ns[i], self._level[i] = t, r.value
                # Power, where a lamp reports it, is the physical evidence; a level may be an echo.
                if self._power_ns[i] == _NEVER:
                    self._observe(i, r.value > cfg.lit_level_frac, t)
        return used

    def _set_status(self, i: int, bits: int, t: int) -> None:
        old = int(self._status[i])
        for mask, since in self._since.items():
            if bits & mask and not old & mask:
                since[i] = t
        self._status[i], self._status_ns[i] = bits, t

    def _observe(self, i: int, lit: bool, t: int) -> None:
        """A measurement of lamp ``i`` at ``t``: records an on/off switch if there was one."""
        before = int(self._lit[i])
        now = int(lit)
        if before == now:
            return
        self._lit[i], self._lit_ns[i] = now, t
        if before < 0:
            return  # the first evidence is a state, not a switch
        grace = _ns(self.config.command_grace_s)
        commanded_lit = bool(self._cmd_level[i] > 0)
        asked = (
            commanded_lit == lit
            and self._cmd_flip_ns[i] - grace <= t <= self._cmd_settle_ns[i] + grace
        )
        if not asked:
            self._unasked.setdefault(i, deque()).append(t)

    def commanded(self, commands: Iterable[LampCommand]) -> None:
        """Commands the live controller sent (``issued_ns`` orders them; older ones are ignored)."""
        for c in commands:
            i = self._index.get(c.lamp_id)
            if i is None or c.issued_ns < self._cmd_ns[i]:
                continue
            lit = c.level_frac > 0
            old = self._cmd_level[i]
            if math.isnan(old) or (old > 0) != lit:
                self._cmd_flip_ns[i] = c.issued_ns
                self._cmd_settle_ns[i] = c.issued_ns + _ns(c.ramp_s)
            self._cmd_level[i], self._cmd_ns[i] = c.level_frac, c.issued_ns

    def gateway_status(self, gateway_id: str, online: bool, time_ns: int) -> None:
        """The gateway's retained ``status``: pass the time it was *received* for an offline
        last will (its ``ts_ns`` is when the session started). Older messages are ignored."""
        g = self._gw_pos.get(gateway_id)
        if g is None:
            self.counters["status_unknown_gateway"] += 1
            return
        if time_ns < self._gw_status_ns[g]:
            return
        self._gw_status_ns[g] = time_ns
        if online:
            self._gw_online[g] = True
            self._gw_heard[g] = max(int(self._gw_heard[g]), int(time_ns))
        elif self._gw_online[g]:
            self._gw_online[g] = False
            self._gw_offline_ns[g] = time_ns

    # --- evaluation ----------------------------------------------------------------------------

    def active(self) -> list[Alarm]:
        """The alarms open now, oldest first."""
        return sorted(self._open.values(), key=lambda a: (a.started_ns, a.alarm_id))

    def evaluate(self, now_ns: int) -> list[Alarm]:
        """Raise and clear alarms as of ``now_ns``: the raised (``ended_ns`` None) and cleared
        alarms, in that order. Time never runs backwards here: an earlier ``now_ns`` counts as
        the latest one seen."""
        now = max(int(now_ns), self._last_eval_ns)
        self._last_eval_ns = now
        cfg = self.config
        timeout = _ns(cfg.unreachable_after_s)
        fresh = now - self._heard <= timeout
        status = self._status
        lit = self._lit == 1
        dark = self._lit == 0
        cmd_lit = self._cmd_level > 0  # NaN (never commanded) is not lit
        day = solar_elevation_deg(np.int64(now), self._lat, self._lon) > cfg.daylight_elevation_deg
        self._day_since[day & ~self._was_day] = now
        self._was_day = day

        raised: list[Alarm] = []
        cleared: list[Alarm] = []

        # Gateways first: their state decides whether a silent lamp raises its own alarm.
        gw_silent = now - self._gw_heard > timeout
        gw_down = ~self._gw_online | gw_silent
        for g, gateway in enumerate(self._gateways):
            key = (AlarmScope.GATEWAY, g, AlarmKind.UNREACHABLE)
            if gw_down[g] and key not in self._open:
                offline = not self._gw_online[g]
                began = int(self._gw_offline_ns[g] if offline else self._gw_heard[g])
                detail = (
                    "the gateway reported offline"
                    if offline
                    else f"nothing heard from the gateway or its lamps for {cfg.unreachable_after_s:g} s"
                )
                raised.append(self._raise(key, gateway, began, now, detail))
            elif not gw_down[g] and key in self._open:
                cleared.append(self._clear(key, now))
        lamp_gw_up = ~gw_down[self._gw_index]

        # lamp_failure
        fail_bit = fresh & ((status & _FAILURE_BITS) != 0)
        onset_dark = np.maximum(self._lit_ns, self._cmd_settle_ns)
        measured = fresh & cmd_lit & dark & (now - onset_dark >= _ns(cfg.failure_grace_s))
        onset = np.where(
            fail_bit & measured,
            np.minimum(self._since[_FAILURE_BITS], onset_dark),
            np.where(fail_bit, self._since[_FAILURE_BITS], onset_dark),
        )
        detail_of = {
            True: "status reports lamp_failure or driver_fault",
            False: (
                f"commanded lit but measured dark for over {cfg.failure_grace_s:g} s "
                "after the command's ramp"
            ),
        }
        self._lamp_kind(
            AlarmKind.LAMP_FAILURE,
            fail_bit | measured,
            fresh & ((status & _FAILURE_BITS) == 0) & lit,
            onset,
            lambda i: detail_of[bool(fail_bit[i])],
            now,
            raised,
            cleared,
        )

        # day_burner
        day_bit = fresh & ((status & _DAY_BITS) != 0)
        lit_by_day = fresh & lit & day & ~cmd_lit
        cmd_off_ns = np.where(np.isnan(self._cmd_level), _NEVER, self._cmd_settle_ns)
        onset_day = np.maximum(np.maximum(self._lit_ns, self._day_since), cmd_off_ns)
        burning = lit_by_day & (now - onset_day >= _ns(cfg.day_burner_grace_s))
        onset = np.where(
            day_bit & burning,
            np.minimum(self._since[_DAY_BITS], onset_day),
            np.where(day_bit, self._since[_DAY_BITS], onset_day),
        )
        self._lamp_kind(
            AlarmKind.DAY_BURNER,
            day_bit | burning,
            fresh & ((status & _DAY_BITS) == 0) & ~lit_by_day,
            onset,
            lambda i: (
                "status reports day_burner"
                if day_bit[i]
                else f"lit in daylight (sun above {cfg.daylight_elevation_deg:g} deg) "
                "without a command to be lit"
            ),
            now,
            raised,
            cleared,
        )

        # unreachable (lamps)
        comms = fresh & ((status & _COMMS_BITS) != 0)
        silent = ~fresh & lamp_gw_up
        onset = np.where(comms, self._since[_COMMS_BITS], self._heard)
        self._lamp_kind(
            AlarmKind.UNREACHABLE,
            comms | silent,
            fresh & ((status & _COMMS_BITS) == 0),
            onset,
            lambda i: (
                "status reports comms_fault (the controller cannot reach the driver)"
                if comms[i]
                else f"no telemetry for over {cfg.unreachable_after_s:g} s"
            ),
            now,
            raised,
            cleared,
        )

        # cycling
        self._cycling(now, raised, cleared)
        return raised + cleared

    def _cycling(self, now: int, raised: list[Alarm], cleared: list[Alarm]) -> None:
        cfg = self.config
        horizon = now - _ns(cfg.cycling_window_s)
        is_open = self._open_mask[AlarmKind.CYCLING]
        for i in sorted(set(self._unasked) | set(np.flatnonzero(is_open).tolist())):
            times = self._unasked.get(i, deque())
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                self._unasked.pop(i, None)
            key = (AlarmScope.LAMP, i, AlarmKind.CYCLING)
            if len(times) > cfg.cycling_max_transitions and not is_open[i]:
                detail = (
                    f"{len(times)} on/off switches no command asked for within "
                    f"{cfg.cycling_window_s:g} s"
                )
                raised.append(self._raise(key, self._ids[i], times[0], now, detail))
                is_open[i] = True
            elif not times and is_open[i]:
                cleared.append(self._clear(key, now))
                is_open[i] = False

    def _lamp_kind(
        self,
        kind: AlarmKind,
        condition: B,
        over: B,
        onset: I64,
        detail: Callable[[int], str],
        now: int,
        raised: list[Alarm],
        cleared: list[Alarm],
    ) -> None:
        """Raise ``kind`` where ``condition`` holds and it is not open; clear it where open and
        ``over`` (positive evidence that the condition ended)."""
        is_open = self._open_mask[kind]
        for i in np.flatnonzero(condition & ~is_open).tolist():
            key = (AlarmScope.LAMP, i, kind)
            raised.append(self._raise(key, self._ids[i], int(onset[i]), now, detail(i)))
        for i in np.flatnonzero(over & is_open & ~condition).tolist():
            cleared.append(self._clear((AlarmScope.LAMP, i, kind), now))
        is_open |= condition
        is_open &= ~(over & ~condition)

    def _raise(
        self,
        key: tuple[AlarmScope, int, AlarmKind],
        source_id: str,
        onset: int,
        now: int,
        detail: str,
    ) -> Alarm:
        scope, _, kind = key
        started = min(max(onset, self._last_end.get(key, _NEVER)), now)
        alarm_id = f"{scope}:{source_id}:{kind}:{started}"
        if alarm_id == self._last_id.get(key):
            # Only an alarm that began and ended at the same instant can collide with its successor.
            alarm_id += ":1"
        self._last_id[key] = alarm_id
        alarm = Alarm(
            alarm_id=alarm_id,
            source_id=source_id,
            scope=scope,
            kind=kind,
            started_ns=started,
            ended_ns=None,
            detail=detail,
        )
        self._open[key] = alarm
        return alarm

    def _clear(self, key: tuple[AlarmScope, int, AlarmKind], now: int) -> Alarm:
        alarm = self._open.pop(key)
        self._last_end[key] = now
        return Alarm(
            alarm_id=alarm.alarm_id,
            source_id=alarm.source_id,
            scope=alarm.scope,
            kind=alarm.kind,
            started_ns=alarm.started_ns,
            ended_ns=now,
            detail=alarm.detail,
        )

"""Semantic checks of decoded readings, and each gateway's clock skew. Pure: no I/O, no clock.

Theory of operation
-------------------
``domain.protocol`` has already refused anything structurally wrong (types, finite numbers,
known kinds, sizes): such a message is malformed as a whole. What is left here is *meaning*,
row by row, so that a good message with a few bad rows keeps its good rows:

* **time**, relative to the receive time: at most ``max_future_skew`` ahead (device clocks
  drift) and at most ``max_age`` behind. ``max_age`` is also the de-duplication window: the
  protocol lets a receiver refuse readings older than the window in which it remembers
  message ids, and it must, or a re-send older than the window would count twice;
* **value**, per kind (:func:`value_rules`): ``level_frac`` 0..1, ``power_w`` 0..``max_power_w``,
  ``energy_wh`` >= 0 (a cumulative meter), ``presence`` exactly 1 (one detection), counts
  whole and 0..``max_count``, ``status`` a whole number using only the defined bits 0..4
  (``docs/gateway-protocol.md``), i.e. 0..31.

Time is checked first, then value; each refused row gets one :class:`Rejection` with a reason
code (for counters) and a message that locates it (``readings[3]: level_frac 1.5 is outside
0..1``).

Clock skew is ``receive_ns - sent_ns`` of each uplink: the network delay plus the offset of the
gateway's clock. :class:`SkewTracker` keeps the last value and a moving average per gateway and
flags gateways beyond ``skew_warn_s``; it informs, it does not correct reading times.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from domain.records import ReadingKind
from sensor_ingest.config import NS_PER_S, IngestConfig

__all__ = [
    "Limits",
    "RejectReason",
    "Rejection",
    "SkewEstimate",
    "SkewTracker",
    "check_rows",
    "check_value",
    "value_rules",
]

#: Status bits defined by the protocol (bit 0 lamp_failure .. bit 4 over_temperature).
STATUS_MAX: Final = 0b11111


class RejectReason(enum.StrEnum):
    """Why one reading was refused (the counter is ``rejected_<reason>``)."""

    FUTURE = "future"
    TOO_OLD = "too_old"
    LEVEL_RANGE = "level_out_of_range"
    POWER_RANGE = "power_out_of_range"
    ENERGY_RANGE = "energy_negative"
    PRESENCE_VALUE = "presence_not_one"
    COUNT_RANGE = "count_out_of_range"
    COUNT_WHOLE = "count_not_whole"
    STATUS_BITS = "status_bits"
    MESSAGE_ID_FORM = "message_id_form"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Row ``index`` of a message was refused; ``message`` locates it and says why."""

    index: int
    reason: RejectReason
    message: str


@dataclass(frozen=True, slots=True)
class Limits:
    """The numeric limits the checks use (from :class:`IngestConfig`)."""

    max_age_ns: int
    max_future_skew_ns: int
    max_power_w: float
    max_count: float

    @classmethod
    def from_config(cls, config: IngestConfig) -> Limits:
        return cls(
            max_age_ns=config.max_age_ns,
            max_future_skew_ns=config.max_future_skew_ns,
            max_power_w=config.max_power_w,
            max_count=config.max_count,
        )


@dataclass(frozen=True, slots=True)
class _Rule:
    low: float
    high: float
    whole: bool
    reason: RejectReason
    whole_reason: RejectReason


def value_rules(limits: Limits) -> dict[ReadingKind, _Rule]:
    """Allowed value ranges per kind (inclusive), and whether the value must be whole."""
    count = _Rule(0.0, limits.max_count, True, RejectReason.COUNT_RANGE, RejectReason.COUNT_WHOLE)
    status = RejectReason.STATUS_BITS
    return {
        ReadingKind.PRESENCE: _Rule(1.0, 1.0, False, RejectReason.PRESENCE_VALUE, status),
        ReadingKind.FOOTFALL_COUNT: count,
        ReadingKind.TRAFFIC_COUNT: count,
        ReadingKind.LEVEL_FRAC: _Rule(0.0, 1.0, False, RejectReason.LEVEL_RANGE, status),
        ReadingKind.POWER_W: _Rule(
            0.0, limits.max_power_w, False, RejectReason.POWER_RANGE, status
        ),
        ReadingKind.ENERGY_WH: _Rule(0.0, float("inf"), False, RejectReason.ENERGY_RANGE, status),
        ReadingKind.STATUS: _Rule(0.0, float(STATUS_MAX), True, status, status),
    }


def _value_message(kind: ReadingKind, value: float, rule: _Rule, limits: Limits) -> str:
    if kind is ReadingKind.LEVEL_FRAC:
        return f"level_frac {value!r} is outside 0..1"
    if kind is ReadingKind.POWER_W:
        return f"power_w {value!r} is outside 0..{limits.max_power_w:g} W"
    if kind is ReadingKind.ENERGY_WH:
        return f"energy_wh {value!r} is negative (the meter is cumulative)"
    if kind is ReadingKind.PRESENCE:
        return f"presence {value!r} must be 1 (one detection)"
    if kind is ReadingKind.STATUS:
        return f"status {value!r} is not a combination of the defined bits 0..4 (0..{STATUS_MAX})"
    if not rule.low <= value <= rule.high:
        return f"{kind.value} {value!r} is outside 0..{limits.max_count:g}"
    return f"{kind.value} {value!r} is not a whole number"


def check_value(kind: ReadingKind, value: float, limits: Limits) -> tuple[RejectReason, str] | None:
    """``None`` if ``value`` is valid for ``kind``, else the reason and an unlocated message."""
    rule = value_rules(limits)[kind]
    return _check(kind, value, rule, limits)


def _check(
    kind: ReadingKind, value: float, rule: _Rule, limits: Limits
) -> tuple[RejectReason, str] | None:
    if not rule.low <= value <= rule.high:
        return rule.reason, _value_message(kind, value, rule, limits)
    if rule.whole and not float(value).is_integer():
        return rule.whole_reason, _value_message(kind, value, rule, limits)
    return None


def check_rows(
    kinds: Sequence[ReadingKind],
    values: Sequence[float],
    times_ns: Sequence[int],
    receive_ns: int,
    limits: Limits,
    rules: dict[ReadingKind, _Rule] | None = None,
) -> tuple[list[int], list[Rejection]]:
    """Check the rows of one message: ``(indices of good rows, rejections)``.

    ``rules`` may be passed pre-built (``value_rules(limits)``) to save rebuilding it per call.
    """
    if rules is None:
        rules = value_rules(limits)
    oldest_ns = receive_ns - limits.max_age_ns
    newest_ns = receive_ns + limits.max_future_skew_ns
    good: list[int] = []
    rejected: list[Rejection] = []
    for i, (kind, value, time_ns) in enumerate(zip(kinds, values, times_ns, strict=True)):
        if time_ns > newest_ns:
            ahead_s = (time_ns - receive_ns) / NS_PER_S
            rejected.append(
                Rejection(
                    i,
                    RejectReason.FUTURE,
                    f"readings[{i}]: time_ns {time_ns} is {ahead_s:.1f} s ahead of the receive "
                    f"time; at most {limits.max_future_skew_ns / NS_PER_S:g} s is accepted",
                )
            )
            continue
        if time_ns < oldest_ns:
            age_s = (receive_ns - time_ns) / NS_PER_S
            rejected.append(
                Rejection(
                    i,
                    RejectReason.TOO_OLD,
                    f"readings[{i}]: time_ns {time_ns} is {age_s:.1f} s older than the receive "
                    f"time; readings older than {limits.max_age_ns / NS_PER_S:g} s are refused "
                    "(the de-duplication window)",
                )
            )
            continue
        rule = rules[kind]
        if rule.low <= value <= rule.high and (not rule.whole or float(value).is_integer()):
            good.append(i)
            continue
        problem = _check(kind, value, rule, limits)
        assert problem is not None  # the fast test above failed, so the slow one does too
        rejected.append(Rejection(i, problem[0], f"readings[{i}]: {problem[1]}"))
    return good, rejected


# --- clock skew ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkewEstimate:
    """``receive_ns - sent_ns`` of a gateway's uplinks (positive: the gateway's clock is behind,
    or the network slow). ``mean_ns`` is an exponential moving average over recent messages."""

    gateway_id: str
    last_ns: int
    mean_ns: float
    min_ns: int
    max_ns: int
    samples: int
    exceeds_warn: bool


class SkewTracker:
    """Per-gateway clock skew, updated once per uplink message."""

    #: Weight of the newest sample in the moving average (about the last 20 messages).
    ALPHA: Final = 0.1

    def __init__(self, warn_s: float) -> None:
        if not warn_s > 0:
            raise ValueError(f"warn_s must be > 0, got {warn_s!r}")
        self._warn_ns = warn_s * NS_PER_S
        self._state: dict[str, list[float]] = {}  # gw -> [last, mean, min, max, samples]

    def observe(self, gateway_id: str, sent_ns: int, receive_ns: int) -> int:
        """Record one message; returns its skew in ns."""
        skew = receive_ns - sent_ns
        state = self._state.get(gateway_id)
        if state is None:
            self._state[gateway_id] = [skew, skew, skew, skew, 1]
        else:
            state[0] = skew
            state[1] += self.ALPHA * (skew - state[1])
            state[2] = min(state[2], skew)
            state[3] = max(state[3], skew)
            state[4] += 1
        return skew

    def report(self) -> dict[str, SkewEstimate]:
        return {
            gw: SkewEstimate(
                gateway_id=gw,
                last_ns=int(s[0]),
                mean_ns=s[1],
                min_ns=int(s[2]),
                max_ns=int(s[3]),
                samples=int(s[4]),
                exceeds_warn=abs(s[1]) > self._warn_ns,
            )
            for gw, s in self._state.items()
        }

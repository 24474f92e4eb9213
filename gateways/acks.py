"""Downlink command tracking: a table-driven, sans-io state machine (time is an argument).

Theory of operation
-------------------
The central service publishes a downlink command (QoS 1) and waits for the gateway's ack.
One :class:`CommandTracker` follows one command through these states:

``pending``   created, not yet published
``sent``      published; waiting for the ack until ``ack_timeout_s`` has passed
``retrying``  no ack in time; waiting ``backoff`` before publishing again (same ``cmd_id``:
              the gateway applies a command once and re-acks a duplicate)
``acked``     the gateway applied every lamp command            (terminal)
``partial``   it applied some; the ack lists the lamps that failed (terminal)
``failed``    rejected by the gateway, or no ack after ``max_attempts`` publishes (terminal)
``expired``   ``expires_ns`` passed before an ack came             (terminal)

:data:`TRANSITIONS` is the whole protocol: for every (state, event) pair it holds either the
next state and the actions to take, or the reason the pair is a programming error
(:class:`CommandStateError`). Two things are deliberately *ignored* rather than errors:
acks in a terminal state (MQTT QoS 1 delivers duplicates; an ack may also arrive after the
tracker gave up: the outcome already reported stands, and the lamp's telemetry shows what
really happened) and timer events in a terminal state (a timer that raced the ack).

Two guards sit in front of the table, in :meth:`CommandTracker.handle`: a ``timeout`` after the
last allowed attempt becomes ``retry_exhausted``, and anything that would publish after
``expires_ns`` becomes ``expire`` (an expired command must never reach a lamp).

The tracker never sleeps or publishes. It returns :class:`Action` values (``publish``,
``schedule_timeout``, ``schedule_retry`` with the absolute time, ``complete``, ``give_up``) and
the caller does them; :meth:`CommandTracker.poll` fires whatever timer is due at ``now_ns``.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from domain.errors import StreetlightError
from domain.protocol import AckStatus, CommandAck

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AckCache",
    "Action",
    "ActionKind",
    "CommandEvent",
    "CommandLedger",
    "CommandState",
    "CommandStateError",
    "CommandTracker",
    "LatestCommandFilter",
    "RetryPolicy",
    "Transition",
    "transition",
]


class CommandState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    RETRYING = "retrying"
    ACKED = "acked"
    PARTIAL = "partial"
    FAILED = "failed"
    EXPIRED = "expired"


class CommandEvent(enum.StrEnum):
    SEND = "send"  # publish now (first time, or the retry timer fired)
    ACK_OK = "ack_ok"  # ack status applied
    ACK_PARTIAL = "ack_partial"  # ack status partial
    ACK_REJECTED = "ack_rejected"  # ack status rejected
    TIMEOUT = "timeout"  # no ack within ack_timeout_s of the last publish
    RETRY_EXHAUSTED = "retry_exhausted"  # a timeout after the last allowed publish
    EXPIRE = "expire"  # expires_ns has passed


class ActionKind(enum.StrEnum):
    PUBLISH = "publish"
    SCHEDULE_TIMEOUT = "schedule_timeout"
    SCHEDULE_RETRY = "schedule_retry"
    COMPLETE = "complete"  # report success (acked or partial)
    GIVE_UP = "give_up"  # report failure (failed or expired)


TERMINAL_STATES: Final = frozenset(
    {CommandState.ACKED, CommandState.PARTIAL, CommandState.FAILED, CommandState.EXPIRED}
)


@dataclass(frozen=True, slots=True)
class Transition:
    state: CommandState
    actions: tuple[ActionKind, ...] = ()


class CommandStateError(StreetlightError, RuntimeError):
    """An event that cannot happen in a state: a bug in the caller, not in the network."""

    def __init__(self, state: CommandState, event: CommandEvent, why: str) -> None:
        self.state = state
        self.event = event
        super().__init__(f"event {event.value} in state {state.value}: {why}")


_S, _E, _A = CommandState, CommandEvent, ActionKind
_SEND: Final = Transition(_S.SENT, (_A.PUBLISH, _A.SCHEDULE_TIMEOUT))
_DONE: Final = Transition(_S.ACKED, (_A.COMPLETE,))
_PART: Final = Transition(_S.PARTIAL, (_A.COMPLETE,))
_REJECTED: Final = Transition(_S.FAILED, (_A.GIVE_UP,))
_EXPIRED: Final = Transition(_S.EXPIRED, (_A.GIVE_UP,))
_NOT_SENT: Final = "the command was never published, so no ack or ack timeout can come"
_WAITING: Final = "no ack is awaited while the retry waits; the retry timer fires send"


def _terminal_row(state: CommandState) -> dict[CommandEvent, Transition | str]:
    stay = Transition(state)  # duplicate/late acks and stale timers change nothing
    return {
        _E.SEND: f"the command is {state.value}; publish a new command with a new cmd_id",
        _E.ACK_OK: stay,
        _E.ACK_PARTIAL: stay,
        _E.ACK_REJECTED: stay,
        _E.TIMEOUT: stay,
        _E.RETRY_EXHAUSTED: stay,
        _E.EXPIRE: stay,
    }


_ROWS: Final[dict[CommandState, dict[CommandEvent, Transition | str]]] = {
    _S.PENDING: {
        _E.SEND: _SEND,
        _E.ACK_OK: _NOT_SENT,
        _E.ACK_PARTIAL: _NOT_SENT,
        _E.ACK_REJECTED: _NOT_SENT,
        _E.TIMEOUT: _NOT_SENT,
        _E.RETRY_EXHAUSTED: _NOT_SENT,
        _E.EXPIRE: _EXPIRED,
    },
    _S.SENT: {
        _E.SEND: "the command is in flight; wait for its ack or its timeout",
        _E.ACK_OK: _DONE,
        _E.ACK_PARTIAL: _PART,
        _E.ACK_REJECTED: _REJECTED,
        _E.TIMEOUT: Transition(_S.RETRYING, (_A.SCHEDULE_RETRY,)),
        _E.RETRY_EXHAUSTED: Transition(_S.FAILED, (_A.GIVE_UP,)),
        _E.EXPIRE: _EXPIRED,
    },
    _S.RETRYING: {
        _E.SEND: _SEND,
        # An ack of an earlier publish, late but real: the command was applied.
        _E.ACK_OK: _DONE,
        _E.ACK_PARTIAL: _PART,
        _E.ACK_REJECTED: _REJECTED,
        _E.TIMEOUT: _WAITING,
        _E.RETRY_EXHAUSTED: _WAITING,
        _E.EXPIRE: _EXPIRED,
    },
    **{state: _terminal_row(state) for state in TERMINAL_STATES},
}

#: The protocol: (state, event) -> Transition, or the reason the pair is an error.
TRANSITIONS: Final[Mapping[tuple[CommandState, CommandEvent], Transition | str]] = {
    (state, event): outcome for state, row in _ROWS.items() for event, outcome in row.items()
}


def transition(state: CommandState, event: CommandEvent) -> Transition:
    """Look the pair up in :data:`TRANSITIONS`; :class:`CommandStateError` if it is an error."""
    outcome = TRANSITIONS[(CommandState(state), CommandEvent(event))]
    if isinstance(outcome, str):
        raise CommandStateError(state, event, outcome)
    return outcome


# --- the tracker --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` publishes at most; ``ack_timeout_s`` after each; the n-th retry waits
    ``min(backoff_max_s, backoff_s * 2**(n-1))`` (deterministic: tests and operators can predict
    it; a fleet-wide burst is spread by the commands' own issue times)."""

    max_attempts: int = 3
    ack_timeout_s: float = 10.0
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("ack_timeout_s", "backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError("backoff_max_s must be >= backoff_s")

    def backoff_ns(self, attempts: int) -> int:
        """Wait before publish number ``attempts + 1``, ns."""
        delay_s = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempts - 1, 60))
        return round(delay_s * 1e9)


@dataclass(frozen=True, slots=True)
class Action:
    """Something the caller must do. ``at_ns`` is the absolute time of a scheduled timer."""

    kind: ActionKind
    cmd_id: str
    state: CommandState
    attempt: int = 0
    at_ns: int | None = None


_ACK_EVENT: Final[Mapping[AckStatus, CommandEvent]] = {
    AckStatus.APPLIED: CommandEvent.ACK_OK,
    AckStatus.PARTIAL: CommandEvent.ACK_PARTIAL,
    AckStatus.REJECTED: CommandEvent.ACK_REJECTED,
}


@dataclass(frozen=True, slots=True)
class CommandTracker:
    """One command's progress. Immutable: every method returns the new tracker and actions."""

    cmd_id: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    expires_ns: int | None = None
    state: CommandState = CommandState.PENDING
    attempts: int = 0
    timer_ns: int | None = None  # when the armed ack-timeout or retry timer fires

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def next_deadline_ns(self) -> int | None:
        """When :meth:`poll` next has something to do (None: nothing, ever, or pending)."""
        if self.finished:
            return None
        times = [t for t in (self.timer_ns, self.expires_ns) if t is not None]
        return min(times) if times else None

    def handle(self, event: CommandEvent, now_ns: int) -> tuple[CommandTracker, tuple[Action, ...]]:
        """Apply ``event`` at ``now_ns`` (UTC epoch ns)."""
        event = CommandEvent(event)
        if not self.finished:
            if (
                event in (CommandEvent.SEND, CommandEvent.TIMEOUT)
                and self.expires_ns is not None
                and now_ns >= self.expires_ns
            ):
                event = CommandEvent.EXPIRE  # never publish, nor plan to, past expiry
            elif (
                event is CommandEvent.TIMEOUT
                and self.state is CommandState.SENT
                and self.attempts >= self.policy.max_attempts
            ):
                event = CommandEvent.RETRY_EXHAUSTED
        step = transition(self.state, event)
        attempts, timer_ns = self.attempts, self.timer_ns
        actions = []
        for kind in step.actions:
            action = Action(kind=kind, cmd_id=self.cmd_id, state=step.state)
            if kind is ActionKind.PUBLISH:
                attempts += 1
                action = replace(action, attempt=attempts)
            elif kind is ActionKind.SCHEDULE_TIMEOUT:
                timer_ns = now_ns + round(self.policy.ack_timeout_s * 1e9)
                action = replace(action, at_ns=timer_ns)
            elif kind is ActionKind.SCHEDULE_RETRY:
                timer_ns = now_ns + self.policy.backoff_ns(attempts)
                action = replace(action, at_ns=timer_ns)
            actions.append(action)
        if step.state in TERMINAL_STATES:
            timer_ns = None
        new = replace(self, state=step.state, attempts=attempts, timer_ns=timer_ns)
        return new, tuple(actions)

    def send(self, now_ns: int) -> tuple[CommandTracker, tuple[Action, ...]]:
        """Publish for the first time."""
        return self.handle(CommandEvent.SEND, now_ns)

    def on_ack(self, ack: CommandAck, now_ns: int) -> tuple[CommandTracker, tuple[Action, ...]]:
        if ack.cmd_id != self.cmd_id:
            raise ValueError(f"ack for {ack.cmd_id!r} given to the tracker of {self.cmd_id!r}")
        return self.handle(_ACK_EVENT[ack.status], now_ns)

    def poll(self, now_ns: int) -> tuple[CommandTracker, tuple[Action, ...]]:
        """Fire what is due at ``now_ns``: expiry first, then the armed timer."""
        if self.finished:
            return self, ()
        if self.expires_ns is not None and now_ns >= self.expires_ns:
            return self.handle(CommandEvent.EXPIRE, now_ns)
        if self.timer_ns is None or now_ns < self.timer_ns:
            return self, ()
        if self.state is CommandState.SENT:
            return self.handle(CommandEvent.TIMEOUT, now_ns)
        return self.handle(CommandEvent.SEND, now_ns)  # RETRYING: the backoff is over


class CommandLedger:
    """Every command in flight on the central side, by ``cmd_id`` (sans-io, not thread-safe).

    ``unknown_acks`` counts acks for commands the ledger does not hold (sent before a restart,
    or already forgotten); they change nothing.
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._trackers: dict[str, CommandTracker] = {}
        self.unknown_acks = 0

    def submit(
        self, cmd_id: str, now_ns: int, *, expires_ns: int | None = None
    ) -> tuple[Action, ...]:
        """Track a new command and publish it."""
        if cmd_id in self._trackers:
            raise ValueError(f"command {cmd_id!r} is already tracked; cmd_ids are unique")
        tracker = CommandTracker(cmd_id=cmd_id, policy=self.policy, expires_ns=expires_ns)
        self._trackers[cmd_id], actions = tracker.send(now_ns)
        return actions

    def discard(self, cmd_id: str) -> None:
        """Stop tracking a command that never left (its first publish failed)."""
        self._trackers.pop(cmd_id, None)

    def on_ack(self, ack: CommandAck, now_ns: int) -> tuple[Action, ...]:
        tracker = self._trackers.get(ack.cmd_id)
        if tracker is None:
            self.unknown_acks += 1
            return ()
        self._trackers[ack.cmd_id], actions = tracker.on_ack(ack, now_ns)
        return actions

    def poll(self, now_ns: int) -> tuple[Action, ...]:
        out: list[Action] = []
        for cmd_id, tracker in list(self._trackers.items()):
            deadline = tracker.next_deadline_ns
            if deadline is not None and deadline <= now_ns:
                self._trackers[cmd_id], actions = tracker.poll(now_ns)
                out.extend(actions)
        return tuple(out)

    def next_deadline_ns(self) -> int | None:
        times = [t.next_deadline_ns for t in self._trackers.values()]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def state(self, cmd_id: str) -> CommandState | None:
        tracker = self._trackers.get(cmd_id)
        return None if tracker is None else tracker.state

    def forget_finished(self) -> list[CommandTracker]:
        """Drop and return trackers in a terminal state (their late acks become unknown)."""
        done = [t for t in self._trackers.values() if t.finished]
        for t in done:
            del self._trackers[t.cmd_id]
        return done

    def __len__(self) -> int:
        return len(self._trackers)

    def __iter__(self) -> Iterator[CommandTracker]:
        return iter(list(self._trackers.values()))


class AckCache:
    """The gateway's recent acks by ``cmd_id``: a re-delivered command is acked again with the
    stored answer instead of being applied twice (QoS 1 delivers at least once, and the central
    side re-publishes with the same ``cmd_id`` when an ack was lost)."""

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._acks: OrderedDict[str, CommandAck] = OrderedDict()

    def get(self, cmd_id: str) -> CommandAck | None:
        ack = self._acks.get(cmd_id)
        if ack is not None:
            self._acks.move_to_end(cmd_id)
        return ack

    def remember(self, ack: CommandAck) -> None:
        self._acks[ack.cmd_id] = ack
        self._acks.move_to_end(ack.cmd_id)
        while len(self._acks) > self.capacity:
            self._acks.popitem(last=False)

    def __len__(self) -> int:
        return len(self._acks)

    def __contains__(self, cmd_id: object) -> bool:
        return cmd_id in self._acks


class LatestCommandFilter:
    """The gateway's guard against re-ordered commands: per lamp, latest ``issued_ns`` wins.

    A re-published command can arrive after a newer one for the same lamp (the central side
    retried an older command whose ack was lost). Applying it would undo the newer level, so
    :meth:`accept` refuses a command issued before the last one accepted for that lamp; the
    gateway reports it as failed with reason ``superseded``. Equal times are accepted (the
    same command again, or lamps of one batch). Memory: one integer per lamp of the gateway.
    """

    def __init__(self) -> None:
        self._latest_ns: dict[str, int] = {}

    def accept(self, lamp_id: str, issued_ns: int) -> bool:
        last = self._latest_ns.get(lamp_id)
        if last is not None and issued_ns < last:
            return False
        self._latest_ns[lamp_id] = issued_ns
        return True

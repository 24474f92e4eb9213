"""Downlink command tracking: the table, the tracker's timers and guards, the ledger, the cache."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.protocol import AckStatus, CommandAck, LampFailure
from gateways.acks import (
    TERMINAL_STATES,
    TRANSITIONS,
    AckCache,
    ActionKind,
    CommandEvent,
    CommandLedger,
    CommandState,
    CommandStateError,
    CommandTracker,
    LatestCommandFilter,
    RetryPolicy,
    Transition,
    transition,
)

S = 10**9
T0 = 1_767_225_600 * S
POLICY = RetryPolicy(max_attempts=3, ack_timeout_s=5.0, backoff_s=1.0, backoff_max_s=1.5)


def kinds(actions: tuple[object, ...]) -> list[ActionKind]:
    return [a.kind for a in actions]  # type: ignore[attr-defined]


def ack(status: AckStatus, cmd_id: str = "c1") -> CommandAck:
    failed = (LampFailure("L2", "write failed"),) if status is AckStatus.PARTIAL else ()
    reason = "expired" if status is AckStatus.REJECTED else ""
    return CommandAck(cmd_id, "gw-1", status, T0, failed, reason)


# --- the table ----------------------------------------------------------------------------------


def test_table_covers_every_pair() -> None:
    assert set(TRANSITIONS) == set(itertools.product(CommandState, CommandEvent))


@given(st.sampled_from(CommandState), st.sampled_from(CommandEvent))
def test_every_pair_gives_a_valid_state_or_a_clear_error(
    state: CommandState, event: CommandEvent
) -> None:
    try:
        step = transition(state, event)
    except CommandStateError as err:
        assert err.state is state and err.event is event
        assert f"event {event.value} in state {state.value}: " in str(err)
        return
    assert isinstance(step, Transition) and step.state in CommandState
    if state in TERMINAL_STATES:
        assert step == Transition(state)  # terminal states absorb everything they accept
    if ActionKind.PUBLISH in step.actions:
        assert step.state is CommandState.SENT and ActionKind.SCHEDULE_TIMEOUT in step.actions
    if step.state in TERMINAL_STATES and state not in TERMINAL_STATES:
        assert len(step.actions) == 1
        assert step.actions[0] in (ActionKind.COMPLETE, ActionKind.GIVE_UP)


def test_errors_name_the_misuse() -> None:
    with pytest.raises(CommandStateError, match="never published"):
        transition(CommandState.PENDING, CommandEvent.ACK_OK)
    with pytest.raises(CommandStateError, match="in flight"):
        transition(CommandState.SENT, CommandEvent.SEND)
    with pytest.raises(CommandStateError, match="new cmd_id"):
        transition(CommandState.ACKED, CommandEvent.SEND)


# --- the tracker --------------------------------------------------------------------------------


def test_sent_then_acked() -> None:
    t, actions = CommandTracker("c1", POLICY).send(T0)
    assert t.state is CommandState.SENT and t.attempts == 1
    assert kinds(actions) == [ActionKind.PUBLISH, ActionKind.SCHEDULE_TIMEOUT]
    assert actions[0].attempt == 1 and actions[1].at_ns == T0 + 5 * S
    assert t.next_deadline_ns == T0 + 5 * S
    t, actions = t.on_ack(ack(AckStatus.APPLIED), T0 + S)
    assert t.state is CommandState.ACKED and kinds(actions) == [ActionKind.COMPLETE]
    assert t.next_deadline_ns is None
    # A duplicate ack (QoS 1) and a stale timer change nothing.
    assert t.on_ack(ack(AckStatus.APPLIED), T0 + 2 * S) == (t, ())
    assert t.handle(CommandEvent.TIMEOUT, T0 + 9 * S) == (t, ())


def test_retries_with_backoff_then_give_up() -> None:
    t, _ = CommandTracker("c1", POLICY).send(T0)
    now = T0
    published = 1
    retry_waits = []
    while not t.finished:
        now = t.next_deadline_ns or now
        t, actions = t.poll(now)
        for a in actions:
            if a.kind is ActionKind.PUBLISH:
                published += 1
            if a.kind is ActionKind.SCHEDULE_RETRY:
                assert a.at_ns is not None
                retry_waits.append((a.at_ns - now) / S)
    assert t.state is CommandState.FAILED and kinds(actions) == [ActionKind.GIVE_UP]
    assert published == t.attempts == 3
    assert retry_waits == [1.0, 1.5]  # 1 s, then 2 s capped at 1.5 s
    assert now == T0 + (5 + 1 + 5 + 1.5 + 5) * S


def test_late_ack_while_waiting_to_retry_counts() -> None:
    t, _ = CommandTracker("c1", POLICY).send(T0)
    t, actions = t.poll(T0 + 5 * S)
    assert t.state is CommandState.RETRYING and kinds(actions) == [ActionKind.SCHEDULE_RETRY]
    t, actions = t.on_ack(ack(AckStatus.PARTIAL), T0 + 5 * S + 1)
    assert t.state is CommandState.PARTIAL and kinds(actions) == [ActionKind.COMPLETE]


def test_rejected_is_failed() -> None:
    t, _ = CommandTracker("c1", POLICY).send(T0)
    t, actions = t.on_ack(ack(AckStatus.REJECTED), T0 + 1)
    assert t.state is CommandState.FAILED and kinds(actions) == [ActionKind.GIVE_UP]


def test_expiry_wins_over_timers_and_never_publishes() -> None:
    t, _ = CommandTracker("c1", POLICY, expires_ns=T0 + 3 * S).send(T0)
    assert t.next_deadline_ns == T0 + 3 * S
    t, actions = t.poll(T0 + 3 * S)
    assert t.state is CommandState.EXPIRED and kinds(actions) == [ActionKind.GIVE_UP]
    late, actions = CommandTracker("c2", POLICY, expires_ns=T0).send(T0)
    assert late.state is CommandState.EXPIRED and late.attempts == 0
    assert kinds(actions) == [ActionKind.GIVE_UP]


def test_tracker_refuses_foreign_acks() -> None:
    t, _ = CommandTracker("c1", POLICY).send(T0)
    with pytest.raises(ValueError, match="given to the tracker of 'c1'"):
        t.on_ack(ack(AckStatus.APPLIED, "c9"), T0)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="ack_timeout_s"):
        RetryPolicy(ack_timeout_s=float("nan"))
    with pytest.raises(ValueError, match="backoff_max_s must be >= backoff_s"):
        RetryPolicy(backoff_s=5.0, backoff_max_s=1.0)


events = st.sampled_from(
    [CommandEvent.ACK_OK, CommandEvent.ACK_PARTIAL, CommandEvent.ACK_REJECTED, "poll"]
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(events, st.integers(0, 8 * S)), max_size=30),
    st.one_of(st.none(), st.integers(0, 40 * S)),
    st.integers(1, 4),
)
def test_random_histories_keep_the_invariants(
    history: list[tuple[str, int]], expires_after: int | None, max_attempts: int
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, ack_timeout_s=2.0, backoff_s=1.0)
    expires = None if expires_after is None else T0 + expires_after
    t, actions = CommandTracker("c1", policy, expires_ns=expires).send(T0)
    now = T0
    publishes = kinds(actions).count(ActionKind.PUBLISH)
    outcomes = sum(k in (ActionKind.COMPLETE, ActionKind.GIVE_UP) for k in kinds(actions))
    for event, dt in history:
        now += dt
        before = t
        if event == "poll":
            t, actions = t.poll(now)
        else:
            t, actions = t.handle(CommandEvent(event), now)
        publishes += kinds(actions).count(ActionKind.PUBLISH)
        outcomes += sum(k in (ActionKind.COMPLETE, ActionKind.GIVE_UP) for k in kinds(actions))
        for a in actions:
            if a.kind is ActionKind.PUBLISH:
                assert expires is None or now < expires  # never publish an expired command
        if before.finished:
            assert t == before and actions == ()
        if not t.finished:
            assert t.next_deadline_ns is not None  # something will always wake it
    assert publishes == t.attempts <= max_attempts
    assert outcomes == (1 if t.finished else 0)  # the outcome is reported exactly once


# --- ledger and cache ---------------------------------------------------------------------------


def test_ledger() -> None:
    ledger = CommandLedger(POLICY)
    assert kinds(ledger.submit("c1", T0)) == [ActionKind.PUBLISH, ActionKind.SCHEDULE_TIMEOUT]
    ledger.submit("c2", T0 + S, expires_ns=T0 + 2 * S)
    with pytest.raises(ValueError, match="already tracked"):
        ledger.submit("c1", T0)
    assert ledger.next_deadline_ns() == T0 + 2 * S
    assert kinds(ledger.poll(T0 + 2 * S)) == [ActionKind.GIVE_UP]
    assert ledger.state("c2") is CommandState.EXPIRED
    assert kinds(ledger.on_ack(ack(AckStatus.APPLIED), T0 + 3 * S)) == [ActionKind.COMPLETE]
    assert ledger.on_ack(ack(AckStatus.APPLIED, "c-unknown"), T0) == ()
    assert ledger.unknown_acks == 1
    assert {t.cmd_id for t in ledger.forget_finished()} == {"c1", "c2"}
    assert len(ledger) == 0 and ledger.next_deadline_ns() is None


def test_ack_cache_keeps_the_most_recent() -> None:
    cache = AckCache(capacity=2)
    for cmd in ("a", "b"):
        cache.remember(ack(AckStatus.APPLIED, cmd))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.remember(ack(AckStatus.APPLIED, "c"))
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2


def test_an_older_command_never_overrides_a_newer_one() -> None:
    latest = LatestCommandFilter()
    assert latest.accept("L1", T0 + 10)
    assert latest.accept("L2", T0)  # lamps are independent
    assert not latest.accept("L1", T0 + 5)  # a late retry of an older command
    assert latest.accept("L1", T0 + 10)  # the same command again
    assert latest.accept("L1", T0 + 11)

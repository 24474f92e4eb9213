"""The live feed: per-council channels, order kept, bounded buffers that drop the oldest and
count, wake-ups across threads, closing, and the events' validation and JSON form."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from api.feed import AlarmEvent, LevelsEvent, LiveEvent, LiveFeed, PresenceEvent
from controller.health import Alarm, AlarmKind, AlarmScope

T0 = 1_772_366_400_000_000_000


def levels(k: int) -> LevelsEvent:
    return LevelsEvent(time_ns=T0 + k, levels={"L1": k / 100})


def test_events_arrive_in_publish_order() -> None:
    feed = LiveFeed()

    async def run() -> list[int]:
        got = []
        async with feed.subscribe("north") as sub:
            for k in range(50):
                assert feed.publish("north", levels(k)) == 1
            for _ in range(50):
                event = await sub.get(timeout_s=1.0)
                assert isinstance(event, LevelsEvent)
                got.append(event.time_ns - T0)
        return got

    assert asyncio.run(run()) == list(range(50))
    assert feed.published == 50
    assert feed.subscribers("north") == 0  # leaving the context unsubscribed


def test_councils_only_see_their_own_events() -> None:
    feed = LiveFeed()

    async def run() -> tuple[list[LiveEvent | None], list[LiveEvent | None]]:
        north = feed.subscribe("north")
        south = feed.subscribe("south")
        assert (feed.subscribers("north"), feed.subscribers("south")) == (1, 1)
        presence = PresenceEvent(time_ns=T0, source_id="pir-1", lamp_ids=("north-L1",))
        assert feed.publish("north", presence) == 1
        assert feed.publish("south", levels(1)) == 1
        assert feed.publish("east", levels(2)) == 0  # nobody listens: nothing kept
        got_north = [await north.get(timeout_s=1.0), await north.get(timeout_s=0.01)]
        got_south = [await south.get(timeout_s=1.0), await south.get(timeout_s=0.01)]
        north.close()
        south.close()
        return got_north, got_south

    got_north, got_south = asyncio.run(run())
    assert got_north == [PresenceEvent(T0, "pir-1", ("north-L1",)), None]
    assert got_south == [levels(1), None]


def test_a_full_buffer_drops_the_oldest_and_counts() -> None:
    feed = LiveFeed(max_queued=3)
    sub = feed.subscribe("north")
    other = feed.subscribe("north", max_queued=10)
    for k in range(5):
        feed.publish("north", levels(k))
    assert (sub.queued, sub.dropped, other.queued, other.dropped) == (3, 2, 5, 0)
    assert feed.dropped == 2
    assert sub.take_dropped() == 2
    assert sub.take_dropped() == 0  # reported once

    async def rest() -> list[int]:
        out = []
        while (event := await sub.get(timeout_s=0.01)) is not None:
            out.append(event.time_ns - T0)
        return out

    assert asyncio.run(rest()) == [2, 3, 4]  # the newest kept, in order
    feed.publish("north", levels(5))
    assert (sub.dropped, sub.take_dropped()) == (2, 0)


def test_a_batch_is_delivered_together_and_overflows_oldest_first() -> None:
    feed = LiveFeed(max_queued=4)
    sub = feed.subscribe("north")
    feed.publish_many("north", [levels(0), levels(1)])
    assert feed.publish_many("north", [levels(k) for k in range(2, 7)]) == 1
    # 7 events for 4 places: the 2 waiting and the batch's first 1 are dropped.
    assert (sub.dropped, feed.dropped, feed.published) == (3, 3, 7)

    async def rest() -> list[int]:
        out = []
        while (event := await sub.get(timeout_s=0.01)) is not None:
            out.append(event.time_ns - T0)
        return out

    assert asyncio.run(rest()) == [3, 4, 5, 6]
    assert feed.publish_many("north", []) == 0


def test_publishing_from_another_thread_wakes_the_reader() -> None:
    feed = LiveFeed()

    async def run() -> object:
        async with feed.subscribe("north") as sub:
            publisher = threading.Timer(0.05, feed.publish, args=("north", levels(7)))
            publisher.start()
            # The reader is already waiting when the other thread publishes.
            event = await sub.get(timeout_s=5.0)
            publisher.join()
            return event

    assert asyncio.run(run()) == levels(7)


def test_a_timeout_returns_none_and_close_ends_iteration() -> None:
    feed = LiveFeed()

    async def run() -> tuple[LiveEvent | None, list[LiveEvent], bool]:
        sub = feed.subscribe("north")
        timed_out = await sub.get(timeout_s=0.01)
        feed.publish("north", levels(1))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, feed.close)
        seen = [event async for event in sub]  # ends when the feed closes
        return timed_out, seen, sub.closed

    timed_out, seen, closed = asyncio.run(run())
    assert timed_out is None
    assert seen == [levels(1)]
    assert closed
    assert feed.closed
    late = feed.subscribe("north")
    assert late.closed
    assert feed.publish("north", levels(2)) == 0
    assert feed.subscribers("north") == 0


def test_events_serialise_to_json() -> None:
    alarm = Alarm(
        alarm_id=f"lamp:L1:lamp_failure:{T0}",
        source_id="L1",
        scope=AlarmScope.LAMP,
        kind=AlarmKind.LAMP_FAILURE,
        started_ns=T0,
        ended_ns=None,
        detail="no light for 300 s",
    )
    events: list[LiveEvent] = [
        LevelsEvent(T0, {"L1": 0.5, "L2": 0}),
        PresenceEvent(T0, "pir-1", ("L1", "L2")),
        AlarmEvent.of(alarm, T0 + 1),
    ]
    assert [json.loads(json.dumps(e.as_json())) for e in events] == [
        {"type": "levels", "time_ns": T0, "levels": {"L1": 0.5, "L2": 0.0}},
        {"type": "presence", "time_ns": T0, "source_id": "pir-1", "lamp_ids": ["L1", "L2"]},
        {
            "type": "alarm",
            "time_ns": T0 + 1,
            "alarm_id": f"lamp:L1:lamp_failure:{T0}",
            "kind": "lamp_failure",
            "scope": "lamp",
            "source_id": "L1",
            "started_ns": T0,
            "ended_ns": None,
            "detail": "no light for 300 s",
            "open": True,
        },
    ]


def test_levels_are_copied_so_the_publisher_may_reuse_its_dict() -> None:
    mine = {"L1": 0.5}
    event = LevelsEvent(T0, mine)
    mine["L1"] = 1.0
    assert event.levels == {"L1": 0.5}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: LevelsEvent(T0, {"L1": 1.5}),
            "level of lamp 'L1' is 1.5; levels are fractions of full output within [0, 1]",
        ),
        (
            lambda: LevelsEvent(T0, {"L1": float("nan")}),
            "level of lamp 'L1' is nan; levels are fractions of full output within [0, 1]",
        ),
        (
            lambda: LevelsEvent(-1, {}),
            "time_ns must be a non-negative int (UTC epoch ns), got -1",
        ),
        (
            lambda: PresenceEvent(T0, "pir-1", "L1"),  # type: ignore[arg-type]
            "lamp_ids must be a tuple of lamp ids, got 'L1'",
        ),
        (
            lambda: PresenceEvent(T0, "", ("L1",)),
            "source_id must be a non-empty string, got ''",
        ),
        (
            lambda: AlarmEvent(T0, "a1", "cycling", "lamp", "L1", started_ns=T0, ended_ns=T0 - 1),
            f"alarm 'a1' ends at {T0 - 1} ns, before it started at {T0} ns",
        ),
        (
            lambda: AlarmEvent(T0, "a1", "cycling", "pole", "L1", started_ns=T0),  # type: ignore[arg-type]
            "scope must be 'lamp' or 'gateway', got 'pole'",
        ),
        (
            lambda: LiveFeed(max_queued=0),
            "max_queued must be a positive int (events per subscriber), got 0",
        ),
        (
            lambda: LiveFeed().publish("north", {"L1": 0.5}),  # type: ignore[arg-type]
            "event must be a LevelsEvent, PresenceEvent or AlarmEvent, got dict",
        ),
        (
            lambda: LiveFeed().subscribe(""),
            "council_id must be a non-empty string, got ''",
        ),
    ],
)
def test_bad_input_is_refused_with_a_message_saying_what_to_fix(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message

"""Exactly-once counting of readings delivered at least once. Pure logic plus a storage hook.

Theory of operation (the protocol's receiver rule, ``docs/gateway-protocol.md``)
--------------------------------------------------------------------------------
Every reading has a message id, and the central side accepts each id at most once. Two kinds:

* **derived** ids ``{gw}:{epoch}:{seq}:{index}`` (rows sent with an empty id). Such an id can
  only occur in message ``(gw, epoch, seq)``, and a message's rows never change between
  re-sends, so remembering the *messages* that were accepted completely covers every derived
  id: a message seen again is skipped whole (the protocol's fast path). The pipeline processes
  a message in one step, so a message is always accepted completely (rows it refuses stay
  refused: a bad row stays bad). Sequence numbers of one ``(gw, epoch)`` arrive almost in
  order, so they are kept as sorted disjoint ranges (:class:`SeqRanges`): a few integers per
  epoch instead of one entry per message.
* **explicit** ids (``{sensor_id}#{event_id}``) can repeat across messages (a sensor's own
  re-transmission relayed twice), so they are checked one by one, against the store
  (:meth:`DedupStore.known_ids`; the embedded historian keeps them in an indexed table, so
  memory does not grow with them).

*Window.* Ids are kept for ``window_ns`` (the config's ``max_age_s``) and the validator refuses
readings older than that, so a re-send that arrives after its ids were forgotten is refused as
too old instead of counted twice. An explicit id is forgotten when its reading's time leaves the
window; a message when its receive time is older than the window plus the allowed future skew
(its readings may be that far ahead of its receive time).

*Restart.* The store persists what was accepted in the same transaction as the readings (the
historian's ``write_rows(..., dedup=record)``), then :meth:`Deduplicator.commit` updates memory.
A new :class:`Deduplicator` on the same store reloads the accepted messages, so a restarted
ingest process skips re-sent messages it had already stored.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DedupRecord",
    "DedupStore",
    "Deduplicator",
    "MemoryDedupStore",
    "SeqRanges",
]

MessageKey = tuple[str, str, int]  # (gateway_id, epoch, seq)


@dataclass(frozen=True, slots=True)
class DedupRecord:
    """What one pipeline step accepted, to persist with its readings.

    ``messages``: ``(gateway_id, epoch, seq, received_ns)`` of each uplink accepted completely;
    ``ids``: ``(message_id, time_ns)`` of each explicit id accepted.
    """

    messages: tuple[tuple[str, str, int, int], ...] = ()
    ids: tuple[tuple[str, int], ...] = ()


class DedupStore(Protocol):
    """Where de-duplication state survives a restart (the embedded historian implements it)."""

    def accepted_messages(self) -> Iterable[tuple[str, str, int, int]]:
        """Every persisted ``(gateway_id, epoch, seq, received_ns)``."""
        ...

    def known_ids(self, ids: Collection[str]) -> set[str]:
        """The subset of ``ids`` already accepted."""
        ...

    def prune_dedup(self, messages_before_ns: int, ids_before_ns: int) -> int:
        """Forget messages received before, and explicit ids of readings older than, the
        given times; returns how many entries were removed."""
        ...


class MemoryDedupStore:
    """A :class:`DedupStore` in memory (no restart survival), for pure use and tests."""

    def __init__(self) -> None:
        self._messages: dict[MessageKey, int] = {}
        self._ids: dict[str, int] = {}

    def record(self, record: DedupRecord) -> None:
        for gw, epoch, seq, received_ns in record.messages:
            self._messages[(gw, epoch, seq)] = received_ns
        for message_id, time_ns in record.ids:
            self._ids.setdefault(message_id, time_ns)

    def accepted_messages(self) -> Iterable[tuple[str, str, int, int]]:
        return [(gw, epoch, seq, ns) for (gw, epoch, seq), ns in self._messages.items()]

    def known_ids(self, ids: Collection[str]) -> set[str]:
        known = self._ids
        return {i for i in ids if i in known}

    def prune_dedup(self, messages_before_ns: int, ids_before_ns: int) -> int:
        old_messages = [k for k, ns in self._messages.items() if ns < messages_before_ns]
        old_ids = [k for k, ns in self._ids.items() if ns < ids_before_ns]
        for key in old_messages:
            del self._messages[key]
        for message_id in old_ids:
            del self._ids[message_id]
        return len(old_messages) + len(old_ids)


class SeqRanges:
    """A set of positive integers kept as sorted, disjoint, non-adjacent ranges ``[lo, hi]``."""

    __slots__ = ("_hi", "_lo")

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect_right(self._lo, seq) - 1
        return i >= 0 and seq <= self._hi[i]

    def add(self, seq: int) -> None:
        lo, hi = self._lo, self._hi
        i = bisect_right(lo, seq) - 1  # the range starting at or before seq
        if i >= 0 and seq <= hi[i]:
            return
        joins_left = i >= 0 and hi[i] == seq - 1
        joins_right = i + 1 < len(lo) and lo[i + 1] == seq + 1
        if joins_left and joins_right:
            hi[i] = hi[i + 1]
            del lo[i + 1]
            del hi[i + 1]
        elif joins_left:
            hi[i] = seq
        elif joins_right:
            lo[i + 1] = seq
        else:
            lo.insert(i + 1, seq)
            hi.insert(i + 1, seq)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._lo, self._hi, strict=True))

    def __len__(self) -> int:
        """The number of ranges (not of members): what the set costs in memory."""
        return len(self._lo)


class _Epoch:
    __slots__ = ("last_received_ns", "seqs")

    def __init__(self) -> None:
        self.seqs = SeqRanges()
        self.last_received_ns = -1


class Deduplicator:
    """Which uplinks and explicit ids were already accepted.

    ``window_ns``: how long explicit ids are remembered (by reading time);
    ``margin_ns``: how much longer messages are remembered (by receive time), i.e. the allowed
    future skew of a reading over its message's receive time.
    """

    def __init__(self, store: DedupStore, *, window_ns: int, margin_ns: int = 0) -> None:
        if window_ns <= 0 or margin_ns < 0:
            raise ValueError("window_ns must be > 0 and margin_ns >= 0")
        self.store = store
        self.window_ns = window_ns
        self.margin_ns = margin_ns
        self._epochs: dict[tuple[str, str], _Epoch] = {}
        self.restored_messages = 0
        for gw, epoch, seq, received_ns in store.accepted_messages():
            self._add(gw, epoch, seq, received_ns)
            self.restored_messages += 1

    def _add(self, gw: str, epoch: str, seq: int, received_ns: int) -> None:
        state = self._epochs.get((gw, epoch))
        if state is None:
            state = self._epochs[(gw, epoch)] = _Epoch()
        state.seqs.add(seq)
        state.last_received_ns = max(state.last_received_ns, received_ns)

    def message_done(self, gateway_id: str, epoch: str, seq: int) -> bool:
        """Was uplink ``(gateway_id, epoch, seq)`` already accepted completely?"""
        state = self._epochs.get((gateway_id, epoch))
        return state is not None and seq in state.seqs

    def known_ids(self, ids: Collection[str]) -> set[str]:
        """The explicit ids among ``ids`` that were already accepted."""
        return self.store.known_ids(ids) if ids else set()

    def commit(self, record: DedupRecord) -> None:
        """Remember a record the store has persisted (call after the store's transaction)."""
        for gw, epoch, seq, received_ns in record.messages:
            self._add(gw, epoch, seq, received_ns)

    def cutoffs(self, now_ns: int) -> tuple[int, int]:
        """``(messages_before_ns, ids_before_ns)``: what may be forgotten at ``now_ns``."""
        ids_before_ns = now_ns - self.window_ns
        return ids_before_ns - self.margin_ns, ids_before_ns

    def prune(self, now_ns: int) -> int:
        """Forget expired state here and in the store; returns the store's removed count."""
        messages_before_ns, ids_before_ns = self.cutoffs(now_ns)
        expired = [
            key
            for key, state in self._epochs.items()
            if state.last_received_ns < messages_before_ns
        ]
        for key in expired:
            del self._epochs[key]
        return self.store.prune_dedup(messages_before_ns, ids_before_ns)

    def epochs(self) -> int:
        return len(self._epochs)

"""De-duplication: sequence ranges, message and explicit-id memory, pruning, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.records import ReadingKind as K
from sensor_ingest.dedup import Deduplicator, DedupRecord, MemoryDedupStore, SeqRanges
from sensor_ingest.historian import EmbeddedHistorian

S = 1_000_000_000
NOW = 1_767_225_600 * S
WINDOW = 3600 * S


def test_seq_ranges_merge_neighbours_in_any_order() -> None:
    seqs = SeqRanges()
    for seq in (5, 1, 3, 2, 10, 4, 12, 11, 3):
        seqs.add(seq)
    assert seqs.ranges() == [(1, 5), (10, 12)]
    assert len(seqs) == 2
    assert [s for s in range(15) if s in seqs] == [1, 2, 3, 4, 5, 10, 11, 12]
    assert "3" not in seqs


def test_in_order_sequences_cost_one_range() -> None:
    seqs = SeqRanges()
    for seq in range(1, 100_001):
        seqs.add(seq)
    assert seqs.ranges() == [(1, 100_000)]


def test_messages_are_done_only_after_commit_and_ids_come_from_the_store() -> None:
    store = MemoryDedupStore()
    dedup = Deduplicator(store, window_ns=WINDOW)
    record = DedupRecord(messages=(("gw-1", "e1", 1, NOW),), ids=(("CAM-1#7", NOW - S),))
    assert not dedup.message_done("gw-1", "e1", 1)
    store.record(record)  # the historian persists in its transaction, then memory follows
    assert dedup.known_ids(["CAM-1#7", "CAM-1#8"]) == {"CAM-1#7"}
    assert not dedup.message_done("gw-1", "e1", 1)
    dedup.commit(record)
    assert dedup.message_done("gw-1", "e1", 1)
    assert not dedup.message_done("gw-1", "e2", 1)  # a new epoch numbers anew
    assert not dedup.message_done("gw-2", "e1", 1)
    assert dedup.known_ids([]) == set()


def test_pruning_forgets_ids_with_their_readings_and_messages_a_margin_later() -> None:
    store = MemoryDedupStore()
    dedup = Deduplicator(store, window_ns=WINDOW, margin_ns=300 * S)
    record = DedupRecord(
        messages=(("gw-1", "e1", 1, NOW), ("gw-1", "e1", 2, NOW + 10 * S)),
        ids=(("a#1", NOW - 5 * S), ("a#2", NOW + 5 * S)),
    )
    store.record(record)
    dedup.commit(record)
    assert dedup.cutoffs(NOW + WINDOW) == (NOW - 300 * S, NOW)
    assert dedup.prune(NOW + WINDOW) == 1  # a#1 only
    assert dedup.known_ids(["a#1", "a#2"]) == {"a#2"}
    assert dedup.message_done("gw-1", "e1", 1)
    assert dedup.prune(NOW + WINDOW + 300 * S + 1) == 2  # message 1 and a#2
    assert dedup.message_done("gw-1", "e1", 1)  # the epoch was active until NOW + 10 s
    assert dedup.prune(NOW + WINDOW + 310 * S + 1) == 1
    assert not dedup.message_done("gw-1", "e1", 2) and dedup.epochs() == 0


def test_a_new_deduplicator_on_the_historian_file_remembers_messages_and_ids(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    record = DedupRecord(
        messages=tuple(("gw-1", "e1", seq, NOW) for seq in (1, 2, 3, 7)),
        ids=(("CAM-1#1", NOW - S),),
    )
    with EmbeddedHistorian(path) as historian:
        dedup = Deduplicator(historian, window_ns=WINDOW)
        historian.write_rows([("CAM-1", K.FOOTFALL_COUNT, 1.0, NOW - S)], dedup=record)
        dedup.commit(record)
    with EmbeddedHistorian(path) as historian:  # the restarted process
        dedup = Deduplicator(historian, window_ns=WINDOW)
        assert dedup.restored_messages == 4
        assert [s for s in range(1, 9) if dedup.message_done("gw-1", "e1", s)] == [1, 2, 3, 7]
        assert dedup.known_ids(["CAM-1#1"]) == {"CAM-1#1"}


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^window_ns must be > 0 and margin_ns >= 0$"):
        Deduplicator(MemoryDedupStore(), window_ns=0)

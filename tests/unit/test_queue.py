"""The store-and-forward queue: order, bounds, counters, reopening, and a SIGKILL mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateways.queue import DiskQueue, QueueCounters, QueueError

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now_ns = 1_767_225_600 * 10**9

    def __call__(self) -> int:
        return self.now_ns


def test_fifo_peek_ack(tmp_path: Path) -> None:
    with DiskQueue(tmp_path / "q.db", max_messages=10) as q:
        ids = [q.put(f"m{i}".encode()) for i in range(5)]
        assert ids == [1, 2, 3, 4, 5] and len(q) == 5
        assert q.peek(2) == [(1, b"m0"), (2, b"m1")]
        assert q.peek(2) == [(1, b"m0"), (2, b"m1")]  # peek does not remove
        assert q.ack([1, 2, 2, 99]) == 2  # duplicates and unknown ids are harmless
        assert [m.id for m in q.peek(10)] == [3, 4, 5]
        assert q.ack([]) == 0
        assert q.counters == QueueCounters(enqueued=5, acked=2)


def test_ids_are_never_reused_even_after_emptying_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with DiskQueue(path, max_messages=10) as q:
        epoch = q.epoch
        q.put(b"a")
        q.put(b"b")
        q.ack([1, 2])
        assert len(q) == 0
    with DiskQueue(path, max_messages=10) as q:
        assert q.put(b"c") == 3  # a plain rowid would hand out 1 again
        assert q.epoch == epoch
    with DiskQueue(tmp_path / "other.db", max_messages=10) as fresh:
        assert fresh.epoch != epoch  # a new file: new epoch, so message ids stay distinct


def test_survives_reopen_with_counters(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "q.db"
    with DiskQueue(path, max_messages=3) as q:
        for i in range(5):
            q.put(bytes([i]))
        q.ack([4])
    with DiskQueue(path, max_messages=3) as q:
        assert q.peek(10) == [(3, b"\x02"), (5, b"\x04")]
        assert len(q) == 2
        assert q.counters == QueueCounters(enqueued=5, dropped_oldest=2, acked=1)


def test_drop_oldest_keeps_the_newest(tmp_path: Path) -> None:
    with DiskQueue(tmp_path / "q.db", max_messages=3, when_full="drop_oldest") as q:
        for i in range(7):
            assert q.put(str(i).encode()) == i + 1
        assert len(q) == 3
        assert [m.payload for m in q.peek(5)] == [b"4", b"5", b"6"]
        assert q.counters.dropped_oldest == 4 and q.counters.rejected_full == 0
        assert q.ack([1]) == 0  # dropped already: not counted as delivered


def test_reject_new_keeps_the_oldest(tmp_path: Path) -> None:
    with DiskQueue(tmp_path / "q.db", max_messages=3, when_full="reject_new") as q:
        results = [q.put(str(i).encode()) for i in range(5)]
        assert results == [1, 2, 3, None, None]
        assert [m.payload for m in q.peek(5)] == [b"0", b"1", b"2"]
        assert q.counters == QueueCounters(enqueued=3, rejected_full=2)
        q.ack([1])
        assert q.put(b"5") == 4


def test_a_smaller_bound_on_reopen_drops_down_to_it(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with DiskQueue(path, max_messages=10) as q:
        for i in range(6):
            q.put(bytes([i]))
    with DiskQueue(path, max_messages=2) as q:
        q.put(b"new")
        assert [m.payload for m in q.peek(5)] == [b"\x05", b"new"]
        assert q.counters.dropped_oldest == 5


def test_oldest_age_uses_the_clock(tmp_path: Path) -> None:
    clock = Clock()
    with DiskQueue(tmp_path / "q.db", max_messages=10, clock=clock) as q:
        assert q.oldest_age_s() is None
        q.put(b"a")
        clock.now_ns += 2_500_000_000
        q.put(b"b")
        clock.now_ns += 500_000_000
        assert q.oldest_age_s() == pytest.approx(3.0)
        assert q.oldest_age_s(now_ns=clock.now_ns + 10**9) == pytest.approx(4.0)
        q.ack([1])
        assert q.oldest_age_s() == pytest.approx(0.5)


def test_wal_mode_and_durability_setting(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with DiskQueue(path, max_messages=10, synchronous="FULL") as q:
        q.put(b"x")
        mode = q._db.execute("PRAGMA journal_mode").fetchone()[0]
        sync = q._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 = FULL


def test_a_second_opener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with DiskQueue(path, max_messages=10) as q:
        q.put(b"x")
        with pytest.raises(QueueError, match="if another agent runs, stop it"):
            DiskQueue(path, max_messages=10)


def test_damaged_file_and_bad_arguments(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(QueueError, match="move it aside"):
        DiskQueue(junk, max_messages=10)
    with pytest.raises(ValueError, match="max_messages"):
        DiskQueue(tmp_path / "q.db", max_messages=0)
    with pytest.raises(ValueError, match="when_full"):
        DiskQueue(tmp_path / "q.db", max_messages=1, when_full="drop_newest")  # type: ignore[arg-type]
    q = DiskQueue(tmp_path / "q.db", max_messages=1)
    with pytest.raises(TypeError, match="payload must be bytes"):
        q.put("text")  # type: ignore[arg-type]
    q.close()
    with pytest.raises(QueueError, match="is closed"):
        q.put(b"x")


def test_usable_from_worker_threads(tmp_path: Path) -> None:
    async def main() -> list[int | None]:
        with DiskQueue(tmp_path / "q.db", max_messages=1000) as q:
            ids = await asyncio.gather(*(asyncio.to_thread(q.put, b"x") for _ in range(50)))
            assert len(q) == 50
            return list(ids)

    ids = asyncio.run(main())
    assert sorted(i for i in ids if i is not None) == list(range(1, 51))


_WRITER = textwrap.dedent(
    """
    import sys
    from gateways.queue import DiskQueue

    q = DiskQueue(sys.argv[1], max_messages=1_000_000)
    i = 0
    while True:
        message_id = q.put(b"message-%d" % i)
        print(message_id, i, flush=True)
        i += 1
    """
)


def test_sigkill_mid_writes_loses_no_committed_message(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert child.stdout is not None
    committed: dict[int, int] = {}
    deadline = time.monotonic() + 20
    try:
        while len(committed) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            message_id, i = map(int, line.split())
            committed[message_id] = i
    finally:
        os.kill(child.pid, signal.SIGKILL)  # mid-write: it never stops putting
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(committed) >= 300, "the writer did not get going"
    with DiskQueue(path, max_messages=1_000_000) as q:
        stored = dict(q.peek(1_000_000))
        assert len(q) == len(stored) >= len(committed)
        for message_id, i in committed.items():
            assert stored[message_id] == b"message-%d" % i
        # Ids are contiguous from 1: nothing half-written, nothing missing in between.
        assert sorted(stored) == list(range(1, len(stored) + 1))
        assert q.counters.enqueued == len(stored)
        assert q.put(b"after the crash") == len(stored) + 1
    # The file is a healthy SQLite database after recovery.
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

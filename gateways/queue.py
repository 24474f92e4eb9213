"""Store-and-forward queue for uplink messages: SQLite in WAL mode, bounded, crash-safe.

Theory of operation
-------------------
Every uplink message goes into the queue before it is published and leaves it only when the
broker has acknowledged it (``PUBACK``), so a broker outage, a network outage or a restart of
the agent loses nothing that was ``put``. ``peek`` returns the oldest messages without removing
them; ``ack`` removes the ones that were delivered. A message published but not yet acked when
the agent dies is published again after the restart: delivery is at least once, and the
central side removes duplicates by message id (``docs/gateway-protocol.md``).

*Ids.* Ids come from ``INTEGER PRIMARY KEY AUTOINCREMENT``, so an id is never handed out twice
by one queue file, even after the queue was emptied (a plain rowid would reuse the largest id
after it was deleted, and the central side would throw the new message away as a duplicate).
The uplink uses the id as the message's ``seq``. ``epoch`` is a random token made when the
file is created: if the file is lost and a new one starts counting at 1 again, the new epoch
keeps message ids distinct.

*Durability.* WAL mode with ``synchronous=NORMAL`` (the default here): a transaction is in the
WAL file, in the operating system's page cache, when ``put`` returns. That survives the agent
being killed (SIGKILL, OOM killer, a crash), which is the failure this queue exists for; it
does not guarantee the last transactions survive a power cut or kernel panic (the database
stays consistent, the newest messages may be missing). ``synchronous="FULL"`` fsyncs the WAL
on every commit and survives power loss too, at the cost of one fsync per message (slow on SD
cards, and wearing them). Gateways on a UPS or with a journaling SSD may choose FULL.

*Bound.* At most ``max_messages`` messages are kept. When full, ``drop_oldest`` deletes the
oldest to make room (recent data is worth more to a live controller; the counters say how much
was lost) and ``reject_new`` refuses the new message (``put`` returns None), keeping the
history contiguous. Counters (``enqueued``, ``dropped_oldest``, ``rejected_full``, ``acked``)
are updated in the same transaction as the change they count, so they stay exact across
crashes.

*Threads.* Only the standard ``sqlite3`` module, synchronous. The agent calls it through
``asyncio.to_thread``; a lock serialises calls from different threads on one connection.
The file is opened in exclusive locking mode: a second process opening the same queue fails
at once instead of sending every message twice.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NamedTuple

from domain.errors import StreetlightError

__all__ = ["DiskQueue", "QueueCounters", "QueueError", "QueuedMessage", "WhenFull"]

WhenFull = Literal["drop_oldest", "reject_new"]
Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA_VERSION: Final = 1
_COUNTERS: Final = ("enqueued", "dropped_oldest", "rejected_full", "acked")
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enqueued_ns INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value NOT NULL
);
"""


class QueueError(StreetlightError):
    """The queue file cannot be used; ``path`` says which one."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"queue {path}: {message}")


class QueuedMessage(NamedTuple):
    id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueueCounters:
    """Totals since the queue file was created."""

    enqueued: int = 0
    dropped_oldest: int = 0
    rejected_full: int = 0
    acked: int = 0


class DiskQueue:
    """A bounded FIFO of byte payloads in one SQLite file. Use as a context manager or close()."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_messages: int,
        when_full: WhenFull = "drop_oldest",
        synchronous: Synchronous = "NORMAL",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be a whole number >= 1, got {max_messages!r}")
        if when_full not in ("drop_oldest", "reject_new"):
            raise ValueError(f"when_full must be drop_oldest or reject_new, got {when_full!r}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.when_full: WhenFull = when_full
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.5
            )
        except (OSError, sqlite3.Error) as err:
            raise QueueError(self.path, f"cannot open ({err}); check the directory") from err
        try:
            self._setup(synchronous)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise QueueError(
                self.path,
                f"{err}; if another agent runs, stop it; if the file is damaged, move it aside "
                "(a new queue starts empty)",
            ) from err
        self._closed = False

    def _setup(self, synchronous: Synchronous) -> None:
        db = self._db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        with self._transaction():
            # Statement by statement: executescript() would COMMIT the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("schema_version", _SCHEMA_VERSION),
                        ("epoch", secrets.token_hex(4)),
                        *((name, 0) for name in _COUNTERS),
                    ],
                )
            elif row[0] != _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"queue schema version {row[0]} is not {_SCHEMA_VERSION}"
                )
        self.epoch = str(db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
        self._length = int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _bump(self, db: sqlite3.Connection, name: str, by: int) -> None:
        if by:
            db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (by, name))

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise QueueError(self.path, "is closed")
            try:
                yield self._db
            except sqlite3.Error as err:
                raise QueueError(self.path, f"{err} (disk full or file damaged?)") from err

    # --- API ----------------------------------------------------------------------------------

    def put(self, payload: bytes) -> int | None:
        """Append ``payload``; its id, or None when the queue is full and the policy is
        ``reject_new``. The message is durable (see the module notes) when this returns."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        data = bytes(payload)
        with self._locked() as db:
            length = self._length
            with self._transaction():
                if length >= self.max_messages:
                    if self.when_full == "reject_new":
                        self._bump(db, "rejected_full", 1)
                        return None
                    excess = length - self.max_messages + 1
                    db.execute(
                        "DELETE FROM messages WHERE id IN "
                        "(SELECT id FROM messages ORDER BY id LIMIT ?)",
                        (excess,),
                    )
                    self._bump(db, "dropped_oldest", excess)
                    length -= excess
                cursor = db.execute(
                    "INSERT INTO messages(enqueued_ns, payload) VALUES (?, ?)",
                    (self._clock(), data),
                )
                self._bump(db, "enqueued", 1)
            # Only after COMMIT: a failed transaction leaves the count as it was.
            self._length = length + 1
            assert cursor.lastrowid is not None
            return int(cursor.lastrowid)

    def peek(self, n: int, *, after_id: int = 0) -> list[QueuedMessage]:
        """Up to ``n`` oldest messages with an id above ``after_id``, oldest first, without
        removing them (``after_id``: the last one a sender already has in flight)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after_id, n)
            ).fetchall()
        return [QueuedMessage(int(i), bytes(p)) for i, p in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Remove delivered messages; returns how many were still there.

        Acking an id twice, or one that ``drop_oldest`` already removed, is harmless.
        """
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        removed = 0
        with self._locked() as db:
            with self._transaction():
                for start in range(0, len(wanted), 500):  # SQLite caps bound parameters
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += db.execute(
                        f"DELETE FROM messages WHERE id IN ({marks})", chunk
                    ).rowcount
                self._bump(db, "acked", removed)
            self._length -= removed
        return removed

    def __len__(self) -> int:
        return self._length

    @property
    def counters(self) -> QueueCounters:
        with self._locked() as db:
            rows = dict(
                db.execute(
                    f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(_COUNTERS))})",
                    _COUNTERS,
                ).fetchall()
            )
        return QueueCounters(**{name: int(rows.get(name, 0)) for name in _COUNTERS})

    def oldest_age_s(self, now_ns: int | None = None) -> float | None:
        """Seconds the oldest message has waited (at ``now_ns``, default the clock), or None."""
        with self._locked() as db:
            # The lowest id is the oldest put; its row is found through the primary key.
            row = db.execute("SELECT enqueued_ns FROM messages ORDER BY id LIMIT 1").fetchone()
        if row is None or row[0] is None:
            return None
        now = self._clock() if now_ns is None else now_ns
        return max(0.0, (now - int(row[0])) / 1e9)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> DiskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

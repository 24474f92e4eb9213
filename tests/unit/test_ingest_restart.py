"""An ingest process killed (SIGKILL) in the middle of writing loses nothing and, fed every
message again, counts nothing twice: readings and de-duplication state commit together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from domain.protocol import encode_uplink
from domain.records import Reading
from domain.records import ReadingKind as K
from sensor_ingest.historian import EmbeddedHistorian
from sensor_ingest.pipeline import IngestPipeline

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
UP = "streetlight/v1/gw-1/uplink"


def _messages(now_ns: int, n: int) -> list[bytes]:
    return [
        encode_uplink(
            [Reading(f"L-{seq}-{i}", K.POWER_W, float(i), now_ns - S) for i in range(50)]
            + [Reading("CAM-1", K.FOOTFALL_COUNT, 1.0, now_ns - S, f"CAM-1#{seq % 40}")],
            gateway_id="gw-1",
            epoch="e1",
            seq=seq,
            sent_ns=now_ns,
        )
        for seq in range(1, n + 1)
    ]


def test_a_killed_ingest_process_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    now = time.time_ns()
    messages = _messages(now, 400)
    (tmp_path / "messages").write_bytes(b"\n".join(m.hex().encode() for m in messages))
    child = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from sensor_ingest.historian import EmbeddedHistorian
        from sensor_ingest.pipeline import IngestPipeline
        payloads = [bytes.fromhex(line) for line in open({str(tmp_path / "messages")!r})]
        pipeline = IngestPipeline(EmbeddedHistorian({str(path)!r}, hot_rows=3000))
        for i in range(0, len(payloads), 3):  # a few messages per wake-up, until killed
            pipeline.handle_many([({UP!r}, p, {now}) for p in payloads[i:i + 3]])
            print(i + 3, flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        while True:  # kill it half-way, while it writes the next batch
            line = process.stdout.readline()
            assert line, "the ingest child died on its own"
            if int(line) >= 150:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with EmbeddedHistorian(path, hot_rows=3000) as historian:
        # What survived is whole: every stored message has all its rows, and nothing more.
        stats = historian.stats()
        assert 150 <= stats["dedup_messages"] <= 400  # < 400 unless it raced to the end
        stored = stats["hot_rows"] + stats["settled_rows"]
        assert stored == stats["dedup_messages"] * 50 + stats["dedup_ids"]
    with EmbeddedHistorian(path, hot_rows=3000) as historian:
        pipeline = IngestPipeline(historian)
        for i in range(0, len(messages), 7):
            pipeline.handle_many([(UP, m, now) for m in messages[i : i + 7]])
        stats = historian.stats()
        assert stats["hot_rows"] + stats["settled_rows"] == 400 * 50 + 40
        assert stats["dedup_messages"] == 400 and stats["dedup_ids"] == 40
        assert historian.counts(["CAM-1"], K.FOOTFALL_COUNT, 0, now, 86_400).counts.sum() == 40

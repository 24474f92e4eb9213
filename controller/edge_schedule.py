"""The compiled edge schedule: night programs a gateway keeps on disk to run on its own.

When a policy is activated, the central service compiles the next few nights for a gateway's
lamps and ships them; the gateway stores them with :func:`save_schedule` and, if the central
service is out of reach, drives its lamps from :func:`load_schedule` with the same kernels.
The file is a NumPy ``.npz`` (arrays only, no pickle), with a format version and a SHA-256 of
the arrays so a torn or tampered file is refused rather than half-used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.dimming.program import NightProgram
from domain.errors import StreetlightError

SCHEDULE_FORMAT = 1
_ARRAYS = (
    "program_frac",
    "floor_frac",
    "boost_frac",
    "hold_s",
    "fade_up_frac_per_s",
    "fade_down_frac_per_s",
    "class_factor",
    "lamp_profile",
    "lamp_zone",
    "ceiling_frac",
    "neighbour_indptr",
    "neighbour_indices",
)


class ScheduleError(StreetlightError, ValueError):
    """An edge schedule file cannot be used (missing, torn, wrong format or lamps)."""


@dataclass(frozen=True, eq=False)
class EdgeSchedule:
    """Night programs for one gateway's lamps, in time order, with the lamp ids they index."""

    lamp_ids: tuple[str, ...]
    programs: tuple[NightProgram, ...]

    def __post_init__(self) -> None:
        for k, p in enumerate(self.programs):
            if p.n_lamps != len(self.lamp_ids):
                raise ScheduleError(
                    f"program {k} drives {p.n_lamps} lamps, the schedule lists {len(self.lamp_ids)}"
                )
        starts = [p.start_ns for p in self.programs]
        if starts != sorted(starts):
            raise ScheduleError("programs must be in time order")

    def program_at(self, time_ns: int) -> tuple[NightProgram, int] | None:
        """The program covering ``time_ns`` and the step within it, or None."""
        for p in reversed(self.programs):
            step = p.step_of(time_ns)
            if 0 <= step < p.n_steps:
                return p, step
        return None

    @property
    def end_ns(self) -> int:
        """When the last program ends (0 for an empty schedule)."""
        if not self.programs:
            return 0
        last = self.programs[-1]
        return last.start_ns + round(last.n_steps * last.step_s * 1e9)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_schedule(
    path: str | Path, lamp_ids: Sequence[str], programs: Sequence[NightProgram]
) -> Path:
    """Write the schedule atomically (temporary file, fsync, rename)."""
    schedule = EdgeSchedule(tuple(lamp_ids), tuple(programs))
    arrays: dict[str, np.ndarray] = {"lamp_ids": np.array(schedule.lamp_ids, dtype=np.str_)}
    meta = []
    for k, p in enumerate(schedule.programs):
        for name in _ARRAYS:
            arrays[f"p{k}_{name}"] = getattr(p, name)
        meta.append(
            {
                "start_ns": p.start_ns,
                "step_s": p.step_s,
                "profile_names": list(p.profile_names),
                "zone_names": list(p.zone_names),
                "fail_safe_frac": p.fail_safe_frac,
                "meta": p.meta,
            }
        )
    header = {"format": SCHEDULE_FORMAT, "programs": meta, "sha256": _digest(arrays)}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def load_schedule(path: str | Path) -> EdgeSchedule:
    """Read a schedule written by :func:`save_schedule`; :class:`ScheduleError` says what is wrong."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ScheduleError(f"no edge schedule at {path}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ScheduleError(f"edge schedule {path} cannot be read: {err}") from None
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ScheduleError(f"edge schedule {path} has no readable header") from None
    if header.get("format") != SCHEDULE_FORMAT:
        raise ScheduleError(
            f"edge schedule {path} is format {header.get('format')!r}, expected {SCHEDULE_FORMAT}"
        )
    if header.get("sha256") != _digest(arrays):
        raise ScheduleError(f"edge schedule {path} is damaged: its checksum does not match")
    programs = []
    for k, m in enumerate(header["programs"]):
        try:
            programs.append(
                NightProgram(
                    start_ns=int(m["start_ns"]),
                    step_s=float(m["step_s"]),
                    profile_names=tuple(m["profile_names"]),
                    zone_names=tuple(m["zone_names"]),
                    fail_safe_frac=float(m["fail_safe_frac"]),
                    meta=dict(m["meta"]),
                    **{name: arrays[f"p{k}_{name}"] for name in _ARRAYS},
                )
            )
        except (KeyError, ValueError) as err:
            raise ScheduleError(f"edge schedule {path}: program {k} is invalid: {err}") from None
    return EdgeSchedule(tuple(str(x) for x in arrays["lamp_ids"]), tuple(programs))

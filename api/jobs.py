"""Dry-run jobs: simulate a policy version on a group's lamps in the background.

Theory of operation
-------------------
A route stores a :class:`~api.db.DryRun` row (``queued``, with its parameters) and hands its id
to :meth:`DryRunRunner.submit`. A worker thread then

1. loads the version's document, the group's lamps, the council's time zone and the policy
   version active on the group (if any, and if it is another version);
2. writes the lamps to a CSV and the documents to YAML files in a temporary directory and
   builds a :class:`simulation.scenario.Scenario` pointing at them (so the simulator reads the
   group exactly as it reads any council inventory, through :mod:`domain.importer`);
3. runs :func:`simulation.run.run_scenario`, whose progress callback updates ``progress_frac``
   and ``stage`` in the row;
4. stores the simulator's JSON report (:class:`simulation.results.SimulationReport`) with
   ``succeeded``, or the error message with ``failed``.

The candidate is compared with the active version through the scenario's ``current_policy``,
so the report's ``saving_vs_current_frac`` is the saving against what runs now.

Jobs run in a thread pool: the simulator's kernels are numba code, and a thread lets the
progress callback write to the store directly. State lives in the store, so any request (or a
restarted service) sees it; jobs that a restart interrupted are marked failed at start-up. So
one API process serves one store: a second process starting on the same store would mark the
first one's running jobs failed.

The CSV carries each lamp's id, position, wattage, class, street, group and lamp type. The
importer takes one standby power and one dimming curve for a whole file, so the group's median
standby power and its most common dimming curve stand in for the per-lamp values.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import statistics
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import Activation, Council, DryRun, JobStatus, LampRow
from domain.records import Lamp
from simulation.run import run_scenario
from simulation.scenario import parse_scenario

log = logging.getLogger(__name__)

_NS = 1_000_000_000
#: Share of the progress bar spent before the first simulated night (loading, compiling).
_SETUP_FRAC = 0.1


def recent_first_night(now_ns: int, tz: str, nights: int) -> dt.date:
    """The first of the ``nights`` most recent nights that have ended (the last one is the
    night that started yesterday, local time)."""
    today = dt.datetime.fromtimestamp(now_ns / _NS, tz=ZoneInfo(tz)).date()
    return today - dt.timedelta(days=nights)


def write_lamps_csv(lamps: list[Lamp], path: Path) -> dict[str, Any]:
    """Write ``lamps`` as an inventory CSV; returns the column mapping that reads it back."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["lamp_id", "lon_deg", "lat_deg", "power_w", "class", "street", "group", "lamp_type"]
        )
        for lamp in lamps:
            writer.writerow(
                [
                    lamp.lamp_id,
                    repr(lamp.lon_deg),
                    repr(lamp.lat_deg),
                    repr(lamp.rated_power_w),
                    lamp.lighting_class.value,
                    lamp.street,
                    lamp.group,
                    lamp.lamp_type,
                ]
            )
    curves = Counter(lamp.dimming_curve.value for lamp in lamps)
    return {
        "council_id": lamps[0].council_id if lamps else "",
        "id_column": "lamp_id",
        "x_column": "lon_deg",
        "y_column": "lat_deg",
        "wattage_column": "power_w",
        "class_column": "class",
        "street_column": "street",
        "group_column": "group",
        "lamp_type_column": "lamp_type",
        "standby_power_w": statistics.median(lamp.standby_power_w for lamp in lamps)
        if lamps
        else 0.5,
        "dimming_curve": curves.most_common(1)[0][0] if curves else "dali",
    }


class DryRunRunner:
    """Runs dry-run jobs in a thread pool; see the module docstring."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], int], *, workers: int = 1
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dry-run")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def fail_interrupted(self) -> int:
        """Mark jobs left queued or running by a previous process as failed; returns how many."""
        with self._sessions() as session:
            result = session.execute(
                update(DryRun)
                .where(DryRun.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                .values(
                    status=JobStatus.FAILED,
                    error="interrupted: the service restarted before the job finished; run it again",
                    finished_ns=self._clock(),
                )
            )
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    def submit(self, job_id: str) -> Future[None]:
        """Start the stored job ``job_id`` when a worker is free."""
        future = self._pool.submit(self._run, job_id)
        with self._lock:
            self._futures[job_id] = future
        future.add_done_callback(lambda _: self._forget(job_id))
        return future

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def wait(self, job_id: str, timeout_s: float) -> None:
        """Block until ``job_id`` finishes (for the CLI and tests); returns at once if it has."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout_s)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _set(self, job_id: str, **values: Any) -> None:
        with self._sessions() as session:
            session.execute(update(DryRun).where(DryRun.id == job_id).values(**values))
            session.commit()

    def _run(self, job_id: str) -> None:
        try:
            report = self._simulate(job_id)
        except Exception as err:  # a job's failure is its result: record it, keep the worker
            log.exception("dry run %s failed", job_id)
            self._set(
                job_id,
                status=JobStatus.FAILED,
                error=f"{type(err).__name__}: {err}",
                finished_ns=self._clock(),
            )
            return
        self._set(
            job_id,
            status=JobStatus.SUCCEEDED,
            progress_frac=1.0,
            stage="done",
            report=report,
            finished_ns=self._clock(),
        )

    def _simulate(self, job_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            job = session.get(DryRun, job_id)
            if job is None:
                raise LookupError(f"dry run {job_id} is not in the store")
            job.status = JobStatus.RUNNING
            job.started_ns = self._clock()
            job.stage = "loading lamps and policies"
            session.commit()
            council = session.get(Council, job.council_id)
            assert council is not None
            lamps = [
                row.record()
                for row in session.scalars(
                    select(LampRow)
                    .where(LampRow.council_id == job.council_id, LampRow.group_id == job.group_id)
                    .order_by(LampRow.lamp_id)
                )
            ]
            candidate = job.version
            current = session.scalar(
                select(Activation).where(
                    Activation.council_id == job.council_id,
                    Activation.group_id == job.group_id,
                    Activation.active.is_(True),
                )
            )
            documents = {f"{candidate.policy.name} v{candidate.number}": candidate.document}
            current_name = None
            if current is not None and current.policy_version_id != candidate.id:
                current_name = f"{current.version.policy.name} v{current.version.number} (active)"
                documents[current_name] = current.version.document
            params = dict(job.params)
            tz = council.tz
        if not lamps:
            raise ValueError("the group has no lamps left to simulate")

        with tempfile.TemporaryDirectory(prefix=f"dry-run-{job_id}-") as tmp:
            folder = Path(tmp)
            mapping = write_lamps_csv(lamps, folder / "lamps.csv")
            policy_refs = []
            for k, (name, text) in enumerate(documents.items()):
                (folder / f"policy{k}.yaml").write_text(text, encoding="utf-8")
                policy_refs.append({"file": f"policy{k}.yaml", "name": name})
            scenario = parse_scenario(
                {
                    "name": f"dry run {job_id}",
                    "tz": tz,
                    "inventory": {"file": "lamps.csv", "mapping": mapping},
                    "demand": {
                        "model": "synthetic",
                        "footfall_peak_per_h": params["footfall_peak_per_h"],
                        "traffic_peak_per_h": params["traffic_peak_per_h"],
                    },
                    "policies": policy_refs,
                    "current_policy": current_name,
                    "nights": {"first": params["first_night"], "count": params["nights"]},
                    "seed": params["seed"],
                    "heatmap_lamps": min(200, len(lamps)),
                },
                base_dir=folder,
            )
            self._set(job_id, progress_frac=_SETUP_FRAC / 2, stage="simulating")

            def progress(label: str, done: int, total: int) -> None:
                self._set(
                    job_id,
                    progress_frac=_SETUP_FRAC + (1.0 - _SETUP_FRAC) * done / max(total, 1),
                    stage=f"simulated {done} of {total}: {label}",
                )

            report = run_scenario(scenario, progress=progress)
        return report.model_dump(mode="json")

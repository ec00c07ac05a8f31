"""Evaluation jobs: validate a spec, queue it, run it on a worker thread, publish the results.

Plain Python, no gRPC. Job state lives in ``<data_dir>/evaluator.sqlite`` (``atlas.jobs.JobStore``),
so jobs survive a restart; a job that was RUNNING when the service stopped is marked FAILED (ABORTED),
on the way out or, if the process died, at the next start. One job runs at a time (the runner
already runs its episodes concurrently). A job publishes under its ``output_uri``: ``transcripts/``
(every episode, AgentGym format, with the dataset manifest) and ``results.json`` (per-env numbers,
policy, provenance).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atlas.errors import AtlasError, Cancelled, InvalidArgument, NotFound
from atlas.jobs import Job, JobError, JobState, JobStore
from atlas.models.smollm2 import MODEL_NAME as SMOLLM2_NAME
from atlas.models.smollm2 import resolve_model
from atlas.storage import StorageRoots
from atlas_evaluator.agent import EpisodeResult
from atlas_evaluator.envs.registry import ENVIRONMENTS, EnvSpec
from atlas_evaluator.metrics import EvaluatorMetrics
from atlas_evaluator.policies.base import GenerationConfig, Policy
from atlas_evaluator.report import EnvTally
from atlas_evaluator.runner import MAX_CONCURRENCY, Runner, plan_suite

log = logging.getLogger(__name__)
POLICY_KINDS = ("openai", "transformers", "oracle")
DEFAULT_CONCURRENCY = 8


@dataclass
class PolicySpec:
    kind: str
    base_model: str = ""
    adapter_uri: str = ""
    endpoint: str = ""
    temperature: float = 0.0
    max_new_tokens: int = 128


@dataclass
class EvalSpec:
    """What to evaluate. ``max_turns`` 0 is refused (as the API documents), not "use the default"."""

    policy: PolicySpec
    env_ids: list[str]
    episodes_per_env: int
    seed: int = 0
    max_turns: int = 0
    concurrency: int = DEFAULT_CONCURRENCY
    training_job_id: str = ""
    output_uri: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSpec:
        values = dict(data)
        values["policy"] = PolicySpec(**values["policy"])
        return cls(**values)


def list_environments(page_size: int, page_token: str) -> tuple[list[EnvSpec], str]:
    """Registry envs in id order; the page token is the offset of the next page."""
    if page_size < 0:
        raise InvalidArgument(f"must not be negative, got {page_size}", field_path="page_size")
    size = min(page_size or 50, 1000)
    try:
        start = int(page_token) if page_token else 0
    except ValueError as exc:
        raise InvalidArgument("not a page token returned by this service", field_path="page_token") from exc
    specs = sorted(ENVIRONMENTS.values(), key=lambda s: s.env_id)
    if not 0 <= start <= len(specs):
        raise InvalidArgument("not a page token returned by this service", field_path="page_token")
    page = specs[start : start + size]
    return page, str(start + size) if start + size < len(specs) else ""


class EvaluatorCore:
    """The evaluator's jobs: create/get/list/watch/cancel plus the worker that runs them."""

    def __init__(
        self,
        data_dir: str | Path,
        storage_roots: list[str],
        *,
        max_concurrency: int = MAX_CONCURRENCY,
        metrics: EvaluatorMetrics | None = None,
        policy_device: str = "auto",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.policy_device = policy_device
        self.roots = StorageRoots(storage_roots)
        self.max_concurrency = max_concurrency
        self.metrics = metrics
        self.store = JobStore(self.data_dir / "evaluator.sqlite", "evaluation")
        self.store.recover_interrupted(requeue=False)
        self._cancel: dict[str, threading.Event] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="evaluator-jobs", daemon=True)
        self._worker.start()

    # --- API -----------------------------------------------------------------------------------
    def create(self, spec: EvalSpec) -> Job:
        self._check(spec)
        job_id = f"eva-{uuid.uuid4().hex[:12]}"
        if not spec.output_uri:  # decided before the job exists, so the worker never sees it empty
            spec.output_uri = str((self.data_dir / "evaluations" / job_id).resolve())
        job = self.store.create(asdict(spec), job_id=job_id)
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list_jobs(self, page_size: int, page_token: str, state: str | None) -> tuple[list[Job], str]:
        return self.store.list_jobs(
            page_size=page_size, page_token=page_token, state=JobState(state) if state else None
        )

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[Job]:
        return self.store.watch(job_id, timeout=timeout)

    def cancel(self, job_id: str) -> Job:
        job = self.store.cancel(job_id)
        event = self._cancel.get(job.id)
        if event is not None:
            event.set()
        return job

    def close(self) -> None:
        self._stopping.set()
        for event in list(self._cancel.values()):
            event.set()
        self._wake.set()
        self._worker.join(timeout=10)
        self.store.close()

    # --- validation ----------------------------------------------------------------------------
    def _check(self, spec: EvalSpec) -> None:
        p = spec.policy
        if p.kind not in POLICY_KINDS:
            raise InvalidArgument(
                f"policy kind must be one of {', '.join(POLICY_KINDS)}", field_path="spec.policy.kind"
            )
        if p.kind in ("openai", "transformers") and not p.base_model:
            raise InvalidArgument("required: the base model", field_path="spec.policy.base_model")
        if p.kind == "openai" and not p.endpoint.startswith(("http://", "https://")):
            raise InvalidArgument(
                "required: the server's http(s) base URL", field_path="spec.policy.endpoint"
            )
        if (
            p.kind == "transformers"
            and p.base_model != SMOLLM2_NAME  # pulled (cached) by the worker, see build_policy
            and not (Path(p.base_model) / "config.json").is_file()
        ):
            raise NotFound(
                f"no model at {p.base_model!r} (config.json missing)", field_path="spec.policy.base_model"
            )
        if p.adapter_uri:
            if p.kind == "oracle":
                raise InvalidArgument(
                    "the oracle policy takes no adapter", field_path="spec.policy.adapter_uri"
                )
            if p.kind == "transformers":
                self.roots.check(p.adapter_uri, field="spec.policy.adapter_uri")
                from atlas.storage import exists

                if not exists(p.adapter_uri.rstrip("/") + "/adapter_config.json"):
                    raise NotFound(
                        f"no adapter at {p.adapter_uri!r} (adapter_config.json missing)",
                        field_path="spec.policy.adapter_uri",
                    )
        GenerationConfig(max_new_tokens=p.max_new_tokens or 128, temperature=p.temperature)
        if spec.max_turns == 0:
            raise InvalidArgument("max_turns must be >= 1", field_path="spec.max_turns")
        if not 1 <= spec.concurrency <= self.max_concurrency:
            raise InvalidArgument(
                f"concurrency must be in [1, {self.max_concurrency}], got {spec.concurrency}",
                field_path="spec.concurrency",
            )
        try:
            plan_suite(spec.env_ids, spec.episodes_per_env, spec.seed, spec.max_turns)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field_path=f"spec.{exc.field_path}") from exc
        if spec.output_uri:
            spec.output_uri = self.roots.check(spec.output_uri, field="output_uri")

    # --- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            queued, _ = self.store.list_jobs(page_size=1000, state=JobState.QUEUED)
            if not queued:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._run(queued[-1])  # oldest first

    def _run(self, job: Job) -> None:
        cancel = self._cancel[job.id] = threading.Event()
        try:
            self.store.transition(job.id, JobState.RUNNING)
        except AtlasError:  # cancelled between listing and starting
            self._cancel.pop(job.id, None)
            return
        spec = EvalSpec.from_dict(job.spec)
        output_uri = spec.output_uri
        try:
            result = self._evaluate(job.id, spec, output_uri, cancel)
            self.store.update(job.id, result=result)
            self.store.transition(job.id, JobState.SUCCEEDED)
        except Cancelled:
            if self._stopping.is_set() and not self.store.get(job.id).cancel_requested:
                # Interrupted by the service stopping, not by a user: the outcome a restart gives a
                # job it finds RUNNING, now without waiting for the restart.
                error = JobError("ABORTED", "the service stopped while this job was running")
                self.store.transition(job.id, JobState.FAILED, error=error)
            else:
                self.store.transition(job.id, JobState.CANCELLED)
        except AtlasError as exc:
            self.store.transition(
                job.id, JobState.FAILED, error=JobError(exc.code, exc.message, exc.field_path)
            )
        except Exception as exc:
            log.exception("evaluation job %s failed", job.id)
            self.store.transition(
                job.id, JobState.FAILED, error=JobError("INTERNAL", f"{type(exc).__name__}: {exc}")
            )
        finally:
            self._cancel.pop(job.id, None)

    def _evaluate(
        self, job_id: str, spec: EvalSpec, output_uri: str, cancel: threading.Event
    ) -> dict[str, Any]:
        specs = plan_suite(spec.env_ids, spec.episodes_per_env, spec.seed, spec.max_turns)
        tallies: dict[str, EnvTally] = {}
        results: list[EpisodeResult] = []
        self.store.update(job_id, progress={"episodes_done": 0, "episodes_total": len(specs), "envs": {}})

        def on_result(result: EpisodeResult) -> None:
            results.append(result)
            tally = tallies.setdefault(result.env_id, EnvTally(result.env_id))
            tally.add(result)
            if self.metrics is not None:
                self.metrics.success_rate.labels(job_id, result.env_id).set(tally.successes / tally.episodes)
            self.store.update(
                job_id,
                progress={
                    "episodes_done": len(results),
                    "envs": {k: t.as_dict() for k, t in sorted(tallies.items())},
                },
            )

        with tempfile.TemporaryDirectory(prefix="atlas-eval-") as scratch:
            policy = build_policy(spec.policy, Path(scratch), device=self.policy_device)
            try:
                with Runner(
                    policy,
                    concurrency=spec.concurrency,
                    on_result=on_result,
                    cancel=cancel,
                    metrics=self.metrics,
                ) as runner:
                    runner.run(specs)
                described = policy.describe()
            finally:
                policy.close()
        return publish(output_uri, spec, results, tallies, described, job_id=job_id)


def build_policy(spec: PolicySpec, scratch: Path, *, device: str = "auto") -> Policy:
    """The policy a spec names (adapters from object storage are downloaded to ``scratch``)."""
    generation = GenerationConfig(max_new_tokens=spec.max_new_tokens or 128, temperature=spec.temperature)
    if spec.kind == "oracle":
        from atlas_evaluator.policies.oracle import OraclePolicy

        return OraclePolicy()
    if spec.kind == "openai":
        from atlas_evaluator.policies.openai import OpenAIPolicy

        # vLLM serves an adapter under the name given in --lora-modules NAME=PATH; we use the
        # adapter URI's last path component as that name.
        model = spec.adapter_uri.rstrip("/").rsplit("/", 1)[-1] if spec.adapter_uri else spec.base_model
        return OpenAIPolicy(spec.endpoint, model, generation=generation)
    from atlas_evaluator.policies.transformers import TransformersPolicy

    adapter_dir = None
    if spec.adapter_uri:
        from atlas.storage import download_tree

        adapter_dir = scratch / "adapter"
        download_tree(spec.adapter_uri, adapter_dir)
    return TransformersPolicy(
        resolve_model(spec.base_model),
        adapter_dir=adapter_dir,
        generation=generation,
        adapter_uri=spec.adapter_uri,
        device=device,
    )


def publish(
    output_uri: str,
    spec: EvalSpec,
    results: list[EpisodeResult],
    tallies: dict[str, EnvTally],
    policy: dict[str, Any],
    *,
    job_id: str = "",
) -> dict[str, Any]:
    """Write transcripts (AgentGym dataset + manifest) and results.json under ``output_uri``."""
    from atlas.storage import open_text, write_trajectories

    provenance = {
        "job_id": job_id,
        "training_job_id": spec.training_job_id,
        "adapter_uri": spec.policy.adapter_uri,
    }
    base = output_uri.rstrip("/")
    ordered = sorted(results, key=lambda r: (r.env_id, r.seed))
    write_trajectories(
        f"{base}/transcripts",
        (r.to_trajectory() for r in ordered),
        "agentgym",
        overwrite=True,
        extra={"evaluation": provenance},
    )
    summary = {
        "output_uri": output_uri,
        "transcripts_uri": f"{base}/transcripts",
        "envs": {k: t.as_dict() for k, t in sorted(tallies.items())},
        "policy": policy,
        "provenance": provenance,
        "episodes": len(results),
    }
    with open_text(f"{base}/results.json", "w") as out:
        out.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary

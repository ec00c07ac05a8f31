"""The stages of the ATLaS loop, each driving one job of a running service to its end.

    experts ──► selection job (selector) ──► training jobs (trainer) ──► evaluation jobs (evaluator)

Each stage function creates its job over gRPC, follows it (Watch where the service has it, else a
poll of Get), reports progress through an optional callback, and returns a :class:`StageResult`
with the job id, the output URI and the numbers the next stage or the report needs. A job that ends
FAILED or CANCELLED raises :class:`JobFailed` with the job id and the service's message. If the
caller is interrupted while a job runs (Ctrl-C, any exception), the stage cancels that job before
re-raising, so no job keeps running for a driver that has gone.

``generate_experts`` is the one stage without a service: the expert players are local code
([D]); it publishes the dataset the selection job reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atlas.errors import AtlasError, InvalidArgument

if TYPE_CHECKING:
    from atlas_evaluator.client import EvaluatorClient
    from atlas_selector.client import SelectorClient
    from atlas_trainer.client import TrainerClient

POLL_INTERVAL_S = 0.5
FOLLOW_TIMEOUT_S = 24 * 3600.0


@dataclass
class StageEvent:
    """One progress report: ``done`` of ``total`` units (total 0 when unknown) and a short detail."""

    stage: str
    done: float
    total: float
    unit: str
    detail: str = ""
    job_id: str | None = None

    def line(self) -> str:
        """A one-line rendering for logs and non-TTY output."""
        count = f"{self.done:g}/{self.total:g}" if self.total else f"{self.done:g}"
        job = f" [{self.job_id}]" if self.job_id else ""
        return f"  {self.stage}{job}: {count} {self.unit}" + (f"  {self.detail}" if self.detail else "")


Progress = Callable[[StageEvent], None]


@dataclass
class StageResult:
    """What a stage did: its job, where its output went, how long it took, its numbers."""

    stage: str
    job_id: str | None
    output_uri: str
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class JobFailed(AtlasError):
    """A job of a service ended FAILED or CANCELLED; carries the job id, its state and the service's error."""

    def __init__(self, stage: str, job_id: str, state: str, code: str = "", message: str = "") -> None:
        text = f"{stage} job {job_id} ended {state}" + (f" ({code})" if code else "")
        super().__init__(text + (f": {message}" if message else ""))
        self.code = "ABORTED" if state == "FAILED" else "CANCELLED"
        self.stage = stage
        self.job_id = job_id
        self.state = state
        self.error_code = code


def _emit(progress: Progress | None, event: StageEvent) -> None:
    if progress is not None:
        progress(event)


def _state_name(value: int) -> str:
    from atlas.common.v1 import job_pb2

    return job_pb2.JobState.Name(value).removeprefix("JOB_STATE_")


def _check_ended(stage: str, job: Any) -> None:
    """Raise JobFailed unless ``job`` (a proto with ``id`` and ``status``) SUCCEEDED."""
    from atlas.protoconv import status_code_name

    state = _state_name(job.status.state)
    if state != "SUCCEEDED":
        error = job.status.error
        code = status_code_name(error.code) if error.code else ""
        raise JobFailed(stage, job.id, state, code, error.message)


def _cancelling(cancel: Callable[[], Any]) -> Callable[[], None]:
    """Best-effort cancel for the interrupted path: never hide the original exception."""

    def run() -> None:
        # The service may be gone already; the caller's exception matters more than this one.
        with contextlib.suppress(Exception):
            cancel()

    return run


# -- experts ------------------------------------------------------------------------------------


def generate_experts(
    env_ids: list[str],
    episodes_per_env: int,
    seed: int,
    out_uri: str,
    workers: int = 1,
    progress: Progress | None = None,
    *,
    recovery_rate: float | None = None,
    overwrite: bool = True,
) -> StageResult:
    """Play ``episodes_per_env`` seeded expert episodes of every env and publish the successful ones
    as one AgentGym dataset at ``out_uri`` (the manifest's ``extra.generator`` counts every attempt)."""
    from atlas_evaluator.generate import DEFAULT_RECOVERY_RATE, Summary, play_episodes

    from atlas.storage import DatasetWriter

    if not env_ids:
        raise InvalidArgument("at least one env id", field_path="env_ids")
    if episodes_per_env < 1:
        raise InvalidArgument("must be at least 1", field_path="episodes_per_env")
    rate = DEFAULT_RECOVERY_RATE if recovery_rate is None else recovery_rate
    started = time.monotonic()
    total = len(env_ids) * episodes_per_env
    summaries: dict[str, dict[str, Any]] = {}
    written = done = 0
    with DatasetWriter(out_uri, "agentgym", overwrite=overwrite) as writer:
        for env_id in env_ids:
            summary = Summary(env_id)
            for episode in play_episodes(env_id, episodes_per_env, seed, workers=workers, recovery_rate=rate):
                summary.add(episode)
                done += 1
                if episode.trajectory is not None:
                    writer.write(episode.trajectory)
                    written += 1
                _emit(progress, StageEvent("experts", done, total, "episodes", env_id))
            summaries[env_id] = summary.as_dict()
        manifest = writer.commit(
            {"generator": {"seed": seed, "recovery_rate": rate, "envs": summaries, "written": written}}
        )
    return StageResult(
        "experts",
        None,
        out_uri,
        time.monotonic() - started,
        {
            "episodes": done,
            "trajectories": manifest.record_count,
            "sha256": manifest.sha256,
            "envs": summaries,
        },
    )


# -- selection ----------------------------------------------------------------------------------


def run_selection(
    selector: SelectorClient,
    in_uri: str,
    out_uri: str,
    backend: str,
    *,
    max_ratio: float = 0.3,
    seed: int = 0,
    judge: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> StageResult:
    """Run a selection job (``in_uri`` → masked AgentGym dataset at ``out_uri``) to its end.

    ``judge`` may name the judge's model (``{"model": NAME}``) for backend ``vllm``; the judge
    server itself is the selector service's setting (``--judge-url``/``--judge-model``).
    ``max_ratio`` 0 means the backend's default (1 for ``all``).
    """
    from atlas.common.v1 import dataset_pb2
    from atlas.selector.v1 import selector_service_pb2 as pb
    from atlas.storage import read_manifest

    unknown = set(judge or {}) - {"model"}
    if unknown:
        raise InvalidArgument(
            f"unknown judge keys {sorted(unknown)}; the judge server is the selector's config",
            field_path="judge",
        )
    started = time.monotonic()
    config = pb.SelectionConfig(
        backend=backend, max_ratio=max_ratio, seed=seed, model=str((judge or {}).get("model", ""))
    )
    request = pb.CreateSelectionJobRequest(
        input=dataset_pb2.DatasetRef(uri=in_uri),
        output_uri=out_uri,
        output_format=dataset_pb2.DATASET_FORMAT_AGENTGYM,
        config=config,
    )
    job = selector.create_selection_job(request).job
    cancel = _cancelling(lambda: selector.cancel_selection_job(pb.CancelSelectionJobRequest(id=job.id)))
    try:
        # The selector has no Watch RPC: poll Get until the job ends.
        while _state_name(job.status.state) in ("QUEUED", "RUNNING"):
            _emit(
                progress,
                StageEvent(
                    "selection",
                    job.trajectories_done,
                    job.trajectories_total,
                    "trajectories",
                    f"{backend}, {_state_name(job.status.state).lower()}",
                    job.id,
                ),
            )
            time.sleep(POLL_INTERVAL_S)
            job = selector.get_selection_job(pb.GetSelectionJobRequest(id=job.id)).job
    except BaseException:
        cancel()
        raise
    _check_ended("selection", job)
    _emit(
        progress,
        StageEvent(
            "selection", job.trajectories_done, job.trajectories_total, "trajectories", "done", job.id
        ),
    )
    manifest = read_manifest(out_uri)
    stats = dict(manifest.extra.get("selector", {}))
    stats["record_count"] = manifest.record_count
    stats["sha256"] = manifest.sha256
    return StageResult("selection", job.id, out_uri, time.monotonic() - started, stats)


# -- training -----------------------------------------------------------------------------------


def training_spec(base_model: str, mask: str, overrides: dict[str, Any] | None = None) -> Any:
    """A trainer ``TrainingSpec`` (domain dataclass) from a few overrides; ``lora`` may be a dict."""
    from atlas_trainer.spec import LoraSpec, TrainingSpec

    values = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(TrainingSpec)}
    unknown = set(values) - names
    if unknown:
        raise InvalidArgument(f"unknown training settings {sorted(unknown)}", field_path="overrides")
    if isinstance(values.get("lora"), dict):
        values["lora"] = LoraSpec(**values["lora"])
    return TrainingSpec(**{**values, "base_model": base_model, "mask_mode": mask})


def run_training(
    trainer: TrainerClient,
    dataset_uri: str,
    base_model: str,
    out_uri: str,
    *,
    mask: str = "dataset",
    overrides: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> StageResult:
    """Run a training job (LoRA by default) to its end; stats are the run's ``metrics.json`` highlights.

    ``overrides`` are ``TrainingSpec`` fields (``max_steps``, ``learning_rate``, ``lora={"r": 32}``,
    ...). The adapter is at ``stats["adapter_uri"]`` (``stats["model_uri"]`` for ``method="full"``).
    """
    from atlas_trainer.convert import training_spec_to_proto

    from atlas.common.v1 import dataset_pb2
    from atlas.trainer.v1 import trainer_service_pb2 as pb

    started = time.monotonic()
    stage = f"train[{mask}]"
    spec = training_spec(base_model, mask, overrides)
    request = pb.CreateTrainingJobRequest(
        dataset=dataset_pb2.DatasetRef(uri=dataset_uri),
        output_uri=out_uri,
        spec=training_spec_to_proto(spec),
        runner=pb.RUNNER_LOCAL,
    )
    job = trainer.create_training_job(request).job
    cancel = _cancelling(lambda: trainer.cancel_training_job(pb.CancelTrainingJobRequest(id=job.id)))
    try:
        for event in trainer.watch_training_job(
            pb.WatchTrainingJobRequest(id=job.id), timeout=FOLLOW_TIMEOUT_S
        ):
            job = event.job
            p = job.progress
            detail = _state_name(job.status.state).lower()
            if p.step:
                detail = f"loss {p.loss:.4f}  {p.tokens_per_second:.0f} tok/s  eta {p.eta_seconds:.0f}s"
            _emit(progress, StageEvent(stage, p.step, p.total_steps, "steps", detail, job.id))
    except BaseException:
        cancel()
        raise
    _check_ended(stage, job)
    stats = _training_stats(out_uri, spec.method)
    return StageResult(stage, job.id, out_uri, time.monotonic() - started, stats)


def _training_stats(out_uri: str, method: str) -> dict[str, Any]:
    import json

    from atlas.storage import open_text

    base = out_uri.rstrip("/")
    with open_text(f"{base}/metrics.json") as f:
        metrics = json.load(f)
    keep = (
        "first_loss",
        "final_loss",
        "steps",
        "tokens",
        "supervised_tokens",
        "tokens_per_second",
        "train_seconds",
        "train_cpu_seconds",
        "wall_time_seconds",
    )
    stats = {k: metrics[k] for k in keep if k in metrics}
    stats["adapter_uri" if method == "lora" else "model_uri"] = (
        f"{base}/{'adapter' if method == 'lora' else 'model'}"
    )
    stats["metrics_uri"] = f"{base}/metrics.json"
    stats["provenance_uri"] = f"{base}/provenance.json"
    return stats


# -- evaluation ---------------------------------------------------------------------------------


def run_evaluation(
    evaluator: EvaluatorClient,
    *,
    base_model: str,
    adapter_uri: str | None,
    env_ids: list[str],
    episodes_per_env: int,
    seed: int,
    max_turns: int,
    policy: str = "transformers",
    concurrency: int = 8,
    out_uri: str,
    progress: Progress | None = None,
    training_job_id: str = "",
    max_new_tokens: int = 0,
    endpoint: str = "",
    name: str = "",
) -> StageResult:
    """Run an evaluation job to its end. Stats: the job's ``results.json`` (per-env success, reward,
    turns; held-in/held-out averages) plus the action-format numbers read from its transcripts."""
    import json

    from atlas_evaluator.convert import spec_to_proto
    from atlas_evaluator.core import EvalSpec, PolicySpec
    from atlas_evaluator.report import split_averages

    from atlas.evaluator.v1 import evaluator_service_pb2 as pb
    from atlas.storage import open_text

    started = time.monotonic()
    stage = f"eval[{name or ('base' if not adapter_uri else adapter_uri.rstrip('/').rsplit('/', 2)[-2])}]"
    spec = EvalSpec(
        policy=PolicySpec(
            kind=policy,
            base_model=base_model,
            adapter_uri=adapter_uri or "",
            endpoint=endpoint,
            max_new_tokens=max_new_tokens,
        ),
        env_ids=list(env_ids),
        episodes_per_env=episodes_per_env,
        seed=seed,
        max_turns=max_turns,
        concurrency=concurrency,
        training_job_id=training_job_id,
    )
    request = pb.CreateEvaluationJobRequest(spec=spec_to_proto(spec), output_uri=out_uri)
    job = evaluator.create_evaluation_job(request).job
    cancel = _cancelling(lambda: evaluator.cancel_evaluation_job(pb.CancelEvaluationJobRequest(id=job.id)))
    try:
        for event in evaluator.watch_evaluation_job(
            pb.WatchEvaluationJobRequest(id=job.id), timeout=FOLLOW_TIMEOUT_S
        ):
            job = event.job
            successes = sum(r.successes for r in job.results)
            detail = f"{successes} succeeded" if job.episodes_done else _state_name(job.status.state).lower()
            _emit(
                progress, StageEvent(stage, job.episodes_done, job.episodes_total, "episodes", detail, job.id)
            )
    except BaseException:
        cancel()
        raise
    _check_ended(stage, job)
    output_uri = job.output_uri or out_uri
    with open_text(f"{output_uri.rstrip('/')}/results.json") as f:
        results = json.load(f)
    stats = {
        "envs": results["envs"],
        "averages": split_averages(results["envs"]),
        "policy": results.get("policy", {}),
        "action_format": action_format_stats(results["transcripts_uri"]),
        "results_uri": f"{output_uri.rstrip('/')}/results.json",
        "transcripts_uri": results["transcripts_uri"],
    }
    return StageResult(stage, job.id, output_uri, time.monotonic() - started, stats)


def action_format_stats(transcripts_uri: str) -> dict[str, Any]:
    """How well the agent kept the action format, from the episodes' metadata: the share of turns
    whose reply had a parseable ``Action:`` and the share whose action the env accepted."""
    from atlas.storage import read_trajectories

    turns = parse_failures = invalid = episodes = 0
    for trajectory in read_trajectories(transcripts_uri):
        meta = trajectory.metadata
        episodes += 1
        turns += int(meta.get("turns", 0))
        parse_failures += int(meta.get("parse_failures", 0))
        invalid += int(meta.get("invalid_actions", 0))
    return {
        "episodes": episodes,
        "turns": turns,
        "parse_failures": parse_failures,
        "invalid_actions": invalid,
        "format_rate": round(1 - parse_failures / turns, 4) if turns else 0.0,
        "valid_action_rate": round(1 - invalid / turns, 4) if turns else 0.0,
    }

"""Proto <-> domain conversion for the trainer's messages (shared enums come from ``atlas.protoconv``).

Incoming requests are validated here on the way in, every problem an InvalidArgument whose
``field_path`` names the request field (``spec.lora.r``).
"""

from __future__ import annotations

from atlas.common.v1 import dataset_pb2
from atlas.errors import InvalidArgument
from atlas.jobs import Job
from atlas.protoconv import (
    dataset_format_from_proto,
    dataset_format_to_proto,
    job_status_to_proto,
)
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_trainer.spec import JobSpec, LoraSpec, TrainingSpec
from atlas_trainer.validation import ValidationReport

_METHODS: dict[int, str] = {pb.TRAINING_METHOD_LORA: "lora", pb.TRAINING_METHOD_FULL: "full"}
_MASKS: dict[int, str] = {pb.MASK_MODE_DATASET: "dataset", pb.MASK_MODE_ALL_ASSISTANT: "all_assistant"}
_PRECISIONS: dict[int, str] = {
    pb.PRECISION_FP32: "fp32",
    pb.PRECISION_BF16: "bf16",
    pb.PRECISION_FP16: "fp16",
}
_RUNNERS: dict[int, str] = {pb.RUNNER_LOCAL: "local", pb.RUNNER_KUBERNETES: "kubernetes"}


def _enum(value: int, names: dict[int, str], field_path: str, unset: str) -> str:
    if value == 0:
        return unset
    if value not in names:
        raise InvalidArgument(f"unknown enum value {value}", field_path=field_path)
    return names[value]


def _reverse(names: dict[int, str], name: str) -> int:
    return next((value for value, n in names.items() if n == name), 0)


def training_spec_from_proto(msg: pb.TrainingSpec, field_path: str = "spec") -> TrainingSpec:
    """The request's spec as given; zero values mean "the default" and are filled by ``with_defaults``."""
    return TrainingSpec(
        base_model=msg.base_model,
        method=_enum(msg.method, _METHODS, f"{field_path}.method", ""),
        lora=LoraSpec(
            r=msg.lora.r,
            alpha=msg.lora.alpha,
            dropout=msg.lora.dropout,
            target_modules=list(msg.lora.target_modules),
        ),
        learning_rate=msg.learning_rate,
        lr_scheduler=msg.lr_scheduler,
        warmup_steps=msg.warmup_steps,
        epochs=msg.epochs,
        max_steps=msg.max_steps,
        micro_batch_size=msg.micro_batch_size,
        gradient_accumulation_steps=msg.gradient_accumulation_steps,
        max_seq_length=msg.max_seq_length,
        seed=msg.seed,
        precision=_enum(msg.precision, _PRECISIONS, f"{field_path}.precision", ""),
        mask_mode=_enum(msg.mask_mode, _MASKS, f"{field_path}.mask_mode", ""),
        checkpoint_every_steps=msg.checkpoint_every_steps,
    )


def training_spec_to_proto(spec: TrainingSpec) -> pb.TrainingSpec:
    return pb.TrainingSpec(
        base_model=spec.base_model,
        method=_reverse(_METHODS, spec.method),  # type: ignore[arg-type]
        lora=pb.LoraConfig(
            r=spec.lora.r,
            alpha=spec.lora.alpha,
            dropout=spec.lora.dropout,
            target_modules=spec.lora.target_modules,
        ),
        learning_rate=spec.learning_rate,
        lr_scheduler=spec.lr_scheduler,
        warmup_steps=spec.warmup_steps,
        epochs=spec.epochs,
        max_steps=spec.max_steps,
        micro_batch_size=spec.micro_batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        max_seq_length=spec.max_seq_length,
        seed=spec.seed,
        precision=_reverse(_PRECISIONS, spec.precision),  # type: ignore[arg-type]
        mask_mode=_reverse(_MASKS, spec.mask_mode),  # type: ignore[arg-type]
        checkpoint_every_steps=spec.checkpoint_every_steps,
    )


def create_request_from_proto(msg: pb.CreateTrainingJobRequest) -> JobSpec:
    """A job spec from a CreateTrainingJob request (not yet checked against the allowlist)."""
    if not msg.dataset.uri:
        raise InvalidArgument("required: the masked dataset's URI", field_path="dataset.uri")
    if not msg.output_uri:
        raise InvalidArgument("required: where the adapter and metrics go", field_path="output_uri")
    return JobSpec(
        dataset_uri=msg.dataset.uri,
        dataset_format=dataset_format_from_proto(msg.dataset.format, "dataset.format") or "auto",
        dataset_sha256=msg.dataset.sha256,
        output_uri=msg.output_uri,
        training=training_spec_from_proto(msg.spec),
        runner=_enum(msg.runner, _RUNNERS, "runner", ""),  # unset: the service's configured runner
    )


def mask_mode_from_proto(value: int, field_path: str = "mask_mode") -> str:
    return _enum(value, _MASKS, field_path, "dataset")


def job_to_proto(job: Job) -> pb.TrainingJob:
    """A stored training job as the resource the API returns."""
    spec = JobSpec.from_dict(job.spec)
    status = job_status_to_proto(job)
    p = job.progress
    return pb.TrainingJob(
        id=job.id,
        status=status,
        dataset=dataset_pb2.DatasetRef(
            uri=spec.dataset_uri,
            format=dataset_format_to_proto(spec.dataset_format),
            sha256=spec.dataset_sha256,
        ),
        output_uri=spec.output_uri,
        spec=training_spec_to_proto(spec.training),
        runner=_reverse(_RUNNERS, spec.runner),  # type: ignore[arg-type]
        progress=pb.TrainingProgress(
            step=int(p.get("step", 0)),
            total_steps=int(p.get("total_steps", 0)),
            loss=float(p.get("loss", 0.0)),
            learning_rate=float(p.get("learning_rate", 0.0)),
            tokens_per_second=float(p.get("tokens_per_second", 0.0)),
            tokens=int(p.get("tokens", 0)),
            supervised_tokens=int(p.get("supervised_tokens", 0)),
            eta_seconds=float(p.get("eta_seconds", 0.0)),
        ),
    )


def report_to_proto(report: ValidationReport) -> pb.ValidateDatasetResponse:
    return pb.ValidateDatasetResponse(
        ok=report.ok,
        problems=report.problems,
        samples=report.samples,
        turns=report.turns,
        tokens=report.tokens,
        supervised_tokens=report.supervised_tokens,
        samples_without_supervised_tokens=report.samples_without_supervised_tokens,
        turns_without_supervised_end_of_turn=report.turns_without_supervised_end_of_turn,
        samples_over_max_length=report.samples_over_max_length,
        ratio_bucket_bounds=report.ratio_bucket_bounds,
        ratio_bucket_counts=report.ratio_bucket_counts,
        examples=[pb.MaskedExample(trajectory_id=i, rendered=r) for i, r in report.examples],
    )

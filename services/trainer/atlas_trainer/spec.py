"""The job spec as data: what one training run does, validated once, passed to the run by URI.

A job spec is JSON (``spec.json``) that the service writes and ``python -m atlas_trainer.train --spec
URI`` reads, so the same run can be launched by the local runner, by hand, or on a cluster. Every
validation problem names its field the way the gRPC request spells it (``spec.lora.r``), and all
problems are reported at once.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from atlas.errors import InvalidArgument

METHODS = ("lora", "full")
MASK_MODES = ("dataset", "all_assistant")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULERS = ("constant", "linear", "cosine")
RUNNERS = ("local",)


@dataclass
class LoraSpec:
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=list)
    """Empty: every linear layer except the output head (peft's ``all-linear``)."""


@dataclass
class TrainingSpec:
    """Hyper-parameters of one run; the defaults are a sensible LoRA SFT on one device."""

    base_model: str = ""
    method: str = "lora"
    lora: LoraSpec = field(default_factory=LoraSpec)
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int = 0
    """When set, the run stops after this many optimizer steps and ``epochs`` is ignored."""
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 2048
    seed: int = 0
    precision: str = "fp32"
    mask_mode: str = "dataset"
    checkpoint_every_steps: int = 0
    tail_truncation: bool = True
    """Drop tokens after the last supervised token (same loss, less compute). Off only to compare with
    trainers that do not do it (bench/trainer_vs_trl.py); not in the gRPC spec."""


@dataclass
class JobSpec:
    """Everything a training run needs: the data, where results go, the hyper-parameters."""

    dataset_uri: str
    output_uri: str
    training: TrainingSpec
    dataset_format: str = "auto"
    dataset_sha256: str = ""
    s3_endpoint_url: str = ""
    job_id: str = ""
    runner: str = "local"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JobSpec:
        training = dict(doc["training"])
        training["lora"] = LoraSpec(**training.get("lora", {}))
        return cls(**{**doc, "training": TrainingSpec(**training)})


def with_defaults(spec: TrainingSpec) -> TrainingSpec:
    """Fill proto3 zero values ("unset") with the defaults, so a request may name only what it changes."""
    default, lora_default = TrainingSpec(), LoraSpec()
    lora = LoraSpec(
        r=spec.lora.r or lora_default.r,
        alpha=spec.lora.alpha or lora_default.alpha,
        dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules),
    )
    return dataclasses.replace(
        spec,
        method=spec.method or default.method,
        lora=lora,
        learning_rate=spec.learning_rate or default.learning_rate,
        lr_scheduler=spec.lr_scheduler or default.lr_scheduler,
        epochs=spec.epochs or default.epochs,
        micro_batch_size=spec.micro_batch_size or default.micro_batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps or default.gradient_accumulation_steps,
        max_seq_length=spec.max_seq_length or default.max_seq_length,
        precision=spec.precision or default.precision,
        mask_mode=spec.mask_mode or default.mask_mode,
    )


def problems(spec: TrainingSpec, prefix: str = "spec") -> list[tuple[str, str]]:
    """Every problem with ``spec`` as (field path, reason); empty when it is valid."""
    found: list[tuple[str, str]] = []

    def bad(name: str, reason: str) -> None:
        found.append((f"{prefix}.{name}", reason))

    if not spec.base_model:
        bad("base_model", "required: a local model directory or hub id")
    if spec.method not in METHODS:
        bad("method", f"must be one of {', '.join(METHODS)}, got {spec.method!r}")
    if spec.method == "lora":
        if not 1 <= spec.lora.r <= 1024:
            bad("lora.r", f"must be in 1..1024, got {spec.lora.r}")
        if spec.lora.alpha <= 0:
            bad("lora.alpha", f"must be positive, got {spec.lora.alpha}")
        if not 0 <= spec.lora.dropout < 1:
            bad("lora.dropout", f"must be in [0, 1), got {spec.lora.dropout}")
        if any(not name.strip() for name in spec.lora.target_modules):
            bad("lora.target_modules", "module names must not be empty")
    if not 0 < spec.learning_rate <= 1:
        bad("learning_rate", f"must be in (0, 1], got {spec.learning_rate}")
    if spec.lr_scheduler not in SCHEDULERS:
        bad("lr_scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {spec.lr_scheduler!r}")
    if spec.epochs < 1 and spec.max_steps < 1:
        bad("epochs", "set epochs or max_steps")
    if spec.micro_batch_size < 1 or spec.micro_batch_size > 4096:
        bad("micro_batch_size", f"must be in 1..4096, got {spec.micro_batch_size}")
    if spec.gradient_accumulation_steps < 1 or spec.gradient_accumulation_steps > 4096:
        bad("gradient_accumulation_steps", f"must be in 1..4096, got {spec.gradient_accumulation_steps}")
    if not 16 <= spec.max_seq_length <= 1_048_576:
        bad("max_seq_length", f"must be in 16..1048576, got {spec.max_seq_length}")
    if spec.precision not in PRECISIONS:
        bad("precision", f"must be one of {', '.join(PRECISIONS)}, got {spec.precision!r}")
    if spec.mask_mode not in MASK_MODES:
        bad("mask_mode", f"must be one of {', '.join(MASK_MODES)}, got {spec.mask_mode!r}")
    if spec.warmup_steps < 0 or spec.checkpoint_every_steps < 0 or spec.max_steps < 0 or spec.seed < 0:
        bad("warmup_steps", "step counts and the seed must not be negative")
    return found


def check(spec: TrainingSpec, prefix: str = "spec") -> TrainingSpec:
    """``spec`` if valid; InvalidArgument naming the first bad field and listing every problem otherwise."""
    found = problems(spec, prefix)
    if found:
        others = "".join(f"; {path}: {reason}" for path, reason in found[1:])
        raise InvalidArgument(found[0][1] + others, field_path=found[0][0])
    return spec

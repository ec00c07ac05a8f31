"""Evaluator service configuration (flags and ATLAS_EVALUATOR_* variables derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from atlas.config import ServerConfig, setting


@dataclass
class EvaluatorConfig(ServerConfig):
    SERVICE: ClassVar[str] = "evaluator"

    port: int = setting(50053, "gRPC port; 0 picks a free port (printed at start).")
    metrics_port: int = setting(
        9103, "Port of the Prometheus /metrics HTTP server; 0 picks a free one, -1 disables it."
    )
    max_concurrency: int = setting(
        256, "Most episodes one evaluation job may run at once (a job's concurrency above it is refused)."
    )
    policy_device: str = setting(
        "auto", "Where the transformers policy runs: auto (the first CUDA GPU if any), cpu, cuda:N."
    )

"""Trainer service configuration (flags and ATLAS_TRAINER_* variables derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from atlas.config import ServerConfig, setting


@dataclass
class TrainerConfig(ServerConfig):
    SERVICE: ClassVar[str] = "trainer"

    port: int = setting(50052, "gRPC port; 0 picks a free port (printed at start).")
    metrics_port: int = setting(
        9102, "Port of the Prometheus /metrics HTTP server; 0 picks a free one, -1 disables it."
    )
    max_concurrent_jobs: int = setting(
        1, "Training jobs the local runner runs at once; more wait QUEUED (one device: keep 1)."
    )
    resume_interrupted: bool = setting(
        True,
        "At start, re-queue jobs that were RUNNING when the service died; they resume from their last "
        "checkpoint. False fails them instead.",
    )
    max_attempts: int = setting(
        3, "Times a job is started (first run plus resumes after a crash) before it is failed for good."
    )

    def validate(self) -> list[str]:
        problems = super().validate()
        if not 1 <= self.max_concurrent_jobs <= 64:
            problems.append(f"max_concurrent_jobs: {self.max_concurrent_jobs} is not in 1..64")
        if not 1 <= self.max_attempts <= 100:
            problems.append(f"max_attempts: {self.max_attempts} is not in 1..100")
        return problems

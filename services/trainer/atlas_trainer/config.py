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

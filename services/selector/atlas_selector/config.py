"""Selector service configuration (flags and ATLAS_SELECTOR_* variables derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from atlas.config import ServerConfig, setting


@dataclass
class SelectorConfig(ServerConfig):
    SERVICE: ClassVar[str] = "selector"

    port: int = setting(50051, "gRPC port; 0 picks a free port (printed at start).")
    metrics_port: int = setting(
        9101, "Port of the Prometheus /metrics HTTP server; 0 picks a free one, -1 disables it."
    )

"""Trajectory data model and dataset formats (no gRPC imports)."""

from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory

__all__ = ["Criterion", "Message", "Role", "StepLabel", "Trajectory"]

"""Shared helpers of the trainer tests (no tests here): masked trajectories and the tiny model."""

from __future__ import annotations

import random
from pathlib import Path

from atlas.data.model import Message, Role, Trajectory

COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "box", "key")


def babyai_trajectory(index: int, steps: int = 4, critical: tuple[int, ...] | None = None) -> Trajectory:
    """A BabyAI-like episode of ``steps`` assistant turns; ``critical`` steps get train=True, others False."""
    rng = random.Random(index)
    color, obj = rng.choice(COLORS), rng.choice(OBJECTS)
    chosen = set(critical if critical is not None else rng.sample(range(steps), max(1, steps // 3)))
    messages = [Message(Role.USER, f"Your goal: go to the {color} {obj}")]
    for step in range(steps):
        ahead = rng.randint(1, 6)
        messages.append(
            Message(
                Role.ASSISTANT,
                f"Thought: The {color} {obj} {step + 1} is {ahead} steps ahead, so I go to it. "
                f"Action: go to {color} {obj} {step + 1}",
                train=step in chosen,
            )
        )
        messages.append(
            Message(
                Role.USER,
                f"In front of you in this room, you can see several objects: There is a {color} {obj} "
                f"{step + 1} {ahead} steps in front of you. You are not carrying anything.",
            )
        )
    return Trajectory(id=f"babyai-{index}", messages=messages, source_env="babyai")


def trajectories(n: int, steps: int = 4) -> list[Trajectory]:
    return [babyai_trajectory(i, steps=steps) for i in range(n)]


_MODEL_CACHE: dict[str, Path] = {}


def tiny_model_dir(root: Path, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """The tiny random-weight Llama (built once per directory)."""
    from atlas.models.tiny import build_tiny_model

    out = root / f"tiny-{hidden_size}-{num_layers}"
    if not (out / "config.json").exists():
        build_tiny_model(out, hidden_size=hidden_size, num_layers=num_layers)
    return out

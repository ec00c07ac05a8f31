"""The judge prompt: a fixed rubric first (vLLM's prefix cache reuses it across requests), then the
trajectory with numbered steps and the request's limits. The rubric lives in one versioned file;
its version is recorded in every output."""

from __future__ import annotations

from functools import cache
from importlib import resources

from atlas.data.model import Role, Trajectory

PROMPT_VERSION = "judge-v1"
_RUBRIC_FILE = "rubric_v1.txt"


@cache
def rubric() -> str:
    return resources.files("atlas_selector.judge").joinpath(_RUBRIC_FILE).read_text(encoding="utf-8")


def render(trajectory: Trajectory, cap: int, minimum: int) -> list[dict[str, str]]:
    """Chat messages for one trajectory: the rubric as the system turn, the numbered episode as the user."""
    lines = []
    if trajectory.task:
        lines.append(f"TASK: {trajectory.task}")
    step = 0
    for message in trajectory.messages:
        if message.role is Role.ASSISTANT:
            lines.append(f"[STEP {step}] AGENT: {message.content}")
            step += 1
        elif message.role is not Role.SYSTEM:
            lines.append(f"ENVIRONMENT: {message.content}")
    lines.append(
        f"\nThe agent took {step} steps, numbered 0 to {step - 1}. Mark between {minimum} and {cap} "
        "critical steps, most important first."
    )
    return [{"role": "system", "content": rubric()}, {"role": "user", "content": "\n".join(lines)}]

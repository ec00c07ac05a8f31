"""The judge prompt: a fixed rubric first (vLLM's prefix cache reuses it across requests), then the
trajectory with numbered steps and the request's limits. The rubric lives in one versioned file;
its version is recorded in every output.

A trajectory too long for the judge's context may be shown in windows (consecutive steps with the
observations around them, numbered as in the whole episode); the footer then says which part of how
long an episode the judge sees."""

from __future__ import annotations

from functools import cache
from importlib import resources

from atlas.data.model import Role, Trajectory

PROMPT_VERSION = "judge-v1"
_RUBRIC_FILE = "rubric_v1.txt"


@cache
def rubric() -> str:
    return resources.files("atlas_selector.judge").joinpath(_RUBRIC_FILE).read_text(encoding="utf-8")


def render(
    trajectory: Trajectory, cap: int, minimum: int, window: range | None = None
) -> list[dict[str, str]]:
    """Chat messages for one trajectory (or the steps in ``window`` of it): the rubric as the system
    turn, the numbered episode as the user turn."""
    lines = []
    if trajectory.task:
        lines.append(f"TASK: {trajectory.task}")
    messages = trajectory.messages
    positions = trajectory.step_positions()
    total = len(positions)
    first, last = 0, len(messages)
    if window is not None:  # from the observation before the window's first step to the one after its last
        first = positions[window.start - 1] + 1 if window.start > 0 else 0
        last = positions[window.stop] if window.stop < total else len(messages)
    step = window.start if window is not None else 0
    for message in messages[first:last]:
        if message.role is Role.ASSISTANT:
            lines.append(f"[STEP {step}] AGENT: {message.content}")
            step += 1
        elif message.role is not Role.SYSTEM:
            lines.append(f"ENVIRONMENT: {message.content}")
    if window is None:
        lines.append(
            f"\nThe agent took {step} steps, numbered 0 to {step - 1}. Mark between {minimum} and {cap} "
            "critical steps, most important first."
        )
    else:
        lines.append(
            f"\nThis is part of a longer episode of {total} steps: steps {window.start} to "
            f"{window.stop - 1}, with the observations around them. Mark between {minimum} and {cap} "
            f"critical steps among steps {window.start} to {window.stop - 1}, most important first."
        )
    return [{"role": "system", "content": rubric()}, {"role": "user", "content": "\n".join(lines)}]

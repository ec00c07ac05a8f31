"""A trajectory seen as steps: each assistant turn with its thought, action and surrounding observations.

Backends that reason about steps (rules, the judge prompt) share this view so they agree on what
"step i" and "the observation after step i" mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atlas.data.model import Role, Trajectory

_ACTION = re.compile(r"\baction\s*:\s*", re.IGNORECASE)
_THOUGHT = re.compile(r"^\s*thought\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    thought: str
    action: str
    before: str  # the observation (or task prompt) the agent acted on
    after: str  # the environment's answer to this step ("" after the last turn)


def split_turn(content: str) -> tuple[str, str]:
    """(thought, action) of a "Thought: ... Action: ..." turn; a turn without "Action:" is all action."""
    matches = list(_ACTION.finditer(content))
    if not matches:
        return "", content.strip()
    last = matches[-1]
    thought = _THOUGHT.sub("", content[: last.start()]).strip()
    action = content[last.end() :].strip().splitlines()
    return thought, (action[0].strip() if action else "")


def steps_of(trajectory: Trajectory) -> list[Step]:
    """The assistant turns of ``trajectory`` in order, with the non-assistant text around each."""
    messages = trajectory.messages
    steps: list[Step] = []
    last_context = trajectory.task
    for position, message in enumerate(messages):
        if message.role is not Role.ASSISTANT:
            if message.role is not Role.SYSTEM:
                last_context = message.content
            continue
        after = ""
        for later in messages[position + 1 :]:
            if later.role is Role.ASSISTANT:
                break
            after += later.content
        thought, action = split_turn(message.content)
        steps.append(Step(len(steps), thought, action, last_context, after))
        last_context = after
    return steps

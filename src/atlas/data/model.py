"""The trajectory data model: plain Python, no protobuf or gRPC.

A *trajectory* is one agent episode as chat turns. A *step* is an assistant turn;
step ``i`` is the ``i``-th assistant message (0-based). The training mask lives
with the data as a per-message ``train`` flag: ``True`` = this turn carries loss,
``False`` = context only, ``None`` = the dataset did not say.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Criterion(enum.StrEnum):
    """Why a step is critical (ATLaS, section 3)."""

    PLAN_CREATION = "PLAN_CREATION"
    CRITICAL_OBSERVATION = "CRITICAL_OBSERVATION"
    CRITICAL_ACTION = "CRITICAL_ACTION"
    SELF_CORRECTION = "SELF_CORRECTION"


@dataclass(slots=True)
class Message:
    role: Role
    content: str
    train: bool | None = None


@dataclass(slots=True, frozen=True)
class StepLabel:
    """A critical step: its index among assistant turns and why it matters."""

    step_index: int
    criteria: tuple[Criterion, ...]
    rationale: str = ""


@dataclass(slots=True)
class Trajectory:
    id: str
    messages: list[Message]
    source_env: str = ""
    task: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    labels: list[StepLabel] = field(default_factory=list)

    def step_positions(self) -> list[int]:
        """Message positions of the assistant turns, in step order."""
        return [i for i, m in enumerate(self.messages) if m.role is Role.ASSISTANT]

    @property
    def step_count(self) -> int:
        return sum(1 for m in self.messages if m.role is Role.ASSISTANT)

    def trained_steps(self) -> list[int]:
        """Step indices whose assistant turn has ``train=True``."""
        steps = (m for m in self.messages if m.role is Role.ASSISTANT)
        return [i for i, m in enumerate(steps) if m.train is True]

    def has_mask(self) -> bool:
        """Whether any assistant turn states a train flag."""
        return any(m.train is not None for m in self.messages if m.role is Role.ASSISTANT)

    def with_critical_steps(self, labels: Iterable[StepLabel]) -> Trajectory:
        """A copy where exactly the labelled steps carry loss and every other turn is context."""
        labels = sorted(labels, key=lambda label: label.step_index)
        chosen = {label.step_index for label in labels}
        messages: list[Message] = []
        step = 0
        for m in self.messages:
            if m.role is Role.ASSISTANT:
                messages.append(Message(m.role, m.content, step in chosen))
                step += 1
            else:
                messages.append(Message(m.role, m.content, False))
        return Trajectory(
            id=self.id,
            messages=messages,
            source_env=self.source_env,
            task=self.task,
            metadata=dict(self.metadata),
            labels=list(labels),
        )

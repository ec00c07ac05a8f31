"""The one text-environment interface the evaluator and the trajectory generators share.

An environment is text in, text out, in the style of AgentGym's env servers so trajectories look like
AgentTraj-L: :meth:`TextEnv.reset` gives the instruction (the env's task prompt with its action
format) and the first observation; :meth:`TextEnv.step` takes one action string and never raises for a
bad action: the env answers with its own feedback, as a model acting in it would see.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ResetResult:
    """The start of an episode: ``instruction`` is the constant task prompt of the env (AgentGym's
    conversation start), ``observation`` the first observation (goal included)."""

    instruction: str
    observation: str
    task: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step: ``reward`` is the env's reward for this step, ``done`` ends the episode.

    ``info`` carries at least ``valid`` (was the action understood and possible), ``success``
    and ``score`` (progress or cumulative reward in [0, 1] where the env has one).
    """

    observation: str
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


class TextEnv(abc.ABC):
    """A text environment: deterministic given the seed passed to :meth:`reset`."""

    env_id: str = ""

    @abc.abstractmethod
    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        """Start an episode; ``task`` picks a named task where the env has them, else ``seed`` does."""

    @abc.abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply one action; invalid actions get feedback text, never an exception."""

    def valid_actions(self) -> list[str] | None:
        """The actions possible now, where the env can enumerate them (``None`` otherwise)."""
        return None

    def close(self) -> None:  # noqa: B027 - most envs hold nothing to release
        """Release what the env holds (processes, JVMs); the env is unusable afterwards."""

    def __enter__(self) -> TextEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

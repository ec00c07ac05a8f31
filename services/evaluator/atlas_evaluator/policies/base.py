"""The one policy interface of the evaluator: a batch of conversations in, one reply each out.

Batching is the interface, not an option: the runner collects every episode waiting for the model at
a step and hands them over together, so the transformers policy runs one padded ``generate`` call and
the openai policy sends concurrent requests that the server (vLLM) batches itself.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from atlas.errors import InvalidArgument
from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """Decoding settings; greedy (``temperature == 0``) unless sampling is asked for."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidArgument("max_new_tokens must be >= 1", field_path="generation.max_new_tokens")
        if self.temperature < 0:
            raise InvalidArgument("temperature must be >= 0", field_path="generation.temperature")
        if not 0 < self.top_p <= 1:
            raise InvalidArgument("top_p must be in (0, 1]", field_path="generation.top_p")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "greedy": self.greedy,
        }


@dataclass(slots=True)
class PolicyRequest:
    """One episode waiting for its next assistant turn: the whole chat so far (role/content dicts)."""

    episode_id: str
    messages: list[dict[str, str]]


@dataclass(slots=True)
class PolicyReply:
    """The assistant turn, or ``context_exceeded`` when the chat no longer fits the model."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_exceeded: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class Policy(abc.ABC):
    """Generates replies for batches of conversations.

    The ``begin``/``observe``/``end`` hooks let a policy follow an episode from inside (the oracle
    replays an expert that reads the env); model policies ignore them.
    """

    name: str = "policy"

    @abc.abstractmethod
    def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyReply]:
        """One reply per request, in order."""

    def begin(self, episode_id: str, env: TextEnv, reset: ResetResult) -> None:  # noqa: B027 - optional hook
        """An episode started in ``env``."""

    def observe(self, episode_id: str, result: StepResult) -> None:  # noqa: B027 - optional hook
        """The env answered the episode's last action."""

    def end(self, episode_id: str) -> None:  # noqa: B027 - optional hook
        """The episode is over; drop what is kept for it."""

    def interrupt_on(self, event: threading.Event) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~atlas.errors.Cancelled` from a ``generate`` call in progress once ``event`` is
        set. A policy whose calls are short may ignore it: the runner checks the event between calls."""

    def describe(self) -> dict[str, Any]:
        """What evaluated (model, adapter, decoding, seed): recorded in every transcript and report."""
        return {"policy": self.name}

    def close(self) -> None:  # noqa: B027 - most policies hold nothing to release
        """Release the model or the HTTP pool."""

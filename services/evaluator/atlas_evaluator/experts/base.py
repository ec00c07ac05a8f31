"""What an expert is to the trajectory generator.

An expert plays an episode from inside (it may read the env's true state) and explains each action
as a ReAct thought written from what it knows at that moment. The generator asks it for one
:class:`Decision` per turn and, with some probability, for a :meth:`Expert.blunder`: a plausible wrong
action that the env will reject, after which the expert's next thought notices the env's feedback and
repairs the plan (the SELF_CORRECTION steps ATLaS wants in its data).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from dataclasses import dataclass

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv


class ExpertGaveUp(Exception):
    """The expert cannot finish this episode (the generator drops it and counts it as failed)."""


@dataclass(frozen=True, slots=True)
class Decision:
    thought: str
    action: str


@dataclass(frozen=True, slots=True)
class Blunder:
    """A wrong action, the thought that (wrongly) supports it, and how to notice it afterwards."""

    thought: str
    action: str
    notice: str


class Phrasing:
    """Seeded choice among paraphrases so thoughts vary in wording but replay identically."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str], **values: object) -> str:
        return self.rng.choice(list(options)).format(**values)


class Expert(abc.ABC):
    """One expert per episode: :meth:`start` after reset, then :meth:`decide` every turn."""

    def __init__(self, env: TextEnv, rng: random.Random) -> None:
        self.env = env
        self.rng = rng
        self.say = Phrasing(rng)

    @abc.abstractmethod
    def start(self, reset: ResetResult) -> None:
        """Read the first observation and plan."""

    @abc.abstractmethod
    def decide(self, last: StepResult | None) -> Decision:
        """The next action and its thought; called exactly once per executed action."""

    def blunder(self, decision: Decision) -> Blunder | None:
        """A plausible action the env will reject right now, or ``None`` when there is none."""
        return None


class GoldPathExpert(Expert):
    """An expert that follows the env's own gold action sequence and explains each action.

    Subclasses say why an action is taken (:meth:`explain`); this class walks the path, keeps the
    latest observation for them to read, and opens the first thought with the task in the expert's
    own words.
    """

    def __init__(self, env: TextEnv, rng: random.Random) -> None:
        super().__init__(env, rng)
        self.gold: list[str] = []
        self.position = 0
        self.task = ""
        self.last_observation = ""

    @abc.abstractmethod
    def gold_actions(self) -> list[str]:
        """The env's gold action sequence for the episode just reset."""

    @abc.abstractmethod
    def explain(self, action: str) -> str:
        """The thought behind taking ``action`` now."""

    def start(self, reset: ResetResult) -> None:
        self.gold = self.gold_actions()
        self.position = 0
        self.task = reset.task
        self.last_observation = reset.observation

    def decide(self, last: StepResult | None) -> Decision:
        if last is not None:
            self.last_observation = last.observation
        if self.position >= len(self.gold):
            raise ExpertGaveUp("gold path ended before the task")
        action = self.gold[self.position]
        self.position += 1
        thought = self.explain(action)
        if self.position == 1:
            first = self.task.split(". ")[0].rstrip(".")
            if first.lower().startswith("your task is to "):
                first = "My task is to " + first[len("your task is to ") :]
            thought = self.say.pick(["{t}.", "So: {t}.", "Understood. {t}."], t=first) + " " + thought
        return Decision(thought, action)

"""TextWorld-Express (the ``textworld-express`` package, Java) as a text environment.

Eight games (``cookingworld``, ``twc``, ``coin``, ``mapreader``, ``arithmetic``, ``sorting``,
``simonsays``, ``peckingorder``) with their default parameters. Each env object owns one JVM (py4j),
so run one per process. AgentGym has no TextWorld-Express server, so the prompt is ours, in the same
shape as AgentGym's others: the instruction carries the action format, the first observation starts
with the task. Invalid actions get the game's own answer ("Unknown action: I'm not sure what you
mean.") and change nothing but the game's move counter.
"""

from __future__ import annotations

import re
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv

GAMES = ("cookingworld", "twc", "coin", "mapreader", "arithmetic", "sorting", "simonsays", "peckingorder")
INSTRUCTION = (
    "You are an agent in a text-based world and you need to accomplish the given task with actions. "
    "Every round I will give you an observation, and you have to respond with your thought and one "
    "action based on it.\n\nUseful actions: look around, inventory, task, move <direction>, "
    "open <object>, close <object>, take <object>, put <object> in <container>, read <object>, "
    "examine <object>, eat <object>, and the game's own verbs (e.g. slice, chop, cook, prepare meal).\n"
    "Your response should use the following format:\nThought:\n<Your Thought>\n\nAction:\n<Your Action>"
)
STEP_LIMIT = 100


class TextWorldExpressEnv(TextEnv):
    """One TextWorld-Express game on one data fold (``train`` for data, ``test`` for evaluation)."""

    def __init__(self, game: str, fold: str = "train", params: str = "") -> None:
        if fold not in ("train", "dev", "test"):
            raise ValueError(f"unknown fold {fold!r}; expected train, dev or test")
        if game not in GAMES:
            raise ValueError(f"unknown TextWorld-Express game {game!r}; expected one of {', '.join(GAMES)}")
        from textworld_express import TextWorldExpressEnv as _Game

        self.game, self.fold, self.params = game, fold, params
        self.env_id = f"twx/{game}"
        self._game = _Game(envStepLimit=STEP_LIMIT)
        self._valid: list[str] = []
        self._done = False
        self._steps = 0
        self.task = ""

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        # The game has 1,000 seeds per fold (train 0-999, dev, test 20000-...); ours index them.
        seeds = self._fold_seeds()
        observation, infos = self._game.reset(
            seed=seeds[seed % len(seeds)],
            gameFold=self.fold,
            gameName=self.game,
            gameParams=self.params,
            generateGoldPath=True,
        )
        self._valid = list(infos["validActions"])
        self._done, self._steps = False, 0
        self.task = str(infos["taskDescription"]).strip()
        text = f"Your task: {self.task}\n{observation.strip()}"
        return ResetResult(INSTRUCTION, text, self.task, {"game": self.game, "seed": seed})

    def _fold_seeds(self) -> list[int]:
        getter = {"train": "getValidSeedsTrain", "dev": "getValidSeedsDev", "test": "getValidSeedsTest"}[
            self.fold
        ]
        return [int(s) for s in getattr(self._game, getter)()]

    def gold_actions(self) -> list[str]:
        """The game's gold path for the current episode (the expert plays it)."""
        return [str(a) for a in self._game.getGoldActionSequence()]

    def valid_actions(self) -> list[str]:
        return list(self._valid)

    def step(self, action: str) -> StepResult:
        command = _clean(action)
        if self._done:
            return StepResult(
                "The episode is over. Please reset the environment.", 0.0, True, self._info(False, 0.0)
            )
        self._steps += 1
        valid = command in self._valid
        observation, reward, done, infos = self._game.step(command)
        self._valid = list(infos["validActions"])
        success = bool(infos.get("tasksuccess"))
        self._done = bool(done) or success
        info = self._info(valid, float(infos.get("score", 0.0)), success)
        return StepResult(str(observation).strip(), float(reward), self._done, info)

    def _info(self, valid: bool, score: float, success: bool = False) -> dict[str, Any]:
        return {"valid": valid, "success": success, "score": score, "steps": self._steps}

    def close(self) -> None:
        self._game.close()


def _clean(action: str) -> str:
    match = re.findall(r"Action:\s*(.*?)(?=\n|$)", action, re.DOTALL)
    text = match[-1] if match else action
    return " ".join(text.strip().split())

"""ScienceWorld (the ``scienceworld`` package, Java 17) as a text environment.

The prompt lists the action templates as AgentGym's SciWorld client does. A task is one of the
package's 30 task types; the seed picks a variation from the package's own split (``train`` for
training data, ``test`` for held-out evaluation). Each env object owns one JVM (~0.3-0.5 GB), so run
one per process. Invalid actions get ScienceWorld's own answer ("No known action matches that
input.", "The door is not open.") and change nothing but the move counter. Success is a score of 100.
"""

from __future__ import annotations

import re
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv

_ACTIONS = [
    ("open/close OBJ", "open/close a container"),
    ("de/activate OBJ", "activate/deactivate a device"),
    ("connect OBJ to OBJ", "connect electrical components"),
    ("disconnect OBJ", "disconnect electrical components"),
    ("use OBJ [on OBJ]", "use a device/item"),
    ("look around", "describe the current room"),
    ("look at OBJ", "describe an object in detail"),
    ("look in OBJ", "describe a container's contents"),
    ("read OBJ", "read a note or book"),
    ("move OBJ to OBJ", "move an object to a container"),
    ("pick up OBJ", "move an object to the inventory"),
    ("put down OBJ", "drop an inventory item"),
    ("pour OBJ into OBJ", "pour a liquid into a container"),
    ("dunk OBJ into OBJ", "dunk a container into a liquid"),
    ("mix OBJ", "chemically mix a container"),
    ("go to LOC", "move to a new location"),
    ("eat OBJ", "eat a food"),
    ("flush OBJ", "flush a toilet"),
    ("focus on OBJ", "signal intent on a task object"),
    ("wait", "take no action for 10 iterations"),
    ("wait1", "take no action for 1 iteration"),
    ("task", "describe current task"),
    ("inventory", "list your inventory"),
]
INSTRUCTION = (
    "You are an agent for science world. Every round I will give you an observation, you have to respond "
    "an action based on the observation to finish the given task. Here are the actions you may take: ["
    + ", ".join(f'{{"action": "{a}", "description": "{d}"}}' for a, d in _ACTIONS)
    + "]\nYour response should use the following format:\nThought:\nyour thoughts.\n\n"
    + "Action:\nyour next action"
)
FAILURES = ("No known action matches that input.", "The door is not open.", "Unknown action")
STEP_LIMIT = 200
SLOW_TASKS = ("mendelian-genetics-known-plant", "mendelian-genetics-unknown-plant")


class ScienceWorldEnv(TextEnv):
    """One ScienceWorld task type; ``split`` picks the variations (``train``, ``dev`` or ``test``)."""

    def __init__(self, task: str, split: str = "train") -> None:
        if split not in ("train", "dev", "test"):
            raise ValueError(f"unknown split {split!r}; expected train, dev or test")
        from scienceworld import ScienceWorldEnv as _World

        self.task_name, self.split = task, split
        self.env_id = f"sciworld/{task}"
        self._world = _World("", envStepLimit=STEP_LIMIT)
        if task not in self._world.get_task_names():
            self._world.close()
            raise ValueError(f"unknown ScienceWorld task {task!r}")
        self._variations: list[int] = []
        self._done = False
        self._steps = 0
        self._score = 0.0

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        if not self._variations:
            self._world.load(self.task_name, 0, "", generateGoldPath=False)
            getter = {
                "train": "get_variations_train",
                "dev": "get_variations_dev",
                "test": "get_variations_test",
            }
            self._variations = [int(v) for v in getattr(self._world, getter[self.split])()]
        variation = self._variations[seed % len(self._variations)]
        self._world.load(self.task_name, variation, "", generateGoldPath=True)
        observation, _ = self._world.reset()
        description = str(self._world.get_task_description()).strip()
        self._done, self._steps, self._score = False, 0, 0.0
        text = f"{description}\n{observation.strip()}"
        return ResetResult(INSTRUCTION, text, description, {"task": self.task_name, "variation": variation})

    def gold_actions(self) -> list[str]:
        """The package's gold action sequence for the loaded variation (the expert plays it)."""
        return [str(a) for a in self._world.get_gold_action_sequence()]

    def look(self) -> str:
        """The current room's description, without taking a step (experts read door states)."""
        return str(self._world.look())

    def valid_actions(self) -> list[str]:
        return [str(a) for a in self._world.get_valid_action_object_combinations()]

    def step(self, action: str) -> StepResult:
        command = _clean(action)
        if self._done:
            return StepResult(
                "The episode is over. Please reset the environment.", 0.0, True, self._info(False)
            )
        self._steps += 1
        observation, reward, completed, info = self._world.step(command)
        text = str(observation).strip()
        self._score = float(info.get("score", 0)) / 100.0
        success = self._score >= 1.0
        self._done = bool(completed) or success
        return StepResult(
            text, float(reward) / 100.0, self._done, self._info(not text.startswith(FAILURES), success)
        )

    def _info(self, valid: bool, success: bool = False) -> dict[str, Any]:
        return {"valid": valid, "success": success, "score": max(self._score, 0.0), "steps": self._steps}

    def close(self) -> None:
        self._world.close()


def _clean(action: str) -> str:
    match = re.findall(r"Action:\s*(.*?)(?=\n|$)", action, re.DOTALL)
    text = match[-1] if match else action
    return " ".join(text.strip().split())

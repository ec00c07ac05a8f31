"""BabyAI (minigrid) as a text environment with AgentGym's interface.

The prompt, the goal line, the action names and the fixed feedback follow AgentGym's BabyAI server
(WooooDyy/AgentGym, ``agentenv-babyai``) so that models tuned on AgentTraj-L transfer here and back;
the rendering and the action compiler are ours (:mod:`.babyai_view`). Observations end with the list
of available actions, as AgentGym's server sends them.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from typing import Any

from atlas_evaluator.envs.babyai_view import NOT_RECOGNIZED, View, observe
from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv

INSTRUCTION = (
    "You are an exploration master that wants to finish every goal you are given. Every round I will "
    "give you an observation, and you have to respond an action and your thought based on the "
    "observation to finish the given task. You are placed in a room and you need to accomplish the "
    "given goal with actions.\n\nYou can use the following actions: \n\n- turn right \n\n- turn left "
    "\n\n- move forward \n\n- go to <obj> <id> \n\n- pick up <obj> <id> \n\n- go through <door> <id>: "
    "<door> must be an open door. \n\n- toggle and go through <door> <id>: <door> can be a closed door "
    "or a locked door. If you want to open a locked door, you need to carry a key that is of the same "
    "color as the locked door. \n\n- toggle: there is a closed or locked door right in front of you and "
    "you can toggle it.\n\n- drop: put down the object you are carrying in front of you.\n\n- check "
    "available actions\nYour response should use the following format:\nThought:\n<Your Thought>\n\n"
    "Action:\n<Your Action>"
)
COMPLETED = "The task is completed."
_QUIET_LOCK = threading.Lock()
DEFAULT_MAX_STEPS = 64


def normalize_action(action: str) -> str:
    """AgentGym's client cleaning (letters, digits, commas, spaces; lower case) plus ``pickup``."""
    match = re.findall(r"Action:\s*(.*?)(?=\n|$)", action, re.DOTALL)
    if match:
        action = match[-1]
    action = re.sub(r"[^A-Za-z0-9, ]+", "", action).lower()
    action = " ".join(action.split())
    if action.startswith("pickup "):
        action = "pick up " + action[len("pickup ") :]
    return action


class BabyAIEnv(TextEnv):
    """One BabyAI level, e.g. ``BabyAIEnv("GoToLocal")`` for ``BabyAI-GoToLocal-v0``."""

    def __init__(self, level: str, *, max_steps: int = DEFAULT_MAX_STEPS, show_actions: bool = True) -> None:
        import gymnasium
        import minigrid  # noqa: F401 - registers the BabyAI levels with gymnasium

        self.level = level
        self.env_id = f"babyai/{level}"
        self.max_steps = max_steps
        self.show_actions = show_actions
        self._gym = gymnasium.make(f"BabyAI-{level}-v0")
        self._view: View | None = None
        self._steps = 0
        self._done = False
        self._score = 0.0
        self.goal = ""

    @property
    def minigrid(self) -> Any:
        """The underlying minigrid env (experts read its state; agents must not)."""
        return self._gym.unwrapped

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        # Level generation prints "Sampling rejected ..." on stdout; keep stdout clean for pipes.
        # redirect_stdout swaps the process-wide sys.stdout: resets on parallel threads take turns,
        # or one could restore another's dropped buffer and silence the process.
        with _QUIET_LOCK, contextlib.redirect_stdout(io.StringIO()):
            self._gym.reset(seed=seed)
        self._steps, self._done, self._score = 0, False, 0.0
        # AgentGym rewrites sequence words so the goal reads as one conjunction.
        self.goal = self.minigrid.mission.replace("then", "and").replace("after you", "and")
        self._view = observe(self.minigrid)
        observation = f"Your goal: {self.goal}\n{self._render(self._view.description)}"
        return ResetResult(
            INSTRUCTION, observation, self.minigrid.mission, {"level": self.level, "seed": seed}
        )

    @property
    def view(self) -> View:
        """The current view and compiled actions (experts read it)."""
        return self._require_view()

    def valid_actions(self) -> list[str]:
        assert self._view is not None, "reset() first"
        return list(self._view.actions)

    def step(self, action: str) -> StepResult:
        view = self._require_view()
        command = normalize_action(action)
        if self._done:
            return self._result("The episode is over. Please reset the environment.", 0.0, valid=False)
        self._steps += 1
        if command == "check available actions" or command.startswith("check"):
            text = "You can take the following actions: " + ", ".join(view.actions)
            return self._result(text, 0.0, valid=True)
        if command not in view.actions:
            text = view.feedback.get(command, NOT_RECOGNIZED if command else "No change in state.")
            return self._result(text, 0.0, valid=False)
        reward, success = 0.0, False
        for primitive in view.actions[command]:
            _, r, terminated, truncated, _ = self._gym.step(primitive)
            reward += float(r)
            if terminated or truncated:
                self._done, success = True, bool(terminated and float(r) > 0)
                break
        self._view = observe(self.minigrid)
        self._score = max(self._score, 1.0 if success else 0.0)
        text = self._view.description
        if success:
            text += f"\n{COMPLETED}"
        return self._result(text, reward, valid=True, success=success)

    def _require_view(self) -> View:
        if self._view is None:
            raise RuntimeError("reset() must be called before step()")
        return self._view

    def _result(self, text: str, reward: float, *, valid: bool, success: bool = False) -> StepResult:
        if not self._done and self._steps >= self.max_steps:
            self._done = True
        info = {
            "valid": valid,
            "success": success or self._score >= 1.0,
            "score": self._score,
            "steps": self._steps,
        }
        return StepResult(self._render(text), reward, self._done, info)

    def _render(self, text: str) -> str:
        if not self.show_actions or self._view is None:
            return text
        listed = ", ".join(f'"{a}"' for a in self._view.actions)
        return f"{text}\nAvailable actions: [{listed}]"

    def close(self) -> None:
        self._gym.close()

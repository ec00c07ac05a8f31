"""TextWorld games (the ``textworld`` package) as text environments in AgentGym's ALFWorld style.

ALFWorld, the TextWorld env AgentGym serves, shows the room, the task and the admissible commands
("AVAILABLE ACTIONS: ..."); later turns are "Observation: <the game's answer>" plus the commands
admissible now. Ours do the same ("Your task: ...") for games that
:mod:`~atlas_evaluator.envs.textworld_games` generates per seed. Every command goes to the game's own
Inform 7 parser, so a bad command gets the game's answer ("You can't go that way.", "You can't see
any such thing.", "That's not a verb I recognise."). A command is *valid* when it was admissible or
changed the world (TextWorld tracks the world's facts); the game's parser also accepts paraphrases of
admissible commands, which then count as valid. Invalid commands change no fact.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv
from atlas_evaluator.envs.textworld_games import CHALLENGES, TEXTWORLD_LOCK, ensure_game

INSTRUCTION = (
    "You are playing a text-based game. Imagine you are an adventurer in a house of rooms, doors, "
    "containers and objects, and your target is to perform actions to complete the task goal. At the "
    "beginning of your interactions, you will be given the detailed description of the current "
    "environment and your goal to accomplish. For each of your turn, you will be given the observation "
    "of the last turn and the actions available now. You should first think about the current condition "
    "and plan for your future actions, and then output your action in this turn. Your output must "
    'strictly follow this format:"Thought:\nyour thoughts.\n\nAction:\nyour next action"\n\n'
    "The available actions are:\n1. go {direction} (north, south, east, west)\n2. take {obj} / take "
    "{obj} from {container or supporter}\n3. put {obj} on {supporter}\n4. insert {obj} into "
    "{container}\n5. open / close {container or door}\n6. unlock / lock {container or door} with "
    "{key}\n7. drop {obj}\n8. eat {obj}\n9. examine {thing}, look, inventory\n10. in cooking games: "
    "read cookbook, slice / dice / chop {food} with {knife}, cook {food} with {stove, oven or BBQ}, "
    "prepare meal\nwhere {obj}, {container}, {supporter}, {door} and {key} are the things you see. "
    "After your each turn, the environment will give you immediate feedback; if it tells you that "
    "your action did nothing, try another one.\n"
)
STATUS_LINE = re.compile(r"\n?>[^\n]*$")


def clean_feedback(text: str) -> str:
    """The game's answer without the Z-machine prompt/status line and the end-of-game menu."""
    text = text.rstrip()
    text = STATUS_LINE.sub("", text)
    text = text.split("Would you like to RESTART", 1)[0]
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return "\n".join(line.strip() for line in text.strip().splitlines())


def _clean_action(action: str) -> str:
    match = re.findall(r"Action:\s*(.*?)(?=\n|$)", action, re.DOTALL)
    text = match[-1] if match else action
    return " ".join(text.strip().split())


class TextWorldEnv(TextEnv):
    """One TextWorld challenge (see :data:`~atlas_evaluator.envs.textworld_games.CHALLENGES`); the
    seed picks (and on first use makes) the game."""

    def __init__(self, challenge: str, games_dir: str | Path | None = None) -> None:
        if challenge not in CHALLENGES:
            raise ValueError(
                f"unknown TextWorld challenge {challenge!r}; expected one of {', '.join(CHALLENGES)}"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import textworld

        self.challenge = challenge
        self.env_id = f"textworld/{challenge}"
        self.games_dir = Path(games_dir) if games_dir else None
        self._infos = textworld.EnvInfos(
            admissible_commands=True,
            objective=True,
            description=True,
            inventory=True,
            score=True,
            max_score=True,
            won=True,
            lost=True,
            facts=True,
            extras=["walkthrough"],
        )
        self._game: Any = None
        self._state: Any = None
        self._done = False
        self._steps = 0
        self.game_file = ""
        self.objective = ""

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        import textworld

        path = ensure_game(self.challenge, seed, self.games_dir)
        with TEXTWORLD_LOCK, warnings.catch_warnings():  # Jericho: TextWorld games are "not fully supported"
            warnings.simplefilter("ignore")
            if self._game is not None:
                self._game.close()
            self._game = textworld.start(str(path), request_infos=self._infos)
            self._state = self._game.reset()
        self.game_file = str(path)
        self._done, self._steps = False, 0
        self.objective = " ".join(str(self._state["objective"]).split())
        text = "{}\n\nYour task: {}\nAVAILABLE ACTIONS: {}".format(
            clean_feedback(str(self._state["description"])), self.objective, ", ".join(self.valid_actions())
        )
        task_name = f"{self.challenge}:{seed}"
        return ResetResult(INSTRUCTION, text, task_name, {"game": path.name, "seed": seed})

    def valid_actions(self) -> list[str]:
        if self._state is None:
            return []
        return [str(c) for c in self._state["admissible_commands"]]

    def walkthrough(self) -> list[str]:
        """The game's own solution from the start of the episode (the expert plays it)."""
        return [str(c) for c in self._state["extra.walkthrough"]]

    @property
    def state(self) -> Any:
        """TextWorld's game state of the last turn (experts read the inventory and the room)."""
        return self._state

    def step(self, action: str) -> StepResult:
        if self._state is None:
            raise RuntimeError("reset() must be called before step()")
        command = _clean_action(action)
        if self._done:
            return StepResult(
                "The episode is over. Please reset the environment.", 0.0, True, self._info(False, False)
            )
        self._steps += 1
        before = self._state
        if not command:
            return StepResult(
                "Observation: I beg your pardon?\nAVAILABLE ACTIONS: " + ", ".join(self.valid_actions()),
                0.0,
                False,
                self._info(False, False),
            )
        with TEXTWORLD_LOCK:
            self._state, _, done = self._game.step(command)
        score_gain = float(self._state["score"]) - float(before["score"])
        valid = command in before["admissible_commands"] or set(self._state["facts"]) != set(before["facts"])
        success = bool(self._state["won"])
        self._done = bool(done) or success or bool(self._state["lost"])
        max_score = float(self._state["max_score"]) or 1.0
        reward = score_gain / max_score
        text = "Observation: " + clean_feedback(str(self._state.feedback))
        if not self._done:
            text += "\nAVAILABLE ACTIONS: " + ", ".join(self.valid_actions())
        return StepResult(text, reward, self._done, self._info(valid, success))

    def _info(self, valid: bool, success: bool) -> dict[str, Any]:
        score = 0.0
        if self._state is not None:
            score = float(self._state["score"]) / (float(self._state["max_score"]) or 1.0)
        return {"valid": valid, "success": success, "score": score, "steps": self._steps}

    def close(self) -> None:
        if self._game is not None:
            with TEXTWORLD_LOCK:
                self._game.close()
            self._game = None

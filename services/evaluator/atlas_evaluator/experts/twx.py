"""TextWorld-Express expert: the game's gold action sequence, explained from the observations.

The gold path is exact; the thoughts come from what the expert sees when it acts: the task on the
first turn, the exits it can take (parsed from "To the North you see the hallway."), whether a
container is closed, what it is carrying and which item the next action serves.
"""

from __future__ import annotations

import re

from atlas_evaluator.envs.twx import TextWorldExpressEnv
from atlas_evaluator.experts.base import Blunder, Decision, GoldPathExpert

EXIT = re.compile(r"To the (\w+) you see (?:a |an |the )?([^.]+)\.", re.IGNORECASE)
DIRECTIONS = ("north", "south", "east", "west")


class TextWorldExpressExpert(GoldPathExpert):
    env: TextWorldExpressEnv

    def gold_actions(self) -> list[str]:
        return self.env.gold_actions()

    def _exits(self) -> dict[str, str]:
        return {d.lower(): place.strip() for d, place in EXIT.findall(self.last_observation)}

    def explain(self, action: str) -> str:
        verb, _, rest = action.partition(" ")
        remaining = len(self.gold) - self.position
        if action == "look around":
            return self.say.pick(
                ["Let me look around to see where I am and what is here.", "First I look around."]
            )
        if verb == "move":
            direction = rest.replace("to ", "").strip()
            place = self._exits().get(direction, "")
            where = f" to the {place}" if place else ""
            return self.say.pick(
                [
                    "What I need is not here, so I'll go {d}{w}.",
                    "Next I head {d}{w}.",
                    "I should continue {d}{w}.",
                ],
                d=direction,
                w=where,
            )
        if verb == "open":
            return self.say.pick(
                ["The {o} is closed; I'll open it.", "I need to open the {o} to get through or look inside."],
                o=rest,
            )
        if verb == "take":
            return self.say.pick(
                [
                    "I see the {o} here and the task needs it, so I take it.",
                    "The {o} is what I need. Taking it.",
                ],
                o=rest,
            )
        if verb == "put":
            return self.say.pick(["Now I put the {o}.", "The next step is to put the {o}."], o=rest)
        if verb == "read":
            return self.say.pick(
                ["Reading the {o} should tell me what to do.", "Let me read the {o} for instructions."],
                o=rest,
            )
        if remaining == 0:
            return self.say.pick(
                ["This should finish the task: {a}.", "Everything is ready; last step: {a}."], a=action
            )
        return self.say.pick(["Next I {a}, as the task requires.", "The task asks me to {a} now."], a=action)

    def blunder(self, decision: Decision) -> Blunder | None:
        valid = set(self.env.valid_actions())
        options = [f"move {d}" for d in DIRECTIONS if f"move {d}" not in valid]
        if not decision.action.startswith("move") or not options:
            return None
        wrong = self.rng.choice(options)
        direction = wrong.split(" ", 1)[1]
        return Blunder(
            self.say.pick(["Maybe it is to the {d}; I'll move {d}.", "I'll try going {d}."], d=direction),
            wrong,
            self.say.pick(
                ["There is no way {d} from here.", "I can't go {d}; that's not an exit."], d=direction
            ),
        )

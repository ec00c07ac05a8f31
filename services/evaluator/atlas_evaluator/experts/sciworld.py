"""ScienceWorld expert: the package's gold action sequence, explained from the task and the step.

Thoughts name the task on the first turn and, per action, why it is taken: rooms to reach, doors to
open, the object the task says to focus on (a focus on the wrong object fails the task, so the
thought quotes the task), devices to use, waiting for a process to finish.
"""

from __future__ import annotations

from atlas_evaluator.envs.sciworld import ScienceWorldEnv
from atlas_evaluator.experts.base import Blunder, Decision, GoldPathExpert


class ScienceWorldExpert(GoldPathExpert):
    env: ScienceWorldEnv

    def gold_actions(self) -> list[str]:
        return self.env.gold_actions()

    def explain(self, action: str) -> str:
        say = self.say.pick
        if action == "look around":
            return say(["Let me look around to see what is in this room.", "I'll look around first."])
        if action.startswith("open door to "):
            return say(
                [
                    "The door to the {r} is closed, so I open it.",
                    "I need to pass into the {r}; opening the door.",
                ],
                r=action[13:],
            )
        if action.startswith("go to "):
            return say(["Now I go to the {r}.", "Heading to the {r}, where I need to be next."], r=action[6:])
        if action.startswith("focus on "):
            return say(
                [
                    "The task wants me to focus on the {o}; I do it now.",
                    "This is the object the task is about, so I focus on the {o}.",
                ],
                o=action[9:],
            )
        if action.startswith("pick up "):
            return say(["I need the {o}, so I pick it up.", "Taking the {o} with me."], o=action[8:])
        if action.startswith(("move ", "pour ", "dunk ")):
            return say(["Next step of the experiment: {a}.", "Now I {a}, as the task requires."], a=action)
        if action.startswith(("use ", "activate ", "deactivate ", "connect ", "disconnect ", "mix ")):
            return say(["I {a} to make progress on the experiment.", "Time to {a}."], a=action)
        if action in ("wait", "wait1"):
            return say(["The process needs time, so I wait.", "Nothing to do until it changes; waiting."])
        if action.isdigit():
            return say(
                ["Several actions match; option {a} is the one I mean.", "I choose option {a}."], a=action
            )
        return say(["Next I {a}.", "Now: {a}."], a=action)

    def blunder(self, decision: Decision) -> Blunder | None:
        if not decision.action.startswith("open door to "):
            return None
        room = decision.action[13:]
        if f"door to the {room} (that is closed)" not in self.env.look():
            return None  # gold paths sometimes open a door that is already open
        return Blunder(
            self.say.pick(["I'll go to the {r}.", "Let me head to the {r} right away."], r=room),
            f"go to {room}",
            self.say.pick(
                [
                    "The door to the {r} is still closed; I must open it first.",
                    "I forgot the door is closed.",
                ],
                r=room,
            ),
        )

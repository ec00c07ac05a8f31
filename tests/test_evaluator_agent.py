"""The evaluator's agent loop, policies and runner on real envs (BabyAI, TextCraft) and real models."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from atlas_evaluator.agent import FORMAT_FEEDBACK, StopReason, parse_action
from atlas_evaluator.envs.registry import make_env
from atlas_evaluator.generate import ACKNOWLEDGEMENT, play_episode
from atlas_evaluator.policies.base import GenerationConfig, Policy, PolicyReply, PolicyRequest
from atlas_evaluator.policies.oracle import OraclePolicy
from atlas_evaluator.runner import Runner, plan_suite

from atlas.data.formats import read_file, write_file
from atlas.data.model import Role
from atlas.errors import InvalidArgument


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model's matrices are too small to split: on a shared 2-core runner, intra-op
    threads only wait on each other (a batch-1 decode measured 80x slower with 2 threads)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Thought:\nI go.\n\nAction:\ngo to red ball 1", "go to red ball 1"),
        ("Thought: x Action: turn left", "turn left"),
        ("action:   \n\n  `move forward`  \nmore", "move forward"),
        ("Action: toggle\nThought: no wait\nAction: drop", "drop"),
        ("Thought: I think", None),
        ("Action:\n   \n", None),
        ("", None),
    ],
)
def test_parse_action(text: str, action: str | None) -> None:
    assert parse_action(text) == action


class _Scripted(Policy):
    """Says the same text every turn, and records the batch sizes it was called with."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.batches: list[int] = []

    def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyReply]:
        self.batches.append(len(requests))
        return [PolicyReply(self.text) for _ in requests]


def _check_transcript(result: Any, max_turns: int) -> None:
    messages = result.messages
    assert messages[0].role is Role.USER and messages[1].content == ACKNOWLEDGEMENT
    assert messages[2].role is Role.USER
    assert result.turns <= max_turns
    roles = [m.role for m in messages[2:]]
    assert all(a is not b for a, b in itertools.pairwise(roles)), "turns must alternate"
    assert result.turns == sum(1 for m in messages[3:] if m.role is Role.ASSISTANT)


def test_parse_failures_become_invalid_action_feedback_and_max_turns_stops() -> None:
    policy = _Scripted("Thought: I have no idea what to do.")
    with Runner(policy, concurrency=3) as runner:
        results = runner.run(plan_suite(["babyai/GoToLocal", "textcraft"], 3, seed=5, max_turns=4))
    assert len(results) == 6
    assert max(policy.batches) == 3  # the policy saw several episodes per call
    for result in results:
        assert result.stop_reason is StopReason.MAX_TURNS and not result.success
        assert result.turns == 4 and result.parse_failures == 4 and result.invalid_actions == 4
        assert FORMAT_FEEDBACK in result.messages[-2].content
        _check_transcript(result, 4)


def test_invalid_arguments_are_clear() -> None:
    with pytest.raises(InvalidArgument) as err:
        plan_suite(["babyai/Nope"], 1)
    assert err.value.field_path == "env_ids[0]"
    with pytest.raises(InvalidArgument) as err:
        plan_suite(["babyai"], 1, max_turns=0)
    assert err.value.field_path == "max_turns"
    with pytest.raises(InvalidArgument) as err:
        Runner(OraclePolicy(), concurrency=10_000)
    assert err.value.field_path == "concurrency"


def test_oracle_policy_reaches_the_experts_success_rate() -> None:
    specs = plan_suite(["babyai", "textcraft"], 6, seed=100)
    expert = {}
    envs: dict[str, Any] = {}
    for spec in specs:
        env = envs.setdefault(spec.env_id, make_env(spec.env_id))
        expert[spec.episode_id] = play_episode(env, spec.seed, recovery_rate=0.0).success
    with Runner(OraclePolicy(), concurrency=4) as runner:
        results = runner.run(specs)
    oracle = {r.episode_id: r.success for r in results}
    assert oracle == expert
    assert sum(expert.values()) >= len(specs) - 2, "the experts should solve nearly everything"
    for r in results:
        if r.success:
            assert r.stop_reason is StopReason.DONE and r.reward > 0 and r.parse_failures == 0


def test_transformers_policy_on_babyai_batched(tiny_model_dir: Path, tmp_path: Path) -> None:
    from atlas_evaluator.policies.transformers import TransformersPolicy

    policy = TransformersPolicy(tiny_model_dir, generation=GenerationConfig(max_new_tokens=24, seed=3))
    with Runner(policy, concurrency=4) as runner:
        results = runner.run(plan_suite(["babyai"], 6, seed=0, max_turns=3))
    assert len(results) == 6 and runner.stats.batch_sizes[0] == 4
    for result in results:
        assert result.stop_reason in (StopReason.DONE, StopReason.MAX_TURNS)
        assert result.prompt_tokens > 0
        _check_transcript(result, 3)
    # Transcripts round-trip through the AgentGym format (what the selector reads back).
    path = tmp_path / "episodes.jsonl"
    write_file(path, (r.to_trajectory() for r in results), "agentgym")
    trajectories = list(read_file(path, "agentgym"))
    assert [t.id for t in trajectories] == [r.episode_id for r in results]
    first = trajectories[0]
    assert first.metadata["stop_reason"] in ("done", "max_turns")
    assert first.metadata["policy.seed"] == "3" and first.metadata["policy.greedy"] == "True"


def test_transformers_context_length_stops_the_episode(tiny_model_dir: Path) -> None:
    from atlas_evaluator.policies.transformers import TransformersPolicy

    policy = TransformersPolicy(
        tiny_model_dir, generation=GenerationConfig(max_new_tokens=8), max_context=1100
    )
    with Runner(policy, concurrency=2) as runner:
        results = runner.run(plan_suite(["babyai/GoToSeq"], 2, seed=0, max_turns=50))
    for result in results:
        assert result.stop_reason is StopReason.CONTEXT_LENGTH, result.stop_reason
        assert 0 < result.turns < 50


def test_transformers_policy_with_peft_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    from atlas_evaluator.policies.transformers import TransformersPolicy
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "adapter"))
    policy = TransformersPolicy(
        tiny_model_dir, adapter_dir=tmp_path / "adapter", generation=GenerationConfig(max_new_tokens=12)
    )
    assert policy.describe()["adapter"].endswith("adapter")
    with Runner(policy, concurrency=2) as runner:
        results = runner.run(plan_suite(["babyai/GoToLocal"], 2, seed=1, max_turns=2))
    assert all(r.turns == 2 or r.stop_reason is StopReason.DONE for r in results)
    with pytest.raises(InvalidArgument) as err:
        TransformersPolicy(tiny_model_dir, adapter_dir=tmp_path / "missing")
    assert err.value.field_path == "policy.adapter"


@pytest.mark.slow
def test_openai_policy_against_vllm(vllm_server: Any) -> None:
    from atlas_evaluator.policies.openai import OpenAIPolicy

    policy = OpenAIPolicy(
        vllm_server.base_url, vllm_server.model, generation=GenerationConfig(max_new_tokens=16)
    )
    try:
        assert vllm_server.model in policy.served_models()
        with Runner(policy, concurrency=4) as runner:
            results = runner.run(plan_suite(["babyai"], 4, seed=0, max_turns=8))
        assert len(results) == 4
        for result in results:
            # The tiny model serves 2048 tokens: a BabyAI chat outgrows it after a few turns.
            assert result.stop_reason in (StopReason.DONE, StopReason.CONTEXT_LENGTH, StopReason.MAX_TURNS)
            assert result.completion_tokens > 0 and result.turns >= 1
            _check_transcript(result, 8)
        assert any(r.stop_reason is StopReason.CONTEXT_LENGTH for r in results)
        with pytest.raises(InvalidArgument):
            OpenAIPolicy(vllm_server.base_url, "no-such-adapter").generate(
                [PolicyRequest("x", [{"role": "user", "content": "hi"}])]
            )
    finally:
        policy.close()

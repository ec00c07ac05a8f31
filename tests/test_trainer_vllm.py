"""The adapter the trainer writes is served by vLLM: `vllm serve --enable-lora --lora-modules NAME=DIR`."""

from __future__ import annotations

import contextlib
import io
import urllib.request
from pathlib import Path

import pytest
from atlas_trainer.spec import JobSpec, LoraSpec, TrainingSpec
from atlas_trainer.train import run
from procs import stop_process
from test_trainer_support import trajectories
from vllm_server import VLLM_PYTHON, start_vllm

from atlas.storage import write_trajectories

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="needs .venv-vllm (make vllm-env)")
def test_vllm_serves_the_trained_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    dataset, out = str(tmp_path / "dataset"), tmp_path / "out"
    write_trajectories(dataset, trajectories(8), "agentgym")
    spec = JobSpec(
        dataset_uri=dataset,
        output_uri=str(out),
        training=TrainingSpec(
            base_model=str(tiny_model_dir), lora=LoraSpec(r=8, alpha=16), max_steps=2, micro_batch_size=4
        ),
    )
    (tmp_path / "spec.json").write_text(spec.to_json())
    with contextlib.redirect_stdout(io.StringIO()):
        assert run(str(tmp_path / "spec.json")) == 0
    lora = ("--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"critical={out / 'adapter'}")
    proc, server = start_vllm(tiny_model_dir, tmp_path / "vllm.log", extra_args=lora)
    try:
        reply = server.chat(
            [{"role": "user", "content": "Your goal: go to the red ball"}], model="critical", max_tokens=8
        )
        assert reply["model"] == "critical"
        assert reply["choices"][0]["finish_reason"] in ("stop", "length")
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as models:
            assert b'"critical"' in models.read()
    finally:
        stop_process(proc, timeout=20)

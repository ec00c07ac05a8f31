"""EvaluatorService over real gRPC on 127.0.0.1: environments, jobs, results, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atlas_evaluator.client import EvaluatorClient
from atlas_evaluator.config import EvaluatorConfig
from atlas_evaluator.envs.registry import ENVIRONMENTS
from atlas_evaluator.server import create_server

from atlas import errors
from atlas.common.v1 import job_pb2
from atlas.evaluator.v1 import evaluator_service_pb2 as pb
from atlas.protoconv import status_code_number
from atlas.storage import read_manifest, read_trajectories


class Service:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        config = EvaluatorConfig(port=0, metrics_port=-1, data_dir=str(data_dir), grace_seconds=1)
        self.server, port = create_server(config)
        self.target = f"127.0.0.1:{port}"
        self.client = EvaluatorClient(f"127.0.0.1:{port}", retries=0, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.stop(1)

    def run(self, spec: pb.EvaluationSpec, output_uri: str = "") -> pb.EvaluationJob:
        job = self.client.create_evaluation_job(
            pb.CreateEvaluationJobRequest(spec=spec, output_uri=output_uri)
        ).job
        last = job
        for event in self.client.watch_evaluation_job(pb.WatchEvaluationJobRequest(id=job.id), timeout=120):
            last = event.job
        return last


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data")
    yield svc
    svc.stop()


def _oracle(env_ids: list[str], episodes: int, **kw: Any) -> pb.EvaluationSpec:
    policy = pb.PolicyConfig(kind=pb.POLICY_KIND_ORACLE)
    kw.setdefault("max_turns", 200)
    kw.setdefault("concurrency", 4)
    return pb.EvaluationSpec(policy=policy, env_ids=env_ids, episodes_per_env=episodes, seed=7, **kw)


def test_list_environments_pages_through_the_registry(service: Service) -> None:
    seen, token = [], ""
    while True:
        reply = service.client.list_environments(pb.ListEnvironmentsRequest(page_size=3, page_token=token))
        seen += list(reply.environments)
        token = reply.next_page_token
        if not token:
            break
    assert sorted(e.id for e in seen) == sorted(ENVIRONMENTS)
    splits = {e.id: e.split for e in seen}
    assert splits["babyai/GoToLocal"] == pb.SPLIT_HELD_IN and splits["babyai/SynthLoc"] == pb.SPLIT_HELD_OUT
    assert all(e.description for e in seen)


def test_oracle_job_reaches_full_success_and_publishes_transcripts(service: Service) -> None:
    job = service.run(_oracle(["babyai/GoToLocal", "textcraft"], 3, training_job_id="tra-123"))
    assert job.status.state == job_pb2.JOB_STATE_SUCCEEDED, job.status.error
    assert job.episodes_done == job.episodes_total == 6
    by_env = {r.env_id: r for r in job.results}
    assert set(by_env) == {"babyai/GoToLocal", "textcraft"}
    for result in by_env.values():
        assert result.episodes == 3 and result.success_rate == 1.0 and result.mean_turns >= 1
    out = job.output_uri
    transcripts = list(read_trajectories(f"{out}/transcripts", "agentgym"))
    assert len(transcripts) == 6 and all(t.metadata["success"] == "true" for t in transcripts)
    assert read_manifest(f"{out}/transcripts").record_count == 6
    from prometheus_client import generate_latest

    series = generate_latest(service.server.registry).decode()
    assert (
        'atlas_evaluator_episodes_total{env="textcraft",outcome="success",stop_reason="done"} 3.0' in series
    )
    assert f'atlas_evaluator_success_rate{{env="babyai/GoToLocal",job="{job.id}"}} 1.0' in series
    assert (
        "atlas_evaluator_env_step_seconds_count" in series
        and "atlas_evaluator_policy_seconds_count" in series
    )
    results = json.loads(Path(out, "results.json").read_text())
    assert results["provenance"]["training_job_id"] == "tra-123"
    assert results["policy"]["policy"] == "oracle"


def test_transformers_job_with_peft_adapter_on_babyai_and_textcraft(
    service: Service, tiny_model_dir: Path
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = service.data_dir / "adapters" / "a1"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    policy = pb.PolicyConfig(
        kind=pb.POLICY_KIND_TRANSFORMERS,
        base_model=str(tiny_model_dir),
        adapter_uri=str(adapter),
        max_new_tokens=16,
    )
    spec = pb.EvaluationSpec(
        policy=policy, env_ids=["babyai", "textcraft"], episodes_per_env=2, max_turns=2, concurrency=4
    )
    job = service.run(spec)
    assert job.status.state == job_pb2.JOB_STATE_SUCCEEDED, job.status.error
    assert job.episodes_done == 4 and {r.env_id for r in job.results} >= {"textcraft"}
    transcripts = list(read_trajectories(f"{job.output_uri}/transcripts", "agentgym"))
    assert all(int(t.metadata["turns"]) <= 2 for t in transcripts)
    assert all(t.metadata["policy.adapter"] == str(adapter) for t in transcripts)


def test_bad_input_gets_clear_errors_and_the_service_stays_up(
    service: Service, tmp_path: Path, tiny_model_dir: Path
) -> None:
    create = service.client.create_evaluation_job
    cases: list[tuple[pb.EvaluationSpec, type[errors.AtlasError], str]] = [
        (_oracle(["babyai/Nope"], 1), errors.InvalidArgument, "spec.env_ids[0]"),
        (_oracle(["babyai"], 1, max_turns=0), errors.InvalidArgument, "spec.max_turns"),
        (_oracle(["babyai"], 1, concurrency=10_000), errors.InvalidArgument, "spec.concurrency"),
        (_oracle(["babyai"], 0), errors.InvalidArgument, "spec.episodes_per_env"),
        (
            pb.EvaluationSpec(env_ids=["babyai"], episodes_per_env=1, max_turns=3),
            errors.InvalidArgument,
            "spec.policy.kind",
        ),
    ]
    for spec, error, field in cases:
        with pytest.raises(error) as err:
            create(pb.CreateEvaluationJobRequest(spec=spec))
        assert err.value.field_path == field, err.value
    missing = pb.PolicyConfig(
        kind=pb.POLICY_KIND_TRANSFORMERS,
        base_model=str(tiny_model_dir),
        adapter_uri=str(service.data_dir / "no-such"),
    )
    with pytest.raises(errors.NotFound) as not_found:
        create(
            pb.CreateEvaluationJobRequest(
                spec=pb.EvaluationSpec(policy=missing, env_ids=["babyai"], episodes_per_env=1, max_turns=2)
            )
        )
    assert not_found.value.field_path == "spec.policy.adapter_uri"
    outside = pb.PolicyConfig(
        kind=pb.POLICY_KIND_TRANSFORMERS, base_model=str(tiny_model_dir), adapter_uri="/etc"
    )
    with pytest.raises(errors.PermissionDenied) as denied:
        create(
            pb.CreateEvaluationJobRequest(
                spec=pb.EvaluationSpec(policy=outside, env_ids=["babyai"], episodes_per_env=1, max_turns=2)
            )
        )
    assert denied.value.field_path == "spec.policy.adapter_uri"
    with pytest.raises(errors.NotFound):
        service.client.get_evaluation_job(pb.GetEvaluationJobRequest(id="eva-nope"))
    assert service.client.list_environments(pb.ListEnvironmentsRequest()).environments


def _long_job(svc: Service) -> pb.EvaluationJob:
    """An oracle job of 500 episodes: still running when a test cancels it or stops the service."""
    spec = _oracle(["babyai/GoToSeq"], 500, concurrency=2)
    return svc.client.create_evaluation_job(pb.CreateEvaluationJobRequest(spec=spec)).job


def test_cancel_list_and_restart(tmp_path: Path) -> None:
    svc = Service(tmp_path / "data")
    try:
        long = _long_job(svc)
        queued = svc.client.create_evaluation_job(
            pb.CreateEvaluationJobRequest(spec=_oracle(["babyai"], 1))
        ).job
        svc.client.cancel_evaluation_job(pb.CancelEvaluationJobRequest(id=queued.id))
        svc.client.cancel_evaluation_job(pb.CancelEvaluationJobRequest(id=long.id))
        last = None
        for event in svc.client.watch_evaluation_job(pb.WatchEvaluationJobRequest(id=long.id), timeout=60):
            last = event.job
        assert last is not None and last.status.state == job_pb2.JOB_STATE_CANCELLED
        assert last.episodes_done < 500
        page = svc.client.list_evaluation_jobs(pb.ListEvaluationJobsRequest(page_size=1))
        assert len(page.jobs) == 1 and page.next_page_token
    finally:
        svc.stop()
    again = Service(tmp_path / "data")
    try:
        jobs = again.client.list_evaluation_jobs(pb.ListEvaluationJobsRequest()).jobs
        assert {j.id for j in jobs} == {long.id, queued.id}
        assert all(j.status.state == job_pb2.JOB_STATE_CANCELLED for j in jobs)
    finally:
        again.stop()


def test_a_job_running_when_the_service_stops_is_aborted_not_cancelled(tmp_path: Path) -> None:
    svc = Service(tmp_path / "data")
    try:
        job = _long_job(svc)
        for event in svc.client.watch_evaluation_job(pb.WatchEvaluationJobRequest(id=job.id), timeout=60):
            if event.job.episodes_done > 0:
                break
    finally:
        svc.stop()  # no cancel: the service stops under a running job
    again = Service(tmp_path / "data")
    try:
        stopped = again.client.get_evaluation_job(pb.GetEvaluationJobRequest(id=job.id)).job
        assert stopped.status.state == job_pb2.JOB_STATE_FAILED
        assert stopped.status.error.code == status_code_number("ABORTED")
        assert "stopped while this job was running" in stopped.status.error.message
    finally:
        again.stop()


def test_atlas_eval_through_the_service_and_comparing_adapters(
    service: Service, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from atlas.cli import main

    out = tmp_path / "remote"
    argv = ["eval", "--env", "babyai/GoToLocal", "--env", "textcraft/held-out", "--episodes", "2"]
    assert main([*argv, "--policy", "oracle", "--server", service.target, "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| babyai/GoToLocal | held-in | 100.0%" in table and "held-out average" in table
    report = json.loads((out / "report.json").read_text())
    assert report["runs"]["oracle"]["averages"]["held-out"]["success_rate"] == 1.0
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"

    adapter = tmp_path / "critical"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(str(adapter))
    local = tmp_path / "local"
    model = ["--model", str(tiny_model_dir), "--max-turns", "1", "--max-new-tokens", "8"]
    runs = ["--run", "base=", "--run", f"critical={adapter}"]
    assert main([*argv, *model, *runs, "--out", str(local)]) == 0
    report = json.loads((local / "report.json").read_text())
    assert set(report["runs"]) == {"base", "critical"}
    assert report["runs"]["critical"]["policy"]["adapter"] == str(adapter)
    assert "critical success" in (local / "report.md").read_text()


@pytest.mark.slow
def test_openai_job_against_vllm(service: Service, vllm_server: Any) -> None:
    policy = pb.PolicyConfig(
        kind=pb.POLICY_KIND_OPENAI,
        base_model=vllm_server.model,
        endpoint=vllm_server.base_url,
        max_new_tokens=16,
    )
    spec = pb.EvaluationSpec(
        policy=policy, env_ids=["babyai", "textcraft"], episodes_per_env=2, max_turns=3, concurrency=4
    )
    job = service.run(spec)
    assert job.status.state == job_pb2.JOB_STATE_SUCCEEDED, job.status.error
    assert job.episodes_done == 4

"""The trainer as users run it: `atlas serve trainer` in its own process, data and results on S3.

A job created over gRPC trains the tiny model on a masked dataset in a real S3-protocol server
(moto_server), WatchTrainingJob streams its progress, and a fresh process loads the adapter with
peft. A service killed with SIGKILL mid-job is restarted and the job resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from atlas_trainer.client import TrainerClient
from conftest import S3Server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import free_port, start_process, stop_process, wait_until
from test_trainer_support import tiny_model_dir, trajectories

from atlas.common.v1 import dataset_pb2, job_pb2
from atlas.storage import StorageOptions, download_tree, open_text, write_trajectories
from atlas.trainer.v1 import trainer_service_pb2 as pb

ATLAS = str(Path(sys.executable).parent / "atlas")
pytestmark = pytest.mark.slow


@dataclass
class Trainer:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path


def _serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _start(data_dir: Path, bucket: str, s3: S3Server, log: Path) -> Trainer:
    port, metrics_port = free_port(), free_port()
    args = [ATLAS, "serve", "trainer", "--port", str(port), "--metrics-port", str(metrics_port)]
    args += ["--data-dir", str(data_dir), "--storage-roots", f"{bucket},{data_dir}"]
    args += ["--s3-endpoint-url", s3.endpoint_url, "--grace-seconds", "3"]
    proc = start_process(args, log, env={**os.environ})
    wait_until(lambda: _serving(port), timeout=60, proc=proc, log_path=log, what="trainer serving")
    return Trainer(proc, port, metrics_port, log)


@pytest.fixture
def setup(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> Iterator[tuple[Path, str, str]]:
    model = tiny_model_dir(tmp_path)
    dataset = f"{s3_bucket}/masked/babyai"
    options = StorageOptions(s3_endpoint_url=s3_server.endpoint_url)
    write_trajectories(
        dataset,
        trajectories(24, steps=5),
        "agentgym",
        extra={"selector": {"backend": "rules", "model": "", "prompt_version": "rules-v1", "seed": 0}},
        options=options,
    )
    yield model, dataset, s3_bucket


def _runs_of(job_id: str) -> list[int]:
    """Pids of training runs of ``job_id`` (their command line names the job's spec file)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "atlas_trainer.train" in cmdline and job_id in cmdline:
                pids.append(int(entry.name))
    return pids


def _create(client: TrainerClient, model: Path, dataset: str, out: str, **spec: object) -> pb.TrainingJob:
    request = pb.CreateTrainingJobRequest(
        dataset=dataset_pb2.DatasetRef(uri=dataset),
        output_uri=out,
        spec=pb.TrainingSpec(base_model=str(model), micro_batch_size=4, seed=1, **spec),  # type: ignore[arg-type]
    )
    return client.create_training_job(request).job


def test_a_grpc_job_trains_on_s3_data_and_writes_a_loadable_adapter(
    setup: tuple[Path, str, str], tmp_path: Path, s3_server: S3Server
) -> None:
    model, dataset, bucket = setup
    trainer = _start(tmp_path / "data", bucket, s3_server, tmp_path / "trainer.log")
    try:
        with TrainerClient(f"127.0.0.1:{trainer.port}", retries=0, timeout=30) as client:
            job = _create(
                client, model, dataset, f"{bucket}/runs/one", max_steps=12, learning_rate=5e-3,
                lora=pb.LoraConfig(r=8, alpha=16),
            )  # fmt: skip
            events = list(client.watch_training_job(pb.WatchTrainingJobRequest(id=job.id), timeout=240))
            final = events[-1].job
            assert final.status.state == job_pb2.JOB_STATE_SUCCEEDED, (final.status, trainer.log.read_text())
            states = [e.job.status.state for e in events]
            assert job_pb2.JOB_STATE_RUNNING in states
            steps = [e.job.progress.step for e in events if e.job.progress.step]
            assert steps and steps[-1] == 12 and steps == sorted(steps)
            assert final.progress.supervised_tokens > 0 and final.progress.tokens_per_second > 0
            metrics_body = urllib.request.urlopen(
                f"http://127.0.0.1:{trainer.metrics_port}/metrics", timeout=5
            ).read().decode()  # fmt: skip
            assert 'atlas_trainer_jobs{state="SUCCEEDED"} 1.0' in metrics_body
            assert "atlas_trainer_supervised_tokens_total" in metrics_body
    finally:
        stop_process(trainer.proc)

    options = StorageOptions(s3_endpoint_url=s3_server.endpoint_url)
    with open_text(f"{bucket}/runs/one/metrics.json", options=options) as stream:
        metrics = json.load(stream)
    assert metrics["final_loss"] < metrics["first_loss"]
    assert metrics["tail_tokens_saved"] > 0 and metrics["supervised_tokens"] > 0
    with open_text(f"{bucket}/runs/one/provenance.json", options=options) as stream:
        provenance = json.load(stream)
    assert provenance["dataset"]["uri"] == dataset and len(provenance["dataset"]["sha256"]) == 64
    assert provenance["selector"] == {"backend": "rules", "model": "", "prompt_version": "rules-v1"}
    assert provenance["job_spec"]["training"]["lora"]["r"] == 8 and "atlas" in provenance["code_version"]
    adapter = tmp_path / "adapter"
    download_tree(f"{bucket}/runs/one/adapter", adapter, options=options)
    loader = (
        "import sys, torch, peft, transformers\n"
        "base = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "model = peft.PeftModel.from_pretrained(base, sys.argv[2])\n"
        "lora = [n for n, _ in model.named_parameters() if 'lora_' in n]\n"
        "assert lora, 'no LoRA weights'\n"
        "print('LOADED', len(lora), model.peft_config['default'].r)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", loader, str(model), str(adapter)], capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[0] == "LOADED" and loaded.stdout.split()[-1] == "8"


def test_a_service_killed_mid_job_resumes_it_from_the_checkpoint_after_restart(
    setup: tuple[Path, str, str], tmp_path: Path, s3_server: S3Server
) -> None:
    model, dataset, bucket = setup
    data_dir = tmp_path / "data"
    trainer = _start(data_dir, bucket, s3_server, tmp_path / "first.log")
    try:
        with TrainerClient(f"127.0.0.1:{trainer.port}", retries=0, timeout=30) as client:
            job = _create(
                client, model, dataset, f"{bucket}/runs/crash", max_steps=60, checkpoint_every_steps=5
            )

            def past_a_checkpoint() -> bool:
                got = client.get_training_job(pb.GetTrainingJobRequest(id=job.id)).job
                return got.progress.step >= 6

            wait_until(past_a_checkpoint, timeout=180, proc=trainer.proc, log_path=trainer.log, interval=0.1)
        assert _runs_of(job.id)
        os.kill(trainer.proc.pid, signal.SIGKILL)  # the service only, not its process group
        trainer.proc.wait(timeout=10)
        # The orphaned run notices its parent is gone and exits by itself.
        wait_until(lambda: not _runs_of(job.id), timeout=10, what="orphaned run exits")
    finally:
        stop_process(trainer.proc)
    log_before = (data_dir / "jobs" / job.id / "train.log").read_text()
    assert '"event": "checkpoint"' in log_before

    restarted = _start(data_dir, bucket, s3_server, tmp_path / "second.log")
    try:
        with TrainerClient(f"127.0.0.1:{restarted.port}", retries=0, timeout=30) as client:
            events = list(client.watch_training_job(pb.WatchTrainingJobRequest(id=job.id), timeout=240))
            final = events[-1].job
            assert final.status.state == job_pb2.JOB_STATE_SUCCEEDED, (
                final.status,
                restarted.log.read_text(),
            )
            assert final.progress.step == 60
    finally:
        stop_process(restarted.proc)
    log = (data_dir / "jobs" / job.id / "train.log").read_text()
    resumed = [json.loads(line) for line in log.splitlines() if line.startswith('{"event": "resumed"')]
    assert resumed and resumed[0]["step"] >= 5 and resumed[0]["step"] % 5 == 0
    assert "re-queued to resume" in (tmp_path / "second.log").read_text()

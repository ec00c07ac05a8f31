"""Trainer service configuration (flags and ATLAS_TRAINER_* variables derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from atlas.config import ServerConfig, setting

RUNNERS = ("local", "kubernetes")


@dataclass
class TrainerConfig(ServerConfig):
    SERVICE: ClassVar[str] = "trainer"

    port: int = setting(50052, "gRPC port; 0 picks a free port (printed at start).")
    metrics_port: int = setting(
        9102, "Port of the Prometheus /metrics HTTP server; 0 picks a free one, -1 disables it."
    )
    max_concurrent_jobs: int = setting(
        1,
        "Training jobs run at once (local subprocesses or cluster objects); more wait QUEUED "
        "(local runner on one device: keep 1).",
    )
    resume_interrupted: bool = setting(
        True,
        "At start, re-queue jobs that were RUNNING when the service died; they resume from their last "
        "checkpoint. False fails them instead.",
    )
    max_attempts: int = setting(
        3, "Times a job is started (first run plus resumes after a crash) before it is failed for good."
    )

    runner: str = setting(
        "local",
        "Where jobs run: local (a subprocess per job on this host) or kubernetes (a Kubeflow TrainJob or "
        "batch/v1 Job per job, settings k8s_*). A request that names the other runner is refused.",
    )
    k8s_namespace: str = setting("default", "Namespace of the training objects (kubernetes runner).")
    k8s_image: str = setting(
        "", "Container image of the training pods: the trainer image (required by the kubernetes runner)."
    )
    k8s_kind: str = setting(
        "auto",
        "Object per job: trainjob (Kubeflow Trainer), job (batch/v1), or auto: trainjob when the cluster "
        "serves trainjobs.trainer.kubeflow.org, else job.",
    )
    k8s_runtime_ref: str = setting(
        "torch-distributed", "ClusterTrainingRuntime a TrainJob refers to (spec.runtimeRef.name)."
    )
    k8s_gpus_per_node: int = setting(
        1, "nvidia.com/gpu limit per pod and torchrun processes per node; 0 runs one process on CPU."
    )
    k8s_num_nodes: int = setting(1, "Nodes per job (torchrun --nnodes); more than 1 needs a TrainJob.")
    k8s_node_selector: list[str] = setting(  # noqa: RUF009 - setting() returns a dataclasses.field
        [], "Node selector of the training pods, comma-separated key=value pairs."
    )
    k8s_tolerations: list[str] = setting(  # noqa: RUF009 - setting() returns a dataclasses.field
        [],
        "Tolerations of the training pods, comma-separated key[=value][:effect] "
        "(e.g. nvidia.com/gpu:NoSchedule); no value means operator Exists.",
    )
    k8s_service_account: str = setting(
        "", "Service account of the training pods; empty: the namespace default."
    )
    k8s_s3_secret: str = setting(
        "",
        "Secret whose AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY keys become the training pods' S3 "
        "credentials; empty: the pods' own (e.g. a workload identity).",
    )
    k8s_kubeconfig: str = setting(
        "",
        "Kubeconfig file of the cluster; empty: the in-cluster service account when running in a pod, "
        "else ~/.kube/config.",
    )
    k8s_api_server: str = setting(
        "", "API server URL; overrides the kubeconfig's server. Alone: a plain URL without credentials."
    )
    k8s_poll_seconds: float = setting(
        5.0, "How often the status of each training object and its logs are read."
    )

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.runner not in RUNNERS:
            problems.append(f"runner: {self.runner!r} is not one of {', '.join(RUNNERS)}")
        if self.runner == "kubernetes":
            problems.extend(self._kubernetes_problems())
        if not 1 <= self.max_concurrent_jobs <= 64:
            problems.append(f"max_concurrent_jobs: {self.max_concurrent_jobs} is not in 1..64")
        if not 1 <= self.max_attempts <= 100:
            problems.append(f"max_attempts: {self.max_attempts} is not in 1..100")
        return problems

    def _kubernetes_problems(self) -> list[str]:
        from atlas_trainer.k8s_objects import KINDS, parse_node_selector, parse_tolerations

        problems = []
        if not self.k8s_image:
            problems.append("k8s_image: required by the kubernetes runner (the trainer image)")
        if self.k8s_kind not in KINDS:
            problems.append(f"k8s_kind: {self.k8s_kind!r} is not one of {', '.join(KINDS)}")
        if not 0 <= self.k8s_gpus_per_node <= 64:
            problems.append(f"k8s_gpus_per_node: {self.k8s_gpus_per_node} is not in 0..64")
        if not 1 <= self.k8s_num_nodes <= 1024:
            problems.append(f"k8s_num_nodes: {self.k8s_num_nodes} is not in 1..1024")
        if self.k8s_kind == "job" and self.k8s_num_nodes > 1:
            problems.append("k8s_num_nodes: a batch/v1 Job runs on one node; use k8s_kind trainjob or auto")
        if self.k8s_poll_seconds <= 0:
            problems.append(f"k8s_poll_seconds: {self.k8s_poll_seconds} is not positive")
        for name, parse, value in (
            ("k8s_node_selector", parse_node_selector, self.k8s_node_selector),
            ("k8s_tolerations", parse_tolerations, self.k8s_tolerations),
        ):
            try:
                parse(value)
            except ValueError as error:
                problems.append(f"{name}: {error}")
        return problems

"""The Kubernetes objects of a training job, and what their status means for the job.

Pure functions, no API calls, so the objects can be rendered and validated without a cluster:

* ``build_job``: a ``batch/v1`` Job (the client's models) with one pod that runs
  ``torchrun --standalone -m atlas_trainer.train --spec URI``;
* ``build_trainjob``: a Kubeflow Trainer ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``, a dict: the
  client has no model for a custom resource) with ``spec.trainer`` (image, command, env, numNodes,
  numProcPerNode, resourcesPerNode) and a ``spec.runtimePatches`` entry for the pods' node selector,
  tolerations, service account and labels. ``runtimePatches`` replaced ``podTemplateOverrides`` in
  Kubeflow Trainer v2.2; the runtime (``torch-distributed``) sets torchrun's ``PET_*`` variables;
* ``job_outcome`` / ``trainjob_outcome``: the object's status read as running, succeeded or failed.

Both objects run the same entry point as the local runner, the spec passed by URI, and carry the
atlas job id as a label on the object and its pods, so a restarted service finds them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import V1Job

KINDS = ("auto", "trainjob", "job")
TRAINJOB_GROUP = "trainer.kubeflow.org"
TRAINJOB_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"

LABEL_JOB_ID = "atlas.fleet/job-id"
LABEL_RUN = "atlas.fleet/run"
MANAGED_BY = {"app.kubernetes.io/managed-by": "atlas-trainer", "app.kubernetes.io/component": "training"}
CONTAINER = "node"  # the name Kubeflow's runtimes give the trainer container; used for the Job too
RUNTIME_PATCH_MANAGER = "atlas.fleet/trainer"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass
class PodSettings:
    """What every training pod gets, from the service config (``k8s_*``)."""

    namespace: str
    image: str
    gpus_per_node: int = 1
    num_nodes: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    service_account: str = ""
    s3_secret: str = ""
    runtime_ref: str = "torch-distributed"


@dataclass(frozen=True)
class Outcome:
    """An object's status as the atlas job sees it: still running, or finished with a reason."""

    finished: bool
    succeeded: bool = False
    reason: str = ""
    message: str = ""
    detail: str = ""
    """Shown while running (e.g. ``Suspended``): why the job is not making progress."""


RUNNING = Outcome(finished=False)


def object_name(job_id: str, attempt: int) -> str:
    """``atlas-<job id>-<attempt>``: an RFC 1035 label (TrainJob names must be one), unique per attempt."""
    return f"atlas-{job_id}-{attempt}".lower()[:63].rstrip("-")


def labels(job_id: str, name: str) -> dict[str, str]:
    return {**MANAGED_BY, LABEL_JOB_ID: job_id, LABEL_RUN: name}


def parse_node_selector(items: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` -> a node selector; ValueError names the bad entry."""
    selector = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        selector[key.strip()] = value.strip()
    return selector


def parse_tolerations(items: Sequence[str]) -> list[dict[str, Any]]:
    """``key[=value][:effect]`` -> tolerations (operator Equal with a value, Exists without)."""
    tolerations = []
    for item in items:
        rest, _, effect = item.partition(":")
        key, sep, value = rest.partition("=")
        if not key.strip():
            raise ValueError(f"{item!r} has no key (key[=value][:effect])")
        if effect and effect not in TAINT_EFFECTS:
            raise ValueError(f"{item!r}: effect must be one of {', '.join(TAINT_EFFECTS)}")
        toleration: dict[str, Any] = {"key": key.strip(), "operator": "Equal" if sep else "Exists"}
        if sep:
            toleration["value"] = value.strip()
        if effect:
            toleration["effect"] = effect
        tolerations.append(toleration)
    return tolerations


def _env(settings: PodSettings, job_id: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},  # progress lines reach the pod log at once
        {"name": "ATLAS_TRAINER_JOB_ID", "value": job_id},
    ]
    if settings.s3_secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": key}}}
            for key in S3_KEYS
        ]
    return env


def _procs(settings: PodSettings) -> int:
    return max(settings.gpus_per_node, 1)


def _gpu_limits(settings: PodSettings) -> dict[str, str]:
    return {"nvidia.com/gpu": str(settings.gpus_per_node)} if settings.gpus_per_node else {}


def entry_point_args(spec_uri: str) -> list[str]:
    """torchrun's module arguments: the local runner's entry point, the spec by URI."""
    return ["-m", "atlas_trainer.train", "--spec", spec_uri]


def build_job(settings: PodSettings, job_id: str, name: str, spec_uri: str) -> V1Job:
    """A batch/v1 Job on one node: one pod, torchrun standalone, ``backoffLimit`` 0.

    A failed pod fails the Job at once: a crash the run cannot recover from (a refused dataset, OOM)
    would fail again, and a job interrupted by the service resumes from its checkpoint as a new
    attempt instead.
    """
    from kubernetes import client

    meta = labels(job_id, name)
    container = client.V1Container(
        name=CONTAINER,
        image=settings.image,
        command=["torchrun"],
        args=[
            "--standalone",
            "--nnodes=1",
            f"--nproc-per-node={_procs(settings)}",
            *entry_point_args(spec_uri),
        ],
        env=[client.V1EnvVar.model_validate(env) for env in _env(settings, job_id)],
        resources=client.V1ResourceRequirements(limits=_gpu_limits(settings))
        if settings.gpus_per_node
        else None,
    )
    pod = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        node_selector=settings.node_selector or None,
        tolerations=[client.V1Toleration.model_validate(t) for t in settings.tolerations] or None,
        service_account_name=settings.service_account or None,
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name=name, namespace=settings.namespace, labels=meta),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=meta), spec=pod),
        ),
    )


def build_trainjob(settings: PodSettings, job_id: str, name: str, spec_uri: str) -> dict[str, Any]:
    """A Kubeflow TrainJob on ``num_nodes`` nodes of ``gpus_per_node`` GPUs, on the configured runtime."""
    meta = labels(job_id, name)
    trainer: dict[str, Any] = {
        "image": settings.image,
        "command": ["torchrun"],  # the runtime's PET_* variables give torchrun nodes, ranks, master
        "args": entry_point_args(spec_uri),
        "env": _env(settings, job_id),
        "numNodes": settings.num_nodes,
        "numProcPerNode": _procs(settings),
    }
    if settings.gpus_per_node:
        trainer["resourcesPerNode"] = {"limits": _gpu_limits(settings)}
    pod_spec: dict[str, Any] = {}
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    pod_template: dict[str, Any] = {"metadata": {"labels": meta}}
    if pod_spec:
        pod_template["spec"] = pod_spec
    patch = {
        "manager": RUNTIME_PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [{"name": "node", "template": {"spec": {"template": pod_template}}}]
                }
            }
        },
    }
    return {
        "apiVersion": f"{TRAINJOB_GROUP}/{TRAINJOB_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": meta},
        "spec": {
            "runtimeRef": {
                "apiGroup": TRAINJOB_GROUP,
                "kind": "ClusterTrainingRuntime",
                "name": settings.runtime_ref,
            },
            "trainer": trainer,
            "runtimePatches": [patch],
        },
    }


def _true_conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if str(c.get("status")) == "True"}


def _failed(kind: str, obj: dict[str, Any], condition: dict[str, Any]) -> Outcome:
    name = obj.get("metadata", {}).get("name", "")
    reason = condition.get("reason") or "Failed"
    message = condition.get("message") or ""
    return Outcome(
        True, False, reason, f"{kind} {name} failed: {reason}" + (f": {message}" if message else "")
    )


def job_outcome(obj: dict[str, Any]) -> Outcome:
    """A batch/v1 Job: ``Complete`` / ``Failed`` conditions (``FailureTarget`` waits for ``Failed``,
    which comes once the pods have stopped)."""
    conditions = _true_conditions(obj)
    if "Complete" in conditions:
        return Outcome(True, True, "Complete")
    if "Failed" in conditions:
        return _failed("Job", obj, conditions["Failed"])
    if "Suspended" in conditions:
        return Outcome(False, detail="Suspended")
    return RUNNING


def trainjob_outcome(obj: dict[str, Any]) -> Outcome:
    """A TrainJob: ``Complete`` / ``Failed`` conditions; ``Suspended`` (e.g. queued by Kueue) is running."""
    conditions = _true_conditions(obj)
    if "Complete" in conditions:
        return Outcome(True, True, "Complete")
    if "Failed" in conditions:
        return _failed("TrainJob", obj, conditions["Failed"])
    if "Suspended" in conditions:
        return Outcome(False, detail="Suspended")
    return RUNNING

"""The Kubernetes runner: one TrainJob or batch/v1 Job per job attempt, followed until it ends.

It offers ``TrainerCore`` what the local runner does (start, running, stop, shutdown, reattach) and
reports through the same two callbacks: ``on_event`` with the run's JSON progress lines, which it
reads from the log of the rank-0 pod (the entry point prints them on stdout, as under the local
runner), and ``on_exit`` when the object's status says it has finished.

* start: write the job spec to ``<output_uri>/spec.json`` (the pods read it from object storage),
  create the object named ``atlas-<job id>-<attempt>`` (an object of that name that is already ours is
  adopted: the service may have died between creating it and recording it).
* follow: a thread per object reads its status every ``k8s_poll_seconds``, and the tail of the pod
  log; progress events are told apart by their ``time``, so re-reading a tail repeats nothing.
* stop (cancel): delete the object with ``propagationPolicy=Foreground`` (a 404 means already gone);
  the follower then sees it gone and reports the exit, and the core records CANCELLED.
* shutdown (service stop): stop following and leave the objects running; ``reattach`` picks them up
  again at the next start from the ``kubernetes`` reference kept in the job's result.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from atlas.errors import AtlasError, FailedPrecondition, Unavailable
from atlas.storage import StorageOptions, open_text
from atlas_trainer.config import TrainerConfig
from atlas_trainer.k8s_objects import (
    CONTAINER,
    LABEL_JOB_ID,
    LABEL_RUN,
    TRAINJOB_GROUP,
    TRAINJOB_PLURAL,
    TRAINJOB_VERSION,
    Outcome,
    PodSettings,
    build_job,
    build_trainjob,
    job_outcome,
    object_name,
    parse_node_selector,
    parse_tolerations,
    trainjob_outcome,
)
from atlas_trainer.runner import EventHandler, ExitHandler, parse_event
from atlas_trainer.spec import JobSpec

log = logging.getLogger("atlas_trainer.k8s")

LOG_TAIL_LINES = 500
TIMEOUT = (5.0, 30.0)  # connect, read: every API call has a deadline
RANK0_LABELS = ("batch.kubernetes.io/job-completion-index", "jobset.sigs.k8s.io/job-index")
WAITING_PROBLEMS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError")


@dataclass
class KubernetesRun:
    job_id: str
    kind: str
    name: str
    namespace: str
    last_time: float = 0.0
    last_failure: dict[str, Any] | None = None
    detail: str = ""
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def result_fields(self) -> dict[str, Any]:
        """What the job's result keeps to find the object again after a restart."""
        return {"kubernetes": {"kind": self.kind, "name": self.name, "namespace": self.namespace}}


def api_client(config: TrainerConfig) -> Any:
    """A client for the configured cluster: kubeconfig file, else plain URL, else in-cluster, else
    ``~/.kube/config``; ``k8s_api_server`` overrides the server of any of them."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    try:
        if config.k8s_kubeconfig:
            kube_config.load_kube_config(
                config_file=config.k8s_kubeconfig, client_configuration=configuration, persist_config=False
            )
        elif config.k8s_api_server:
            pass
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config(client_configuration=configuration)
        else:
            kube_config.load_kube_config(client_configuration=configuration, persist_config=False)
    except (kube_config.ConfigException, OSError) as error:
        raise FailedPrecondition(
            f"kubernetes runner: cannot load the cluster's credentials: {error}"
        ) from error
    if config.k8s_api_server:
        configuration.host = config.k8s_api_server.rstrip("/")
    return client.ApiClient(configuration)


def pod_settings(config: TrainerConfig) -> PodSettings:
    return PodSettings(
        namespace=config.k8s_namespace,
        image=config.k8s_image,
        gpus_per_node=config.k8s_gpus_per_node,
        num_nodes=config.k8s_num_nodes,
        node_selector=parse_node_selector(config.k8s_node_selector),
        tolerations=parse_tolerations(config.k8s_tolerations),
        service_account=config.k8s_service_account,
        s3_secret=config.k8s_s3_secret,
        runtime_ref=config.k8s_runtime_ref,
    )


class KubernetesRunner:
    outlives_service = True

    def __init__(
        self, config: TrainerConfig, options: StorageOptions, on_event: EventHandler, on_exit: ExitHandler
    ) -> None:
        from kubernetes import client

        self.settings = pod_settings(config)
        self.kind_setting = config.k8s_kind
        self.poll_seconds = config.k8s_poll_seconds
        self.options = options
        self.on_event = on_event
        self.on_exit = on_exit
        self.api = api_client(config)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self._kind: str | None = None
        self._runs: dict[str, KubernetesRun] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()

    # ----------------------------------------------------------------------------- runner interface

    def start(self, job_id: str, spec: JobSpec, attempt: int = 1) -> KubernetesRun:
        """Write the spec to object storage and create the attempt's object; returns at once."""
        spec_uri = f"{spec.output_uri.rstrip('/')}/spec.json"
        with open_text(spec_uri, "w", options=self.options) as stream:
            stream.write(spec.to_json())
        kind = self.kind()
        if kind == "job" and self.settings.num_nodes > 1:
            raise FailedPrecondition(
                "multi-node training needs Kubeflow Trainer (trainjobs.trainer.kubeflow.org), "
                "which this cluster does not serve"
            )
        name = object_name(job_id, attempt)
        run = KubernetesRun(job_id, kind, name, self.settings.namespace)
        self._create(run, spec_uri)
        self._follow_in_thread(run)
        return run

    def reattach(self, job_id: str, result: dict[str, Any]) -> bool:
        """After a restart: follow the object this job's result names again; False if it is gone."""
        ref = result.get("kubernetes")
        if not isinstance(ref, dict) or not ref.get("name"):
            return False
        run = KubernetesRun(job_id, str(ref["kind"]), str(ref["name"]), str(ref["namespace"]))
        try:
            if self._read(run) is None:
                return False
        except AtlasError as error:  # the API server is unreachable now: keep following, it retries
            log.warning("job %s: cannot read %s %s yet: %s", job_id, run.kind, run.name, error)
        log.info("job %s: following %s %s/%s again", job_id, run.kind, run.namespace, run.name)
        self._follow_in_thread(run)
        return True

    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def stop(self, job_id: str) -> bool:
        """Cancel: delete the object and its pods (Foreground); False if this runner follows none."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            return False
        self._delete(run)
        return True

    def shutdown(self, timeout: float) -> None:
        """Service stop: stop following; the objects keep running and are re-attached at the next start."""
        self._closing.set()
        with self._lock:
            threads = [run.thread for run in self._runs.values() if run.thread is not None]
        for thread in threads:
            thread.join(timeout)

    def kind(self) -> str:
        """``trainjob`` or ``job``; ``auto`` asks the API server's discovery once."""
        if self._kind is None:
            self._kind = self.kind_setting if self.kind_setting != "auto" else self._discover()
            log.info("kubernetes runner: jobs run as %s", self._kind)
        return self._kind

    # --------------------------------------------------------------------------------- API calls

    def _discover(self) -> str:
        """``trainjob`` if the API server serves trainjobs.trainer.kubeflow.org/v1alpha1, else ``job``."""
        try:
            response: Any = self.custom.get_api_resources(
                TRAINJOB_GROUP, TRAINJOB_VERSION, _preload_content=False, _request_timeout=TIMEOUT
            )
        except Exception as error:
            if _status(error) == 404:
                return "job"
            raise _api_error("discover the trainer.kubeflow.org API", error) from error
        resources = json.loads(response.data).get("resources") or []
        return "trainjob" if any(r.get("name") == TRAINJOB_PLURAL for r in resources) else "job"

    def _create(self, run: KubernetesRun, spec_uri: str) -> None:
        try:
            if run.kind == "trainjob":
                body = build_trainjob(self.settings, run.job_id, run.name, spec_uri)
                self.custom.create_namespaced_custom_object(
                    TRAINJOB_GROUP, TRAINJOB_VERSION, run.namespace, TRAINJOB_PLURAL, body,
                    _preload_content=False, _request_timeout=TIMEOUT,
                )  # fmt: skip
            else:
                job = build_job(self.settings, run.job_id, run.name, spec_uri)
                self.batch.create_namespaced_job(
                    run.namespace, job, _preload_content=False, _request_timeout=TIMEOUT
                )
        except Exception as error:
            if _status(error) != 409:
                raise _api_error(f"create {run.kind} {run.namespace}/{run.name}", error) from error
            existing = self._read(run)
            if existing is None or existing["metadata"].get("labels", {}).get(LABEL_JOB_ID) != run.job_id:
                raise FailedPrecondition(
                    f"{run.kind} {run.namespace}/{run.name} exists and is not this job's"
                ) from error
            log.info("job %s: adopting the existing %s %s", run.job_id, run.kind, run.name)

    def _read(self, run: KubernetesRun) -> dict[str, Any] | None:
        """The object as a dict; None once it is gone (404)."""
        response: Any
        try:
            if run.kind == "trainjob":
                response = self.custom.get_namespaced_custom_object(
                    TRAINJOB_GROUP, TRAINJOB_VERSION, run.namespace, TRAINJOB_PLURAL, run.name,
                    _preload_content=False, _request_timeout=TIMEOUT,
                )  # fmt: skip
            else:
                response = self.batch.read_namespaced_job(
                    run.name, run.namespace, _preload_content=False, _request_timeout=TIMEOUT
                )
        except Exception as error:
            if _status(error) == 404:
                return None
            raise _api_error(f"read {run.kind} {run.namespace}/{run.name}", error) from error
        doc: dict[str, Any] = json.loads(response.data)
        return doc

    def _delete(self, run: KubernetesRun) -> None:
        try:
            if run.kind == "trainjob":
                self.custom.delete_namespaced_custom_object(
                    TRAINJOB_GROUP, TRAINJOB_VERSION, run.namespace, TRAINJOB_PLURAL, run.name,
                    propagation_policy="Foreground", _preload_content=False, _request_timeout=TIMEOUT,
                )  # fmt: skip
            else:
                self.batch.delete_namespaced_job(
                    run.name, run.namespace, propagation_policy="Foreground",
                    _preload_content=False, _request_timeout=TIMEOUT,
                )  # fmt: skip
        except Exception as error:
            if _status(error) != 404:  # already gone: cancelling is idempotent
                raise _api_error(f"delete {run.kind} {run.namespace}/{run.name}", error) from error

    def _rank0_pod(self, run: KubernetesRun) -> dict[str, Any] | None:
        response: Any = self.core.list_namespaced_pod(
            run.namespace, label_selector=f"{LABEL_RUN}={run.name}",
            _preload_content=False, _request_timeout=TIMEOUT,
        )  # fmt: skip
        pods = [
            pod
            for pod in json.loads(response.data).get("items") or []
            if all(pod["metadata"].get("labels", {}).get(label, "0") == "0" for label in RANK0_LABELS)
        ]
        pods.sort(key=lambda pod: pod["metadata"].get("creationTimestamp") or "")
        return pods[-1] if pods else None

    def _read_events(self, run: KubernetesRun, pod: dict[str, Any]) -> None:
        """Hand the run's progress lines that are new since the last read to the core."""
        try:
            response: Any = self.core.read_namespaced_pod_log(
                pod["metadata"]["name"], run.namespace, container=CONTAINER, tail_lines=LOG_TAIL_LINES,
                _preload_content=False, _request_timeout=TIMEOUT,
            )  # fmt: skip
        except Exception as error:
            if _status(error) in (400, 404):  # the container has not started yet, or the pod is gone
                return
            raise
        for line in response.data.decode(errors="replace").splitlines():
            event = parse_event(line)
            if event is None or float(event.get("time", 0)) <= run.last_time:
                continue
            run.last_time = float(event.get("time", 0))
            if event.get("event") == "failed":
                run.last_failure = event
            self.on_event(run.job_id, event)

    # ---------------------------------------------------------------------------------- following

    def _follow_in_thread(self, run: KubernetesRun) -> None:
        run.thread = threading.Thread(target=self._follow, args=(run,), name=f"k8s-{run.job_id}", daemon=True)
        with self._lock:
            self._runs[run.job_id] = run
        run.thread.start()

    def _follow(self, run: KubernetesRun) -> None:
        outcome: Outcome | None = None
        while outcome is None and not self._closing.wait(self.poll_seconds):
            try:
                outcome = self._poll(run)
            except Exception as error:  # the API server may be briefly unreachable: keep following
                log.warning("job %s: cannot read %s %s: %s", run.job_id, run.kind, run.name, error)
        with self._lock:
            self._runs.pop(run.job_id, None)
        if outcome is None:  # shutdown: the object keeps running
            return
        failure = None
        if not outcome.succeeded:
            failure = dict(run.last_failure or {"code": "INTERNAL"})
            failure["message"] = "; ".join(
                part for part in (str(failure.get("message") or ""), outcome.message) if part
            )
        self.on_exit(run.job_id, 0 if outcome.succeeded else 1, failure)

    def _poll(self, run: KubernetesRun) -> Outcome | None:
        """One look at the object and its rank-0 pod; the outcome once it has finished or is gone."""
        obj = self._read(run)
        if obj is None:
            return Outcome(True, False, "Deleted", f"{run.kind} {run.namespace}/{run.name} was deleted")
        pod = self._rank0_pod(run)
        if pod is not None:
            self._read_events(run, pod)
        outcome = trainjob_outcome(obj) if run.kind == "trainjob" else job_outcome(obj)
        detail = outcome.detail or (_pod_problem(pod) if pod is not None else "")
        if detail != run.detail:
            run.detail = detail
            self.on_event(run.job_id, {"event": "status", "detail": detail})
        if not outcome.finished:
            return None
        if not outcome.succeeded and pod is not None:
            termination = _termination(pod)
            if termination:
                outcome = Outcome(True, False, outcome.reason, f"{outcome.message} ({termination})")
        return outcome


def _pod_problem(pod: dict[str, Any]) -> str:
    """Why the pod's container cannot start (an image that cannot be pulled), or ''."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in WAITING_PROBLEMS:
            return f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}".strip()
    return ""


def _termination(pod: dict[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            reason = terminated.get("reason") or "Error"
            return f"pod {pod['metadata']['name']}: {reason}, exit code {terminated['exitCode']}"
    return ""


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _api_error(action: str, error: Exception) -> AtlasError:
    reason = getattr(error, "reason", None) or type(error).__name__
    body = getattr(error, "body", None) or ""
    return Unavailable(f"kubernetes: cannot {action}: {_status(error) or ''} {reason} {body}".strip())

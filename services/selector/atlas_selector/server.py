"""Entry point of the selector service: `atlas serve selector` or `python -m atlas_selector`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from atlas.config import add_arguments, load_config
from atlas.jobs import JobStore
from atlas.rpc.metrics import new_registry
from atlas.rpc.server import FleetServer, build_server, run_until_signalled
from atlas.selector.v1 import selector_service_pb2, selector_service_pb2_grpc
from atlas.selector.v1 import selector_service_pb2 as pb
from atlas.storage import StorageOptions, StorageRoots
from atlas_selector.config import SelectorConfig
from atlas_selector.jobs import JOB_KIND, SelectionJobs
from atlas_selector.metrics import SelectorMetrics
from atlas_selector.pipeline import BoundedPipeline
from atlas_selector.selector import Limits, Selector
from atlas_selector.servicer import SelectorServicer

SERVICE_NAME = selector_service_pb2.DESCRIPTOR.services_by_name["SelectorService"].full_name


def create_server(
    config: SelectorConfig, registry: CollectorRegistry | None = None
) -> tuple[FleetServer, int]:
    """Start the selector on the configured ports; returns the server and its bound gRPC port.

    Job state lives in ``<data_dir>/selector.sqlite``; jobs a previous process left RUNNING are
    re-queued before the server takes calls. With ``judge_transport inprocess`` the judge model is
    loaded here, before the server takes calls.
    """
    registry = registry or new_registry()
    metrics = SelectorMetrics(registry)
    judge = config.judge_settings()
    selector = Selector(
        Limits(config.max_batch_trajectories, config.max_message_chars),
        observer=metrics,
        judge=judge,
        on_judge_call=metrics.judge_call,
    )
    if judge is not None and judge.transport == "inprocess":
        selector.judge_backend(judge)  # load the model now: fail at start, not on the first request
    store = JobStore(os.path.join(config.data_dir, "selector.sqlite"), JOB_KIND)

    def count_jobs(counts: dict[str, int]) -> None:
        for state, count in counts.items():
            metrics.jobs.labels(state).set(count)

    jobs = SelectionJobs(
        store,
        selector,
        StorageRoots(config.effective_storage_roots()),
        StorageOptions(s3_endpoint_url=config.s3_endpoint_url),
        workers=config.job_workers,
        on_change=count_jobs,
    )
    pipeline: BoundedPipeline[pb.StreamSelectStepsRequest, pb.StreamSelectStepsResponse] = BoundedPipeline(
        config.stream_max_in_flight, config.stream_workers, metrics.in_flight.inc
    )
    servicer = SelectorServicer(selector, jobs, pipeline)
    server = build_server(
        config,
        lambda grpc_server: selector_service_pb2_grpc.add_SelectorServiceServicer_to_server(
            servicer, grpc_server
        ),
        [SERVICE_NAME],
        registry=registry,
    )
    server.on_stop.append(jobs.stop)
    server.on_stop.append(selector.close)
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

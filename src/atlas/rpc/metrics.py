"""Prometheus metrics every service exports, and the /metrics HTTP server.

Each server gets its own ``CollectorRegistry`` (not the process-global one), so several
servers can live in one process (tests) and a service's own metrics register beside
these. Names follow Prometheus conventions with the ``atlas_`` prefix; service-specific
metrics use ``atlas_<service>_``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

import atlas

# The *_created series double the exposition size and no dashboard of ours uses them.
disable_created_metrics()

# Seconds; from sub-millisecond metadata calls to multi-minute batch calls.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


class RpcMetrics:
    """Request count by method and status code, latency histogram, in-flight gauge."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.requests = Counter(
            "atlas_rpc_requests",
            "RPCs completed, by method and gRPC status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "atlas_rpc_request_duration_seconds",
            "Time from receiving an RPC to sending its status.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "atlas_rpc_in_flight_requests",
            "RPCs being handled right now.",
            ["service", "method"],
            registry=registry,
        )
        build = Gauge(
            "atlas_build_info",
            "Always 1; labels carry the service name and code version.",
            ["service", "version"],
            registry=registry,
        )
        build.labels(service, atlas.__version__).set(1)


def new_registry() -> CollectorRegistry:
    """A registry with the standard process and platform collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


@dataclass
class MetricsHttpServer:
    server: WSGIServer
    thread: threading.Thread
    port: int

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> MetricsHttpServer:
    """Serve ``registry`` on http://host:port/metrics in a daemon thread; port 0 picks a free one."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsHttpServer(server, thread, server.server_port)

"""Assembling and running a service's gRPC server.

``build_server`` gives every service the same plumbing: the interceptor (errors,
logging, metrics), the standard health service, server reflection, a Prometheus
/metrics HTTP server, a configurable message size limit, and a graceful stop; when
configured, TLS on the gRPC port, a bearer-token check (``atlas.rpc.auth``) and a
plaintext health-only port for probes that cannot speak TLS.
Each service's ``server.py`` calls it with its servicer.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from atlas.config import ServerConfig
from atlas.rpc.auth import BearerTokenInterceptor
from atlas.rpc.interceptors import ServerInterceptor
from atlas.rpc.metrics import MetricsHttpServer, RpcMetrics, new_registry, start_metrics_server

log = logging.getLogger("atlas.rpc.server")


def message_options(max_message_mb: int) -> list[tuple[str, int]]:
    """Channel/server options that set the largest message in both directions."""
    limit = max_message_mb * 1024 * 1024
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


@dataclass
class FleetServer:
    """A started service: the gRPC server, its health service and its metrics endpoint."""

    name: str
    server: grpc.Server
    port: int
    health: health.HealthServicer
    registry: CollectorRegistry
    service_names: Sequence[str]
    metrics_http: MetricsHttpServer | None = None
    health_server: grpc.Server | None = None
    health_port: int | None = None
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_http.port if self.metrics_http else None

    def stop(self, grace: float) -> None:
        """Stop taking calls, let in-flight calls finish for up to ``grace`` seconds, then close.

        Health flips to NOT_SERVING first so load balancers drain this instance.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("%s: stopping (grace %.1fs)", self.name, grace)
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.health_server:
            self.health_server.stop(0).wait()
        for hook in self.on_stop:
            hook()
        if self.metrics_http:
            self.metrics_http.stop()
        log.info("%s: stopped", self.name)

    def wait(self) -> None:
        self.server.wait_for_termination()


def build_server(
    config: ServerConfig,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    registry: CollectorRegistry | None = None,
) -> FleetServer:
    """Create, bind and start a server for one service.

    ``register`` adds the service's servicer(s); ``service_names`` are their full proto
    names (for health and reflection). ``registry`` lets a service register its own
    metrics before the server starts; a fresh one is made otherwise.
    """
    registry = registry or new_registry()
    metrics = RpcMetrics(registry, config.SERVICE)
    # The metrics interceptor wraps the token check, so rejected calls are counted as UNAUTHENTICATED.
    interceptors: list[grpc.ServerInterceptor] = [ServerInterceptor(metrics)]
    tokens = config.auth_tokens()
    if tokens:
        interceptors.append(BearerTokenInterceptor(tokens))
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.max_workers, thread_name_prefix=f"{config.SERVICE}-rpc"
        ),
        interceptors=interceptors,
        options=message_options(config.max_message_mb),
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{config.host}:{config.port}"
    credentials = server_credentials(config)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC port {address}")
    health_server, health_port = None, None
    if config.health_port >= 0:
        health_server, health_port = _start_health_server(config, health_servicer)
    metrics_http = None
    if config.metrics_port >= 0:
        metrics_http = start_metrics_server(config.host, config.metrics_port, registry)
    server.start()
    for name in [*service_names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    fleet_server = FleetServer(
        name=config.SERVICE,
        server=server,
        port=port,
        health=health_servicer,
        registry=registry,
        service_names=service_names,
        metrics_http=metrics_http,
        health_server=health_server,
        health_port=health_port,
    )
    log.info(
        "%s: serving gRPC on %s:%d (%s, %s), metrics on %s%s",
        config.SERVICE,
        config.host,
        port,
        "TLS" if credentials else "plaintext",
        f"{len(tokens)} bearer token(s) accepted" if tokens else "no token needed",
        f"http://{config.host}:{fleet_server.metrics_port}/metrics" if metrics_http else "(disabled)",
        f", health-only port {health_port}" if health_port else "",
    )
    if tokens and not credentials:
        log.warning("%s: bearer tokens travel in plaintext; set tls_cert_file/tls_key_file", config.SERVICE)
    return fleet_server


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, or None for a plaintext port."""
    if not config.tls_cert_file:
        return None
    with open(config.tls_key_file, "rb") as key, open(config.tls_cert_file, "rb") as cert:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


def _start_health_server(
    config: ServerConfig, health_servicer: health.HealthServicer
) -> tuple[grpc.Server, int]:
    """A plaintext server with only the health service (sharing its state) for kubelet probes."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{config.SERVICE}-health")
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{config.host}:{config.health_port}")
    if port == 0:
        raise OSError(f"cannot bind health port {config.host}:{config.health_port}")
    server.start()
    return server, port


def run_until_signalled(server: FleetServer, grace: float) -> None:
    """Block until SIGTERM or SIGINT, then stop gracefully. Call from the main thread."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: received %s", server.name, signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # A ready line on stdout lets supervisors and tests see the bound ports.
        print(
            f"READY service={server.name} port={server.port} metrics_port={server.metrics_port or ''}"
            + (f" health_port={server.health_port}" if server.health_port else ""),
            flush=True,
        )
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop(grace)

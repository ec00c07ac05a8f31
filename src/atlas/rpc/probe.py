"""A gRPC health probe for container HEALTHCHECKs: ``python -m atlas.rpc.probe SERVICE``.

It reads the service's own settings (ATLAS_<SERVICE>_* variables, as ``atlas serve`` does),
so the image's HEALTHCHECK follows whatever port the container was configured with. With
TLS on it asks the plaintext health-only port (``health_port``), which is what kubelet
probes use too; the bearer token is never needed (health is exempt). Exit 0 = SERVING.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlas.config import ServerConfig, load_config

CONFIG_CLASSES = {
    "selector": "atlas_selector.config:SelectorConfig",
    "trainer": "atlas_trainer.config:TrainerConfig",
    "evaluator": "atlas_evaluator.config:EvaluatorConfig",
}


def probe_target(config: ServerConfig) -> str:
    """The loopback address that answers plaintext health checks for this config."""
    if config.health_port > 0:
        return f"127.0.0.1:{config.health_port}"
    if config.tls_cert_file:
        raise SystemExit("probe: TLS is on; set health_port so health can be checked without TLS")
    return f"127.0.0.1:{config.port}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in CONFIG_CLASSES:
        print(f"usage: python -m atlas.rpc.probe {{{','.join(CONFIG_CLASSES)}}}", file=sys.stderr)
        return 2
    module, _, name = CONFIG_CLASSES[args[0]].partition(":")
    config = load_config(getattr(importlib.import_module(module), name), {})
    with grpc.insecure_channel(probe_target(config)) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as exc:
            print(f"probe: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"probe: {args[0]} {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())

"""The shared server plumbing on a real in-process gRPC server with a test-only service.

A generic handler stands in for a service here so the plumbing (error mapping,
metrics, message limits, graceful stop) is tested apart from any servicer.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from atlas import errors
from atlas.config import ServerConfig
from atlas.rpc.client import BaseClient, error_from_rpc
from atlas.rpc.server import FleetServer, build_server

SERVICE = "atlas.test.v1.PlumbingService"


def _identity(data: bytes) -> bytes:
    return data


class _Behaviours:
    """Handlers keyed by method name; requests and responses are raw bytes."""

    def echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    def invalid(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        raise errors.InvalidArgument("max_ratio must be in (0, 1], got 1.5", field_path="config.max_ratio")

    def not_found(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        raise errors.NotFound("no job 'j-42'")

    def crash(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        raise RuntimeError("secret internal detail /etc/passwd")

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(1.0)
        return b"done"

    def stream_then_fail(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"one"
        raise errors.FailedPrecondition("dataset has no manifest")


def _register(server: grpc.Server) -> None:
    behaviours = _Behaviours()
    handlers: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(behaviours, name), request_deserializer=_identity, response_serializer=_identity
        )
        for name in ("echo", "invalid", "not_found", "crash", "slow")
    }
    handlers["stream_then_fail"] = grpc.unary_stream_rpc_method_handler(
        behaviours.stream_then_fail, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])


class PlumbingConfig(ServerConfig):
    SERVICE = "plumbing"


@pytest.fixture()
def server() -> Iterator[FleetServer]:
    config = PlumbingConfig(port=0, metrics_port=0, max_message_mb=1, grace_seconds=5)
    running = build_server(config, _register, [SERVICE])
    yield running
    running.stop(0)


def _call(server: FleetServer, method: str, payload: bytes = b"x", timeout: float = 10) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=_identity, response_deserializer=_identity
        )
        return stub(payload, timeout=timeout)  # type: ignore[no-any-return]


def _rpc_error(server: FleetServer, method: str, payload: bytes = b"x") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        _call(server, method, payload)
    return caught.value


def test_invalid_argument_carries_field_path(server: FleetServer) -> None:
    exc = _rpc_error(server, "invalid")
    assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "config.max_ratio" in exc.details()  # type: ignore[attr-defined]
    translated = error_from_rpc(exc)
    assert isinstance(translated, errors.InvalidArgument)
    assert translated.field_path == "config.max_ratio"
    assert translated.message == "max_ratio must be in (0, 1], got 1.5"


def test_domain_errors_map_to_their_codes(server: FleetServer) -> None:
    exc = _rpc_error(server, "not_found")
    assert exc.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert isinstance(error_from_rpc(exc), errors.NotFound)


def test_unexpected_exception_is_internal_without_details(server: FleetServer) -> None:
    exc = _rpc_error(server, "crash")
    assert exc.code() is grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert "secret" not in exc.details()  # type: ignore[attr-defined]
    assert "request_id=" in exc.details()  # type: ignore[attr-defined]
    assert _call(server, "echo", b"still up") == b"still up"


def test_error_in_a_response_stream_keeps_its_code(server: FleetServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = channel.unary_stream(
            f"/{SERVICE}/stream_then_fail", request_serializer=_identity, response_deserializer=_identity
        )
        received = []
        with pytest.raises(grpc.RpcError) as caught:
            for item in stub(b"x", timeout=10):
                received.append(item)
    assert received == [b"one"]
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]


def test_max_message_size_is_enforced(server: FleetServer) -> None:
    assert _call(server, "echo", b"a" * 900_000) == b"a" * 900_000
    exc = _rpc_error(server, "echo", b"a" * 2_000_000)
    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


def test_metrics_count_requests_by_method_and_code(server: FleetServer) -> None:
    _call(server, "echo")
    _rpc_error(server, "invalid")
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    )
    assert f'atlas_rpc_requests_total{{code="OK",method="/{SERVICE}/echo",service="plumbing"}} 1.0' in body
    assert f'code="INVALID_ARGUMENT",method="/{SERVICE}/invalid"' in body
    assert "atlas_rpc_request_duration_seconds_bucket" in body
    assert "atlas_rpc_in_flight_requests" in body
    assert 'atlas_build_info{service="plumbing"' in body


def test_graceful_stop_finishes_in_flight_calls_and_refuses_new_ones(server: FleetServer) -> None:
    result: dict[str, Any] = {}

    def call_slow() -> None:
        try:
            result["reply"] = _call(server, "slow")
        except grpc.RpcError as exc:  # pragma: no cover - reported by the assertion below
            result["error"] = exc

    worker = threading.Thread(target=call_slow)
    worker.start()
    time.sleep(0.3)  # the slow call is now in flight
    started = time.monotonic()
    server.stop(grace=5)
    worker.join(timeout=10)
    assert result.get("reply") == b"done", result
    assert time.monotonic() - started < 5
    with pytest.raises(grpc.RpcError):
        _call(server, "echo", timeout=1)


def test_client_retries_only_idempotent_calls_on_unavailable() -> None:
    attempts = {"n": 0}

    def flaky(request: bytes, timeout: float) -> bytes:
        attempts["n"] += 1
        raise _Unavailable()

    client = BaseClient("127.0.0.1:1", retries=2)
    with pytest.raises(errors.Unavailable):
        client._unary(flaky, b"", timeout=1, idempotent=True)
    assert attempts["n"] == 3
    attempts["n"] = 0
    with pytest.raises(errors.Unavailable):
        client._unary(flaky, b"", timeout=1, idempotent=False)
    assert attempts["n"] == 1
    client.close()


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"

    def trailing_metadata(self) -> tuple[()]:
        return ()

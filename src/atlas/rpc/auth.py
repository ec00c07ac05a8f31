"""Bearer-token authentication of gRPC calls, server side and client side.

The server accepts a call when its ``authorization`` metadata is ``Bearer <token>`` for one
of the configured tokens (several while a token is rotated), compared in constant time so
the answer's timing says nothing about how much of a guess was right. The gRPC health
service is exempt: kubelet gRPC probes and load balancers send no metadata. Reflection is
*not* exempt: it describes the whole API, so grpcurl needs the token too
(``grpcurl -H "authorization: Bearer $TOKEN" ...``).

Clients add the header with :class:`BearerTokenClientInterceptor`; over TLS the token is
encrypted with the rest of the call.
"""

from __future__ import annotations

import collections
import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
AUTH_HEADER = "authorization"


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of an ``authorization: Bearer <token>`` header, or "" if there is none."""
    for key, value in metadata or ():
        if key.lower() == AUTH_HEADER and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Rejects every call but health checks unless it carries one of ``tokens``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("BearerTokenInterceptor needs at least one token")
        self._tokens = [token.encode() for token in tokens]

    def accepts(self, token: str) -> bool:
        given = token.encode()
        # Compare against every token (no early exit) so timing does not tell which one matched.
        matches = [hmac.compare_digest(given, accepted) for accepted in self._tokens]
        return bool(token) and any(matches)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        if self.accepts(token):
            return handler
        reason = "a wrong bearer token" if token else "no 'authorization: Bearer <token>' metadata"
        return _rejecting(handler, f"unauthenticated: the call carries {reason}")


def _rejecting(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED."""

    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def abort_stream(_request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - abort raises; the yield makes this a generator

    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, abort),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, abort_stream),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, abort),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, abort_stream),
    )
    for behavior, make, rejecting in kinds:
        if behavior is not None:
            return make(rejecting, handler.request_deserializer, handler.response_serializer)
    raise AssertionError("a gRPC handler has one of four shapes")


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class BearerTokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._header = (AUTH_HEADER, f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._with_token(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._with_token(details), request_iterator)


__all__ = ["BearerTokenClientInterceptor", "BearerTokenInterceptor", "bearer_token"]

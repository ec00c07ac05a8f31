"""The one server interceptor: error mapping, request logging and RPC metrics.

Servicers raise :class:`atlas.errors.AtlasError` subclasses; this interceptor turns
them into gRPC statuses. INVALID_ARGUMENT (and any error with a ``field_path``)
carries a ``google.rpc.BadRequest`` detail naming the field, plus the path in the
message text, so plain clients such as grpcurl see it too. Any other exception
becomes INTERNAL with a generic message and a request id; the traceback goes to the
log under that id, never to the caller.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from atlas.errors import AtlasError
from atlas.rpc.metrics import RpcMetrics

log = logging.getLogger("atlas.rpc")

# Health checks and reflection run constantly (probes); log them only at DEBUG.
QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def status_for(error: AtlasError) -> grpc.Status:
    """The rich gRPC status for a domain error."""
    code = grpc.StatusCode[error.code]
    details = []
    if error.field_path:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field_path, description=error.message
        )
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        details.append(packed)
    status = status_pb2.Status(code=code.value[0], message=str(error), details=details)
    return rpc_status.to_status(status)


def _context_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


class ServerInterceptor(grpc.ServerInterceptor):
    """Wraps every handler: metrics, one log line per call, domain errors -> statuses."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _wrap_unary(self, behavior: Callable[[Any, grpc.ServicerContext], Any], method: str) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(self._metrics, method, context)
            try:
                response = behavior(request, context)
            except BaseException as exc:
                call.fail(exc)  # aborts the RPC (raises)
                raise
            call.finish()
            return response

        return handle

    def _wrap_stream(
        self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]], method: str
    ) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(self._metrics, method, context)
            try:
                yield from behavior(request, context)
            except GeneratorExit:
                # The client cancelled or the deadline passed; grpc closes the generator.
                call.finish(grpc.StatusCode.CANCELLED)
                raise
            except BaseException as exc:
                call.fail(exc)
                raise
            call.finish()

        return handle


class _Call:
    """Book-keeping for one RPC: timing, in-flight gauge, the final log line."""

    def __init__(self, metrics: RpcMetrics, method: str, context: grpc.ServicerContext) -> None:
        self._metrics = metrics
        self._method = method
        self._context = context
        self._start = time.perf_counter()
        self._done = False
        metrics.in_flight.labels(metrics.service, method).inc()

    def finish(self, code: grpc.StatusCode | None = None, detail: str = "") -> None:
        if self._done:
            return
        self._done = True
        code = code or _context_code(self._context) or grpc.StatusCode.OK
        elapsed = time.perf_counter() - self._start
        m = self._metrics
        m.in_flight.labels(m.service, self._method).dec()
        m.requests.labels(m.service, self._method, code.name).inc()
        m.latency.labels(m.service, self._method).observe(elapsed)
        level = logging.DEBUG if self._method.startswith(QUIET_PREFIXES) else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "rpc method=%s code=%s duration_ms=%.1f peer=%s%s",
                self._method,
                code.name,
                elapsed * 1000,
                self._context.peer(),
                f" error={detail!r}" if detail else "",
            )

    def fail(self, exc: BaseException) -> None:
        """Record the failure and abort the RPC with the right status (always raises)."""
        if isinstance(exc, AtlasError):
            self.finish(grpc.StatusCode[exc.code], str(exc))
            self._context.abort_with_status(status_for(exc))
        already = _context_code(self._context)
        if already is not None and already is not grpc.StatusCode.OK:
            # The handler aborted the call itself (context.abort); keep its status.
            self.finish(already)
            raise exc
        request_id = uuid.uuid4().hex[:12]
        log.error("rpc method=%s request_id=%s unexpected error", self._method, request_id, exc_info=exc)
        self.finish(grpc.StatusCode.INTERNAL, f"unexpected error, request_id={request_id}")
        self._context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error (request_id={request_id}); the server log has the details",
        )


__all__ = ["ServerInterceptor", "status_for"]

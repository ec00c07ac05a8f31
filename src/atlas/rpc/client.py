"""Client plumbing shared by the typed service clients.

Every call has a deadline. Only idempotent calls (Get/List/Cancel/Watch setup) are
retried, and only on UNAVAILABLE, with capped exponential backoff; tests pass
``retries=0`` so a retry never hides a failure. Errors come back as
:class:`atlas.errors.AtlasError` subclasses with the server's field path, so the CLI
and library users handle one error hierarchy whether a call ran locally or remotely.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atlas import errors
from atlas.rpc.server import message_options

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
_ERRORS_BY_CODE: dict[str, type[errors.AtlasError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.AlreadyExists,
        errors.PermissionDenied,
        errors.FailedPrecondition,
        errors.ResourceExhausted,
        errors.Unavailable,
        errors.Unimplemented,
        errors.Cancelled,
    )
}


def error_from_rpc(exc: grpc.RpcError) -> errors.AtlasError:
    """Turn a failed call into the matching AtlasError, keeping the field path if any."""
    code: grpc.StatusCode = exc.code()
    message: str = exc.details() or code.name
    field_path = ""
    status = rpc_status.from_call(exc)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                if bad_request.field_violations:
                    field_path = bad_request.field_violations[0].field
                    message = bad_request.field_violations[0].description
    cls = _ERRORS_BY_CODE.get(code.name, errors.AtlasError)
    error = cls(message, field_path=field_path)
    if cls is errors.AtlasError:
        error.code = code.name
    return error


def connect(target: str, *, max_message_mb: int = 64) -> grpc.Channel:
    """An insecure channel to ``host:port`` (TLS arrives with the production overlay)."""
    return grpc.insecure_channel(target, options=message_options(max_message_mb))


class BaseClient:
    """Deadlines, retries of idempotent calls, and error translation for one channel."""

    def __init__(
        self,
        target: str | grpc.Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        max_message_mb: int = 64,
    ) -> None:
        self._owns_channel = isinstance(target, str)
        self.channel = connect(target, max_message_mb=max_message_mb) if isinstance(target, str) else target
        self.timeout = timeout
        self.retries = retries

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _unary(self, method: Callable[..., T], request: Any, *, timeout: float | None, idempotent: bool) -> T:
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return method(request, timeout=timeout or self.timeout)
            except grpc.RpcError as exc:
                retryable = exc.code() is grpc.StatusCode.UNAVAILABLE
                if not retryable or attempt == attempts - 1:
                    raise error_from_rpc(exc) from None
                time.sleep(min(0.2 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def _stream(
        self, method: Callable[..., Iterator[T]], request: Any, *, timeout: float | None
    ) -> Iterator[T]:
        """Iterate a server stream, translating errors. ``timeout`` bounds the whole stream."""
        try:
            yield from method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

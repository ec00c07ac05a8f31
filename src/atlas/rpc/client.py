"""Client plumbing shared by the typed service clients.

Every call has a deadline. Only idempotent calls (Get/List/Cancel/Watch setup) are
retried, and only on UNAVAILABLE, with capped exponential backoff; tests pass
``retries=0`` so a retry never hides a failure. Errors come back as
:class:`atlas.errors.AtlasError` subclasses with the server's field path, so the CLI
and library users handle one error hierarchy whether a call ran locally or remotely.
TLS and the bearer token come from :class:`ChannelSecurity`, by default read from
``ATLAS_TLS_CA_FILE`` / ``ATLAS_AUTH_TOKEN`` (docs/deploy.md), so every client and every
``--server`` option of the CLI reaches a secured deployment without new flags.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atlas import errors
from atlas.rpc.auth import BearerTokenClientInterceptor
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


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client reaches a service that has TLS and/or a bearer token switched on.

    ``ca_file``: PEM of the CA (or the self-signed certificate) to trust; empty means a plaintext
    channel. ``token``: sent as ``authorization: Bearer <token>``. ``server_name``: the name to
    check in the server's certificate when it differs from the host dialled (an IP, a port-forward).
    """

    ca_file: str = ""
    token: str = ""
    server_name: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChannelSecurity:
        """Read ATLAS_TLS_CA_FILE, ATLAS_AUTH_TOKEN (or ATLAS_AUTH_TOKEN_FILE), ATLAS_TLS_SERVER_NAME.

        Every client (the CLIs' --server included) honours these, so switching a deployment to
        TLS + token needs no new flag on any command.
        """
        env = os.environ if environ is None else environ
        token = env.get("ATLAS_AUTH_TOKEN", "").strip()
        token_file = env.get("ATLAS_AUTH_TOKEN_FILE", "")
        if not token and token_file:
            with open(token_file, encoding="utf-8") as lines:
                token = next((line.strip() for line in lines if line.strip()), "")
        return cls(
            ca_file=env.get("ATLAS_TLS_CA_FILE", ""),
            token=token,
            server_name=env.get("ATLAS_TLS_SERVER_NAME", ""),
        )


def connect(
    target: str, *, max_message_mb: int = 64, security: ChannelSecurity | None = None
) -> grpc.Channel:
    """A channel to ``host:port``: TLS when a CA is given, the bearer token on every call if set.

    ``security`` defaults to :meth:`ChannelSecurity.from_env`.
    """
    security = ChannelSecurity.from_env() if security is None else security
    options: list[tuple[str, Any]] = list(message_options(max_message_mb))
    if security.ca_file:
        with open(security.ca_file, "rb") as pem:
            credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
        if security.server_name:
            options.append(("grpc.ssl_target_name_override", security.server_name))
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    if security.token:
        return grpc.intercept_channel(channel, BearerTokenClientInterceptor(security.token))
    return channel


class BaseClient:
    """Deadlines, retries of idempotent calls, and error translation for one channel."""

    def __init__(
        self,
        target: str | grpc.Channel,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        max_message_mb: int = 64,
        security: ChannelSecurity | None = None,
    ) -> None:
        self._owns_channel = isinstance(target, str)
        self.channel = (
            connect(target, max_message_mb=max_message_mb, security=security)
            if isinstance(target, str)
            else target
        )
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

"""The fleet's error hierarchy, shared by every service.

Domain code raises these; one server interceptor (``atlas.rpc.interceptors``) maps
``AtlasError.code`` to a gRPC status code, and the CLI prints ``str(error)``.
Nothing here imports grpc, so core logic stays testable without it.
"""

from __future__ import annotations


class AtlasError(Exception):
    """Base of every error the fleet reports to a caller.

    ``code`` is the name of a ``grpc.StatusCode`` member. ``field_path`` names the
    offending request field (``spec.lora.r``, ``trajectories[3].messages[0].role``)
    when one field is to blame.
    """

    code = "INTERNAL"

    def __init__(self, message: str, *, field_path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field_path = field_path

    def __str__(self) -> str:
        return f"{self.field_path}: {self.message}" if self.field_path else self.message


class InvalidArgument(AtlasError):
    """The request (or a file) is malformed; retrying it unchanged cannot succeed."""

    code = "INVALID_ARGUMENT"


class NotFound(AtlasError):
    code = "NOT_FOUND"


class AlreadyExists(AtlasError):
    code = "ALREADY_EXISTS"


class PermissionDenied(AtlasError):
    code = "PERMISSION_DENIED"


class FailedPrecondition(AtlasError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(AtlasError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(AtlasError):
    code = "UNAVAILABLE"


class Unimplemented(AtlasError):
    code = "UNIMPLEMENTED"


class Cancelled(AtlasError):
    code = "CANCELLED"

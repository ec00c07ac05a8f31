"""Errors of the trainer service: the fleet's hierarchy (atlas.errors); the interceptor maps each to a
gRPC status code. The trainer raises no error kinds of its own."""

from __future__ import annotations

from atlas.errors import (
    AlreadyExists,
    AtlasError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unimplemented,
)

__all__ = [
    "AlreadyExists",
    "AtlasError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unimplemented",
]

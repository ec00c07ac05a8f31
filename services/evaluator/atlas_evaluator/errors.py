"""Errors of the evaluator service: the fleet's hierarchy (atlas.errors) plus what only the evaluator raises.

The server interceptor maps every one of them to a gRPC status code.
"""

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

ISSUE = "E"


class NotBuiltYet(Unimplemented):
    """An RPC of the contract whose implementation has not landed yet."""

    def __init__(self, rpc: str) -> None:
        super().__init__(f"{rpc} is not built yet; it arrives with issue [{ISSUE}] (evaluator service)")


__all__ = [
    "AlreadyExists",
    "AtlasError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotBuiltYet",
    "NotFound",
    "PermissionDenied",
]

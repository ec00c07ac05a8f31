"""Errors of the selector service: the fleet's hierarchy (atlas.errors) plus what only the selector raises.

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
)
from atlas_selector.contract import ContractViolation

ISSUE = "B"

__all__ = [
    "AlreadyExists",
    "AtlasError",
    "ContractViolation",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
]

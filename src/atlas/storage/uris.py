"""Storage URIs: the forms the fleet accepts, and the per-service allowlist of roots.

Only two kinds of location exist: local paths (bare, or ``file:///abs``; the embedded
default) and ``s3://bucket/key``. Everything else (``http://``, ``memory://``, chained
``zip::file://`` URLs, ``file://host/...``) is refused before fsspec ever sees the string,
because fsspec would happily open any of them and each is a way out of the allowlist.

Percent-escapes are refused rather than decoded: fsspec and botocore treat ``%2e%2e`` as
literal characters, while proxies and S3-compatible servers may decode them, so the same
string would name different objects at different layers. A clear refusal beats guessing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from atlas.errors import InvalidArgument, PermissionDenied

Protocol = Literal["file", "s3"]

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# S3's bucket naming rules (lowercase, 3-63 chars); also keeps ARNs and "host:port" out of the bucket.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed, canonical storage URI.

    ``path`` is an absolute local path with symlinks resolved, or ``bucket/key`` for S3
    (no trailing slash; ``key`` may be empty for a whole bucket).
    """

    protocol: Protocol
    path: str

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def uri(self) -> str:
        """The canonical spelling: a plain absolute path for local files, ``s3://bucket/key`` for S3."""
        return self.path if self.is_local else f"s3://{self.path}"

    @property
    def name(self) -> str:
        """The last path segment (the file or directory name)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, name: str) -> Location:
        """The location of ``name`` (one or more ``/``-separated segments) under this one."""
        return Location(self.protocol, f"{self.path.rstrip('/')}/{name}")

    def is_within(self, root: Location) -> bool:
        """Whether this location is ``root`` or below it; ``s3://b/data-x`` is not below ``s3://b/data``."""
        if self.protocol != root.protocol:
            return False
        if self.is_local:
            return os.path.commonpath([self.path, root.path]) == root.path
        return self.path == root.path or self.path.startswith(root.path + "/")

    def __str__(self) -> str:
        return self.uri


def parse_uri(uri: str, *, field: str = "") -> Location:
    """Parse and canonicalise ``uri``, refusing every form the fleet does not speak.

    Raises PermissionDenied for other protocols, ``file://`` with a host, percent-escapes
    and ``.``/``..`` segments in S3 keys; InvalidArgument for an empty or malformed URI.
    Local paths are made absolute (against the working directory) and symlinks resolved,
    so a later containment check compares where the bytes really are.
    """
    if not uri:
        raise InvalidArgument("a storage URI must not be empty", field_path=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise InvalidArgument(f"storage URI {uri!r} contains control characters", field_path=field)
    if _PERCENT_ESCAPE.search(uri):
        raise _refused(uri, "percent-encoded characters are not accepted", field)
    if "::" in uri:
        raise _refused(uri, "chained fsspec URLs ('::') are not accepted", field)
    if uri.startswith("s3://"):
        return _parse_s3(uri, field)
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if not path.startswith("/"):
            raise _refused(uri, "a file:// URI must be absolute and name no host (file:///path)", field)
        return Location("file", os.path.realpath(path))
    if "://" in uri or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri):
        raise _refused(uri, "only local paths, file:///... and s3://bucket/key are supported", field)
    return Location("file", os.path.realpath(uri))


def _parse_s3(uri: str, field: str) -> Location:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        raise InvalidArgument(f"storage URI {uri!r} does not name a valid S3 bucket", field_path=field)
    if "?" in key or "#" in key:
        # s3fs strips "?versionId=..." from keys; a URI must name exactly one object.
        raise InvalidArgument(f"storage URI {uri!r} must not contain '?' or '#'", field_path=field)
    key = key.rstrip("/")
    segments = key.split("/") if key else []
    if any(segment in (".", "..") for segment in segments):
        raise _refused(uri, "'.' and '..' segments are not accepted in S3 keys", field)
    if any(segment == "" for segment in segments):
        raise InvalidArgument(f"storage URI {uri!r} has an empty path segment ('//')", field_path=field)
    return Location("s3", f"{bucket}/{key}" if key else bucket)


def _refused(uri: str, reason: str, field: str) -> PermissionDenied:
    return PermissionDenied(f"storage URI {uri!r} is refused: {reason}", field_path=field)


class StorageRoots:
    """The storage allowlist of one service: every URI a request names must fall under a root.

    Services call :meth:`check` on each URI field of a request before touching storage, so a
    caller can never make a service read or write outside the roots its operator configured.
    An empty allowlist refuses everything (a service with no roots has no storage).
    """

    def __init__(self, roots: Iterable[str]) -> None:
        """Parse every root; InvalidArgument lists all unusable roots at once."""
        parsed: list[Location] = []
        problems: list[str] = []
        for root in roots:
            try:
                parsed.append(parse_uri(root))
            except (InvalidArgument, PermissionDenied) as error:
                problems.append(error.message)
        if problems:
            raise InvalidArgument("invalid storage roots: " + "; ".join(problems), field_path="storage_roots")
        self._roots = tuple(dict.fromkeys(parsed))

    @property
    def roots(self) -> tuple[str, ...]:
        """The canonical root URIs, in configuration order."""
        return tuple(root.uri for root in self._roots)

    def check(self, uri: str, *, field: str) -> str:
        """The canonical form of ``uri`` if it lies under a root; PermissionDenied otherwise.

        Local URIs are compared after resolving ``..`` and symlinks, so a link inside a root that
        points outside it is refused. The check does not stop a symlink planted *after* it; roots
        must not be writable by the parties whose requests they guard.
        """
        try:
            location = parse_uri(uri, field=field)
        except PermissionDenied as error:
            raise PermissionDenied(f"{error.message}; {self._describe()}", field_path=field) from None
        if not any(location.is_within(root) for root in self._roots):
            raise PermissionDenied(
                f"storage URI {uri!r} is outside the allowed storage roots; {self._describe()}",
                field_path=field,
            )
        return location.uri

    def _describe(self) -> str:
        if not self._roots:
            return "no storage roots are configured, so every URI is refused"
        return "allowed roots: " + ", ".join(self.roots)

    def __repr__(self) -> str:
        return f"StorageRoots({list(self.roots)!r})"

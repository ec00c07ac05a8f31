"""Reaching object storage: fsspec filesystems per location, and one translation of failures.

Local paths use the local filesystem directly; ``s3://`` goes through s3fs (imported only
when an ``s3://`` URI is used, so the CPU/laptop install needs no AWS libraries).

Every backend failure leaves this package as an :class:`~atlas.errors.AtlasError` that names
the URI: a missing object is NotFound, refused credentials PermissionDenied, no
credentials or an unreachable endpoint Unavailable, corrupt gzip InvalidArgument. Callers
never see a botocore or aiohttp traceback.
"""

from __future__ import annotations

import errno
import functools
import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from atlas.errors import (
    AlreadyExists,
    AtlasError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from atlas.storage.uris import Location

# s3fs reads ahead and buffers uploads in blocks of this size: it bounds the memory one open
# S3 file holds (s3fs's default is 50 MiB) and stays above S3's 5 MiB multipart minimum.
S3_BLOCK_SIZE = 8 * 2**20


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """How to reach object storage.

    Holds no secrets, so it can be logged and put in configs: S3 credentials come only from
    the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
    shared config files, instance roles).
    """

    s3_endpoint_url: str = ""
    """S3-protocol endpoint (MinIO, moto, Ceph...). Empty: ``AWS_ENDPOINT_URL_S3``, then
    ``AWS_ENDPOINT_URL``, then AWS itself."""
    s3_region: str = ""
    """Region for request signing. Empty: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / botocore's default."""
    s3_max_attempts: int = 3
    """Attempts per S3 request (botocore "standard" retries) before the call fails as Unavailable."""


_DEFAULT_OPTIONS = StorageOptions()


def filesystem(location: Location, options: StorageOptions | None = None) -> AbstractFileSystem:
    """The fsspec filesystem serving ``location`` (instances are cached by fsspec per options)."""
    if location.is_local:
        return LocalFileSystem()
    return _s3_filesystem(options or _DEFAULT_OPTIONS)


def _s3_filesystem(options: StorageOptions) -> AbstractFileSystem:
    try:
        import s3fs
    except ImportError:
        raise FailedPrecondition("s3:// URIs need the s3fs package (pip install 'atlas-fleet[s3]')") from None
    endpoint = (
        options.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    client_kwargs: dict[str, Any] = {}
    if options.s3_region:
        client_kwargs["region_name"] = options.s3_region
    fs: AbstractFileSystem = s3fs.S3FileSystem(
        endpoint_url=endpoint or None,
        client_kwargs=client_kwargs,
        config_kwargs={"retries": {"max_attempts": options.s3_max_attempts, "mode": "standard"}},
        default_block_size=S3_BLOCK_SIZE,
        # Listings are never cached: a reader must see a manifest the moment a writer publishes it.
        use_listings_cache=False,
    )
    return fs


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "could not talk to the store" (no credentials, endpoint down)."""
    types: list[type[BaseException]] = []
    with suppress(ImportError):
        import botocore.exceptions

        types.append(botocore.exceptions.BotoCoreError)
    with suppress(ImportError):
        import aiohttp

        types.append(aiohttp.ClientError)
    return tuple(types)


def translate_error(uri: str, error: BaseException) -> AtlasError | None:
    """The AtlasError a storage failure on ``uri`` stands for, or None if it is not one."""
    if isinstance(error, AtlasError):
        return error
    if isinstance(error, FileNotFoundError):
        return NotFound(f"{uri} does not exist")
    if isinstance(error, FileExistsError):
        return AlreadyExists(f"{uri} already exists")
    if isinstance(error, PermissionError):
        return PermissionDenied(f"storage refused access to {uri}: {error}")
    if isinstance(error, IsADirectoryError | NotADirectoryError):
        return FailedPrecondition(f"{uri}: {error.strerror or error}")
    if isinstance(error, gzip.BadGzipFile | zlib.error | EOFError):
        return InvalidArgument(f"{uri} is not a valid gzip file (corrupt or truncated): {error}")
    if isinstance(error, UnicodeDecodeError):
        return InvalidArgument(f"{uri} is not UTF-8 text: {error}")
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted(f"no space left writing {uri}: {error}")
    if isinstance(error, OSError) and error.errno == errno.EINVAL:
        return InvalidArgument(f"storage rejected {uri}: {error}")
    if isinstance(error, (OSError, *_transport_errors())):
        return Unavailable(f"storage is unavailable for {uri}: {type(error).__name__}: {error}")
    return None


_DECODE_ERRORS = (gzip.BadGzipFile, zlib.error, EOFError, UnicodeDecodeError)


@contextmanager
def decode_errors(uri: str) -> Iterator[None]:
    """Re-raise corrupt-gzip and bad-UTF-8 errors inside the block as InvalidArgument naming ``uri``.

    Narrower than :func:`storage_errors`, so it can wrap a caller's loop over the stream without
    relabelling the caller's own exceptions; backend errors are translated where they happen.
    """
    try:
        yield
    except _DECODE_ERRORS as error:
        raise translate_error(uri, error) from error  # type: ignore[misc]


@contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """Re-raise storage failures inside the block as AtlasErrors naming ``uri``."""
    try:
        yield
    except AtlasError:
        raise
    except Exception as error:
        translated = translate_error(uri, error)
        if translated is None:
            raise
        raise translated from error

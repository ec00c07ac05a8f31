"""Byte and text streams over storage files: hashing taps, gzip layers, atomic writes."""

from __future__ import annotations

import gzip
import io
import os
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import IO, Any, cast

from atlas.errors import FailedPrecondition
from atlas.storage.backend import StorageOptions, filesystem, storage_errors
from atlas.storage.uris import Location

_GZIP_LEVEL = 6  # zlib's default: level 9 costs ~3x the CPU for a few percent smaller parts


class _Tap(io.RawIOBase):
    """Passes bytes to or from a backend file, feeding each chunk to ``on_bytes`` (hashing,
    counting) and translating backend errors. Closing it leaves the backend file open."""

    def __init__(self, inner: IO[bytes], uri: str, on_bytes: Callable[[bytes], None] | None) -> None:
        super().__init__()
        self._inner = inner
        self._uri = uri
        self._on_bytes = on_bytes
        self.dropping = False

    def readable(self) -> bool:
        return self._inner.readable()

    def writable(self) -> bool:
        return self._inner.writable()

    def readinto(self, buffer: Any) -> int:
        with storage_errors(self._uri):
            data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        if self._on_bytes is not None and data:
            self._on_bytes(data)
        return len(data)

    def write(self, data: Any) -> int:
        if self.dropping:
            return len(data)
        chunk = bytes(data)
        with storage_errors(self._uri):
            self._inner.write(chunk)
        if self._on_bytes is not None:
            self._on_bytes(chunk)
        return len(chunk)


def text_reader(binary: IO[bytes], uri: str, on_bytes: Callable[[bytes], None] | None = None) -> IO[str]:
    """A text stream over ``binary`` (gunzipped for ``.gz``) that reads in small chunks.

    Lines split on ``"\\n"`` only (JSON strings may hold U+2028 raw); a leading UTF-8 BOM is dropped.
    """
    stream: IO[bytes] = io.BufferedReader(_Tap(binary, uri, on_bytes), 2**16)
    if uri.endswith(".gz"):
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="\n")


class TextWriter:
    """Text layers over a binary backend file: UTF-8, gzipped for ``.gz``, bytes tapped on the way."""

    def __init__(self, binary: IO[bytes], uri: str, on_bytes: Callable[[bytes], None] | None = None) -> None:
        self._tap = _Tap(binary, uri, on_bytes)
        self._buffered = io.BufferedWriter(self._tap, 2**16)
        stream: IO[bytes] = self._buffered
        if uri.endswith(".gz"):
            # mtime 0 and no file name in the header: equal records give equal bytes and hashes.
            gz = gzip.GzipFile(filename="", fileobj=stream, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0)
            stream = cast(IO[bytes], gz)
        self.text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")

    def finish(self) -> None:
        """Flush every layer down to the backend file (which stays open for commit or discard)."""
        self.text.close()
        self._buffered.close()

    def abandon(self) -> None:
        """Close the layers without writing more, because the backend file is being discarded.

        Left open, they would flush into the discarded file when garbage-collected.
        """
        self._tap.dropping = True
        with suppress(Exception):
            self.text.close()
        with suppress(Exception):
            self._buffered.close()


class AtomicFile:
    """A binary file that appears at its URI only on :meth:`commit`, whole or not at all.

    Local: a hidden temporary file in the target directory, fsynced, then renamed over the
    target (``exclusive``: hard-linked, which fails if the target exists). S3: an upload that is
    completed on commit and aborted on discard (``exclusive``: ``If-None-Match: *``).
    """

    def __init__(
        self, location: Location, options: StorageOptions | None = None, *, exclusive: bool = False
    ) -> None:
        self.location = location
        self._exclusive = exclusive
        self._fs = filesystem(location, options)
        with storage_errors(location.uri):
            if location.is_local:
                parent, name = os.path.split(location.path)
                os.makedirs(parent, exist_ok=True)
                self._temp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
                self.file: IO[bytes] = open(self._temp, "xb")  # noqa: SIM115 - closed by commit/discard
            else:
                self.file = self._fs.open(location.path, "xb" if exclusive else "wb", autocommit=False)

    def commit(self) -> None:
        """Publish the written bytes at the URI (AlreadyExists if exclusive and taken).

        If publishing fails, the bytes are discarded: nothing appears and nothing is left over.
        """
        try:
            with storage_errors(self.location.uri):
                if self.location.is_local:
                    self._commit_local()
                else:
                    self.file.close()  # uploads the last part; the upload is not complete yet
                    self.file.commit()  # type: ignore[attr-defined]
        except BaseException:
            self.discard()
            raise

    def _commit_local(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())  # the data must be on disk before the name points at it
        self.file.close()
        if self._exclusive:
            os.link(self._temp, self.location.path)  # unlike a rename, fails if the target exists
            os.unlink(self._temp)
        else:
            os.replace(self._temp, self.location.path)
        _fsync_dir(os.path.dirname(self.location.path))

    def discard(self) -> None:
        """Throw the written bytes away; nothing appears at the URI."""
        with suppress(Exception):
            self.file.close()
        if self.location.is_local:
            with suppress(FileNotFoundError):
                os.unlink(self._temp)
        else:
            with suppress(Exception):
                self.file.discard()  # type: ignore[attr-defined]


def _fsync_dir(path: str) -> None:
    """Make a rename durable: the directory entry, not only the file, must reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_binary_reader(location: Location, options: StorageOptions | None = None) -> IO[bytes]:
    """A binary read stream; NotFound naming the URI if there is nothing there."""
    fs = filesystem(location, options)
    with storage_errors(location.uri):
        if fs.isdir(location.path):
            raise FailedPrecondition(f"{location.uri} is a directory, not a file")
        stream: IO[bytes] = fs.open(location.path, "rb")
        return stream

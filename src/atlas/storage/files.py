"""Files in object storage: streaming text IO, existence, listing, deletion, directory trees."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

from atlas.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from atlas.storage.backend import StorageOptions, decode_errors, filesystem, storage_errors
from atlas.storage.manifest import MANIFEST_NAME
from atlas.storage.streams import AtomicFile, TextWriter, open_binary_reader, text_reader
from atlas.storage.uris import Location, parse_uri


@contextmanager
def open_text(
    uri: str, mode: Literal["r", "w"] = "r", *, options: StorageOptions | None = None
) -> Iterator[IO[str]]:
    """A UTF-8 text stream on ``uri``, gzip for a ``.gz`` name; use it as a context manager.

    Reading streams in small chunks, never the whole file. Writing is atomic: the file appears
    when the block ends without an exception, and not at all otherwise, so a reader never sees
    half a file. Lines are ``"\\n"``-separated.
    """
    if mode not in ("r", "w"):
        raise InvalidArgument(f"open_text mode must be 'r' or 'w', not {mode!r}")
    location = parse_uri(uri)
    if mode == "r":
        binary = open_binary_reader(location, options)
        try:
            with decode_errors(location.uri), text_reader(binary, location.uri) as text:
                yield text
        finally:
            binary.close()
        return
    target = AtomicFile(location, options)
    writer = TextWriter(target.file, location.uri)
    try:
        yield writer.text
        with storage_errors(location.uri):
            writer.finish()
    except BaseException:
        writer.abandon()
        target.discard()
        raise
    target.commit()


def exists(uri: str, *, options: StorageOptions | None = None) -> bool:
    """Whether a file, a directory or (on S3) any object under the prefix exists at ``uri``."""
    location = parse_uri(uri)
    with storage_errors(location.uri):
        return bool(filesystem(location, options).exists(location.path))


def list_uris(prefix: str, *, options: StorageOptions | None = None) -> list[str]:
    """Every file under ``prefix`` (recursively), as sorted canonical URIs; [] if there is none.

    ``prefix`` is a directory: ``s3://b/data`` lists ``s3://b/data/...``, not ``s3://b/data-old``.
    A file URI lists itself.
    """
    return [location.uri for location in find_files(parse_uri(prefix), options)]


def find_files(location: Location, options: StorageOptions | None = None) -> list[Location]:
    """The files at or under ``location``, sorted by path."""
    fs = filesystem(location, options)
    with storage_errors(location.uri):
        if not fs.isdir(location.path):
            return [location] if fs.isfile(location.path) else []
        paths = fs.find(location.path)
    return [Location(location.protocol, path) for path in sorted(paths)]


def delete(uri: str, *, missing_ok: bool = False, options: StorageOptions | None = None) -> None:
    """Delete a file, or a directory with everything under it.

    A published dataset loses its ``manifest.json`` first, so concurrent readers see "not
    published" rather than a dataset with parts vanishing under them.
    """
    location = parse_uri(uri)
    fs = filesystem(location, options)
    with storage_errors(location.uri):
        if fs.isdir(location.path):
            manifest = location.child(MANIFEST_NAME).path
            if fs.isfile(manifest):
                fs.rm_file(manifest)
            fs.rm(location.path, recursive=True)
        elif fs.isfile(location.path):
            fs.rm_file(location.path)
        elif not missing_ok:
            raise NotFound(f"{location.uri} does not exist")


def copy_local_tree(
    local_dir: str | Path, uri: str, *, overwrite: bool = False, options: StorageOptions | None = None
) -> list[str]:
    """Copy every file under ``local_dir`` to the directory ``uri``; returns the URIs written.

    For model and adapter folders. Not atomic: a reader that must not see a half-copied tree
    needs a marker written last. AlreadyExists if ``uri`` holds anything, unless ``overwrite``,
    which first deletes what is there so no stale file from an older tree survives.
    """
    source = Path(local_dir)
    if not source.is_dir():
        raise NotFound(f"{source} is not a directory")
    target = parse_uri(uri)
    fs = filesystem(target, options)
    if find_files(target, options):
        if not overwrite:
            raise AlreadyExists(f"{target.uri} already holds files; pass overwrite=True to replace them")
        delete(target.uri, options=options)
    written: list[str] = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = target.child(path.relative_to(source).as_posix())
        with storage_errors(destination.uri):
            if destination.is_local:
                os.makedirs(os.path.dirname(destination.path), exist_ok=True)
                shutil.copyfile(path, destination.path)
            else:
                fs.put_file(str(path), destination.path)
        written.append(destination.uri)
    return written


def download_tree(uri: str, local_dir: str | Path, *, options: StorageOptions | None = None) -> list[Path]:
    """Copy every file under the directory ``uri`` into ``local_dir``; returns the local paths.

    NotFound if nothing is there. An S3 key that would land outside ``local_dir`` (``..``
    segments are legal in S3 keys) is refused with PermissionDenied.
    """
    source = parse_uri(uri)
    fs = filesystem(source, options)
    files = find_files(source, options)
    if not files or files == [source]:
        raise NotFound(f"{source.uri} is not a directory holding files")
    root = Path(local_dir).resolve()
    copied: list[Path] = []
    for file in files:
        relative = file.path[len(source.path) + 1 :]
        if any(part in ("", ".", "..") for part in relative.split("/")):
            raise PermissionDenied(f"{file.uri} would be written outside {root}")
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        with storage_errors(file.uri):
            fs.get_file(file.path, str(destination))
        copied.append(destination)
    return copied

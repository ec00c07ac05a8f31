"""Reading published datasets and single JSON Lines files, checking their bytes as they stream."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO, Literal

from atlas.data.formats import FORMAT_NAMES, ReadReport, decode_lines
from atlas.data.model import Trajectory
from atlas.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas.storage.backend import StorageOptions, decode_errors, filesystem, storage_errors
from atlas.storage.manifest import (
    MANIFEST_NAME,
    DatasetManifest,
    DatasetPart,
    Digest,
    check_sha256,
    is_single_file,
)
from atlas.storage.streams import open_binary_reader, text_reader
from atlas.storage.uris import Location, parse_uri

_READ_CHUNK = 2**20


def read_manifest(uri: str, *, options: StorageOptions | None = None) -> DatasetManifest:
    """The manifest of the published dataset at ``uri``.

    NotFound if nothing is at ``uri``; FailedPrecondition if something is there but it is not a
    published dataset (no ``manifest.json``: a writer is still writing it, or crashed).
    """
    location = parse_uri(uri)
    manifest = location.child(MANIFEST_NAME)
    fs = filesystem(location, options)
    try:
        with storage_errors(manifest.uri):
            text = fs.cat_file(manifest.path).decode("utf-8")
    except (NotFound, FailedPrecondition):  # FailedPrecondition: uri is a file, so no child
        with storage_errors(location.uri):
            if fs.isfile(location.path):
                raise FailedPrecondition(
                    f"{location.uri} is a file, not a dataset directory or a .jsonl / .jsonl.gz file"
                ) from None
            if fs.exists(location.path):
                raise FailedPrecondition(
                    f"{location.uri} is not a published dataset: it has no {MANIFEST_NAME} "
                    "(a writer may still be writing it, or crashed)"
                ) from None
        raise NotFound(f"{location.uri} does not exist") from None
    return DatasetManifest.from_json(text, uri=manifest.uri)


def read_trajectories(
    uri: str,
    fmt: str = "auto",
    *,
    errors: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
    expected_sha256: str = "",
    options: StorageOptions | None = None,
) -> Iterator[Trajectory]:
    """Stream the trajectories of a ``.jsonl``/``.jsonl.gz`` file or a published dataset.

    The manifest is read (and ``expected_sha256`` compared) right away; records then stream one
    line at a time. Errors name the part or file URI and line. Each part's bytes are hashed
    as they stream and checked against the manifest when the part ends, so a corrupt part
    raises InvalidArgument after its records were yielded: a consumer must treat a stream that
    raised as failed as a whole. ``expected_sha256`` pins the dataset sha256 (or, for a single
    file, the file's sha256): FailedPrecondition if the data is not the pinned data.
    """
    expected = check_sha256(expected_sha256)
    if fmt != "auto" and fmt not in FORMAT_NAMES:
        message = f"unknown dataset format {fmt!r}; expected auto or one of {', '.join(FORMAT_NAMES)}"
        raise InvalidArgument(message, field_path="format")
    location = parse_uri(uri)
    if is_single_file(location.uri):
        return _read_file(location, fmt, errors, report, expected, options)
    manifest = read_manifest(location.uri, options=options)
    if expected and manifest.sha256 != expected:
        raise FailedPrecondition(f"{location.uri} has sha256 {manifest.sha256}, expected {expected}")
    if fmt != "auto" and fmt != manifest.format:
        message = f"{location.uri} is in format {manifest.format!r}, not {fmt!r}"
        raise InvalidArgument(message, field_path="format")
    return _read_dataset(location, manifest, errors, report, options)


def _read_file(
    location: Location,
    fmt: str,
    errors: Literal["raise", "skip"],
    report: ReadReport | None,
    expected: str,
    options: StorageOptions | None,
) -> Iterator[Trajectory]:
    binary = open_binary_reader(location, options)  # opened now, so NotFound is raised by the call
    digest = Digest()

    def stream() -> Iterator[Trajectory]:
        try:
            with decode_errors(location.uri), text_reader(binary, location.uri, digest.update) as lines:
                yield from decode_lines(lines, source=location.uri, fmt=fmt, errors=errors, report=report)
        finally:
            binary.close()
        actual = digest.sha256.hexdigest()
        if expected and actual != expected:
            raise FailedPrecondition(f"{location.uri} has sha256 {actual}, expected {expected}")

    return stream()


def _read_dataset(
    location: Location,
    manifest: DatasetManifest,
    errors: Literal["raise", "skip"],
    report: ReadReport | None,
    options: StorageOptions | None,
) -> Iterator[Trajectory]:
    dataset_digest = hashlib.sha256()
    for part in manifest.parts:
        part_location = location.child(part.path)
        digest = Digest()

        def tap(data: bytes, digest: Digest = digest) -> None:
            digest.update(data)
            dataset_digest.update(data)

        binary = _open_part(part_location, options)
        try:
            with decode_errors(part_location.uri), text_reader(binary, part_location.uri, tap) as lines:
                yield from decode_lines(
                    lines, source=part_location.uri, fmt=manifest.format, errors=errors, report=report
                )
        finally:
            binary.close()
        _check_part(part_location, part, digest)
    if dataset_digest.hexdigest() != manifest.sha256:
        raise InvalidArgument(f"{location.uri}: the parts do not hash to the manifest's dataset sha256")


def _open_part(location: Location, options: StorageOptions | None) -> IO[bytes]:
    try:
        return open_binary_reader(location, options)
    except NotFound:
        raise FailedPrecondition(
            f"published dataset is incomplete: {location.uri} is listed in its manifest but missing"
        ) from None


def _check_part(location: Location, part: DatasetPart, digest: Digest) -> None:
    actual = digest.sha256.hexdigest()
    if digest.bytes != part.bytes or actual != part.sha256:
        raise InvalidArgument(
            f"{location.uri} is corrupt: {digest.bytes} bytes with sha256 {actual}, "
            f"the manifest says {part.bytes} bytes with sha256 {part.sha256}"
        )


def verify_dataset(uri: str, expected_sha256: str = "", *, options: StorageOptions | None = None) -> str:
    """Re-hash the stored bytes and return the sha256; raise if they are not what they should be.

    A dataset is checked part by part against its manifest (InvalidArgument if a part is
    corrupt, FailedPrecondition if one is missing); a single file is hashed. With
    ``expected_sha256``, FailedPrecondition if the result differs from it.
    """
    expected = check_sha256(expected_sha256)
    location = parse_uri(uri)
    if is_single_file(location.uri):
        actual = _hash_file(location, Digest(), options)
    else:
        manifest = read_manifest(location.uri, options=options)
        if expected and manifest.sha256 != expected:
            raise FailedPrecondition(f"{location.uri} has sha256 {manifest.sha256}, expected {expected}")
        dataset_digest = Digest()
        for part in manifest.parts:
            part_location = location.child(part.path)
            digest = Digest()
            _hash_file(part_location, digest, options, also=dataset_digest, missing_is_incomplete=True)
            _check_part(part_location, part, digest)
        actual = dataset_digest.sha256.hexdigest()
        if actual != manifest.sha256:
            raise InvalidArgument(f"{location.uri}: the parts do not hash to the manifest's dataset sha256")
    if expected and actual != expected:
        raise FailedPrecondition(f"{location.uri} has sha256 {actual}, expected {expected}")
    return actual


def dataset_sha256(uri: str, *, options: StorageOptions | None = None) -> str:
    """The identity of a dataset: its manifest's sha256 (no re-hash), or a single file's sha256."""
    location = parse_uri(uri)
    if is_single_file(location.uri):
        return _hash_file(location, Digest(), options)
    return read_manifest(location.uri, options=options).sha256


def _hash_file(
    location: Location,
    digest: Digest,
    options: StorageOptions | None,
    *,
    also: Digest | None = None,
    missing_is_incomplete: bool = False,
) -> str:
    binary = _open_part(location, options) if missing_is_incomplete else open_binary_reader(location, options)
    try:
        with storage_errors(location.uri):
            while chunk := binary.read(_READ_CHUNK):
                digest.update(chunk)
                if also is not None:
                    also.update(chunk)
    finally:
        binary.close()
    return digest.sha256.hexdigest()

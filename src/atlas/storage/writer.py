"""Writing published datasets: parts streamed and hashed, ``manifest.json`` written last."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from atlas.data.formats import FORMAT_NAMES, dump_line
from atlas.data.model import Trajectory
from atlas.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atlas.storage.backend import StorageOptions, filesystem, storage_errors
from atlas.storage.manifest import MANIFEST_NAME, DatasetManifest, DatasetPart, Digest, is_single_file
from atlas.storage.reader import read_manifest
from atlas.storage.streams import AtomicFile, TextWriter
from atlas.storage.uris import parse_uri

log = logging.getLogger(__name__)

DEFAULT_RECORDS_PER_PART = 10_000


class DatasetWriter:
    """Streams trajectories into a dataset and publishes it atomically on :meth:`commit`.

    Use it as a context manager. Records go into gzipped parts of ``records_per_part``
    records, hashed and counted while they stream, so any number of records fits in constant
    memory. Leaving the block with an exception, or :meth:`abort`, deletes the parts and
    publishes nothing; leaving it normally commits if :meth:`commit` was not called.
    """

    def __init__(
        self,
        uri: str,
        fmt: str,
        *,
        records_per_part: int = DEFAULT_RECORDS_PER_PART,
        options: StorageOptions | None = None,
        overwrite: bool = False,
    ) -> None:
        """AlreadyExists right away if ``uri`` is a published dataset and not ``overwrite``."""
        if fmt not in FORMAT_NAMES:
            message = f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMAT_NAMES)}"
            raise InvalidArgument(message, field_path="format")
        if records_per_part < 1:
            raise InvalidArgument("records_per_part must be at least 1", field_path="records_per_part")
        if is_single_file(uri):
            raise InvalidArgument(f"{uri} names a file; a dataset is published as a directory")
        self.location = parse_uri(uri)
        self.fmt = fmt
        self.records_per_part = records_per_part
        self.overwrite = overwrite
        self.write_id = uuid.uuid4().hex[:12]
        self._options = options
        self._fs = filesystem(self.location, options)
        self._parts: list[DatasetPart] = []
        self._dataset_digest = hashlib.sha256()
        self._file: AtomicFile | None = None
        self._writer: TextWriter | None = None
        self._digest = Digest()
        self._records_in_part = 0
        self._state: Literal["open", "committed", "aborted"] = "open"
        if not overwrite:
            self._refuse_published()

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def record_count(self) -> int:
        """Records written so far."""
        return sum(part.records for part in self._parts) + self._records_in_part

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    def write(self, trajectory: Trajectory) -> None:
        """Append one record (serialised in the writer's format)."""
        if self._state != "open":
            raise FailedPrecondition(f"dataset writer for {self.uri} is already {self._state}")
        if self._writer is None:
            self._start_part()
        assert self._writer is not None
        self._writer.text.write(dump_line(trajectory, self.fmt))
        self._records_in_part += 1
        if self._records_in_part >= self.records_per_part:
            self._finish_part()

    def commit(self, extra: Mapping[str, Any] | None = None) -> DatasetManifest:
        """Publish: write ``manifest.json`` last, in one atomic step; returns the manifest.

        ``extra`` (JSON-serialisable) is stored under ``"extra"``, e.g. selection statistics.
        With ``overwrite`` the parts of the dataset this replaces are deleted afterwards.
        """
        if self._state != "open":
            raise FailedPrecondition(f"dataset writer for {self.uri} is already {self._state}")
        try:
            if self._writer is not None:
                self._finish_part()
            manifest = DatasetManifest(
                format=self.fmt,
                record_count=self.record_count,
                parts=tuple(self._parts),
                sha256=self._dataset_digest.hexdigest(),
                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                write_id=self.write_id,
                extra=dict(extra or {}),
            )
            try:
                payload = manifest.to_json().encode()
            except (TypeError, ValueError) as error:
                raise InvalidArgument(f"not JSON-serialisable: {error}", field_path="extra") from None
            replaced = self._published_parts() if self.overwrite else set()
            self._publish(payload)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._delete_parts(replaced - {p.path for p in self._parts})
        log.info(
            "published dataset %s: %d records in %d parts, sha256 %s",
            self.uri,
            manifest.record_count,
            len(manifest.parts),
            manifest.sha256,
        )
        return manifest

    def abort(self) -> None:
        """Delete every part this writer wrote and publish nothing (idempotent)."""
        if self._state != "open":
            return
        self._state = "aborted"
        if self._writer is not None:
            self._writer.abandon()
        if self._file is not None:
            self._file.discard()
        self._file = self._writer = None
        self._delete_parts({part.path for part in self._parts})

    def _start_part(self) -> None:
        name = f"part-{self.write_id}-{len(self._parts):05d}.jsonl.gz"
        self._digest = Digest()
        self._file = AtomicFile(self.location.child(name), self._options)
        self._writer = TextWriter(self._file.file, self._file.location.uri, self._tap)
        self._records_in_part = 0

    def _tap(self, data: bytes) -> None:
        self._digest.update(data)
        self._dataset_digest.update(data)

    def _finish_part(self) -> None:
        assert self._file is not None and self._writer is not None
        with storage_errors(self._file.location.uri):
            self._writer.finish()
        self._file.commit()
        name, digest = self._file.location.name, self._digest
        self._parts.append(DatasetPart(name, self._records_in_part, digest.bytes, digest.sha256.hexdigest()))
        self._file = self._writer = None
        self._records_in_part = 0

    def _refuse_published(self) -> None:
        manifest = self.location.child(MANIFEST_NAME)
        with storage_errors(manifest.uri):
            published = self._fs.isfile(manifest.path)
        if published:
            raise AlreadyExists(f"{self.uri} is already a published dataset; overwrite=True replaces it")

    def _published_parts(self) -> set[str]:
        """The parts of the dataset being replaced, to delete once the new manifest is in place."""
        try:
            return {part.path for part in read_manifest(self.uri, options=self._options).parts}
        except (NotFound, FailedPrecondition, InvalidArgument):  # nothing (valid) to clean up
            return set()

    def _publish(self, payload: bytes) -> None:
        manifest = AtomicFile(self.location.child(MANIFEST_NAME), self._options, exclusive=not self.overwrite)
        try:
            with storage_errors(manifest.location.uri):
                manifest.file.write(payload)
        except BaseException:
            manifest.discard()
            raise
        try:
            manifest.commit()
        except AlreadyExists:
            raise AlreadyExists(
                f"{self.uri} was published by another writer meanwhile; pass overwrite=True to replace it"
            ) from None

    def _delete_parts(self, names: Iterable[str]) -> None:
        """Best effort: a part left behind is only wasted space, never visible to readers."""
        for name in sorted(names):
            path = self.location.child(name).path
            try:
                self._fs.rm_file(path)
            except FileNotFoundError:
                pass
            except Exception as error:
                log.warning("could not delete %s: %s", self.location.child(name).uri, error)


def write_trajectories(
    uri: str,
    trajectories: Iterable[Trajectory],
    fmt: str,
    *,
    records_per_part: int = DEFAULT_RECORDS_PER_PART,
    options: StorageOptions | None = None,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> DatasetManifest:
    """Publish ``trajectories`` as a dataset at ``uri`` (streaming; see :class:`DatasetWriter`)."""
    with DatasetWriter(
        uri, fmt, records_per_part=records_per_part, options=options, overwrite=overwrite
    ) as writer:
        for trajectory in trajectories:
            writer.write(trajectory)
        return writer.commit(extra)

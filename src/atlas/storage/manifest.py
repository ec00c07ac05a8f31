"""Published datasets: gzipped JSON Lines parts plus a ``manifest.json`` written last.

A dataset is a directory::

    <uri>/part-<write_id>-00000.jsonl.gz
    <uri>/part-<write_id>-00001.jsonl.gz
    <uri>/manifest.json

Publication is atomic because the manifest is the only thing readers trust and it appears in
one step (local: a rename of a fully written file; S3: one request completes the upload, and
an object is never visible before that). A directory without a manifest is not a dataset;
a reader reads exactly the parts the manifest lists, so parts left by a crashed writer are
invisible. Part names carry the writer's id, so a new write never touches the parts an
existing manifest points at.

Manifest (``format_version`` 1)::

    {"format_version": 1, "format": "agentgym", "record_count": 3, "bytes": 612,
     "sha256": "<dataset sha256>", "created_at": "2026-11-26T07:00:00Z", "write_id": "3f2a...",
     "parts": [{"path": "part-3f2a...-00000.jsonl.gz", "records": 3, "bytes": 612, "sha256": "..."}],
     "extra": {...caller's data, e.g. selection stats...}}

``path`` is a file name relative to the dataset directory (so a dataset can be copied between
stores), ``bytes``/``sha256`` describe the stored (compressed) bytes, and the dataset sha256
is the sha256 of all parts' stored bytes concatenated in manifest order, i.e.
``cat $(jq -r '.parts[].path' manifest.json) | sha256sum``. Parts are gzipped with mtime 0
and no file name, so the same records in the same format give the same dataset sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from atlas.errors import AtlasError, FailedPrecondition, InvalidArgument

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
_SINGLE_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")
# A manifest names files inside its own directory only: a path like "../x" would let a forged
# manifest read outside the storage allowlist.
_PART_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*\.jsonl(\.gz)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_single_file(uri: str) -> bool:
    """Whether ``uri`` names one JSON Lines file rather than a dataset directory."""
    return uri.endswith(_SINGLE_FILE_SUFFIXES)


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetPart:
    """One part file of a published dataset."""

    path: str
    """File name relative to the dataset directory."""
    records: int
    bytes: int
    """Stored (compressed) size."""
    sha256: str
    """sha256 of the stored bytes."""


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetManifest:
    """What ``manifest.json`` says; the only source of truth about a published dataset."""

    format: str
    record_count: int
    parts: tuple[DatasetPart, ...]
    sha256: str
    created_at: str
    write_id: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = MANIFEST_FORMAT_VERSION

    @property
    def bytes(self) -> int:
        return sum(part.bytes for part in self.parts)

    def to_json(self) -> str:
        document = {
            "format_version": self.format_version,
            "format": self.format,
            "record_count": self.record_count,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "write_id": self.write_id,
            "parts": [dataclasses.asdict(part) for part in self.parts],
            "extra": self.extra,
        }
        return json.dumps(document, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, uri: str) -> DatasetManifest:
        """Parse and check a manifest; InvalidArgument naming ``uri`` if it is malformed."""
        try:
            doc = json.loads(text)
            version = doc["format_version"]
            if not isinstance(version, int) or version > MANIFEST_FORMAT_VERSION:
                raise FailedPrecondition(
                    f"{uri} has manifest format_version {version!r}; this build reads up to "
                    f"{MANIFEST_FORMAT_VERSION} (upgrade the reader)"
                )
            parts = tuple(
                DatasetPart(str(p["path"]), int(p["records"]), int(p["bytes"]), str(p["sha256"]))
                for p in doc["parts"]
            )
            manifest = cls(
                format=str(doc["format"]),
                record_count=int(doc["record_count"]),
                parts=parts,
                sha256=str(doc["sha256"]),
                created_at=str(doc.get("created_at", "")),
                write_id=str(doc.get("write_id", "")),
                extra=dict(doc.get("extra") or {}),
                format_version=version,
            )
        except AtlasError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            raise InvalidArgument(f"{uri} is not a valid dataset manifest: {error!r}") from None
        bad = [p.path for p in parts if not _PART_PATH.match(p.path) or not _SHA256.match(p.sha256)]
        if bad or not _SHA256.match(manifest.sha256):
            raise InvalidArgument(f"{uri} is not a valid dataset manifest: bad part entries {bad}")
        if manifest.record_count != sum(p.records for p in parts):
            raise InvalidArgument(f"{uri}: record_count does not match the parts' records")
        return manifest


class Digest:
    """Counts and hashes the stored bytes streaming through a part."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.bytes += len(data)


def check_sha256(value: str) -> str:
    """A caller's pinned sha256, normalised to lowercase ("" = not pinned); InvalidArgument if malformed."""
    value = value.strip().lower()
    if value and not _SHA256.match(value):
        raise InvalidArgument("expected_sha256 must be 64 hexadecimal digits", field_path="expected_sha256")
    return value

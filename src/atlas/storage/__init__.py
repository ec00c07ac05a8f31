"""Object storage for the fleet: local folders (the embedded default) and S3, through fsspec.

* :mod:`~atlas.storage.uris`: the accepted URI forms and :class:`StorageRoots`, the allowlist
  every service applies to the URIs in its requests.
* :mod:`~atlas.storage.backend`: :class:`StorageOptions`, fsspec filesystems, error translation.
* :mod:`~atlas.storage.files`: streaming text IO, atomic writes, listing, directory trees.
* :mod:`~atlas.storage.manifest`: the published-dataset layout and ``manifest.json`` schema.
* :mod:`~atlas.storage.writer` / :mod:`~atlas.storage.reader`: publishing datasets, and reading
  trajectories from them or from single ``.jsonl``/``.jsonl.gz`` files.
"""

from atlas.storage.backend import StorageOptions
from atlas.storage.files import copy_local_tree, delete, download_tree, exists, list_uris, open_text
from atlas.storage.manifest import MANIFEST_NAME, DatasetManifest, DatasetPart, is_single_file
from atlas.storage.reader import dataset_sha256, read_manifest, read_trajectories, verify_dataset
from atlas.storage.uris import Location, StorageRoots, parse_uri
from atlas.storage.writer import DatasetWriter, write_trajectories

__all__ = [
    "MANIFEST_NAME",
    "DatasetManifest",
    "DatasetPart",
    "DatasetWriter",
    "Location",
    "StorageOptions",
    "StorageRoots",
    "copy_local_tree",
    "dataset_sha256",
    "delete",
    "download_tree",
    "exists",
    "is_single_file",
    "list_uris",
    "open_text",
    "parse_uri",
    "read_manifest",
    "read_trajectories",
    "verify_dataset",
    "write_trajectories",
]

"""atlas.storage against a real S3-protocol server (moto_server, started by the s3_server fixture)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import S3Server
from procs import free_port

from atlas import storage
from atlas.data.formats import RecordError
from atlas.data.model import Message, Role, Trajectory
from atlas.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from atlas.storage import DatasetWriter, StorageOptions, StorageRoots

# A stream left half-open flushes into a closed file at garbage collection; that must never happen.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def trajectory(i: int, observation: str = "You see a red ball.") -> Trajectory:
    return Trajectory(
        id=f"t{i:07d}",
        messages=[
            Message(Role.USER, f"{observation} {i}", False),
            Message(Role.ASSISTANT, "move forward", i % 3 == 0),
        ],
        source_env="babyai",
        metadata={"seed": str(i)},
    )


def trajectories(n: int) -> Iterator[Trajectory]:
    return (trajectory(i) for i in range(n))


@pytest.fixture
def options(s3_server: S3Server) -> StorageOptions:
    return StorageOptions(s3_endpoint_url=s3_server.endpoint_url)


def keys(s3_server: S3Server, bucket_uri: str) -> list[str]:
    """What is really in the bucket, asked with boto3 rather than the code under test."""
    listing = s3_server.client().list_objects_v2(Bucket=bucket_uri.removeprefix("s3://"))
    return sorted(item["Key"] for item in listing.get("Contents", []))


def get_object(s3_server: S3Server, bucket_uri: str, key: str) -> bytes:
    response = s3_server.client().get_object(Bucket=bucket_uri.removeprefix("s3://"), Key=key)
    data: bytes = response["Body"].read()
    return data


def put_object(s3_server: S3Server, bucket_uri: str, key: str, data: bytes) -> None:
    s3_server.client().put_object(Bucket=bucket_uri.removeprefix("s3://"), Key=key, Body=data)


def pending_uploads(s3_server: S3Server, bucket_uri: str) -> list[object]:
    listing = s3_server.client().list_multipart_uploads(Bucket=bucket_uri.removeprefix("s3://"))
    uploads: list[object] = listing.get("Uploads", [])
    return uploads


def test_dataset_write_list_read(s3_bucket: str, options: StorageOptions, s3_server: S3Server) -> None:
    uri = f"{s3_bucket}/atlas/ds"
    manifest = storage.write_trajectories(
        uri, trajectories(25), "agentgym", records_per_part=10, options=options, extra={"job": "j-1"}
    )
    assert [p.records for p in manifest.parts] == [10, 10, 5]
    assert list(storage.read_trajectories(uri, options=options)) == list(trajectories(25))
    expected = sorted([f"{uri}/manifest.json", *(f"{uri}/{p.path}" for p in manifest.parts)])
    assert storage.list_uris(uri, options=options) == expected
    assert storage.list_uris(f"{s3_bucket}/atlas", options=options) == expected
    assert keys(s3_server, s3_bucket) == [u.removeprefix(f"{s3_bucket}/") for u in expected]
    assert storage.exists(uri, options=options) and not storage.exists(f"{uri}-x", options=options)
    assert storage.read_manifest(uri, options=options).extra == {"job": "j-1"}

    data = get_object(s3_server, s3_bucket, f"atlas/ds/{manifest.parts[0].path}")
    assert hashlib.sha256(data).hexdigest() == manifest.parts[0].sha256
    assert gzip.decompress(data).count(b"\n") == 10
    assert storage.verify_dataset(uri, manifest.sha256, options=options) == manifest.sha256


def test_same_records_hash_the_same_locally_and_on_s3(
    s3_bucket: str, options: StorageOptions, tmp_path: Path
) -> None:
    local = storage.write_trajectories(str(tmp_path / "ds"), trajectories(12), "openai", records_per_part=5)
    remote = storage.write_trajectories(
        f"{s3_bucket}/ds", trajectories(12), "openai", records_per_part=5, options=options
    )
    assert local.sha256 == remote.sha256


@pytest.mark.parametrize("name", ["notes.txt", "notes.jsonl.gz"])
def test_open_text_round_trip(
    s3_bucket: str, options: StorageOptions, s3_server: S3Server, name: str
) -> None:
    uri = f"{s3_bucket}/text/{name}"
    with storage.open_text(uri, "w", options=options) as out:
        out.write("one\ntwo \u2028 ✓\n")
    with storage.open_text(uri, options=options) as lines:
        assert list(lines) == ["one\n", "two \u2028 ✓\n"]
    data = get_object(s3_server, s3_bucket, f"text/{name}")
    assert data.startswith(b"\x1f\x8b") == name.endswith(".gz")


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_open_text_write_is_atomic(
    s3_bucket: str, options: StorageOptions, s3_server: S3Server, name: str
) -> None:
    uri = f"{s3_bucket}/{name}"
    with pytest.raises(RuntimeError), storage.open_text(uri, "w", options=options) as out:
        out.write("x" * 100 + "\n")
        raise RuntimeError("crash")
    assert keys(s3_server, s3_bucket) == []
    assert pending_uploads(s3_server, s3_bucket) == []


def test_streaming_through_s3_in_bounded_memory(s3_bucket: str, options: StorageOptions) -> None:
    """~17 MB of JSON text (more than the 8 MiB s3fs block) with traced memory under 2 MB."""
    uri = f"{s3_bucket}/big"
    observation = "There is a grey box 1 3 steps in front of you and 1 steps to your left. " * 15
    count = 15_000
    tracemalloc.start()
    try:
        manifest = storage.write_trajectories(
            uri, (trajectory(i, observation) for i in range(count)), "agentgym", options=options
        )
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        in_order = 0
        for t in storage.read_trajectories(uri, options=options):
            in_order += int(t.id == f"t{in_order:07d}")
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert in_order == count == manifest.record_count and len(manifest.parts) == 2
    text_bytes = count * len(observation)
    assert text_bytes > 15_000_000
    assert write_peak < 2_000_000, write_peak
    assert read_peak < 2_000_000, read_peak


def test_an_exception_while_writing_publishes_nothing(
    s3_bucket: str, options: StorageOptions, s3_server: S3Server
) -> None:
    uri = f"{s3_bucket}/ds"

    def failing() -> Iterator[Trajectory]:
        yield from trajectories(25)
        raise RuntimeError("selector crashed")

    with pytest.raises(RuntimeError):
        storage.write_trajectories(uri, failing(), "agentgym", records_per_part=10, options=options)
    assert keys(s3_server, s3_bucket) == []
    assert pending_uploads(s3_server, s3_bucket) == []
    with pytest.raises(NotFound, match=re.escape(uri)):
        storage.read_trajectories(uri, options=options)


def test_an_abandoned_writer_leaves_parts_readers_refuse_until_published(
    s3_bucket: str, options: StorageOptions
) -> None:
    """Parts without a manifest (a writer that died before commit) are not a dataset; the moment a
    manifest lands, a reader that just failed sees it (no stale listing cache)."""
    uri = f"{s3_bucket}/ds"
    crashed = DatasetWriter(uri, "agentgym", records_per_part=5, options=options)
    for t in trajectories(10):
        crashed.write(t)  # two parts uploaded, then the process "dies" before commit
    assert len(storage.list_uris(uri, options=options)) == 2
    with pytest.raises(FailedPrecondition, match="not a published dataset"):
        storage.read_trajectories(uri, options=options)
    assert not storage.exists(f"{uri}/manifest.json", options=options)

    published = storage.write_trajectories(uri, trajectories(3), "agentgym", options=options)
    assert [t.id for t in storage.read_trajectories(uri, options=options)] == [
        "t0000000",
        "t0000001",
        "t0000002",
    ]
    assert storage.verify_dataset(uri, options=options) == published.sha256
    assert len(storage.list_uris(uri, options=options)) == 4  # 2 stray parts, ignored


def test_abort_deletes_the_parts(s3_bucket: str, options: StorageOptions, s3_server: S3Server) -> None:
    with DatasetWriter(f"{s3_bucket}/ds", "agentgym", records_per_part=2, options=options) as writer:
        for t in trajectories(5):
            writer.write(t)
        writer.abort()
    assert keys(s3_server, s3_bucket) == []


def test_overwrite_refusal_and_racing_writers(s3_bucket: str, options: StorageOptions) -> None:
    uri = f"{s3_bucket}/ds"
    first = DatasetWriter(uri, "agentgym", options=options)
    second = DatasetWriter(uri, "agentgym", options=options)
    first.write(trajectory(1))
    second.write(trajectory(2))
    first.commit()
    with pytest.raises(AlreadyExists, match="another writer"):  # S3 conditional PUT (If-None-Match)
        second.commit()
    with pytest.raises(AlreadyExists, match="already a published dataset"):
        DatasetWriter(uri, "agentgym", options=options)
    assert [t.id for t in storage.read_trajectories(uri, options=options)] == ["t0000001"]

    new = storage.write_trajectories(uri, trajectories(4), "agentgym", overwrite=True, options=options)
    assert len(list(storage.read_trajectories(uri, options=options))) == 4
    assert storage.list_uris(uri, options=options) == sorted(
        [f"{uri}/manifest.json", *(f"{uri}/{p.path}" for p in new.parts)]
    )


def test_a_tampered_part_is_detected(s3_bucket: str, options: StorageOptions, s3_server: S3Server) -> None:
    uri = f"{s3_bucket}/ds"
    manifest = storage.write_trajectories(
        uri, trajectories(4), "agentgym", records_per_part=2, options=options
    )
    forged = b'{"conversations": [{"from": "human", "value": "forged"}]}\n'
    put_object(s3_server, s3_bucket, f"ds/{manifest.parts[1].path}", gzip.compress(forged))
    corrupt = re.escape(f"{uri}/{manifest.parts[1].path} is corrupt")
    with pytest.raises(InvalidArgument, match=corrupt):
        storage.verify_dataset(uri, options=options)
    with pytest.raises(InvalidArgument, match=corrupt):
        list(storage.read_trajectories(uri, options=options))
    with pytest.raises(FailedPrecondition, match="expected"):
        storage.read_trajectories(uri, expected_sha256="a" * 64, options=options)


def test_errors_name_the_part_and_line(s3_bucket: str, options: StorageOptions, s3_server: S3Server) -> None:
    uri = f"{s3_bucket}/in.jsonl.gz"
    good = b'{"conversations": [{"from": "human", "value": "hi"}]}\n'
    put_object(s3_server, s3_bucket, "in.jsonl.gz", gzip.compress(good + b"\n{oops\n"))
    with pytest.raises(RecordError) as caught:
        list(storage.read_trajectories(uri, options=options))
    assert str(caught.value).startswith(f"{uri}:3: not valid JSON")


def test_not_found_names_the_uri(s3_bucket: str, options: StorageOptions) -> None:
    for uri in [f"{s3_bucket}/missing.jsonl", f"{s3_bucket}/missing", "s3://no-such-bucket-atlas/x.jsonl.gz"]:
        with pytest.raises(NotFound, match=re.escape(uri)):
            storage.read_trajectories(uri, options=options)
    missing = f"{s3_bucket}/missing.txt"
    with pytest.raises(NotFound, match=re.escape(missing)), storage.open_text(missing, options=options):
        pass
    with pytest.raises(NotFound):
        storage.delete(f"{s3_bucket}/missing", options=options)


def test_an_unreachable_endpoint_is_unavailable() -> None:
    down = StorageOptions(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_max_attempts=1)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=re.escape("s3://some-bucket/ds")) as caught:
        storage.read_trajectories("s3://some-bucket/ds", options=down)
    assert "Traceback" not in str(caught.value)
    with pytest.raises(Unavailable), storage.open_text("s3://some-bucket/x.txt", "w", options=down) as out:
        out.write("x")
    with pytest.raises(Unavailable):  # overwrite skips the up-front check: the part upload fails
        storage.write_trajectories(
            "s3://some-bucket/ds", trajectories(3), "openai", overwrite=True, options=down
        )
    assert time.monotonic() - started < 20


def test_missing_credentials_are_unavailable(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec would reuse a client that has credentials
    try:
        opts = StorageOptions(s3_endpoint_url=s3_server.endpoint_url, s3_max_attempts=1)
        with pytest.raises(Unavailable, match="credentials") as caught:
            storage.exists(f"{s3_bucket}/x", options=opts)
        assert s3_bucket in str(caught.value)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_endpoint_falls_back_to_the_aws_environment(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    storage.write_trajectories(f"{s3_bucket}/ds", trajectories(2), "agentgym")
    assert len(list(storage.read_trajectories(f"{s3_bucket}/ds"))) == 2


def test_listing_and_delete_respect_prefix_boundaries(
    s3_bucket: str, options: StorageOptions, s3_server: S3Server
) -> None:
    storage.write_trajectories(f"{s3_bucket}/ds", trajectories(2), "agentgym", options=options)
    with storage.open_text(f"{s3_bucket}/ds-old/keep.txt", "w", options=options) as out:
        out.write("keep\n")
    assert all("/ds/" in u for u in storage.list_uris(f"{s3_bucket}/ds", options=options))
    storage.delete(f"{s3_bucket}/ds", options=options)
    assert keys(s3_server, s3_bucket) == ["ds-old/keep.txt"]
    assert storage.list_uris(f"{s3_bucket}/ds", options=options) == []


def test_tree_upload_and_download(
    s3_bucket: str, options: StorageOptions, s3_server: S3Server, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16}))
    (adapter / "sub" / "adapter_model.bin").write_bytes(os.urandom(3000))
    uri = f"{s3_bucket}/adapters/job-1"
    assert storage.copy_local_tree(adapter, uri, options=options) == [
        f"{uri}/adapter_config.json",
        f"{uri}/sub/adapter_model.bin",
    ]
    with pytest.raises(AlreadyExists):
        storage.copy_local_tree(adapter, uri, options=options)
    paths = storage.download_tree(uri, tmp_path / "dl", options=options)
    assert [p.relative_to(tmp_path / "dl").as_posix() for p in paths] == [
        "adapter_config.json",
        "sub/adapter_model.bin",
    ]
    assert paths[1].read_bytes() == (adapter / "sub" / "adapter_model.bin").read_bytes()

    # '..' is legal inside an S3 key; downloading must not follow it out of the target folder
    put_object(s3_server, s3_bucket, "adapters/job-2/../../escape.txt", b"x")
    with pytest.raises(PermissionDenied, match="outside"):
        storage.download_tree(f"{s3_bucket}/adapters/job-2", tmp_path / "dl2", options=options)
    assert not (tmp_path / "escape.txt").exists()


def test_allowlist_with_s3_roots(s3_bucket: str) -> None:
    roots = StorageRoots([f"{s3_bucket}/tenant-a"])
    assert roots.check(f"{s3_bucket}/tenant-a/ds", field="f") == f"{s3_bucket}/tenant-a/ds"
    for uri in [f"{s3_bucket}/tenant-ab/ds", f"{s3_bucket}/tenant-a/../tenant-b", f"{s3_bucket}/tenant-b"]:
        with pytest.raises(PermissionDenied):
            roots.check(uri, field="f")

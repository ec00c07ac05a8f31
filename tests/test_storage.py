"""atlas.storage on local folders (the embedded default): URIs and the allowlist, streaming text IO,
published datasets (atomic publication, overwrite refusal, sha256), trees."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas import storage
from atlas.data.formats import ReadReport, RecordError
from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory
from atlas.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from atlas.storage import DatasetWriter, StorageRoots

# A stream left half-open flushes into a closed file at garbage collection; that must never happen.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

PART_NAME = re.compile(r"^part-[0-9a-f]{12}-\d{5}\.jsonl\.gz$")


def trajectory(i: int) -> Trajectory:
    return Trajectory(
        id=f"t{i:06d}",
        messages=[
            Message(Role.SYSTEM, "You are an agent.", False),
            Message(Role.USER, f"Go to the red ball {i}.", False),
            Message(Role.ASSISTANT, "turn left", i % 2 == 0),
            Message(Role.USER, "You turned. Ünïcödé \u2028 survives.", False),
            Message(Role.ASSISTANT, "move forward", True),
        ],
        source_env="babyai",
        task="GoToLocal",
        metadata={"seed": str(i)},
        labels=[StepLabel(1, (Criterion.CRITICAL_ACTION,), "reaches the goal")],
    )


def trajectories(n: int) -> Iterator[Trajectory]:
    return (trajectory(i) for i in range(n))


def small_trajectory(i: int) -> Trajectory:
    return Trajectory(
        id=f"t{i:07d}",
        messages=[
            Message(Role.USER, "go to the red ball", False),
            Message(Role.ASSISTANT, "move forward", True),
        ],
    )


OBSERVATION = (
    "In front of you in this room, you can see several objects: There is a grey box 1 3 steps in front "
    "of you and 1 steps to your left. The room has walls around you. You are not carrying anything. "
) * 5


def observed_trajectory(i: int) -> Trajectory:
    """About 1.2 KB of JSON, like one step of an AgentGym BabyAI episode."""
    return Trajectory(
        id=f"t{i:07d}",
        messages=[
            Message(Role.USER, f"{OBSERVATION}{i}", False),
            Message(Role.ASSISTANT, "move forward", True),
        ],
    )


# ---------------------------------------------------------------------------------------- allowlist


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "datasets").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("s3cr3t")
    return data


def test_uris_inside_a_local_root_are_allowed_and_canonical(
    root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    roots = StorageRoots([str(root)])
    assert roots.check(str(root / "datasets" / "x"), field="input_uri") == str(root / "datasets" / "x")
    assert roots.check(f"file://{root}/datasets/new.jsonl", field="f") == str(root / "datasets" / "new.jsonl")
    assert roots.check(str(root), field="f") == str(root)
    assert roots.check(f"{root}/datasets/../datasets/y", field="f") == str(root / "datasets" / "y")
    monkeypatch.chdir(tmp_path)
    assert roots.check("data/datasets/rel", field="f") == str(root / "datasets" / "rel")
    os.symlink(root / "datasets", root / "inner-link")
    assert roots.check(str(root / "inner-link" / "z"), field="f") == str(root / "datasets" / "z")


@pytest.mark.parametrize(
    "uri",
    [
        "{root}/../secret/key.txt",
        "{root}/datasets/../../secret",
        "file://{root}/../secret",
        "{root}-other/x",  # a sibling directory whose name starts with the root's
        "{root}/link-out/key.txt",  # a symlink inside the root pointing outside
        "{root}/link-out",
        "/etc/passwd",
        "file:///etc/passwd",
    ],
)
def test_local_escapes_are_refused(root: Path, uri: str) -> None:
    os.symlink(root.parent / "secret", root / "link-out")
    roots = StorageRoots([str(root)])
    uri = uri.format(root=root)
    with pytest.raises(PermissionDenied) as caught:
        roots.check(uri, field="spec.dataset_uri")
    assert caught.value.field_path == "spec.dataset_uri"
    assert uri in str(caught.value) and str(root) in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/data.jsonl",
        "https://bucket.s3.amazonaws.com/prefix/x",
        "memory://prefix/x",
        "zip::file://{root}/a.zip",
        "simplecache::s3://bucket/prefix/x",
        "s3://bucket/prefix/x::zip",
        "file://localhost{root}/x",  # fsspec reads this as a path relative to the working directory
        "file://{root_rel}/x",
        "file:{root}/x",
        "local://{root}/x",
        "gs://bucket/prefix/x",
        "S3://bucket/prefix/x",
        "{root}/%2e%2e/secret",  # percent-encoded traversal
        "s3://bucket/prefix/%2e%2e/other",
        "s3://bucket/prefix%2F..%2Fother",
        "s3://bucket/prefix/../other/x",
        "s3://bucket/prefix/./x",
    ],
)
def test_other_protocols_and_tricks_are_refused(root: Path, uri: str) -> None:
    roots = StorageRoots([str(root), "s3://bucket/prefix"])
    uri = uri.format(root=root, root_rel=str(root).lstrip("/"))
    with pytest.raises(PermissionDenied) as caught:
        roots.check(uri, field="output_uri")
    assert caught.value.field_path == "output_uri"
    assert "s3://bucket/prefix" in str(caught.value)


def test_s3_roots_match_whole_path_segments() -> None:
    roots = StorageRoots(["s3://bucket/prefix/", "s3://whole-bucket"])
    assert roots.roots == ("s3://bucket/prefix", "s3://whole-bucket")
    assert roots.check("s3://bucket/prefix", field="f") == "s3://bucket/prefix"
    assert roots.check("s3://bucket/prefix/a/b.jsonl", field="f") == "s3://bucket/prefix/a/b.jsonl"
    assert roots.check("s3://bucket/prefix/dir/", field="f") == "s3://bucket/prefix/dir"
    assert roots.check("s3://whole-bucket/anything", field="f") == "s3://whole-bucket/anything"
    for outside in ["s3://bucket/prefix-other/x", "s3://bucket/prefixx", "s3://bucket/other", "s3://bucket"]:
        with pytest.raises(PermissionDenied, match="outside the allowed storage roots"):
            roots.check(outside, field="f")


def test_malformed_s3_uris_are_invalid() -> None:
    roots = StorageRoots(["s3://bucket"])
    for uri in ["s3://Bucket/x", "s3://b/x", "s3:///x", "s3://bucket/a//b", "s3://bucket/x?versionId=1"]:
        with pytest.raises(InvalidArgument):
            roots.check(uri, field="f")
    with pytest.raises(InvalidArgument, match="control characters"):
        roots.check("s3://bucket/x\n", field="f")
    with pytest.raises(InvalidArgument, match="empty"):
        roots.check("", field="f")


def test_an_empty_allowlist_refuses_everything(root: Path) -> None:
    roots = StorageRoots([])
    for uri in [str(root), str(root / "x"), "s3://bucket/x"]:
        with pytest.raises(PermissionDenied, match="no storage roots are configured"):
            roots.check(uri, field="f")


def test_bad_roots_are_reported_together() -> None:
    with pytest.raises(InvalidArgument) as caught:
        StorageRoots(["http://x/y", "s3://B/x", "/fine"])
    assert caught.value.field_path == "storage_roots"
    assert "http://x/y" in str(caught.value) and "s3://B/x" in str(caught.value)


def test_storage_functions_refuse_other_protocols_too(tmp_path: Path) -> None:
    for call in [
        lambda: storage.exists("memory://x"),
        lambda: storage.list_uris("http://example.com/"),
        lambda: storage.read_trajectories("zip::file:///tmp/a.zip"),
        lambda: storage.write_trajectories("gs://bucket/ds", [], "agentgym"),
    ]:
        with pytest.raises(PermissionDenied):
            call()


# ------------------------------------------------------------------------------------------ text IO


@pytest.mark.parametrize("name", ["notes.txt", "notes.jsonl.gz"])
def test_open_text_round_trip(tmp_path: Path, name: str) -> None:
    uri = str(tmp_path / "sub" / name)
    with storage.open_text(uri, "w") as out:
        out.write("first\nzweite Zeile \u2028 ✓\n")
    with storage.open_text(uri) as lines:
        assert list(lines) == ["first\n", "zweite Zeile \u2028 ✓\n"]
    raw = Path(uri).read_bytes()
    assert raw.startswith(b"\x1f\x8b") == name.endswith(".gz")
    assert os.listdir(tmp_path / "sub") == [name]  # no temporary file left behind


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        with storage.open_text(str(tmp_path / name), "w") as out:
            out.write("same\n")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()) == b"same\n"


def test_open_text_write_is_atomic(tmp_path: Path) -> None:
    uri = str(tmp_path / "out.jsonl")
    Path(uri).write_text("old\n")
    with pytest.raises(RuntimeError), storage.open_text(uri, "w") as out:
        out.write("half of the new content\n")
        raise RuntimeError("crash")
    assert Path(uri).read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_open_text_errors_name_the_uri(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.jsonl")
    with pytest.raises(NotFound, match=re.escape(missing)), storage.open_text(missing):
        pass
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000)[:-30])
    with (
        pytest.raises(InvalidArgument, match=re.escape(str(corrupt))),
        storage.open_text(str(corrupt)) as lines,
    ):
        list(lines)
    with pytest.raises(FailedPrecondition, match="directory"), storage.open_text(str(tmp_path)):
        pass
    with pytest.raises(InvalidArgument, match="mode"), storage.open_text(missing, "a"):  # type: ignore[arg-type]
        pass


# ------------------------------------------------------------------------------------------ datasets


def test_dataset_round_trip_and_manifest_schema(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    manifest = storage.write_trajectories(
        uri, trajectories(25), "agentgym", records_per_part=10, extra={"selector": {"ratio": 0.3}}
    )
    assert list(storage.read_trajectories(uri)) == list(trajectories(25))
    assert manifest.record_count == 25 and [p.records for p in manifest.parts] == [10, 10, 5]

    doc = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert set(doc) == {
        "format_version",
        "format",
        "record_count",
        "bytes",
        "sha256",
        "created_at",
        "write_id",
        "parts",
        "extra",
    }
    assert doc["format_version"] == 1 and doc["format"] == "agentgym" and doc["record_count"] == 25
    assert doc["extra"] == {"selector": {"ratio": 0.3}}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc["created_at"])
    concatenated = b""
    for part in doc["parts"]:
        assert PART_NAME.match(part["path"]) and doc["write_id"] in part["path"]
        data = (tmp_path / "ds" / part["path"]).read_bytes()
        assert part["bytes"] == len(data) and part["sha256"] == hashlib.sha256(data).hexdigest()
        assert gzip.decompress(data).count(b"\n") == part["records"]
        concatenated += data
    assert doc["sha256"] == hashlib.sha256(concatenated).hexdigest() == storage.dataset_sha256(uri)
    assert doc["bytes"] == len(concatenated)
    assert storage.read_manifest(uri) == manifest
    assert storage.verify_dataset(uri, manifest.sha256) == manifest.sha256


def test_equal_records_give_an_equal_dataset_sha256(tmp_path: Path) -> None:
    first = storage.write_trajectories(str(tmp_path / "a"), trajectories(30), "axolotl", records_per_part=7)
    second = storage.write_trajectories(str(tmp_path / "b"), trajectories(30), "axolotl", records_per_part=7)
    assert first.write_id != second.write_id
    assert first.sha256 == second.sha256


def test_an_empty_dataset_is_a_valid_dataset(tmp_path: Path) -> None:
    manifest = storage.write_trajectories(str(tmp_path / "empty"), [], "openai")
    assert manifest.record_count == 0 and manifest.parts == ()
    assert list(storage.read_trajectories(str(tmp_path / "empty"))) == []


def test_an_exception_while_writing_publishes_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")

    def failing() -> Iterator[Trajectory]:
        yield from trajectories(25)
        raise RuntimeError("selector crashed")

    with pytest.raises(RuntimeError, match="selector crashed"):
        storage.write_trajectories(uri, failing(), "agentgym", records_per_part=10)
    assert os.listdir(uri) == []  # the two finished parts and the open one are gone
    with pytest.raises(FailedPrecondition, match="not a published dataset"):
        list(storage.read_trajectories(uri))


def test_abort_deletes_the_parts(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    with DatasetWriter(uri, "agentgym", records_per_part=3) as writer:
        for t in trajectories(7):
            writer.write(t)
        assert len(os.listdir(uri)) == 3  # two finished parts, one in progress (hidden temporary)
        writer.abort()
    assert os.listdir(uri) == []
    with pytest.raises(FailedPrecondition):
        writer.write(trajectory(0))


def test_a_killed_writer_leaves_no_readable_dataset(tmp_path: Path) -> None:
    """A writer process killed mid-write (no cleanup runs) leaves parts but no manifest."""
    uri = str(tmp_path / "ds")
    script = textwrap.dedent(
        f"""
        import os
        from atlas.data.model import Message, Role, Trajectory
        from atlas.storage import DatasetWriter
        writer = DatasetWriter({uri!r}, "agentgym", records_per_part=5)
        for i in range(12):
            writer.write(Trajectory(f"t{{i}}", [Message(Role.USER, "u"), Message(Role.ASSISTANT, "a", True)]))
        os._exit(9)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr
    assert len([n for n in os.listdir(uri) if PART_NAME.match(n)]) == 2
    with pytest.raises(FailedPrecondition, match=r"manifest\.json"):
        storage.read_trajectories(uri)
    with pytest.raises(FailedPrecondition):
        storage.verify_dataset(uri)
    # a later writer publishes normally next to the debris, and readers ignore the debris
    storage.write_trajectories(uri, trajectories(3), "agentgym")
    assert [t.id for t in storage.read_trajectories(uri)] == ["t000000", "t000001", "t000002"]


def test_stray_parts_are_ignored(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    manifest = storage.write_trajectories(uri, trajectories(4), "agentgym", records_per_part=2)
    stray = tmp_path / "ds" / "part-0123456789ab-00000.jsonl.gz"
    stray.write_bytes(gzip.compress(b"not json at all\n"))
    assert len(list(storage.read_trajectories(uri))) == 4
    assert storage.verify_dataset(uri) == manifest.sha256


def test_a_published_dataset_is_not_overwritten(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    old = storage.write_trajectories(uri, trajectories(4), "agentgym", records_per_part=2)
    with pytest.raises(AlreadyExists, match="overwrite=True"):
        storage.write_trajectories(uri, trajectories(1), "agentgym")
    assert storage.read_manifest(uri) == old

    new = storage.write_trajectories(uri, trajectories(3), "agentgym", overwrite=True)
    assert [t.id for t in storage.read_trajectories(uri)] == ["t000000", "t000001", "t000002"]
    assert sorted(os.listdir(uri)) == sorted(["manifest.json", *(p.path for p in new.parts)])

    (tmp_path / "ds" / "manifest.json").write_text("{corrupt")  # a broken dataset can be replaced too
    storage.write_trajectories(uri, trajectories(2), "agentgym", overwrite=True)
    assert len(list(storage.read_trajectories(uri))) == 2


def test_two_writers_racing_for_one_uri_publish_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    first, second = DatasetWriter(uri, "agentgym"), DatasetWriter(uri, "agentgym")
    first.write(trajectory(1))
    second.write(trajectory(2))
    first.commit()
    with pytest.raises(AlreadyExists, match="another writer"):
        second.commit()
    assert [t.id for t in storage.read_trajectories(uri)] == ["t000001"]
    assert len(os.listdir(uri)) == 2  # the loser's part was deleted


def _rewrite_part(dataset: Path, index: int, lines: list[str], *, fix_manifest: bool) -> Path:
    """Replace one part's content (optionally keeping the manifest consistent with it)."""
    doc = json.loads((dataset / "manifest.json").read_text())
    part = dataset / doc["parts"][index]["path"]
    data = gzip.compress("".join(lines).encode(), mtime=0)
    part.write_bytes(data)
    if fix_manifest:
        doc["parts"][index].update(
            bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), records=len(lines)
        )
        whole = b"".join((dataset / p["path"]).read_bytes() for p in doc["parts"])
        doc.update(
            sha256=hashlib.sha256(whole).hexdigest(), record_count=sum(p["records"] for p in doc["parts"])
        )
        (dataset / "manifest.json").write_text(json.dumps(doc))
    return part


def test_a_tampered_part_fails_verification_and_reading(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    manifest = storage.write_trajectories(uri, trajectories(6), "agentgym", records_per_part=3)
    from atlas.data.formats import dump_line

    evil = trajectory(99)
    lines = [dump_line(t, "agentgym") for t in [trajectory(3), evil, trajectory(5)]]
    part = _rewrite_part(tmp_path / "ds", 1, lines, fix_manifest=False)

    with pytest.raises(InvalidArgument, match=re.escape(f"{part} is corrupt")):
        storage.verify_dataset(uri)
    with pytest.raises(InvalidArgument, match="corrupt"):
        list(storage.read_trajectories(uri))
    with pytest.raises(FailedPrecondition, match="expected"):
        storage.verify_dataset(uri, "0" * 64)
    with pytest.raises(FailedPrecondition, match="expected"):
        storage.read_trajectories(uri, expected_sha256="f" * 64)
    with pytest.raises(InvalidArgument) as caught:
        storage.read_trajectories(uri, expected_sha256="not-a-hash")
    assert caught.value.field_path == "expected_sha256"
    assert storage.dataset_sha256(uri) == manifest.sha256  # the manifest still names the original


def test_a_missing_part_makes_the_dataset_incomplete(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    manifest = storage.write_trajectories(uri, trajectories(4), "agentgym", records_per_part=2)
    os.unlink(tmp_path / "ds" / manifest.parts[1].path)
    with pytest.raises(FailedPrecondition, match="incomplete"):
        storage.verify_dataset(uri)
    with pytest.raises(FailedPrecondition, match="incomplete"):
        list(storage.read_trajectories(uri))


def test_a_forged_manifest_cannot_point_outside_the_dataset(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    storage.write_trajectories(uri, trajectories(1), "agentgym")
    manifest_path = tmp_path / "ds" / "manifest.json"
    doc = json.loads(manifest_path.read_text())
    for path in ["../other/part.jsonl.gz", "/etc/passwd.jsonl", "sub/part.jsonl.gz", ".hidden.jsonl"]:
        doc["parts"][0]["path"] = path
        manifest_path.write_text(json.dumps(doc))
        with pytest.raises(InvalidArgument, match="not a valid dataset manifest"):
            storage.read_trajectories(uri)
    manifest_path.write_text("{not json")
    with pytest.raises(InvalidArgument, match="manifest"):
        storage.read_manifest(uri)
    doc["format_version"] = 2
    manifest_path.write_text(json.dumps(doc))
    with pytest.raises(FailedPrecondition, match="format_version"):
        storage.read_manifest(uri)


def test_record_errors_name_the_part_and_line(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    storage.write_trajectories(uri, trajectories(4), "agentgym", records_per_part=2)
    from atlas.data.formats import dump_line

    part = _rewrite_part(
        tmp_path / "ds",
        1,
        [dump_line(trajectory(2), "agentgym"), '{"conversations": 3}\n'],
        fix_manifest=True,
    )
    with pytest.raises(RecordError) as caught:
        list(storage.read_trajectories(uri))
    assert caught.value.source == str(part) and caught.value.line == 2
    assert str(caught.value).startswith(f"{part}:2: ")

    report = ReadReport()
    kept = list(storage.read_trajectories(uri, errors="skip", report=report))
    assert len(kept) == 3 and report.records_ok == 3 and report.records_bad == 1


def test_single_files_are_read_too(tmp_path: Path) -> None:
    from atlas.data.formats import dump_line

    for name in ("in.jsonl", "in.jsonl.gz"):
        uri = str(tmp_path / name)
        with storage.open_text(uri, "w") as out:
            out.write(dump_line(trajectory(1), "openai"))
            out.write("\n")  # a blank line is skipped but counted
            out.write("[1, 2]\n")
        report = ReadReport()
        got = list(storage.read_trajectories(uri, errors="skip", report=report))
        assert [t.messages[-1].content for t in got] == ["move forward"]
        assert report.records_bad == 1 and report.errors[0].source == uri and report.errors[0].line == 3
        sha = hashlib.sha256(Path(uri).read_bytes()).hexdigest()
        assert storage.dataset_sha256(uri) == sha == storage.verify_dataset(uri, sha)
        assert len(list(storage.read_trajectories(uri, errors="skip", expected_sha256=sha))) == 1
        with pytest.raises(FailedPrecondition, match="expected"):
            list(storage.read_trajectories(uri, errors="skip", expected_sha256="0" * 64))


def test_format_mismatch_and_unknown_format(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    storage.write_trajectories(uri, trajectories(1), "agentgym")
    assert len(list(storage.read_trajectories(uri, "agentgym"))) == 1
    with pytest.raises(InvalidArgument, match="'agentgym', not 'openai'"):
        storage.read_trajectories(uri, "openai")
    with pytest.raises(InvalidArgument, match="unknown dataset format"):
        DatasetWriter(str(tmp_path / "other"), "csv")
    with pytest.raises(InvalidArgument, match="unknown dataset format"):
        storage.read_trajectories(str(tmp_path / "missing.jsonl"), "csv")
    with pytest.raises(InvalidArgument, match="names a file"):
        DatasetWriter(str(tmp_path / "x.jsonl.gz"), "agentgym")
    with pytest.raises(InvalidArgument, match="JSON-serialisable"):
        storage.write_trajectories(str(tmp_path / "bad-extra"), [], "agentgym", extra={"x": object()})
    assert not storage.exists(str(tmp_path / "bad-extra" / "manifest.json"))


def test_not_found_messages_name_the_uri(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    for call in [
        lambda: storage.read_trajectories(missing),
        lambda: storage.read_trajectories(missing + ".jsonl.gz"),
        lambda: storage.read_manifest(missing),
        lambda: storage.verify_dataset(missing),
        lambda: storage.dataset_sha256(missing + ".jsonl"),
        lambda: storage.delete(missing),
        lambda: storage.download_tree(missing, tmp_path / "dl"),
    ]:
        with pytest.raises(NotFound, match=re.escape(missing)):
            call()
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(FailedPrecondition, match="is a file"):
        storage.read_trajectories(str(tmp_path / "plain.txt"))


def test_streaming_a_dataset_larger_than_the_memory_budget(tmp_path: Path) -> None:
    """~35 MB of JSON text goes through the writer and back while traced memory stays below
    1 MB: neither side materialises the dataset, so any size streams in constant memory."""
    uri = str(tmp_path / "big")
    count = 30_000
    tracemalloc.start()
    try:
        manifest = storage.write_trajectories(
            uri, (observed_trajectory(i) for i in range(count)), "agentgym", records_per_part=10_000
        )
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        in_order = 0
        for t in storage.read_trajectories(uri):
            in_order += int(t.id == f"t{in_order:07d}")
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text_bytes = sum(len(gzip.decompress((tmp_path / "big" / p.path).read_bytes())) for p in manifest.parts)
    assert in_order == count == manifest.record_count and len(manifest.parts) == 3
    assert text_bytes > 30_000_000
    budget = 1_000_000
    assert write_peak < budget, f"write peak {write_peak} bytes for {text_bytes} bytes of JSON"
    assert read_peak < budget, f"read peak {read_peak} bytes for {text_bytes} bytes of JSON"


def test_two_hundred_thousand_records_stream_through_rotating_parts(tmp_path: Path) -> None:
    uri = str(tmp_path / "many")
    count = 200_000
    manifest = storage.write_trajectories(
        uri, (small_trajectory(i) for i in range(count)), "agentgym", records_per_part=60_000
    )
    assert [p.records for p in manifest.parts] == [60_000, 60_000, 60_000, 20_000]
    in_order = 0
    for t in storage.read_trajectories(uri, expected_sha256=manifest.sha256):
        in_order += int(t.id == f"t{in_order:07d}")
    assert in_order == count


# --------------------------------------------------------------------------- listing, delete, trees


def test_list_exists_delete(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    manifest = storage.write_trajectories(uri, trajectories(3), "agentgym", records_per_part=2)
    (tmp_path / "ds-other").mkdir()
    (tmp_path / "ds-other" / "x.txt").write_text("x")
    expected = sorted([f"{uri}/manifest.json", *(f"{uri}/{p.path}" for p in manifest.parts)])
    assert storage.list_uris(uri) == expected
    assert storage.list_uris(f"file://{uri}/") == expected
    assert storage.list_uris(f"{uri}/manifest.json") == [f"{uri}/manifest.json"]
    assert storage.list_uris(str(tmp_path / "nothing")) == []
    assert storage.exists(uri) and storage.exists(f"{uri}/manifest.json")
    storage.delete(uri)
    assert not storage.exists(uri) and storage.exists(str(tmp_path / "ds-other" / "x.txt"))
    storage.delete(uri, missing_ok=True)
    storage.delete(str(tmp_path / "ds-other" / "x.txt"))
    assert storage.list_uris(str(tmp_path / "ds-other")) == []


def test_local_tree_copy_and_download(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "sub" / "weights.bin").write_bytes(os.urandom(1000))
    target = str(tmp_path / "store" / "adapters" / "job-1")
    written = storage.copy_local_tree(adapter, target)
    assert written == [f"{target}/adapter_config.json", f"{target}/sub/weights.bin"]
    with pytest.raises(AlreadyExists):
        storage.copy_local_tree(adapter, target)
    (adapter / "adapter_config.json").unlink()
    storage.copy_local_tree(adapter, target, overwrite=True)
    assert storage.list_uris(target) == [f"{target}/sub/weights.bin"]  # nothing stale survives

    paths = storage.download_tree(target, tmp_path / "dl")
    assert paths == [tmp_path / "dl" / "sub" / "weights.bin"]
    assert paths[0].read_bytes() == (adapter / "sub" / "weights.bin").read_bytes()
    with pytest.raises(NotFound):
        storage.copy_local_tree(tmp_path / "no-such-dir", target)

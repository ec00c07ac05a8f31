"""The `atlas` command as a user runs it (a subprocess of the installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ATLAS = str(Path(sys.executable).parent / "atlas")
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "babyai.agentgym.jsonl"


def atlas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ATLAS, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["serve", "selector"],
        ["serve", "trainer"],
        ["serve", "evaluator"],
        ["convert"],
        ["validate"],
        ["config"],
    ],
    ids=lambda a: " ".join(a) or "atlas",
)
def test_every_command_has_help(args: list[str]) -> None:
    result = atlas(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: atlas")


def _broken_copy(tmp_path: Path) -> Path:
    """Ten good records, with line 7 given an unknown speaker."""
    good = SAMPLE.read_text().splitlines()
    lines = [good[i % len(good)] for i in range(10)]
    record = json.loads(lines[6])
    record["conversations"][2]["from"] = "robot"
    lines[6] = json.dumps(record)
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validate_reports_the_bad_line_and_field(tmp_path: Path) -> None:
    result = atlas("validate", str(_broken_copy(tmp_path)))
    assert result.returncode == 1
    assert ":7: conversations[2].from:" in result.stdout
    assert "robot" in result.stdout
    assert "1 BAD" in result.stderr and "9 trajectories" in result.stderr


def test_validate_accepts_the_sample() -> None:
    result = atlas("validate", str(SAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 3 trajectories" in result.stderr


def test_convert_fails_on_a_bad_line_unless_told_to_skip(tmp_path: Path) -> None:
    broken = _broken_copy(tmp_path)
    failed = atlas("convert", "-q", "--to", "openai", str(broken), str(tmp_path / "out.jsonl"))
    assert failed.returncode == 2
    assert "broken.jsonl:7: conversations[2].from" in failed.stderr
    assert "Traceback" not in failed.stderr
    skipped = atlas("convert", "-q", "--skip-bad", "--to", "openai", str(broken), str(tmp_path / "out.jsonl"))
    assert skipped.returncode == 0, skipped.stderr
    assert "converted 9 trajectories" in skipped.stderr and "skipped 1 bad records" in skipped.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 9


def test_convert_round_trip_through_a_published_dataset(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    assert atlas("convert", "-q", "--to", "axolotl", str(SAMPLE), str(dataset)).returncode == 0
    assert (dataset / "manifest.json").exists()
    back = tmp_path / "back.jsonl.gz"
    result = atlas("convert", "-q", "--from", "axolotl", "--to", "agentgym", str(dataset), str(back))
    assert result.returncode == 0, result.stderr
    from atlas.data.formats import read_file

    assert [t.trained_steps() for t in read_file(back)] == [t.trained_steps() for t in read_file(SAMPLE)]


def test_convert_to_sharegpt_says_masks_are_dropped(tmp_path: Path) -> None:
    result = atlas("convert", "-q", "--to", "sharegpt", str(SAMPLE), str(tmp_path / "s.jsonl"))
    assert result.returncode == 0
    assert "masks were dropped" in result.stderr


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = atlas("convert", "-q", "--to", "openai", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl"))
    assert result.returncode == 2
    assert "nope.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_trl_export_needs_a_tokenizer(tmp_path: Path) -> None:
    result = atlas("convert", "-q", "--to", "trl", str(SAMPLE), str(tmp_path / "t.jsonl"))
    assert result.returncode == 2
    assert "--tokenizer" in result.stderr


def test_trl_export_supervises_only_critical_turns(tmp_path: Path) -> None:
    from atlas.models.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(tmp_path / "tok")
    out = tmp_path / "t.jsonl"
    result = atlas(
        "convert", "-q", "--to", "trl", "--tokenizer", str(tmp_path / "tok"), str(SAMPLE), str(out)
    )
    assert result.returncode == 0, result.stderr
    first = json.loads(out.read_text().splitlines()[0])
    supervised = [t for t, label in zip(first["input_ids"], first["labels"], strict=True) if label != -100]
    assert (
        tokenizer.decode(supervised)
        == "Thought:\nThe goal is the red ball, and I can already see it 2 steps ahead "
        "and 2 to my right. The plan is to walk straight to it.\n\nAction:\ngo to red ball 1<|im_end|>"
    )


@pytest.mark.parametrize(
    ("argv", "server"),
    [
        (["jobs", "list", "--server", "h:1"], "h:1"),
        (["jobs", "--server", "h:2", "list"], "h:2"),
        (["jobs", "get", "tra-1", "--server", "h:3"], "h:3"),
        (["jobs", "list"], None),
    ],
)
def test_jobs_takes_server_before_or_after_the_action(argv: list[str], server: str | None) -> None:
    """A new user typed `atlas jobs list --server X`; both positions must work."""
    from atlas_trainer.cli import DEFAULT_SERVER

    from atlas.cli import build_parser

    assert build_parser().parse_args(argv).server == (server or DEFAULT_SERVER)

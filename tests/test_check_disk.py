"""`scripts/check_disk.py`, the first step of `make test`: a full disk is a clear error up front."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check_disk  # noqa: E402

Usage = namedtuple("Usage", "total used free")


def _run(monkeypatch: pytest.MonkeyPatch, cwd: Path, free_gb: float) -> int:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["check_disk.py"])
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(0, 0, int(free_gb * check_disk.GB)))
    return check_disk.main()


def test_a_fresh_clone_needs_room_for_both_virtualenvs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing installed: both virtualenvs and the test files are still to be written.
    assert _run(monkeypatch, tmp_path, free_gb=5.0) == 1
    err = capsys.readouterr().err
    assert "5.0 GB free" in err and "make test" in err
    assert _run(monkeypatch, tmp_path, free_gb=20.0) == 0


def test_installed_virtualenvs_need_only_the_test_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for venv in (".venv", ".venv-vllm"):
        (tmp_path / venv).mkdir()
        (tmp_path / venv / ".installed").touch()
    assert _run(monkeypatch, tmp_path, free_gb=5.0) == 0
    assert _run(monkeypatch, tmp_path, free_gb=0.5) == 1
    assert "0.5 GB free" in capsys.readouterr().err


def test_the_script_runs_on_this_machine() -> None:
    # The real disk here has room for the test files (the suite is running on it).
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_disk.py")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "test temporary files" in done.stdout

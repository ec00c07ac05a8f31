"""The protobuf contracts: lint-clean, generated code committed and fresh, importable."""

from __future__ import annotations

import filecmp
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "src"
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"


def _generated_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "atlas").rglob("*_pb2*.py*"))


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    """Fails when a .proto changed without `make protos` (or generated code was hand-edited)."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True
    )
    fresh, committed = _generated_files(tmp_path), _generated_files(GENERATED)
    assert fresh == committed, "generated file set differs: run `make protos`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, GENERATED / p, shallow=False)]
    assert not stale, f"stale generated code (run `make protos`): {stale}"


def test_every_proto_has_an_importable_module() -> None:
    for proto in sorted((ROOT / "protos").rglob("*.proto")):
        module = str(proto.relative_to(ROOT / "protos").with_suffix("")).replace("/", ".") + "_pb2"
        imported = importlib.import_module(module)
        assert imported.DESCRIPTOR.name == str(proto.relative_to(ROOT / "protos"))


@pytest.mark.skipif(
    not BUF.exists() and shutil.which("buf") is None and not os.environ.get("CI"),
    reason="buf not installed (make test installs it; never skipped in CI)",
)
def test_buf_lint_is_clean() -> None:
    buf = str(BUF) if BUF.exists() else "buf"
    result = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

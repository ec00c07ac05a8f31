"""Fail `make test` early, with a clear message, when the disk cannot hold what it will write.

A run that fills the disk does not fail cleanly: pip, the test servers and every test's tmp_path
fail one after another, and the report shows hundreds of unrelated errors (it happened in CI).
Sizes measured on a fresh clone (2026-11-27, `du` during `CI=true bash .ci/run`): `.venv` 2.6 GB,
`.venv-vllm` 3.4 GB, the tests' temporary files 1.1 GB at their peak (a fresh virtualenv in
`tests/test_deploy.py`; a passing test's tmp_path is deleted at its teardown).

    python3 scripts/check_disk.py [--venv .venv] [--vllm-venv .venv-vllm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

GB = 1024**3
NEED = {"venv": 2.7, "vllm_venv": 3.5, "tests": 1.2}  # GB, measured (see above), rounded up
MARGIN = 1.3  # below need x margin: a warning, not an error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--vllm-venv", default=".venv-vllm")
    args = parser.parse_args()

    # What still has to be written, per filesystem (the repository's and the temp dir's).
    needs: dict[int, tuple[str, float]] = {}

    def add(path: Path, gb: float, what: str) -> None:
        device = os.stat(path).st_dev
        where, total = needs.get(device, (str(path), 0.0))
        needs[device] = (where, total + gb)
        print(f"check_disk: {what}: {gb:.1f} GB in {path}")

    repo = Path.cwd()
    if not (repo / args.venv / ".installed").exists():
        add(repo, NEED["venv"], f"{args.venv} (not installed yet)")
    if not (repo / args.vllm_venv / ".installed").exists():
        add(repo, NEED["vllm_venv"], f"{args.vllm_venv} (not installed yet)")
    add(Path(tempfile.gettempdir()), NEED["tests"], "test temporary files")

    status = 0
    for where, gb in needs.values():
        free = shutil.disk_usage(where).free / GB
        if free < gb:
            print(
                f"check_disk: error: {free:.1f} GB free on the filesystem of {where}, and `make test` "
                f"needs about {gb:.1f} GB there; free some space (old virtualenvs, "
                f"{tempfile.gettempdir()}/pytest-of-*) and rerun",
                file=sys.stderr,
            )
            status = 1
        elif free < gb * MARGIN:
            print(f"check_disk: warning: {free:.1f} GB free on {where}, close to the ~{gb:.1f} GB needed")
        else:
            print(f"check_disk: {free:.1f} GB free on the filesystem of {where}, {gb:.1f} GB needed: ok")
    return status


if __name__ == "__main__":
    sys.exit(main())

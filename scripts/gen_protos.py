"""Generate Python code from protos/ into src/atlas/ (commit the result).

Usage: python scripts/gen_protos.py [--out DIR]

The generated modules are committed so that `pip install .` needs no protoc step;
tests/test_protos.py regenerates into a temporary folder and fails when the
committed code is stale. Run `make protos` after editing a .proto file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc for every proto and return the generated files."""
    well_known = Path(protoc.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTOS)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(p for p in out.rglob("*_pb2*.py*"))
    # Package markers for every generated folder below atlas/ (atlas/ itself is hand-written).
    for folder in {p.parent for p in generated}:
        while folder != out / "atlas":
            marker = folder / "__init__.py"
            if not marker.exists():
                marker.write_text('"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n')
            folder = folder.parent
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "src", help="output root (default: src/)")
    args = parser.parse_args(argv)
    generated = generate(args.out)
    print(f"generated {len(generated)} files under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

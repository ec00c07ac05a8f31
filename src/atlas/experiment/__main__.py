"""``python -m atlas.experiment --config FILE [--out DIR] [--resume|--fresh]``: ``atlas experiment``."""

from __future__ import annotations

import argparse
import sys

from atlas.errors import AtlasError
from atlas.experiment.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atlas.experiment")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["experiment", *(sys.argv[1:] if argv is None else argv)])
    try:
        result: int = args.func(args)
        return result
    except AtlasError as exc:
        print(f"atlas experiment: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, after the fleet has stopped
        print("atlas experiment: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

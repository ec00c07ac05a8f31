"""``python -m atlas.experiment --config FILE [--out DIR] [--resume|--fresh]``: ``atlas experiment``.

The same command through the main CLI, so errors (exit 2) and Ctrl-C / SIGTERM (exit 130, resumable)
are handled in one place.
"""

from __future__ import annotations

import sys

from atlas.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["experiment", *sys.argv[1:]]))

"""``atlas experiment --config FILE [--out DIR] [--resume|--fresh]``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``atlas experiment`` to the main CLI's subcommands."""
    parser = subparsers.add_parser(
        "experiment",
        help="run the ATLaS ablation (critical vs all vs random vs non-critical steps) through the fleet",
        description="Run an experiment config (experiments/*.yaml): one expert dataset, then every "
        "condition x seed as selection, training and evaluation jobs of a local fleet, then "
        "results.json, results.md and results.png in --out. Resumable: finished runs are kept.",
    )
    parser.add_argument("--config", required=True, help="experiment YAML (see experiments/)")
    parser.add_argument(
        "--out", help="output directory (default: atlas-data/experiments/<name>)", default=None
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        dest="fresh",
        action="store_false",
        help="continue from the finished runs in --out (the default)",
    )
    mode.add_argument("--fresh", dest="fresh", action="store_true", help="delete --out's earlier runs first")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from finished runs; run nothing"
    )
    parser.set_defaults(func=cmd_experiment, fresh=False)


def cmd_experiment(args: argparse.Namespace) -> int:
    from atlas.experiment.config import load_config
    from atlas.experiment.harness import Experiment

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("atlas-data") / "experiments" / config.name
    experiment = Experiment(config, out, fresh=args.fresh)
    if args.report_only:
        from atlas.experiment.report import write_results

        experiment.prepare()
        write_results(config, experiment.out, experiment.log)
        return 0
    # SIGTERM (a scheduler's timeout, `kill`) takes Ctrl-C's path: the stage's job is cancelled, the
    # fleet stopped and the finished runs kept, instead of leaving the services running.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        experiment.run()
    except KeyboardInterrupt:
        print(f"finished runs are kept in {experiment.out}; run the same command to resume", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt

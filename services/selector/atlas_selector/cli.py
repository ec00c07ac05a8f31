"""`atlas select` (label a dataset, locally or through a running service) and `atlas select-eval`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

BACKENDS = ("rules", "random", "all", "none_critical", "vllm")


def register(subparsers: Any) -> None:
    select = subparsers.add_parser(
        "select",
        help="mark the critical steps of a trajectory dataset",
        description="Read IN (a .jsonl/.jsonl.gz file or a published dataset; local path, file:// or s3://), "
        "select critical steps, write OUT with the loss flags (a .jsonl/.jsonl.gz name is one file, "
        "anything else a published dataset directory with a manifest). --server sends the work to a "
        "running selector service over StreamSelectSteps instead of selecting in this process.",
    )
    select.add_argument("--in", dest="input", required=True, metavar="URI")
    select.add_argument("--out", dest="output", required=True, metavar="URI")
    _selection_flags(select)
    select.add_argument("--in-format", default="auto", help="input format (default: detect)")
    select.add_argument("--out-format", default="agentgym", help="output format (default: agentgym)")
    select.add_argument("--server", metavar="HOST:PORT", help="use this selector service")
    select.add_argument(
        "--batch",
        type=int,
        default=256,
        help="trajectories per request (with --server); the first requests ramp up from 16",
    )
    select.add_argument("--quiet", action="store_true", help="no progress bar")
    select.set_defaults(func=cmd_select)

    evaluate = subparsers.add_parser(
        "select-eval",
        help="precision/recall/F1 of a selector backend against hand labels",
        description="Compare a backend's choice with the labels a dataset carries (atlas.labels), "
        "micro-averaged over (trajectory, step) pairs. Default data: the repository's hand-labelled dev set.",
    )
    evaluate.add_argument("--data", default="tests/data/selector_dev/dev.jsonl", metavar="URI")
    evaluate.add_argument(
        "--compare", dest="backends", action="append", choices=BACKENDS, help="repeatable; default: --backend"
    )
    _selection_flags(evaluate)
    evaluate.set_defaults(func=cmd_select_eval)


def _selection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="rules", choices=BACKENDS)
    parser.add_argument("--max-ratio", type=float, default=0.0, help="in (0, 1]; default 0.3 (1 for all)")
    parser.add_argument("--min-steps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--complement-of", default="", help="base backend of none_critical (default rules)")
    parser.add_argument("--judge-url", default="", help="OpenAI-compatible judge server for --backend vllm")
    parser.add_argument(
        "--judge-model", default="", help="model the judge server serves (inprocess: the model to load)"
    )
    parser.add_argument(
        "--judge-transport",
        default="http",
        choices=("http", "inprocess"),
        help="inprocess: load --judge-model with vllm.LLM here (needs vllm)",
    )
    parser.add_argument(
        "--judge-engine-args", default="{}", help="inprocess: JSON of extra vllm.LLM arguments"
    )
    parser.add_argument("--judge-max-tokens", type=int, default=512)
    parser.add_argument("--judge-max-context-tokens", type=int, default=4096)
    parser.add_argument("--judge-concurrency", type=int, default=64)
    parser.add_argument(
        "--judge-windows", action="store_true", help="judge over-long trajectories in windows of steps"
    )


def _selector(args: argparse.Namespace) -> Any:
    """A local Selector with the judge settings from the flags (the vllm backend's server)."""
    from atlas_selector.judge.common import JudgeSettings, parse_engine_args
    from atlas_selector.selector import Selector

    judge = JudgeSettings(
        args.judge_url,
        args.judge_model,
        max_tokens=args.judge_max_tokens,
        max_context_tokens=args.judge_max_context_tokens,
        concurrency=args.judge_concurrency,
        transport=args.judge_transport,
        windows=args.judge_windows,
        engine_args=parse_engine_args(args.judge_engine_args, "--judge-engine-args"),
    )
    return Selector(judge=judge if judge.configured else None)


def cmd_select(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from atlas import storage
    from atlas.data.formats import FORMAT_NAMES, ReadReport, dump_line
    from atlas.errors import InvalidArgument
    from atlas_selector.selector import Outcome, SelectionOptions
    from atlas_selector.summary import Summary

    if args.out_format not in FORMAT_NAMES:
        raise InvalidArgument(f"unknown format {args.out_format!r}", field_path="--out-format")
    if args.batch < 1:
        raise InvalidArgument(f"must be at least 1, got {args.batch}", field_path="--batch")
    options = SelectionOptions(
        args.backend, args.max_ratio, args.min_steps, args.seed, "", args.complement_of
    )
    selector = _selector(args)
    selector.resolve(options)  # refuse bad options before reading anything
    report = ReadReport()
    source = storage.read_trajectories(args.input, args.in_format, errors="skip", report=report)
    outcomes: Iterator[Outcome] = (
        _remote(args.server, source, options, args.batch)
        if args.server
        else _local(selector, source, options)
    )
    summary = Summary(args.backend)
    bar = tqdm(desc="select", unit=" traj", disable=args.quiet, mininterval=0.5, file=sys.stderr)

    def masked() -> Iterator[Any]:
        for outcome in outcomes:
            summary.add(outcome)
            bar.update(1)
            if outcome.masked is not None:
                yield outcome.masked

    if storage.is_single_file(args.output):
        with storage.open_text(args.output, "w") as out:
            for trajectory in masked():
                out.write(dump_line(trajectory, args.out_format) + "\n")
    else:
        with storage.DatasetWriter(args.output, args.out_format) as writer:
            for trajectory in masked():
                writer.write(trajectory)
            writer.commit({"selector": summary.as_dict()})
    bar.close()
    summary.unreadable = report.records_bad
    print(summary.table(), file=sys.stderr)
    return 0 if summary.ok else 1


def _local(selector: Any, source: Iterator[Any], options: Any) -> Iterator[Any]:
    """Select in this process, in batches (a judge backend keeps a batch's requests in flight)."""
    from itertools import islice

    resolved = selector.resolve(options)
    while batch := list(islice(source, 64)):
        yield from selector.select(batch, resolved)


def _remote(server: str, source: Iterator[Any], options: Any, batch: int) -> Iterator[Any]:
    """Stream batches to the service and rebuild each masked trajectory from the labels it returns
    (labels_only: the trajectories stay here, only labels travel back; both ways in columns, the
    cheap form, since metadata and labels need not travel)."""
    from collections import defaultdict, deque

    from atlas.selector.v1 import selector_service_pb2 as pb
    from atlas_selector.client import SelectorClient, stream_requests
    from atlas_selector.convert import options_to_proto, outcomes_from_response
    from atlas_selector.selector import Outcome

    # Results may come back out of order; the output keeps the input's order (a reorder buffer no
    # larger than what the service holds in flight).
    pending: deque[Any] = deque()
    arrived: dict[str, deque[Outcome]] = defaultdict(deque)

    def requests() -> Iterator[pb.StreamSelectStepsRequest]:
        for chunk, request in stream_requests(source, options_to_proto(options), batch=batch):
            pending.extend(chunk)
            yield request

    with SelectorClient(server) as client:
        for response in client.stream_select_steps(requests(), timeout=24 * 3600):
            for outcome in outcomes_from_response(response):
                arrived[outcome.trajectory_id].append(outcome)
            while pending and arrived.get(pending[0].id):
                trajectory = pending.popleft()
                outcome = arrived[trajectory.id].popleft()
                if not arrived[trajectory.id]:
                    del arrived[trajectory.id]
                if outcome.error is None:
                    outcome.masked = trajectory.with_critical_steps(outcome.labels)
                yield outcome


def cmd_select_eval(args: argparse.Namespace) -> int:
    from atlas import storage
    from atlas_selector.evaluate import agreement
    from atlas_selector.selector import SelectionOptions

    trajectories = list(storage.read_trajectories(args.data))
    selector = _selector(args)
    for backend in args.backends or [args.backend]:
        ratio = args.max_ratio if backend != "all" else 0.0
        options = SelectionOptions(backend, ratio, args.min_steps, args.seed, "", args.complement_of)
        print(agreement(trajectories, options, selector).line())
    return 0

"""``atlas eval``: evaluate one or several policies on a suite, print a table, write a report.

Runs in-process by default; with ``--server HOST:PORT`` each run becomes an evaluation job of a
running evaluator service, watched with a progress bar. Several ``--run NAME=ADAPTER`` compare
adapters (``base=`` is the base model) on the same episodes; ``report.json``, ``report.md`` and a
``report.png`` bar chart go to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from atlas.errors import InvalidArgument


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="Evaluate policies on environments and write a report.")
    p.add_argument("--env", action="append", required=True, help="env id or aggregate (repeatable)")
    p.add_argument("--episodes", type=int, default=8, help="episodes per env id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-turns", type=int, default=None, help="default: each env's own budget")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--policy", choices=("transformers", "openai", "oracle"), default="transformers")
    p.add_argument("--model", default="", help="model dir (transformers) or served model name (openai)")
    p.add_argument("--endpoint", default="", help="OpenAI-compatible base URL (openai policy)")
    p.add_argument("--run", action="append", default=[], metavar="NAME=ADAPTER", help="a run to compare")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--out", default="eval-report", help="directory for report.json/.md/.png")
    p.add_argument("--server", default="", help="HOST:PORT of an evaluator service (else in-process)")
    p.set_defaults(func=_handle)


def _runs(args: argparse.Namespace) -> dict[str, str]:
    if not args.run:
        return {"base" if args.policy != "oracle" else "oracle": ""}
    runs: dict[str, str] = {}
    for i, item in enumerate(args.run):
        name, sep, adapter = item.partition("=")
        if not sep or not name:
            raise InvalidArgument(
                f"--run must be NAME=ADAPTER (ADAPTER may be empty), got {item!r}", field_path=f"run[{i}]"
            )
        runs[name] = adapter
    return runs


def _handle(args: argparse.Namespace) -> int:
    from atlas_evaluator.core import EvalSpec, PolicySpec
    from atlas_evaluator.report import build_report, markdown_table, write_report

    results: dict[str, dict[str, Any]] = {}
    for name, adapter in _runs(args).items():
        policy = PolicySpec(
            kind=args.policy,
            base_model=args.model,
            adapter_uri=adapter,
            endpoint=args.endpoint,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
        )
        spec = EvalSpec(
            policy=policy,
            env_ids=list(args.env),
            episodes_per_env=args.episodes,
            seed=args.seed,
            max_turns=args.max_turns or 0,
            concurrency=args.concurrency,
        )
        print(f"run {name}: {args.policy} {args.model} {adapter or '(no adapter)'}", file=sys.stderr)
        results[name] = _remote(args.server, spec) if args.server else _local(spec)
    report = build_report(results)
    print(markdown_table({n: r["envs"] for n, r in report["runs"].items()}))
    for path in write_report(args.out, report):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _local(spec: Any) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    from tqdm import tqdm

    from atlas_evaluator.core import build_policy
    from atlas_evaluator.report import tally
    from atlas_evaluator.runner import Runner, plan_suite

    specs = plan_suite(spec.env_ids, spec.episodes_per_env, spec.seed, spec.max_turns or None)
    done = []
    with (
        tempfile.TemporaryDirectory(prefix="atlas-eval-") as scratch,
        tqdm(total=len(specs), unit="ep") as bar,
    ):
        policy = build_policy(spec.policy, Path(scratch))

        def on_result(result: Any) -> None:
            done.append(result)
            bar.update(1)
            bar.set_postfix(success=f"{sum(r.success for r in done) / len(done):.0%}")

        try:
            with Runner(policy, concurrency=spec.concurrency, on_result=on_result) as runner:
                runner.run(specs)
            described = policy.describe()
        finally:
            policy.close()
    return {"envs": {k: t.as_dict() for k, t in tally(done).items()}, "policy": described}


def _remote(server: str, spec: Any) -> dict[str, Any]:
    from tqdm import tqdm

    from atlas.common.v1 import job_pb2
    from atlas.errors import FailedPrecondition
    from atlas.evaluator.v1 import evaluator_service_pb2 as pb
    from atlas_evaluator.client import EvaluatorClient
    from atlas_evaluator.convert import spec_to_proto
    from atlas_evaluator.envs.registry import env_spec, members

    # The service refuses max_turns 0; without --max-turns use the longest budget of the suite's envs.
    max_turns = spec.max_turns or max(env_spec(m).max_turns for e in spec.env_ids for m in members(e))
    p = spec.policy
    request = pb.CreateEvaluationJobRequest(
        spec=spec_to_proto(dataclasses.replace(spec, max_turns=max_turns))
    )
    with EvaluatorClient(server) as client:
        job = client.create_evaluation_job(request).job
        with tqdm(total=job.episodes_total or None, unit="ep", desc=job.id) as bar:
            for event in client.watch_evaluation_job(pb.WatchEvaluationJobRequest(id=job.id)):
                job = event.job
                bar.total = job.episodes_total
                bar.n = job.episodes_done
                bar.refresh()
    if job.status.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise FailedPrecondition(
            f"evaluation job {job.id} ended {job_pb2.JobState.Name(job.status.state)}: "
            f"{job.status.error.message}"
        )
    envs = {
        r.env_id: {
            "env_id": r.env_id,
            "held_out": r.split == pb.SPLIT_HELD_OUT,
            "episodes": r.episodes,
            "successes": r.successes,
            "success_rate": r.success_rate,
            "mean_reward": r.mean_reward,
            "mean_turns": r.mean_turns,
        }
        for r in job.results
    }
    return {
        "envs": envs,
        "policy": {"policy": p.kind, "model": p.base_model, "adapter": p.adapter_uri},
        "job_id": job.id,
        "output_uri": job.output_uri,
    }

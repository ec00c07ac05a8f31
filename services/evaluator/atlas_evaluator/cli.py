"""Evaluator commands of the ``atlas`` CLI.

atlas generate --env ENV --episodes N --seed S --out URI [--workers K] [--recovery-rate P]
atlas env-server --env ENV [--host H] --port P
atlas envs
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def cmd_generate(args: argparse.Namespace) -> int:
    from atlas_evaluator.generate import generate

    summary = generate(
        args.env,
        args.episodes,
        args.seed,
        args.out,
        workers=args.workers,
        recovery_rate=args.recovery_rate,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(json.dumps(summary.as_dict(), indent=2), file=sys.stderr)
    return 0


def cmd_env_server(args: argparse.Namespace) -> int:
    from atlas_evaluator.envs.agentgym_server import serve
    from atlas_evaluator.envs.registry import members

    members(args.env)  # unknown ids fail before binding
    serve(args.env, args.host, args.port)
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    from atlas_evaluator.envs.registry import AGGREGATES, ENVIRONMENTS

    width = max(len(name) for name in [*ENVIRONMENTS, *AGGREGATES])
    for spec in ENVIRONMENTS.values():
        split = "held-out" if spec.held_out else "held-in"
        print(f"{spec.env_id:{width}}  {split:9} {spec.description}")
    for name, ids in AGGREGATES.items():
        print(f"{name:{width}}  {'group':9} {', '.join(ids)}")
    return 0


def register(subparsers: Any) -> None:
    gen = subparsers.add_parser("generate", help="write expert ReAct trajectories of an env (AgentGym JSONL)")
    gen.add_argument(
        "--env", required=True, help="env id or group (see `atlas envs`), e.g. babyai, textcraft"
    )
    gen.add_argument(
        "--episodes", type=int, required=True, help="episodes to attempt; successful ones are written"
    )
    gen.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED+i")
    gen.add_argument("--out", required=True, help="dataset URI (folder or s3://), published with a manifest")
    gen.add_argument("--workers", type=int, default=1, help="worker processes")
    gen.add_argument(
        "--recovery-rate", type=float, default=0.1, help="per-turn chance of a wrong action + repair"
    )
    gen.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    server = subparsers.add_parser("env-server", help="serve a built-in env over AgentGym's HTTP protocol")
    server.add_argument("--env", required=True, help="env id or group, e.g. babyai or babyai/GoToLocal")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=36001)
    server.set_defaults(func=cmd_env_server)

    envs = subparsers.add_parser("envs", help="list the built-in envs and their held-in/held-out split")
    envs.set_defaults(func=cmd_envs)

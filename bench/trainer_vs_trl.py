"""Our trainer vs TRL ``SFTTrainer``: same tiny model, same masked dataset, same hyper-parameters, LoRA.

    .venv/bin/python bench/trainer_vs_trl.py [--samples 240] [--steps 12] [--hidden 128]

Both sides train on the same critical-step masks (TRL gets our pre-tokenised ``input_ids``/``labels``).
Throughput counts the input tokens of the *original, untruncated* samples each side trained on,
divided by the time of its training loop only (model loading and data preparation excluded on both
sides), so tail truncation shows up as speed. Our trainer runs twice: without tail truncation first
(it also warms up torch in this process, so TRL, run next, does not pay for that), then with it (the
speed). Without truncation our final loss is comparable with TRL's: they should agree within noise
(the data order differs). Prints ``ratio=<ours tokens/s / TRL tokens/s>`` last.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

LORA = {"r": 16, "alpha": 32.0, "dropout": 0.0}


def realistic_trajectories(n: int) -> list[Any]:
    """BabyAI-like episodes of 6-14 steps, about 30% of them critical (the paper's ratio)."""
    from test_trainer_support import babyai_trajectory

    rng = random.Random(0)
    out = []
    for i in range(n):
        steps = rng.randint(6, 14)
        critical = tuple(sorted(rng.sample(range(steps), max(1, round(steps * 0.3)))))
        out.append(babyai_trajectory(i, steps=steps, critical=critical))
    return out


def run_ours(model: Path, dataset: str, out: str, args: argparse.Namespace, tail: bool) -> dict[str, Any]:
    from atlas_trainer.spec import JobSpec, LoraSpec, TrainingSpec
    from atlas_trainer.train import run

    spec = JobSpec(
        dataset_uri=dataset,
        output_uri=out,
        training=TrainingSpec(
            base_model=str(model),
            lora=LoraSpec(**LORA),  # type: ignore[arg-type]
            learning_rate=args.lr,
            lr_scheduler="linear",
            max_steps=args.steps,
            micro_batch_size=args.batch,
            max_seq_length=4096,
            seed=0,
            tail_truncation=tail,
        ),
    )
    spec_path = Path(out + ".spec.json")
    spec_path.write_text(spec.to_json())
    lines = io.StringIO()
    with contextlib.redirect_stdout(lines):
        assert run(str(spec_path)) == 0
    metrics: dict[str, Any] = json.loads((Path(out) / "metrics.json").read_text())
    events = [json.loads(line) for line in lines.getvalue().splitlines() if line.startswith("{")]
    metrics["step_ends"] = [e["time"] for e in events if e["event"] == "progress"]
    metrics["cumulative_tokens"] = [e["tokens"] for e in events if e["event"] == "progress"]
    return metrics


def run_trl(model_dir: Path, trajectories: list[Any], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from atlas.data.tokenized import to_trl_record, tokenize_trajectory

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # Pre-tokenised with our critical-step labels (TRL's collator takes a "labels" column as given);
    # TRL's assistant_only_loss needs conversational data and would supervise every assistant turn.
    records = [
        {
            k: v
            for k, v in to_trl_record(tokenize_trajectory(t, tokenizer, mask="dataset")).items()
            if k != "assistant_masks"
        }
        for t in trajectories
    ]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    config = SFTConfig(
        output_dir=str(tmp / "trl"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_steps=args.steps,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        max_length=4096,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],  # type: ignore[arg-type]
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=lora,
    )
    # Count the input tokens of every batch TRL trains on (it does no truncation: these are the originals).
    batches: list[int] = []
    collate = trainer.data_collator

    def counting(examples: list[dict[str, Any]]) -> Any:
        batches.append(sum(len(e["input_ids"]) for e in examples))
        return collate(examples)

    trainer.data_collator = counting
    step_ends: list[float] = []

    class StepTimes(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
            step_ends.append(time.time())

    trainer.add_callback(StepTimes())
    started, cpu_started = time.monotonic(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tokens = sum(batches[: args.steps])  # the loader may prepare one batch ahead
    return {
        "tokens": tokens,
        "batch_tokens": batches[: args.steps],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "tokens_per_second": tokens / seconds,
        "loss_curve": losses,
        "step_ends": step_ends,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    from atlas.models.tiny import build_tiny_model
    from atlas.storage import write_trajectories

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = build_tiny_model(tmp / "model", hidden_size=args.hidden, num_layers=args.layers)
        trajectories = realistic_trajectories(args.samples)
        dataset = str(tmp / "dataset")
        write_trajectories(dataset, trajectories, "agentgym", extra={"selector": {"backend": "bench"}})
        ours_full = run_ours(model, dataset, str(tmp / "ours-notail"), args, tail=False)
        trl = run_trl(model, trajectories, args, tmp)
        ours = run_ours(model, dataset, str(tmp / "ours"), args, tail=True)

    def tail_mean(curve: list[float]) -> float:
        last = curve[-3:]
        return sum(last) / len(last)

    ours_curve = [p["loss"] for p in ours_full["loss_curve"]]
    print(f"samples={args.samples} steps={args.steps} batch={args.batch} hidden={args.hidden} r={LORA['r']}")
    print(
        f"ours (tail truncation): {ours['tokens_per_second']:.0f} tokens/s "
        f"(computed {ours['computed_tokens_per_second']:.0f}/s, "
        f"tail tokens saved {ours['tail_tokens_saved']})"
    )
    print(f"ours (no truncation):   {ours_full['tokens_per_second']:.0f} tokens/s")
    print(f"TRL SFTTrainer:         {trl['tokens_per_second']:.0f} tokens/s")
    print(
        f"final loss (mean of last 3 steps) ours={tail_mean(ours_curve):.4f} "
        f"trl={tail_mean(trl['loss_curve']):.4f} "
        f"(first: ours={ours_curve[0]:.4f} trl={trl['loss_curve'][0]:.4f})"
    )
    # Steady state: steps 2..N only, so one-off costs inside the loop (first-step warm-up) do not count.
    cumulative = ours["cumulative_tokens"]
    ours_steady = (cumulative[-1] - cumulative[0]) / (ours["step_ends"][-1] - ours["step_ends"][0])
    trl_steady = sum(trl["batch_tokens"][1:]) / (trl["step_ends"][-1] - trl["step_ends"][0])
    print(
        f"steady state (steps 2..N): ours={ours_steady:.0f} tokens/s trl={trl_steady:.0f} tokens/s "
        f"ratio={ours_steady / trl_steady:.2f}"
    )
    ours_cpu = ours["tokens"] / ours["train_cpu_seconds"]
    trl_cpu = trl["tokens"] / trl["cpu_seconds"]
    cpu_ratio = ours_cpu / trl_cpu
    print(f"per CPU-second (load-independent): ours={ours_cpu:.0f} trl={trl_cpu:.0f} ratio={cpu_ratio:.2f}")
    print(f"ratio={ours['tokens_per_second'] / trl['tokens_per_second']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

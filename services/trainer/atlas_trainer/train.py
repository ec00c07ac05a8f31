"""One training run: ``python -m atlas_trainer.train --spec <spec.json URI>``.

Reads top to bottom: setup (spec, data, validation, preparation, model, optimizer, resume) -> train
loop -> save (adapter or full model, metrics.json, provenance.json) -> cleanup. The local runner
starts it as a subprocess; on Kubernetes the same command runs in the pod. It reports progress as
JSON lines on stdout (one object per line, ``event`` = started | prepared | progress | checkpoint |
done | failed), so whatever launched it can follow it without parsing logs.

Checkpoints go to ``<output>/checkpoints/step-NNNNNN/state.pt`` with ``<output>/checkpoints/latest.json``
written last; a run started on an output that holds one resumes from it (the data order is a pure
function of the seed and the step, so the resumed run sees the batches it would have seen).

Data parallel under torchrun (``WORLD_SIZE`` > 1): every rank loads and prepares the whole dataset,
computes the same global plan of each optimizer step (``micro_batch_size x gradient_accumulation_steps
x WORLD_SIZE`` samples) and trains on its own disjoint share of that step's micro-batches in a
DistributedDataParallel model; rank 0 alone reports progress and writes checkpoints and outputs.

Exit status: 0 done; 3 the spec or the dataset was refused (nothing trained); 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import atlas
from atlas.errors import AtlasError, FailedPrecondition, InvalidArgument
from atlas.storage import StorageOptions, copy_local_tree, delete, download_tree, exists, open_text
from atlas_trainer.data import (
    PreparedSample,
    accumulate_gradients,
    collate,
    mask_mode,
    prepare_dataset,
    supervised_loss_sum,
)
from atlas_trainer.runner import watch_parent
from atlas_trainer.sources import load_dataset, load_tokenizer
from atlas_trainer.spec import JobSpec, check, with_defaults
from atlas_trainer.validation import require_ok, validate_trajectories

EXIT_REFUSED = 3
MAX_GRAD_NORM = 1.0
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
"""How long a rank waits in a collective (e.g. while rank 0 uploads a large checkpoint) before failing."""


def emit(event: str, **fields: Any) -> None:
    """One progress line on stdout: the runner's only channel from this process.

    Only rank 0 speaks, so a torchrun job reports each step once (the Kubernetes runner reads the
    rank-0 pod's log); another rank's failure goes to its stderr, which torchrun shows.
    """
    line = json.dumps({"event": event, "time": time.time(), **fields})
    if rank() == 0:
        print(line, flush=True)
    elif event == "failed":
        print(f"[rank {rank()}] {line}", file=sys.stderr, flush=True)


def rank() -> int:
    """This process's global rank under torchrun; 0 when run alone."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a torchrun job (world_size 1: a plain single-process run)."""

    rank: int
    local_rank: int
    world_size: int
    device: Any  # torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed() -> Iterator[Distributed]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (nccl on CUDA, gloo on CPU); leave it after.

    Each rank takes ``cuda:LOCAL_RANK`` when CUDA is there. A rank that fails exits non-zero and
    torchrun stops the others, so nobody waits in a collective for a peer that is gone (and the
    collective timeout bounds the wait otherwise).
    """
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size <= 1:
        yield Distributed(0, 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        return
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield Distributed(dist.get_rank(), local_rank, dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def step_plan(
    samples: Sequence[PreparedSample], step: int, micro_batch: int, accumulation: int, seed: int
) -> list[list[PreparedSample]]:
    """The micro-batches of optimizer step ``step``: a pure function, so a resumed run sees the same data.

    Each epoch is a fresh seeded shuffle; the last step of an epoch may be short.
    """
    per_step = micro_batch * accumulation
    steps_per_epoch = math.ceil(len(samples) / per_step)
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(len(samples)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    chosen = [samples[i] for i in order[index * per_step : (index + 1) * per_step]]
    return [chosen[i : i + micro_batch] for i in range(0, len(chosen), micro_batch)]


def rank_share(
    micro_batches: Sequence[list[PreparedSample]], rank: int, world_size: int
) -> list[list[PreparedSample]]:
    """This rank's disjoint share of one step's micro-batches: every ``world_size``-th one.

    Interleaving keeps a short last step of an epoch spread over the ranks; a rank may get none.
    """
    return list(micro_batches[rank::world_size])


def accumulate_distributed(
    model: Any,
    share: Sequence[Sequence[PreparedSample]],
    filler: PreparedSample,
    step_supervised: int,
    world_size: int,
    device: Any,
    pad_token_id: int,
    autocast: Any = None,
    scaler: Any = None,
) -> float:
    """Forward and backward this rank's micro-batches of one step in a DDP model; returns the summed loss.

    Each micro-batch's summed loss is divided by ``step_supervised``, the supervised tokens of the
    *whole global step* (every rank's share), and multiplied by ``world_size`` because DDP averages
    gradients over ranks: the all-reduced gradient is then exactly the gradient of the mean loss per
    supervised token of the global step, as in a single process with the same global batch. Only the
    last micro-batch's backward all-reduces (the others run under ``no_sync``). A rank with no
    micro-batch still runs one backward, of ``filler``'s loss times zero, so every rank joins the
    all-reduce.
    """
    if not share:
        batch = _on(collate([filler], pad_token_id), device)
        with autocast if autocast is not None else contextlib.nullcontext():
            zero = supervised_loss_sum(model, batch) * 0.0
        (scaler.scale(zero) if scaler is not None else zero).backward()
        return 0.0
    loss_sum = 0.0
    for index, samples in enumerate(share):
        last = index == len(share) - 1
        with contextlib.nullcontext() if last else model.no_sync():
            batch = _on(collate(samples, pad_token_id), device)
            with autocast if autocast is not None else contextlib.nullcontext():
                summed = supervised_loss_sum(model, batch)
            scaled = summed * (world_size / step_supervised)
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += float(summed.detach())
    return loss_sum


def _on(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) for k, v in batch.items()}


def selector_provenance(extra: dict[str, Any]) -> dict[str, Any]:
    """Which selector made the masks, from the manifest's ``extra`` (the selector service writes
    ``{"selector": {"backend", "model", "prompt_version", ...}}``)."""
    selector = extra.get("selector")
    if not isinstance(selector, dict):
        return {}
    return {k: selector[k] for k in ("backend", "model", "prompt_version", "max_ratio") if k in selector}


def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"atlas {atlas.__version__}" + (f" ({commit})" if commit else "")


def run(spec_uri: str) -> int:
    """Run the job of ``spec_uri`` in this process (one rank of it under torchrun); 0 when done."""
    with distributed() as dist_info:
        return _run(spec_uri, dist_info)


def _run(spec_uri: str, dd: Distributed) -> int:
    import torch
    import torch.distributed as dist
    import transformers

    # ------------------------------------------------------------------------------------------ setup
    wall_start = time.monotonic()
    with open_text(spec_uri) as stream:
        job = JobSpec.from_dict(json.load(stream))
    spec = check(with_defaults(job.training))
    spec_digest = hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()).hexdigest()
    options = StorageOptions(s3_endpoint_url=job.s3_endpoint_url)
    output = job.output_uri.rstrip("/")
    checkpoints = f"{output}/checkpoints"
    emit("started", job_id=job.job_id, spec=spec_uri, world_size=dd.world_size)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)

    tokenizer = load_tokenizer(spec.base_model)
    dataset = load_dataset(job.dataset_uri, job.dataset_format, job.dataset_sha256, options=options)
    mask = mask_mode(spec.mask_mode)
    report = validate_trajectories(dataset.trajectories, tokenizer, mask=mask, max_length=spec.max_seq_length)
    require_ok(report, job.dataset_uri)
    samples, prepared = prepare_dataset(
        dataset.trajectories,
        tokenizer,
        mask=mask,
        max_length=spec.max_seq_length,
        tail_truncation=spec.tail_truncation,
    )
    emit("prepared", **prepared.as_dict())

    device = dd.device
    if spec.precision == "fp16" and device.type != "cuda":
        raise InvalidArgument("fp16 needs a CUDA device; use bf16 or fp32", field_path="spec.precision")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.precision)
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else None
    scaler = torch.amp.GradScaler(device.type) if spec.precision == "fp16" else None
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=torch.float32)
    model.to(device)
    if spec.method == "lora":
        import peft

        lora = peft.LoraConfig(
            r=spec.lora.r,
            lora_alpha=spec.lora.alpha,  # type: ignore[arg-type]  # peft scales by alpha / r; floats work
            lora_dropout=spec.lora.dropout,
            target_modules=list(spec.lora.target_modules) or "all-linear",
            task_type="CAUSAL_LM",
        )
        model = peft.get_peft_model(model, lora)
    # Names as in a single-process run (no DDP "module." prefix): checkpoints are the same either way.
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=spec.learning_rate, weight_decay=0.0)
    # The global batch is micro_batch_size x gradient_accumulation_steps x world_size samples: each
    # rank works through micro_batch_size x gradient_accumulation_steps of them per step.
    micro_batches_per_step = spec.gradient_accumulation_steps * dd.world_size
    steps_per_epoch = math.ceil(len(samples) / (spec.micro_batch_size * micro_batches_per_step))
    total_steps = spec.max_steps or spec.epochs * steps_per_epoch
    scheduler = transformers.get_scheduler(
        spec.lr_scheduler, optimizer, num_warmup_steps=spec.warmup_steps, num_training_steps=total_steps
    )

    counters = {"tokens": 0, "computed_tokens": 0, "supervised_tokens": 0, "tail_tokens_saved": 0}
    history: list[dict[str, float]] = []
    start_step = 0
    if exists(f"{checkpoints}/latest.json", options=options):
        with open_text(f"{checkpoints}/latest.json", options=options) as stream:
            latest = json.load(stream)
        with tempfile.TemporaryDirectory() as tmp:
            download_tree(f"{checkpoints}/{latest['path']}", tmp, options=options)
            state = torch.load(Path(tmp) / "state.pt", weights_only=True, map_location=device)
        if state["spec_sha256"] != spec_digest:
            raise FailedPrecondition(
                f"{checkpoints} holds a checkpoint of a different job spec; use a fresh output_uri"
            )
        if int(state.get("world_size", 1)) != dd.world_size:
            raise FailedPrecondition(
                f"{checkpoints} holds a checkpoint of a run with {state.get('world_size', 1)} processes "
                f"and this run has {dd.world_size}: the global batch and the data order would change; "
                "run it with the same number of processes or use a fresh output_uri"
            )
        with torch.no_grad():
            for name, tensor in state["trainable"].items():
                trainable[name].copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, history, counters = int(state["step"]), list(state["history"]), dict(state["counters"])
        emit("resumed", step=start_step)

    unwrapped = model
    if dd.world_size > 1:
        # Same initial weights on every rank (same seed; DDP also broadcasts rank 0's), different
        # dropout masks per rank from here on.
        model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # the only buffers (rotary tables) are constants
        )
        torch.manual_seed(spec.seed + dd.rank)

    # ------------------------------------------------------------------------------------- train loop
    model.train()
    loop_start, loop_cpu_start = time.monotonic(), time.process_time()
    tokens_before, computed_before = counters["tokens"], counters["computed_tokens"]
    for step in range(start_step, total_steps):
        step_start = time.monotonic()
        micro_batches = step_plan(samples, step, spec.micro_batch_size, micro_batches_per_step, spec.seed)
        if dd.world_size == 1:
            loss, supervised = accumulate_gradients(
                model, micro_batches, tokenizer.pad_token_id, autocast=autocast, scaler=scaler
            )
        else:
            # Every rank knows the whole step's plan, so the normaliser (supervised tokens of the
            # global step) needs no communication before the backward.
            supervised = sum(s.supervised_tokens for mb in micro_batches for s in mb)
            share = rank_share(micro_batches, dd.rank, dd.world_size)
            local_loss = accumulate_distributed(
                model,
                share,
                micro_batches[0][0],
                supervised,
                dd.world_size,
                device,
                tokenizer.pad_token_id,
                autocast=autocast,
                scaler=scaler,
            )
            # The step's loss for the report, and a check that the shares covered the plan exactly.
            reduced = torch.tensor(
                [local_loss, float(sum(s.supervised_tokens for mb in share for s in mb))],
                dtype=torch.float64,
                device=device,
            )
            dist.all_reduce(reduced)
            if int(reduced[1].item()) != supervised:
                raise RuntimeError(
                    f"ranks trained {int(reduced[1].item())} supervised tokens, planned {supervised}"
                )
            loss = float(reduced[0].item()) / supervised
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(list(trainable.values()), MAX_GRAD_NORM)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        learning_rate = scheduler.get_last_lr()[0]
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        batch = [s for mb in micro_batches for s in mb]
        counters["tokens"] += sum(s.original_tokens for s in batch)
        counters["computed_tokens"] += sum(len(s.input_ids) for s in batch)
        counters["supervised_tokens"] += supervised
        counters["tail_tokens_saved"] += sum(s.tail_tokens_saved for s in batch)
        history.append({"step": step + 1, "loss": loss, "learning_rate": learning_rate})
        elapsed = time.monotonic() - loop_start
        done_here = step + 1 - start_step
        emit(
            "progress",
            step=step + 1,
            total_steps=total_steps,
            loss=loss,
            learning_rate=learning_rate,
            tokens=counters["tokens"],
            supervised_tokens=counters["supervised_tokens"],
            tokens_per_second=(counters["tokens"] - tokens_before) / max(elapsed, 1e-9),
            step_seconds=time.monotonic() - step_start,
            eta_seconds=elapsed / done_here * (total_steps - step - 1),
            gpu_memory_bytes=torch.cuda.max_memory_allocated() if device.type == "cuda" else 0,
        )
        every = spec.checkpoint_every_steps
        if dd.is_main and every and (step + 1) % every == 0 and step + 1 < total_steps:
            name = f"step-{step + 1:06d}"
            with tempfile.TemporaryDirectory() as tmp:
                state = {
                    "spec_sha256": spec_digest,
                    "world_size": dd.world_size,
                    "step": step + 1,
                    "trainable": {n: p.detach().cpu() for n, p in trainable.items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "counters": counters,
                }
                torch.save(state, Path(tmp) / "state.pt")
                copy_local_tree(tmp, f"{checkpoints}/{name}", overwrite=True, options=options)
            previous = None
            if exists(f"{checkpoints}/latest.json", options=options):
                with open_text(f"{checkpoints}/latest.json", options=options) as stream:
                    previous = json.load(stream)["path"]
            with open_text(f"{checkpoints}/latest.json", "w", options=options) as stream:
                json.dump({"step": step + 1, "path": name}, stream)
            if previous and previous != name:
                delete(f"{checkpoints}/{previous}", missing_ok=True, options=options)
            emit("checkpoint", step=step + 1, uri=f"{checkpoints}/{name}")
    train_seconds = time.monotonic() - loop_start
    train_cpu_seconds = time.process_time() - loop_cpu_start

    # ------------------------------------------------------------------------------------------- save
    artifact = "adapter" if spec.method == "lora" else "model"
    if dd.is_main:  # the weights are the same on every rank; rank 0 writes everything
        with tempfile.TemporaryDirectory() as tmp:
            unwrapped.save_pretrained(tmp)  # peft: adapter_config.json + adapter_model.safetensors
            if spec.method == "full":
                tokenizer.save_pretrained(tmp)
            copy_local_tree(tmp, f"{output}/{artifact}", overwrite=True, options=options)
        steps_run = total_steps - start_step
        metrics = {
            "loss_curve": history,
            "first_loss": history[0]["loss"] if history else None,
            "final_loss": history[-1]["loss"] if history else None,
            "steps": total_steps,
            "resumed_from_step": start_step,
            **counters,
            # Input tokens of the original, untruncated samples per second: tail truncation shows as speed.
            "tokens_per_second": (counters["tokens"] - tokens_before) / train_seconds if steps_run else None,
            "computed_tokens_per_second": (
                (counters["computed_tokens"] - computed_before) / train_seconds if steps_run else None
            ),
            "train_seconds": train_seconds,
            "train_cpu_seconds": train_cpu_seconds,  # all threads; other tenants cannot skew it
            "wall_time_seconds": time.monotonic() - wall_start,
            "preparation": prepared.as_dict(),
            "validation": report.as_dict(),
        }
        with open_text(f"{output}/metrics.json", "w", options=options) as stream:
            json.dump(metrics, stream, indent=1)
        provenance = {
            "dataset": {"uri": job.dataset_uri, "sha256": dataset.sha256, "format": job.dataset_format},
            "selector": selector_provenance(dataset.manifest_extra),
            "dataset_manifest_extra": dataset.manifest_extra,
            "job_spec": json.loads(job.to_json()),
            "code_version": code_version(),
            "artifact": f"{output}/{artifact}",
        }
        with open_text(f"{output}/provenance.json", "w", options=options) as stream:
            json.dump(provenance, stream, indent=1)

    # ---------------------------------------------------------------------------------------- cleanup
    if dd.world_size > 1:
        dist.barrier()  # every rank ends with the outputs in place
    emit(
        "done",
        artifact=f"{output}/{artifact}",
        final_loss=history[-1]["loss"] if history else None,
        steps=total_steps,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atlas_trainer.train", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, help="URI of the job's spec.json")
    args = parser.parse_args(argv)
    watch_parent()
    try:
        return run(args.spec)
    except AtlasError as error:
        emit("failed", code=error.code, message=error.message, field_path=error.field_path)
        return EXIT_REFUSED if error.code in ("INVALID_ARGUMENT", "FAILED_PRECONDITION") else 1
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        emit("failed", code="INTERNAL", message=f"{type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

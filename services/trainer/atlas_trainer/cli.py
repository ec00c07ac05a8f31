"""`atlas train` (create a training job, follow it with a progress bar) and `atlas jobs ...` (training jobs).

Imports of grpc and the generated protos happen inside the handlers so `atlas --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlas.trainer.v1 import trainer_service_pb2 as pb

DEFAULT_SERVER = os.environ.get("ATLAS_TRAINER_SERVER", "127.0.0.1:50052")
STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="create a training job on a trainer service and follow it",
        description="Fine-tune a model on a masked dataset (loss on critical steps) via the trainer service.",
    )
    train.add_argument("--dataset", required=True, help="masked dataset URI (file path, file://, s3://)")
    train.add_argument("--base-model", required=True, help="local model directory or hub id")
    train.add_argument(
        "--out", required=True, help="output URI for the adapter, metrics.json, provenance.json"
    )
    train.add_argument(
        "--server", default=DEFAULT_SERVER, help="trainer HOST:PORT [env ATLAS_TRAINER_SERVER]"
    )
    train.add_argument("--format", default="auto", help="dataset format (auto: from the manifest or records)")
    train.add_argument("--sha256", default="", help="pin the dataset's sha256")
    train.add_argument("--method", choices=("lora", "full"), default="lora")
    train.add_argument("--lora-r", type=int, default=0, help="LoRA rank (default 16)")
    train.add_argument("--lora-alpha", type=float, default=0.0, help="LoRA alpha (default 32)")
    train.add_argument("--lora-dropout", type=float, default=0.05)
    train.add_argument(
        "--target-modules", default="", help="comma-separated module names; empty = all linear"
    )
    train.add_argument("--learning-rate", type=float, default=0.0, help="default 2e-4")
    train.add_argument("--lr-scheduler", choices=("constant", "linear", "cosine"), default="cosine")
    train.add_argument("--warmup-steps", type=int, default=0)
    train.add_argument("--epochs", type=int, default=0, help="default 1")
    train.add_argument(
        "--max-steps", type=int, default=0, help="stop after this many steps (overrides epochs)"
    )
    train.add_argument("--micro-batch-size", type=int, default=0, help="default 4")
    train.add_argument("--grad-accum", type=int, default=0, help="gradient accumulation steps (default 1)")
    train.add_argument("--max-seq-length", type=int, default=0, help="default 2048")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    train.add_argument("--mask", choices=("dataset", "all_assistant"), default="dataset")
    train.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint every N optimizer steps")
    train.add_argument("--no-wait", action="store_true", help="print the job id and return")
    train.set_defaults(func=cmd_train)

    jobs = subparsers.add_parser("jobs", help="training jobs: list, get, watch, cancel")
    jobs.add_argument("--server", default=DEFAULT_SERVER, help="trainer HOST:PORT [env ATLAS_TRAINER_SERVER]")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--page-size", type=int, default=50)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(func=cmd_jobs_list)
    # `atlas jobs list --server X` works as well as `atlas jobs --server X list` (SUPPRESS keeps the
    # value given before the action when none is given after it).
    listing.add_argument("--server", default=argparse.SUPPRESS, help="trainer HOST:PORT")
    for name, handler, text in (
        ("get", cmd_jobs_get, "print one job as JSON"),
        ("watch", cmd_jobs_watch, "follow a job with a progress bar until it ends"),
        ("cancel", cmd_jobs_cancel, "cancel a job (idempotent)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id")
        action.add_argument("--server", default=argparse.SUPPRESS, help="trainer HOST:PORT")
        action.set_defaults(func=handler)


def _client(server: str) -> Any:
    from atlas_trainer.client import TrainerClient

    return TrainerClient(server, timeout=120)


def cmd_train(args: argparse.Namespace) -> int:
    from atlas.common.v1 import dataset_pb2
    from atlas.protoconv import dataset_format_to_proto
    from atlas.trainer.v1 import trainer_service_pb2 as pb

    spec = pb.TrainingSpec(
        base_model=args.base_model,
        method=pb.TRAINING_METHOD_FULL if args.method == "full" else pb.TRAINING_METHOD_LORA,
        lora=pb.LoraConfig(
            r=args.lora_r,
            alpha=args.lora_alpha,
            dropout=args.lora_dropout,
            target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()],
        ),
        learning_rate=args.learning_rate,
        lr_scheduler=args.lr_scheduler,
        warmup_steps=args.warmup_steps,
        epochs=args.epochs,
        max_steps=args.max_steps,
        micro_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        precision={"fp32": pb.PRECISION_FP32, "bf16": pb.PRECISION_BF16, "fp16": pb.PRECISION_FP16}[
            args.precision
        ],
        mask_mode=pb.MASK_MODE_ALL_ASSISTANT if args.mask == "all_assistant" else pb.MASK_MODE_DATASET,
        checkpoint_every_steps=args.checkpoint_every,
    )
    request = pb.CreateTrainingJobRequest(
        dataset=dataset_pb2.DatasetRef(
            uri=args.dataset, format=dataset_format_to_proto(args.format), sha256=args.sha256
        ),
        output_uri=args.out,
        spec=spec,
        runner=pb.RUNNER_UNSPECIFIED,  # the server's --runner decides: local or kubernetes
    )
    with _client(args.server) as client:
        job = client.create_training_job(request).job
        print(f"created {job.id}", file=sys.stderr)
        if args.no_wait:
            print(job.id)
            return 0
        return _follow(client, job.id)


def _follow(client: Any, job_id: str) -> int:
    """Follow a job with a progress bar; exit status 0 if it succeeded, 1 otherwise."""
    from tqdm import tqdm

    from atlas.common.v1 import job_pb2
    from atlas.trainer.v1 import trainer_service_pb2 as pb

    bar = tqdm(total=0, unit="step", desc=job_id, file=sys.stderr)
    last: pb.TrainingJob | None = None
    try:
        for event in client.watch_training_job(pb.WatchTrainingJobRequest(id=job_id), timeout=None):
            last = event.job
            p = last.progress
            if p.total_steps and bar.total != p.total_steps:
                bar.total = p.total_steps
            bar.update(p.step - bar.n)
            state = job_pb2.JobState.Name(last.status.state).removeprefix("JOB_STATE_")
            if p.step:  # loss, speed and eta mean nothing before the first optimizer step
                bar.set_postfix(
                    state=state,
                    loss=f"{p.loss:.4f}",
                    tok_s=f"{p.tokens_per_second:.0f}",
                    eta=f"{p.eta_seconds:.0f}s",
                )
            else:
                bar.set_postfix(state=state)
    finally:
        bar.close()
    if last is None:
        return 1
    state = job_pb2.JobState.Name(last.status.state).removeprefix("JOB_STATE_")
    print(f"{job_id} {state}" + (f": {last.status.error.message}" if last.status.error.message else ""))
    return 0 if last.status.state == job_pb2.JOB_STATE_SUCCEEDED else 1


def _as_json(job: pb.TrainingJob) -> str:
    from google.protobuf.json_format import MessageToDict

    return json.dumps(MessageToDict(job), indent=1)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from atlas.protoconv import job_state_to_proto
    from atlas.trainer.v1 import trainer_service_pb2 as pb

    request = pb.ListTrainingJobsRequest(
        page_size=args.page_size,
        page_token=args.page_token,
        state=job_state_to_proto(args.state) if args.state else 0,  # type: ignore[arg-type]
    )
    with _client(args.server) as client:
        reply = client.list_training_jobs(request)
    from atlas.common.v1 import job_pb2

    print(f"{'ID':<18} {'STATE':<10} {'STEP':>11} {'LOSS':>8}  OUTPUT")
    for job in reply.jobs:
        state = job_pb2.JobState.Name(job.status.state).removeprefix("JOB_STATE_")
        step = f"{job.progress.step}/{job.progress.total_steps}"
        loss = f"{job.progress.loss:.4f}" if job.progress.step else "-"
        print(f"{job.id:<18} {state:<10} {step:>11} {loss:>8}  {job.output_uri}")
    if reply.next_page_token:
        print(f"next page: --page-token {reply.next_page_token}", file=sys.stderr)
    return 0


def cmd_jobs_get(args: argparse.Namespace) -> int:
    from atlas.trainer.v1 import trainer_service_pb2 as pb

    with _client(args.server) as client:
        print(_as_json(client.get_training_job(pb.GetTrainingJobRequest(id=args.id)).job))
    return 0


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    with _client(args.server) as client:
        return _follow(client, args.id)


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from atlas.trainer.v1 import trainer_service_pb2 as pb

    with _client(args.server) as client:
        print(_as_json(client.cancel_training_job(pb.CancelTrainingJobRequest(id=args.id)).job))
    return 0

"""The training entry point under torchrun: two CPU processes (gloo) train like one with the same batch.

`torchrun --standalone --nproc-per-node 2 -m atlas_trainer.train --spec URI` on the tiny model and a
masked dataset, against a single-process run whose gradient accumulation covers the same global batch
(micro-batch 2 x accumulation 2 x 2 ranks = 2 x 4 x 1). Equal loss curves and final adapters are the
numeric proof that the ranks' shares are disjoint and complete and that the loss is normalised by the
supervised tokens of the whole global step. The dataset (9 samples, global batch 8) makes every other
step short: 1 sample, so one rank has no micro-batch and must still join the gradient all-reduce.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from atlas_trainer.spec import JobSpec, LoraSpec, TrainingSpec
from atlas_trainer.train import run
from safetensors.torch import load_file
from test_trainer_support import trajectories

from atlas.errors import FailedPrecondition
from atlas.storage import write_trajectories

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
SAMPLES, EPOCHS = 9, 2
DDP_STEPS = EPOCHS * 2  # per epoch: one step of 8 samples, one of 1


def _spec(tmp_path: Path, model: Path, dataset: str, name: str, accumulation: int, **extra: Any) -> Path:
    training = TrainingSpec(
        base_model=str(model),
        lora=LoraSpec(r=8, alpha=16, dropout=0.0),
        learning_rate=5e-3,
        lr_scheduler="linear",
        epochs=EPOCHS,
        micro_batch_size=2,
        gradient_accumulation_steps=accumulation,
        seed=3,
        **extra,
    )
    spec = JobSpec(dataset_uri=dataset, output_uri=str(tmp_path / name), training=training, job_id=name)
    path = tmp_path / f"{name}.json"
    path.write_text(spec.to_json())
    return path


def _torchrun(spec: Path, log: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATLAS_TRAINER_PARENT_PID", "RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    args = [
        TORCHRUN,
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "atlas_trainer.train",
        "--spec",
        str(spec),
    ]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env, start_new_session=True
    )


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"event"')]


def _single(spec: Path) -> list[dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(str(spec)) == 0
    return _events(out.getvalue())


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    uri = str(tmp_path / "dataset")
    write_trajectories(uri, trajectories(SAMPLES, steps=4), "agentgym")
    return uri


@pytest.mark.slow
def test_two_ranks_train_exactly_like_one_process_with_the_same_global_batch(
    tiny_model_dir: Path, tmp_path: Path, dataset: str
) -> None:
    ddp_spec = _spec(tmp_path, tiny_model_dir, dataset, "ddp", accumulation=2, checkpoint_every_steps=2)
    proc = _torchrun(ddp_spec, tmp_path / "torchrun.log")
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, (tmp_path / "torchrun.log").read_text()[-4000:]
    ddp = _events(stdout)
    single = _single(_spec(tmp_path, tiny_model_dir, dataset, "single", accumulation=4))

    # One report per step, not one per rank; one start, one checkpoint, one end.
    kinds = [e["event"] for e in ddp]
    assert kinds.count("started") == kinds.count("done") == kinds.count("checkpoint") == 1
    assert ddp[0]["world_size"] == 2
    ddp_progress = [e for e in ddp if e["event"] == "progress"]
    single_progress = [e for e in single if e["event"] == "progress"]
    assert [e["step"] for e in ddp_progress] == list(range(1, DDP_STEPS + 1))
    assert [e["step"] for e in single_progress] == list(range(1, DDP_STEPS + 1))

    # The same losses step by step, the same token counts, the same final weights.
    for ours, reference in zip(ddp_progress, single_progress, strict=True):
        assert ours["loss"] == pytest.approx(reference["loss"], rel=1e-5)
        assert ours["learning_rate"] == pytest.approx(reference["learning_rate"])
        assert ours["supervised_tokens"] == reference["supervised_tokens"]
        assert ours["tokens"] == reference["tokens"]
    assert ddp_progress[-1]["loss"] < ddp_progress[0]["loss"]
    ddp_weights = load_file(str(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors"))
    single_weights = load_file(str(tmp_path / "single" / "adapter" / "adapter_model.safetensors"))
    assert ddp_weights.keys() == single_weights.keys()
    for name, tensor in ddp_weights.items():
        torch.testing.assert_close(tensor, single_weights[name], rtol=1e-4, atol=1e-6)
    # lora_B starts at zero: trained B matrices that agree are not a trivial match.
    assert all(t.abs().max() > 0 for n, t in ddp_weights.items() if "lora_B" in n)

    # One set of outputs, written by rank 0.
    out = tmp_path / "ddp"
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "adapter/README.md",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "checkpoints/latest.json",
        "checkpoints/step-000002/state.pt",
        "metrics.json",
        "provenance.json",
    ], written
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == DDP_STEPS and len(metrics["loss_curve"]) == DDP_STEPS

    # The checkpoint records the world size: a single process cannot resume it (the batches differ).
    (out / "adapter").rename(tmp_path / "ddp-adapter")
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(FailedPrecondition, match="2 processes"):
        run(str(ddp_spec))

    # Two ranks resume it (both load the checkpoint) and end where the uninterrupted runs ended.
    proc = _torchrun(ddp_spec, tmp_path / "resume.log")
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, (tmp_path / "resume.log").read_text()[-4000:]
    resumed = _events(stdout)
    assert [e["step"] for e in resumed if e["event"] in ("resumed", "progress")] == [2, 3, 4]
    resumed_weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    for name, tensor in resumed_weights.items():
        torch.testing.assert_close(tensor, single_weights[name], rtol=1e-4, atol=1e-6)


GRADIENTS = """
import sys

import torch
from atlas_trainer.data import prepare_dataset
from atlas_trainer.sources import load_tokenizer
from atlas_trainer.train import accumulate_distributed, distributed, rank_share, step_plan
from transformers import AutoModelForCausalLM

from atlas.storage import read_trajectories



def main(dd, model_dir, dataset, out):
    tokenizer = load_tokenizer(model_dir)
    samples, _ = prepare_dataset(read_trajectories(dataset), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ddp = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    for step in (0, 1):
        plan = step_plan(samples, step, 2, 2 * dd.world_size, seed=3)
        supervised = sum(s.supervised_tokens for mb in plan for s in mb)
        share = rank_share(plan, dd.rank, dd.world_size)
        accumulate_distributed(
            ddp, share, plan[0][0], supervised, dd.world_size, dd.device, tokenizer.pad_token_id
        )
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        saved = {"shares": [len(mb) for mb in share], "grads": grads}
        torch.save(saved, f"{out}/step{step}-rank{dd.rank}.pt")
        model.zero_grad(set_to_none=True)
    torch.distributed.barrier()


# As in atlas_trainer.train.run: the DDP wrapper (which holds the process group) is gone and every
# rank is past its last collective before the group is destroyed. A module-level wrapper outliving
# destroy_process_group() aborted a rank at exit once in CI ("terminate called without an active
# exception", SIGABRT).
with distributed() as dd:
    main(dd, *sys.argv[1:4])
"""


def test_ranks_all_reduce_exactly_the_single_process_gradient(
    tiny_model_dir: Path, tmp_path: Path, dataset: str
) -> None:
    """The gradient itself, scale included (Adam and clipping would hide a wrong scale in the weights)."""
    from atlas_trainer.data import accumulate_gradients, prepare_dataset
    from atlas_trainer.sources import load_tokenizer
    from atlas_trainer.train import step_plan
    from transformers import AutoModelForCausalLM

    from atlas.storage import read_trajectories

    script = tmp_path / "gradients.py"
    script.write_text(GRADIENTS)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", script, tiny_model_dir, dataset, tmp_path],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    tokenizer = load_tokenizer(str(tiny_model_dir))
    samples, _ = prepare_dataset(read_trajectories(dataset), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    for step, shares in ((0, ([2, 2], [2, 2])), (1, ([1], []))):  # step 1: rank 1 has nothing to do
        accumulate_gradients(model, step_plan(samples, step, 2, 4, seed=3), tokenizer.pad_token_id)
        for rank in (0, 1):
            saved = torch.load(tmp_path / f"step{step}-rank{rank}.pt", weights_only=True)
            assert saved["shares"] == shares[rank]
            for name, param in model.named_parameters():
                assert param.grad is not None
                torch.testing.assert_close(saved["grads"][name], param.grad, rtol=1e-4, atol=1e-7)
        model.zero_grad(set_to_none=True)


def _rank_pid(parent: int, rank: str) -> int | None:
    """The pid of the torchrun worker with RANK=``rank`` among the descendants of ``parent``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.slow
def test_a_rank_that_dies_takes_the_job_down_instead_of_hanging_the_others(
    tiny_model_dir: Path, tmp_path: Path, dataset: str
) -> None:
    spec = _spec(tmp_path, tiny_model_dir, dataset, "dies", accumulation=2, max_steps=100_000)
    proc = _torchrun(spec, tmp_path / "torchrun.log")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the ranks are training
            if line.startswith('{"event": "progress"'):
                break
        else:
            pytest.fail((tmp_path / "torchrun.log").read_text()[-4000:])
        victim = _rank_pid(proc.pid, "1")
        assert victim is not None, "no worker with RANK=1 under torchrun"
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        code = proc.wait(timeout=120)
        assert code != 0
        assert time.monotonic() - killed < 120
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

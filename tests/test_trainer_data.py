"""Data preparation for masked SFT: masks, tail truncation, the max-length rule, loss normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from atlas_trainer.data import (
    accumulate_gradients,
    collate,
    prepare_dataset,
    prepare_sample,
    prompt_tokens,
    supervised_loss_sum,
)
from test_trainer_support import babyai_trajectory, tiny_model_dir

from atlas.data.model import Role
from atlas.data.tokenized import IGNORE_INDEX


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_supervised_tokens_decode_to_exactly_the_critical_turns(tokenizer: Any) -> None:
    trajectory = babyai_trajectory(3, steps=6, critical=(1, 4))
    sample = prepare_sample(trajectory, tokenizer, mask="dataset", tail_truncation=False)
    decoded = [tokenizer.decode(sample.input_ids[a:b]) for a, b in _spans(sample.labels)]
    expected = [m.content + "<|im_end|>" for m in trajectory.messages if m.role is Role.ASSISTANT and m.train]
    assert decoded == expected


def test_all_assistant_mode_supervises_every_assistant_turn(tokenizer: Any) -> None:
    trajectory = babyai_trajectory(5, steps=5, critical=(2,))
    sample = prepare_sample(trajectory, tokenizer, mask="all_assistant", tail_truncation=False)
    decoded = [tokenizer.decode(sample.input_ids[a:b]) for a, b in _spans(sample.labels)]
    assert decoded == [m.content + "<|im_end|>" for m in trajectory.messages if m.role is Role.ASSISTANT]


def test_tail_truncation_drops_everything_after_the_last_critical_turn(tokenizer: Any) -> None:
    trajectory = babyai_trajectory(7, steps=6, critical=(0, 2))
    whole = prepare_sample(trajectory, tokenizer, tail_truncation=False)
    cut = prepare_sample(trajectory, tokenizer)
    last = max(i for i, label in enumerate(whole.labels) if label != IGNORE_INDEX)
    assert cut.input_ids == whole.input_ids[: last + 1]
    assert cut.labels[-1] != IGNORE_INDEX
    assert cut.tail_tokens_saved == len(whole.input_ids) - len(cut.input_ids) > 0
    assert cut.supervised_tokens == whole.supervised_tokens


def test_tail_truncation_leaves_the_loss_unchanged(model_dir: Path, tokenizer: Any) -> None:
    model = _model(model_dir)
    trajectory = babyai_trajectory(8, steps=6, critical=(1, 3))
    pad = tokenizer.pad_token_id
    whole = prepare_sample(trajectory, tokenizer, tail_truncation=False)
    cut = prepare_sample(trajectory, tokenizer)
    with torch.no_grad():
        a = supervised_loss_sum(model, collate([whole], pad))
        b = supervised_loss_sum(model, collate([cut], pad))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_over_length_keeps_the_prompt_and_the_last_critical_turn_and_counts_the_cut(tokenizer: Any) -> None:
    trajectory = babyai_trajectory(9, steps=12, critical=(1, 10))
    whole = prepare_sample(trajectory, tokenizer)
    max_length = len(whole.input_ids) // 2
    cut = prepare_sample(trajectory, tokenizer, max_length=max_length)
    head = min(prompt_tokens(trajectory, tokenizer), max_length // 4)
    assert len(cut.input_ids) == max_length
    assert cut.input_ids[:head] == whole.input_ids[:head]
    assert cut.input_ids[head:] == whole.input_ids[-(max_length - head) :]
    last_turn = trajectory.messages[2 * 10 + 1].content + "<|im_end|>"
    spans = _spans(cut.labels)
    assert tokenizer.decode(cut.input_ids[spans[-1][0] : spans[-1][1]]) == last_turn
    assert cut.over_length_tokens_dropped == len(whole.input_ids) - max_length
    assert cut.over_length_supervised_dropped == whole.supervised_tokens - cut.supervised_tokens > 0


def test_samples_without_supervised_tokens_are_dropped_and_counted(tokenizer: Any) -> None:
    data = [babyai_trajectory(1, critical=(0,)), babyai_trajectory(2, critical=())]
    kept, stats = prepare_dataset(data, tokenizer)
    assert [s.trajectory_id for s in kept] == ["babyai-1"]
    assert stats.samples_without_supervised_tokens == 1 and stats.dropped_ids == ["babyai-2"]
    assert stats.tail_tokens_saved > 0 and stats.supervised_tokens == kept[0].supervised_tokens


def _grads_after(model_dir: Path, micro_batches: list[list[Any]], pad: int) -> tuple[float, dict[str, Any]]:
    model = _model(model_dir)
    loss, _ = accumulate_gradients(model, micro_batches, pad)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_micro_batch_8_by_accum_1_equals_1_by_8(model_dir: Path, tokenizer: Any) -> None:
    """Loss per supervised token over the whole step, so the split into micro-batches does not matter."""
    data = [babyai_trajectory(i, steps=3 + i % 5) for i in range(8)]
    samples, _ = prepare_dataset(data, tokenizer)
    assert len({len(s.input_ids) for s in samples}) > 1  # padding is exercised
    assert len({s.supervised_tokens for s in samples}) > 1  # uneven, or the test could not fail
    pad = tokenizer.pad_token_id
    loss_8x1, grads_8x1 = _grads_after(model_dir, [samples], pad)
    loss_1x8, grads_1x8 = _grads_after(model_dir, [[s] for s in samples], pad)
    assert loss_8x1 == pytest.approx(loss_1x8, rel=1e-5)
    assert grads_8x1.keys() == grads_1x8.keys() and grads_8x1
    for name in grads_8x1:
        torch.testing.assert_close(grads_8x1[name], grads_1x8[name], rtol=1e-4, atol=1e-6, msg=name)

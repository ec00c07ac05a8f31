"""Data preparation for masked SFT: trajectories -> token ids and labels, ready to pad and train on.

The mask is made here, once, from the per-message ``train`` flags (``atlas.data.tokenized`` renders the
whole conversation with the chat template and marks supervised tokens from character offsets); the
collator only pads. Two cuts happen before any forward pass:

* **Tail truncation.** In a causal model, tokens after the last supervised token carry no loss and
  cannot influence any earlier position, so they are dropped. The loss and the gradient are unchanged
  (a test checks this); the tokens saved are counted.
* **The max-length rule.** A sequence still longer than ``max_length`` keeps its *head* (the task
  prompt: the tokens before the first assistant turn, at most ``max_length // 4`` of them) and the
  *tail window* of ``max_length - head`` tokens that ends at the last supervised token, so the final
  critical turn is always whole and the model still sees what the task was. The middle is cut. The
  first token after the cut loses its label (its left context is gone, so predicting it would teach
  nonsense). Dropped tokens and dropped supervised tokens are counted.

A sample left with no supervised token is dropped and counted (a batch of them has a NaN loss).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from atlas.data.model import Role, Trajectory
from atlas.data.tokenized import IGNORE_INDEX, tokenize_trajectory

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

MaskMode = Literal["dataset", "all_assistant"]


def mask_mode(name: str) -> MaskMode:
    """A spec's mask_mode string as the literal the tokeniser takes."""
    return "all_assistant" if name == "all_assistant" else "dataset"


@dataclass(slots=True)
class PreparedSample:
    """One training sample after masking and both cuts."""

    trajectory_id: str
    input_ids: list[int]
    labels: list[int]
    original_tokens: int
    """Tokens of the whole rendered conversation, before any cut."""
    tail_tokens_saved: int
    """Tokens dropped by tail truncation."""
    over_length_tokens_dropped: int
    """Tokens cut by the max-length rule (0 when the sample fitted)."""
    over_length_supervised_dropped: int

    @property
    def supervised_tokens(self) -> int:
        # The first position is never predicted (labels shift by one inside the loss).
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


@dataclass
class PreparationStats:
    """What preparation did to a dataset; goes into metrics.json and the validation report."""

    samples_in: int = 0
    samples_kept: int = 0
    samples_without_supervised_tokens: int = 0
    dropped_ids: list[str] = field(default_factory=list)
    original_tokens: int = 0
    kept_tokens: int = 0
    supervised_tokens: int = 0
    tail_tokens_saved: int = 0
    samples_over_max_length: int = 0
    over_length_tokens_dropped: int = 0
    over_length_supervised_dropped: int = 0

    def add(self, sample: PreparedSample) -> None:
        self.samples_in += 1
        self.original_tokens += sample.original_tokens
        self.tail_tokens_saved += sample.tail_tokens_saved
        if sample.over_length_tokens_dropped:
            self.samples_over_max_length += 1
            self.over_length_tokens_dropped += sample.over_length_tokens_dropped
            self.over_length_supervised_dropped += sample.over_length_supervised_dropped
        if sample.supervised_tokens == 0:
            self.samples_without_supervised_tokens += 1
            self.dropped_ids.append(sample.trajectory_id)
            return
        self.samples_kept += 1
        self.kept_tokens += len(sample.input_ids)
        self.supervised_tokens += sample.supervised_tokens

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "dropped_ids"} | {
            "dropped_ids": self.dropped_ids[:20]
        }


def prompt_tokens(trajectory: Trajectory, tokenizer: PreTrainedTokenizerBase) -> int:
    """Tokens of the conversation before its first assistant turn (the task prompt)."""
    first = next((i for i, m in enumerate(trajectory.messages) if m.role is Role.ASSISTANT), 0)
    if first == 0:
        return 0
    chat = [{"role": m.role.value, "content": m.content} for m in trajectory.messages[:first]]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert isinstance(text, str)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def prepare_sample(
    trajectory: Trajectory,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask: MaskMode = "dataset",
    max_length: int | None = None,
    tail_truncation: bool = True,
) -> PreparedSample:
    """Tokenise and mask one trajectory, then apply tail truncation and the max-length rule."""
    full = tokenize_trajectory(trajectory, tokenizer, mask=mask)
    input_ids, labels = full.input_ids, full.labels
    original = len(input_ids)
    supervised_at = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    # With no supervised token at all the sample is dropped anyway; keep it whole for the counts.
    end = supervised_at[-1] + 1 if (tail_truncation and supervised_at) else original
    input_ids, labels = input_ids[:end], labels[:end]
    dropped = dropped_supervised = 0
    if max_length is not None and len(input_ids) > max_length:
        window_end = supervised_at[-1] + 1 if supervised_at else len(input_ids)
        if window_end <= max_length:  # every supervised token is in the first max_length tokens
            kept_ids, kept_labels = input_ids[:max_length], labels[:max_length]
        else:
            head = min(prompt_tokens(trajectory, tokenizer), max_length // 4)
            tail_start = window_end - (max_length - head)
            kept_ids = input_ids[:head] + input_ids[tail_start:window_end]
            kept_labels = [*labels[:head], IGNORE_INDEX, *labels[tail_start + 1 : window_end]]
        before = sum(1 for label in labels if label != IGNORE_INDEX)
        after = sum(1 for label in kept_labels if label != IGNORE_INDEX)
        dropped, dropped_supervised = len(input_ids) - len(kept_ids), before - after
        input_ids, labels = kept_ids, kept_labels
    return PreparedSample(
        trajectory_id=trajectory.id,
        input_ids=input_ids,
        labels=labels,
        original_tokens=original,
        tail_tokens_saved=original - end,
        over_length_tokens_dropped=dropped,
        over_length_supervised_dropped=dropped_supervised,
    )


def prepare_dataset(
    trajectories: Iterable[Trajectory],
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask: MaskMode = "dataset",
    max_length: int | None = None,
    tail_truncation: bool = True,
) -> tuple[list[PreparedSample], PreparationStats]:
    """Prepared samples that carry loss, and the counts of everything cut or dropped."""
    stats = PreparationStats()
    kept: list[PreparedSample] = []
    for trajectory in trajectories:
        sample = prepare_sample(
            trajectory, tokenizer, mask=mask, max_length=max_length, tail_truncation=tail_truncation
        )
        stats.add(sample)
        if sample.supervised_tokens:
            kept.append(sample)
    return kept, stats


def collate(samples: Sequence[PreparedSample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch. Labels were made in preparation; padding gets IGNORE_INDEX."""
    import torch

    width = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        input_ids[row, :n] = torch.tensor(sample.input_ids)
        labels[row, :n] = torch.tensor(sample.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def supervised_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the supervised positions of one micro-batch."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def accumulate_gradients(
    model: Any,
    micro_batches: Sequence[Sequence[PreparedSample]],
    pad_token_id: int,
    autocast: Any = None,
    scaler: Any = None,
) -> tuple[float, int]:
    """Forward and backward every micro-batch of one optimizer step; returns (mean loss, supervised tokens).

    Each micro-batch's summed loss is divided by the supervised tokens of the *whole* step, so the
    accumulated gradient is the gradient of the mean loss per supervised token, however the step is
    split into micro-batches (averaging per micro-batch would weight a token in a short micro-batch
    more than one in a long one). ``autocast`` is a torch.autocast context for mixed precision and
    ``scaler`` a GradScaler for fp16.
    """
    import contextlib

    total = sum(s.supervised_tokens for batch in micro_batches for s in batch)
    loss_sum = 0.0
    for samples in micro_batches:
        batch = collate(samples, pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with autocast if autocast is not None else contextlib.nullcontext():
            summed = supervised_loss_sum(model, batch)
        scaled = summed / total
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += float(summed.detach())
    return loss_sum / total, total

"""Mask validation before any GPU time: the traps peers fall into, checked on the real tokenizer.

The report counts what the trainer will see after preparation (tail truncation and the max-length
rule included) and says whether a job may start. A dataset fails when

* no sample has a supervised token (all-zero masks: the run would train on nothing, or NaN);
* in ``dataset`` mode every assistant turn of every sample carries loss (all-one masks: no critical
  step selection was made, so the run would be the all-steps baseline under another name);
* in ``dataset`` mode a sample states no train flags at all (a dataset that was never masked);
* a sample cannot be tokenised consistently (the chat template is not prefix-stable, so per-turn
  masks cannot be placed on whole-conversation tokens), or its supervised spans do not match its
  selected turns one to one.

Turns whose end-of-turn token is not supervised are counted: a model that never learns to stop
generates past its action.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atlas.data.model import Role, Trajectory
from atlas.data.tokenized import IGNORE_INDEX
from atlas.errors import AtlasError, FailedPrecondition
from atlas_trainer.data import MaskMode, prepare_sample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RATIO_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
MAX_LISTED = 5


@dataclass
class ValidationReport:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    turns: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    samples_without_supervised_tokens: int = 0
    turns_without_supervised_end_of_turn: int = 0
    samples_over_max_length: int = 0
    ratio_bucket_bounds: list[float] = field(default_factory=lambda: list(RATIO_BOUNDS))
    ratio_bucket_counts: list[int] = field(default_factory=lambda: [0] * len(RATIO_BOUNDS))
    examples: list[tuple[str, str]] = field(default_factory=list)
    """(trajectory id, the conversation with supervised spans wrapped in [[ ]])."""

    @property
    def supervised_ratio(self) -> float:
        return self.supervised_tokens / self.tokens if self.tokens else 0.0

    def summary(self) -> str:
        """A few lines for an error message or a terminal."""
        lines = [
            f"samples={self.samples} turns={self.turns} tokens={self.tokens} "
            f"supervised_tokens={self.supervised_tokens} ({self.supervised_ratio:.1%})",
            f"samples_without_supervised_tokens={self.samples_without_supervised_tokens} "
            f"turns_without_supervised_end_of_turn={self.turns_without_supervised_end_of_turn} "
            f"samples_over_max_length={self.samples_over_max_length}",
            "critical-step ratio histogram: "
            + " ".join(
                f"<={b:.1f}:{c}"
                for b, c in zip(self.ratio_bucket_bounds, self.ratio_bucket_counts, strict=True)
            ),
        ]
        return "\n".join([*(f"problem: {p}" for p in self.problems), *lines])

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "examples"} | {
            "supervised_ratio": self.supervised_ratio
        }


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end a turn in the common chat templates, plus the tokenizer's EOS."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def render_supervised(tokenizer: PreTrainedTokenizerBase, input_ids: list[int], labels: list[int]) -> str:
    """The sample's text with each supervised span wrapped in [[ ]]: what exactly carries loss."""
    pieces: list[str] = []
    start = 0
    marks = [label != IGNORE_INDEX for label in labels]
    for i in range(1, len(marks) + 1):
        if i == len(marks) or marks[i] != marks[start]:
            text = str(tokenizer.decode(input_ids[start:i]))
            pieces.append(f"[[{text}]]" if marks[start] else text)
            start = i
    return "".join(pieces)


def _bucket(ratio: float) -> int:
    return next(i for i, bound in enumerate(RATIO_BOUNDS) if ratio <= bound + 1e-9)


def validate_trajectories(
    trajectories: Iterable[Trajectory],
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask: MaskMode = "dataset",
    max_length: int | None = None,
    examples: int = 3,
) -> ValidationReport:
    """Tokenise every sample as training will and report what carries loss and what went wrong."""
    report = ValidationReport()
    eot = end_of_turn_ids(tokenizer)
    untagged: list[str] = []
    mismatched: list[str] = []
    all_selected = True
    for trajectory in trajectories:
        report.samples += 1
        report.turns += len(trajectory.messages)
        assistant = [m for m in trajectory.messages if m.role is Role.ASSISTANT]
        selected = [m for m in assistant if mask == "all_assistant" or m.train is True]
        if assistant:
            ratio = len(selected) / len(assistant)
            report.ratio_bucket_counts[_bucket(ratio)] += 1
            all_selected = all_selected and ratio == 1.0
        if mask == "dataset" and not trajectory.has_mask():
            untagged.append(trajectory.id)
            continue
        try:
            whole = prepare_sample(trajectory, tokenizer, mask=mask, tail_truncation=False)
            sample = prepare_sample(trajectory, tokenizer, mask=mask, max_length=max_length)
        except AtlasError as error:
            mismatched.append(f"{trajectory.id}: {error.message}")
            continue
        spans = _spans(whole.labels)
        if len(spans) != sum(1 for m in selected if m.content):
            mismatched.append(
                f"{trajectory.id}: {len(spans)} supervised spans for {len(selected)} selected turns"
            )
        report.tokens += len(sample.input_ids)
        report.supervised_tokens += sample.supervised_tokens
        report.samples_over_max_length += int(sample.over_length_tokens_dropped > 0)
        if sample.supervised_tokens == 0:
            report.samples_without_supervised_tokens += 1
        kept_spans = _spans(sample.labels)
        ended = sum(1 for _a, b in kept_spans if sample.input_ids[b - 1] in eot)
        report.turns_without_supervised_end_of_turn += max(0, len(selected) - ended)
        if len(report.examples) < examples and sample.supervised_tokens:
            report.examples.append(
                (trajectory.id, render_supervised(tokenizer, sample.input_ids, sample.labels))
            )
    _judge(report, mask, untagged, mismatched, all_selected)
    return report


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _listed(items: list[str]) -> str:
    more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def _judge(
    report: ValidationReport, mask: str, untagged: list[str], mismatched: list[str], all_selected: bool
) -> None:
    if report.samples == 0:
        report.problems.append("the dataset holds no samples")
    elif report.supervised_tokens == 0:
        report.problems.append("all-zero masks: no sample has a supervised token")
    if mask == "dataset" and report.samples and all_selected and not untagged:
        report.problems.append(
            "all-one masks: every assistant turn carries loss, so no critical steps were selected "
            "(run the selector first, or train with mask_mode all_assistant for the all-steps baseline)"
        )
    if untagged:
        report.problems.append(
            f"{len(untagged)} samples state no train flags (mask_mode dataset needs them): "
            f"{_listed(untagged)}"
        )
    if mismatched:
        report.problems.append(f"tokenisation mismatch in {len(mismatched)} samples: {_listed(mismatched)}")
    report.ok = not report.problems


def require_ok(report: ValidationReport, dataset_uri: str) -> None:
    """FailedPrecondition carrying the report when the dataset must not be trained on."""
    if not report.ok:
        raise FailedPrecondition(f"dataset {dataset_uri} fails mask validation:\n{report.summary()}")

"""Tokenised (TRL-style) export: a Trajectory as ``input_ids`` + ``labels`` for one tokenizer.

Peers get masks wrong by tokenising turn by turn: the pieces drift from how the whole conversation
tokenises, labels end up shifted, or the end-of-turn token is never trained. Here the conversation is
rendered with the tokenizer's chat template once and tokenised once (with character offsets), so
``input_ids`` are exactly what the model sees at training time. Each assistant turn's character span
is found by rendering two prefixes of the conversation, up to the turn's generation prompt and
through the turn, and checking both are prefixes of the full text; a token is supervised when it
overlaps a selected turn's span. A span runs from the end of the generation prompt through the
turn's end-of-turn token (whitespace the template puts between turns is left out), which is exactly
what the model must learn to generate, and what it must learn to stop with.

``labels`` are not shifted: Hugging Face causal LMs shift them inside the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from atlas.data.model import Role, Trajectory
from atlas.errors import InvalidArgument

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""The label value PyTorch's cross-entropy (and so every HF trainer) skips."""


@dataclass(slots=True)
class TokenizedSample:
    """One trajectory, tokenised; every list has the same length.

    ``assistant_masks`` marks the supervised tokens (1) and equals ``labels != -100``: TRL's SFT
    collator rebuilds labels from ``input_ids`` and sets -100 wherever this column is 0, so it must
    carry the critical-step selection, not every assistant token. A sample may have no supervised token (no
    selected turn, or truncation cut them all); check :attr:`supervised_tokens` before training on
    it, since a batch of such samples has a NaN loss.
    """

    input_ids: list[int]
    labels: list[int]
    attention_mask: list[int]
    assistant_masks: list[int]
    truncated: bool

    @property
    def supervised_tokens(self) -> int:
        return sum(self.assistant_masks)


def tokenize_trajectory(
    trajectory: Trajectory,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask: Literal["dataset", "all_assistant"] = "dataset",
    max_length: int | None = None,
) -> TokenizedSample:
    """Tokenise a trajectory with ``tokenizer``'s chat template and supervise the selected turns.

    ``mask="dataset"`` supervises the assistant turns with ``train=True`` (the critical steps);
    ``"all_assistant"`` supervises every assistant turn (plain SFT, the paper's baseline).
    ``max_length`` keeps the first ``max_length`` tokens. Raises InvalidArgument for a trajectory that
    states no train flags under ``mask="dataset"`` (it would silently train on nothing), and for a
    chat template whose renderings of a prefix of the conversation are not prefixes of the whole.
    """
    if mask not in ("dataset", "all_assistant"):
        raise ValueError(f"mask must be 'dataset' or 'all_assistant', not {mask!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidArgument("tokenised export needs a fast tokenizer: the masks come from its offsets")
    if mask == "dataset" and not trajectory.has_mask():
        raise InvalidArgument(
            f"trajectory {trajectory.id!r} states no train flags on its assistant turns; "
            "select critical steps first or export with mask='all_assistant'"
        )
    chat = [{"role": m.role.value, "content": m.content} for m in trajectory.messages]
    text = _render(tokenizer, chat)
    spans = [
        _turn_span(tokenizer, chat, i, text, trajectory.id)
        for i, m in enumerate(trajectory.messages)
        if m.role is Role.ASSISTANT and (mask == "all_assistant" or m.train is True)
    ]
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoding["input_ids"])
    supervised = _overlapping(encoding["offset_mapping"], spans)
    truncated = max_length is not None and len(input_ids) > max_length
    if max_length is not None:
        input_ids, supervised = input_ids[:max_length], supervised[:max_length]
    return TokenizedSample(
        input_ids=input_ids,
        labels=[t if s else IGNORE_INDEX for t, s in zip(input_ids, supervised, strict=True)],
        attention_mask=[1] * len(input_ids),
        assistant_masks=supervised,
        truncated=truncated,
    )


def to_trl_record(sample: TokenizedSample) -> dict[str, list[int]]:
    """The columns a pre-tokenised TRL ``SFTTrainer`` dataset takes (and plain HF ``Trainer`` uses)."""
    return {
        "input_ids": sample.input_ids,
        "attention_mask": sample.attention_mask,
        "labels": sample.labels,
        "assistant_masks": sample.assistant_masks,
    }


def _render(tokenizer: PreTrainedTokenizerBase, chat: list[dict[str, str]], **kwargs: Any) -> str:
    text = tokenizer.apply_chat_template(chat, tokenize=False, **kwargs)
    assert isinstance(text, str)  # tokenize=False on one conversation returns its text
    return text


def _turn_span(
    tokenizer: PreTrainedTokenizerBase, chat: list[dict[str, str]], i: int, text: str, trajectory_id: str
) -> tuple[int, int]:
    """Character span of assistant message ``i`` in ``text``: its content through its end-of-turn token."""
    if i == 0:
        raise InvalidArgument(
            f"trajectory {trajectory_id!r} starts with an assistant turn; a chat template cannot "
            "render the empty prompt before it, so the turn cannot be located"
        )
    before = _render(tokenizer, chat[:i], add_generation_prompt=True)
    through = _render(tokenizer, chat[: i + 1])
    if not (text.startswith(before) and text.startswith(through) and len(before) <= len(through)):
        raise InvalidArgument(
            f"trajectory {trajectory_id!r}: the chat template is not prefix-stable at message {i} "
            "(rendering the conversation up to this turn does not give a prefix of rendering all of "
            "it, e.g. a template that rewrites earlier turns), so its masks cannot be placed"
        )
    return len(before), max(len(before), len(through.rstrip()))


def _overlapping(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token whose characters overlap a span; offsets and spans both ascend."""
    marks = []
    j = 0
    for start, end in offsets:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        inside = j < len(spans) and start < end and end > spans[j][0]
        marks.append(1 if inside else 0)
    return marks

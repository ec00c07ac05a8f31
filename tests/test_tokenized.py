"""Tokenised export on the tiny tokenizer: the supervised tokens are exactly the critical turns."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast

from atlas.data.formats import read_file
from atlas.data.model import Message, Role, Trajectory
from atlas.data.tokenized import IGNORE_INDEX, TokenizedSample, to_trl_record, tokenize_trajectory
from atlas.errors import InvalidArgument
from atlas.models.tiny import CHAT_TEMPLATE, IM_END, build_tiny_tokenizer

SAMPLE = Path(__file__).parent / "data" / "formats" / "babyai_agentgym.jsonl"


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


def sample_trajectories() -> list[Trajectory]:
    return list(read_file(SAMPLE))


def unicode_trajectory() -> Trajectory:
    return Trajectory(
        id="uni",
        messages=[
            Message(Role.SYSTEM, "Agent régime — naïve façade.", False),
            Message(Role.USER, "Your goal: go to the grey box", False),
            Message(Role.ASSISTANT, "Thought: ça va 👍\nAction: turn left\n", True),
            Message(Role.TOOL, "Nothing happens.\n\n", False),
            Message(Role.ASSISTANT, "  Action: go to grey box 1  ", False),
            Message(Role.USER, "Done", False),
            Message(Role.ASSISTANT, "", True),
        ],
    )


def supervised_runs(sample: TokenizedSample) -> list[list[int]]:
    """Contiguous runs of supervised token ids."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label != IGNORE_INDEX:
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = label != IGNORE_INDEX
    return runs


def chat(trajectory: Trajectory) -> list[dict[str, str]]:
    return [{"role": m.role.value, "content": m.content} for m in trajectory.messages]


# --------------------------------------------------------------------------------------- tiny tokenizer


def test_tiny_tokenizer_is_deterministic_fast_and_chatml(tmp_path: Path) -> None:
    start = time.perf_counter()
    first = build_tiny_tokenizer(tmp_path / "tok")
    assert time.perf_counter() - start < 2.0
    second = build_tiny_tokenizer()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert 900 <= len(first) <= 2048
    assert first.is_fast and first.eos_token == IM_END and first.pad_token == "<|endoftext|>"
    assert first.convert_tokens_to_ids(["<|im_start|>", IM_END]) == [
        first.convert_tokens_to_ids("<|im_start|>"),
        2,
    ]
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": "ok"}]
    text = first.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
    prompt = first.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\n"
    assert first.tokenize("Thought: go to red ball 1")[:2] == ["Thought", ":"]
    assert first.decode(first.encode("naïve 👍 façade", add_special_tokens=False)) == "naïve 👍 façade"

    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert reloaded.chat_template == CHAT_TEMPLATE and reloaded.eos_token == IM_END
    assert reloaded.encode(text, add_special_tokens=False) == first.encode(text, add_special_tokens=False)


# ------------------------------------------------------------------------------------------------ masks


@pytest.mark.parametrize("trajectory", [*sample_trajectories(), unicode_trajectory()], ids=lambda t: t.id)
def test_supervised_tokens_decode_to_exactly_the_critical_turns(
    tokenizer: PreTrainedTokenizerFast, trajectory: Trajectory
) -> None:
    sample = tokenize_trajectory(trajectory, tokenizer)
    decoded = [tokenizer.decode(run) for run in supervised_runs(sample)]
    critical = [m.content + IM_END for m in trajectory.messages if m.role is Role.ASSISTANT and m.train]
    assert decoded == critical
    assert all(run[-1] == tokenizer.eos_token_id for run in supervised_runs(sample))  # end of turn is trained
    assert sample.supervised_tokens == sum(len(run) for run in supervised_runs(sample))


@pytest.mark.parametrize("trajectory", [*sample_trajectories(), unicode_trajectory()], ids=lambda t: t.id)
def test_all_assistant_supervises_every_assistant_turn(
    tokenizer: PreTrainedTokenizerFast, trajectory: Trajectory
) -> None:
    everything = tokenize_trajectory(trajectory, tokenizer, mask="all_assistant")
    decoded = [tokenizer.decode(run) for run in supervised_runs(everything)]
    assert decoded == [m.content + IM_END for m in trajectory.messages if m.role is Role.ASSISTANT]
    critical = tokenize_trajectory(trajectory, tokenizer, mask="dataset")
    assert critical.input_ids == everything.input_ids
    assert 0 < critical.supervised_tokens < everything.supervised_tokens
    assert all(c <= e for c, e in zip(critical.assistant_masks, everything.assistant_masks, strict=True))


@pytest.mark.parametrize("trajectory", [*sample_trajectories(), unicode_trajectory()], ids=lambda t: t.id)
def test_masks_match_whole_conversation_tokenisation(
    tokenizer: PreTrainedTokenizerFast, trajectory: Trajectory
) -> None:
    sample = tokenize_trajectory(trajectory, tokenizer, mask="all_assistant")
    reference = tokenizer.apply_chat_template(
        chat(trajectory), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert isinstance(reference, BatchEncoding)
    assert sample.input_ids == list(reference["input_ids"])
    # transformers' {% generation %}-based mask marks the same tokens on this template
    assert sample.assistant_masks == list(reference["assistant_masks"])


def test_labels_are_unshifted_input_ids_on_supervised_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    sample = tokenize_trajectory(sample_trajectories()[1], tokenizer)
    n = len(sample.input_ids)
    assert len(sample.labels) == len(sample.attention_mask) == len(sample.assistant_masks) == n
    assert sample.attention_mask == [1] * n and not sample.truncated
    for token, label, mask in zip(sample.input_ids, sample.labels, sample.assistant_masks, strict=True):
        assert label == (token if mask else IGNORE_INDEX)
    assert set(sample.assistant_masks) == {0, 1}
    assert to_trl_record(sample) == {
        "input_ids": sample.input_ids,
        "attention_mask": sample.attention_mask,
        "labels": sample.labels,
        "assistant_masks": sample.assistant_masks,
    }


def test_truncation_keeps_the_first_max_length_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    trajectory = sample_trajectories()[1]
    full = tokenize_trajectory(trajectory, tokenizer)
    n = len(full.input_ids)
    last_supervised = n - 1 - full.assistant_masks[::-1].index(1)  # the final critical turn's end-of-turn
    cut = tokenize_trajectory(trajectory, tokenizer, max_length=last_supervised)
    assert cut.truncated and len(cut.input_ids) == last_supervised
    assert cut.input_ids == full.input_ids[:last_supervised] and cut.labels == full.labels[:last_supervised]
    assert cut.supervised_tokens == full.supervised_tokens - 1
    exact = tokenize_trajectory(trajectory, tokenizer, max_length=n)
    assert not exact.truncated and exact == full
    first_supervised = full.assistant_masks.index(1)
    empty = tokenize_trajectory(trajectory, tokenizer, max_length=first_supervised)
    assert empty.truncated and empty.supervised_tokens == 0  # the caller must drop it (NaN loss)


# ----------------------------------------------------------------------------------------------- errors


def test_dataset_mask_on_an_unmasked_trajectory_is_an_error(tokenizer: PreTrainedTokenizerFast) -> None:
    unmasked = Trajectory("plain", [Message(Role.USER, "go"), Message(Role.ASSISTANT, "ok")])
    with pytest.raises(InvalidArgument, match="'plain' states no train flags"):
        tokenize_trajectory(unmasked, tokenizer)
    assert tokenize_trajectory(unmasked, tokenizer, mask="all_assistant").supervised_tokens > 0
    nothing = Trajectory("none", [Message(Role.USER, "go"), Message(Role.ASSISTANT, "ok", False)])
    assert tokenize_trajectory(nothing, tokenizer).supervised_tokens == 0


def test_template_that_is_not_prefix_stable_is_rejected(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    # Numbers turns from the end, as templates that rewrite history do: a prefix renders differently.
    tokenizer.chat_template = CHAT_TEMPLATE.replace(
        "+ '\\n' }}", "+ ' ' + (loop.revindex|string) + '\\n' }}", 1
    )
    trajectory = sample_trajectories()[0]
    with pytest.raises(
        InvalidArgument, match="trajectory 'babyai_17': the chat template is not prefix-stable"
    ):
        tokenize_trajectory(trajectory, tokenizer)


def test_assistant_first_turn_is_rejected(tokenizer: PreTrainedTokenizerFast) -> None:
    trajectory = Trajectory("first", [Message(Role.ASSISTANT, "hi", True), Message(Role.USER, "go")])
    with pytest.raises(InvalidArgument, match="'first' starts with an assistant turn"):
        tokenize_trajectory(trajectory, tokenizer)


def test_unknown_mask_mode_is_rejected(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ValueError, match="mask must be"):
        tokenize_trajectory(sample_trajectories()[0], tokenizer, mask="critical")  # type: ignore[arg-type]

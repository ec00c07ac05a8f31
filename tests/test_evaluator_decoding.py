"""Batched decoding with per-episode KV caches: same tokens as ``generate``, fewer tokens run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from atlas_evaluator.policies.base import GenerationConfig, PolicyRequest
from atlas_evaluator.policies.decoding import Sampler, decode


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: on a shared 2-core runner, intra-op threads only wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _prompts(lengths: tuple[int, ...], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 900, (n,), generator=g).tolist() for n in lengths]


def _greedy() -> Sampler:
    return Sampler(0.0, 1.0, torch.Generator())


def _reference(model: Any, prompt: list[int], new: int) -> list[int]:
    out = model.generate(
        input_ids=torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=new,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    return [int(t) for t in out[0, len(prompt) :]]


@torch.inference_mode()
def test_batched_rows_match_generate_and_cached_turns_match_fresh_ones(model: Any) -> None:
    prompts = _prompts((12, 40, 25, 18))
    first = decode(model, prompts, [None] * 4, max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    # Left padding is masked out exactly: each row decodes as it would alone.
    assert [d.tokens for d in first] == [_reference(model, p, 6) for p in prompts]
    # Next turn: the chat grew by the reply and an observation. Reusing the cache runs only the new
    # part (the last generated token was never fed, so it is recomputed) and changes nothing.
    grown = [p + d.tokens + q for p, d, q in zip(prompts, first, _prompts((6, 3, 8, 2), 1), strict=True)]
    fresh = decode(model, grown, [None] * 4, max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    reused = decode(
        model, grown, [d.session for d in first], max_new_tokens=6, stop_ids=set(), sampler=_greedy()
    )
    assert [d.tokens for d in reused] == [d.tokens for d in fresh]
    assert [d.reused_tokens for d in reused] == [len(p) + 5 for p in prompts]
    assert all(d.reused_tokens == 0 for d in fresh)
    # A session that diverges early (an edited chat) is reused only up to the common prefix.
    edited = [[1, *grown[0][1:]]]
    row = decode(model, edited, [first[0].session], max_new_tokens=2, stop_ids=set(), sampler=_greedy())
    assert row[0].reused_tokens == 0


@torch.inference_mode()
def test_rows_of_a_batch_share_a_common_prefix_without_changing_tokens(model: Any) -> None:
    instruction = _prompts((40,), 7)[0]
    prompts = [instruction + tail for tail in _prompts((5, 9, 3), 8)] + _prompts((20,), 9)
    shared = decode(model, prompts, [None] * 4, max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    alone = decode(
        model, prompts, [None] * 4, max_new_tokens=6, stop_ids=set(), sampler=_greedy(), share_prefixes=False
    )
    expected = [_reference(model, p, 6) for p in prompts]
    assert [d.tokens for d in shared] == [d.tokens for d in alone] == expected
    # The instruction is prefilled once: rows 2 and 3 start from row 1's keys/values; the unrelated
    # last row and the first row start from nothing.
    assert [d.reused_tokens for d in shared] == [0, 40, 40, 0]
    assert all(d.reused_tokens == 0 for d in alone)
    for row, prompt in zip(shared, prompts, strict=True):  # each row's own cache is complete
        assert all(k.shape[2] == len(prompt) + 5 for k, _ in row.session.layers)


@torch.inference_mode()
def test_grouped_query_attention_without_repeated_caches_decodes_the_same(
    model: Any, tiny_model_dir: Path
) -> None:
    from atlas_evaluator.policies.attention import NAME, attention_for
    from transformers import AutoModelForCausalLM

    assert attention_for(torch.device("cpu")) == NAME
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # the tiny model is GQA
    gqa = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation=NAME
    ).eval()
    prompts = _prompts((12, 40, 25, 18), 3)  # different lengths: the batch is left-padded and masked
    rows = decode(gqa, prompts, [None] * 4, max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    assert [d.tokens for d in rows] == [_reference(model, p, 6) for p in prompts]
    grown = [p + d.tokens + [7, 8, 9] for p, d in zip(prompts, rows, strict=True)]
    again = decode(gqa, grown, [d.session for d in rows], max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    assert [d.tokens for d in again] == [_reference(model, p, 6) for p in grown]


def test_attention_over_a_shared_prefix_equals_attention_over_each_rows_whole_cache() -> None:
    from atlas_evaluator.policies.attention import _with_prefix

    g = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, dim, prefix, width = 4, 6, 2, 32, 70, 25
    query = torch.randn(rows, heads, 1, dim, generator=g)
    shared = (
        torch.randn(1, kv_heads, prefix, dim, generator=g),
        torch.randn(1, kv_heads, prefix, dim, generator=g),
    )
    own_k = torch.randn(rows, kv_heads, width, dim, generator=g)
    own_v = torch.randn(rows, kv_heads, width, dim, generator=g)
    own = [25, 3, 17, 1]  # each row's own keys, left-padded to the widest
    attend = torch.tensor([[False] * (width - n) + [True] * n for n in own])[:, None, None, :]
    additive = torch.zeros(attend.shape).masked_fill(~attend, float("-inf"))
    got = _with_prefix(query, own_k, own_v, additive, shared, None)
    # Reference: every row's whole cache (the prefix copied in front), heads repeated per group.
    keys = torch.cat([shared[0].expand(rows, -1, -1, -1), own_k], dim=2).repeat_interleave(
        heads // kv_heads, 1
    )
    values = torch.cat([shared[1].expand(rows, -1, -1, -1), own_v], dim=2).repeat_interleave(
        heads // kv_heads, 1
    )
    full = torch.cat([torch.ones(rows, 1, 1, prefix, dtype=torch.bool), attend], dim=-1)
    want = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=full)
    assert got.shape == (rows, 1, heads, dim)
    torch.testing.assert_close(got, want.transpose(1, 2), atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_rows_sharing_a_long_prefix_attend_to_one_copy_of_it_and_decode_the_same(
    model: Any, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlas_evaluator.policies import attention, decoding
    from transformers import AutoModelForCausalLM

    gqa = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation=attention.attention_for(torch.device("cpu"))
    ).eval()
    calls = []
    real = attention._with_prefix
    monkeypatch.setattr(attention, "_with_prefix", lambda *a: calls.append(a[4][0].shape[2]) or real(*a))
    instruction = _prompts((decoding.SHARED_PREFIX_MIN + 16,), 11)[0]
    prompts = [instruction + tail for tail in _prompts((5, 30, 12), 12)]
    rows = decode(gqa, prompts, [None] * 3, max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    assert [d.tokens for d in rows] == [_reference(model, p, 6) for p in prompts]
    # Every layer of every step attended to the one copy of the 80-token prefix.
    assert calls and set(calls) == {len(instruction)}
    assert len(calls) == 5 * gqa.config.num_hidden_layers  # 6 tokens: the first comes from prefill
    for row, prompt in zip(rows, prompts, strict=True):  # each session holds the row's whole cache
        assert all(k.shape[2] == len(prompt) + 5 for k, _ in row.session.layers)
    # The next turn starts from those sessions and still decodes as generate does.
    grown = [p + d.tokens + [7, 8, 9] for p, d in zip(prompts, rows, strict=True)]
    again = decode(gqa, grown, [d.session for d in rows], max_new_tokens=6, stop_ids=set(), sampler=_greedy())
    assert [d.tokens for d in again] == [_reference(model, p, 6) for p in grown]
    # Identical prompts: the rows' own part is only what they generate.
    twins = decode(
        gqa, [prompts[1], prompts[1]], [None] * 2, max_new_tokens=4, stop_ids=set(), sampler=_greedy()
    )
    assert [d.tokens for d in twins] == [_reference(model, prompts[1], 4)] * 2
    # A shorter common prefix, or a single row, decodes without it.
    calls.clear()
    short = [instruction[:20] + tail for tail in _prompts((5, 30), 13)]
    decode(gqa, short, [None] * 2, max_new_tokens=3, stop_ids=set(), sampler=_greedy())
    decode(gqa, prompts[:1], [None], max_new_tokens=3, stop_ids=set(), sampler=_greedy())
    assert calls == []


def test_a_prefix_is_shared_only_where_every_rows_keys_are_identical() -> None:
    from types import SimpleNamespace

    from atlas_evaluator.policies import attention
    from atlas_evaluator.policies.decoding import SHARED_PREFIX_MIN, _shared_prefix_length

    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation=attention.NAME))
    n = SHARED_PREFIX_MIN + 10
    prompts = [[*range(n), 1], [*range(n), 2, 3]]
    kv = torch.randn(1, 1, n + 2, 4)
    layers = [[(kv[:, :, : n + 1], kv[:, :, : n + 1])], [(kv.clone(), kv.clone())]]
    assert _shared_prefix_length(model, prompts, [0, 1], [n + 1, n + 2], layers) == n
    layers[1][0][0][0, 0, 3, 0] += 1e-6  # the second row computed its prefix slightly differently
    assert _shared_prefix_length(model, prompts, [0, 1], [n + 1, n + 2], layers) == 0
    sdpa = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))  # CUDA: not our kernel
    assert _shared_prefix_length(sdpa, prompts, [0, 1], [n + 1, n + 2], layers[:1] * 2) == 0


@torch.inference_mode()
def test_a_row_that_stops_leaves_the_batch_with_its_cache(model: Any) -> None:
    prompts = _prompts((10, 20, 15))
    ref = [_reference(model, p, 10) for p in prompts]
    stop = ref[1][3]
    rows = decode(model, prompts, [None] * 3, max_new_tokens=10, stop_ids={stop}, sampler=_greedy())
    for prompt, expected, row in zip(prompts, ref, rows, strict=True):
        cut = expected.index(stop) if stop in expected else len(expected)
        assert row.tokens == expected[:cut]  # the stop token itself is not part of the reply
        # The cache holds the prompt and every generated token that went through the model.
        fed = len(prompt) + min(cut + 1, 10) - 1
        assert len(row.session.ids) == fed
        assert all(k.shape[2] == fed and v.shape[2] == fed for k, v in row.session.layers)


def test_policy_keeps_a_cache_per_episode_and_drops_it_at_the_end(tiny_model_dir: Path) -> None:
    from atlas_evaluator.policies.transformers import TransformersPolicy

    policy = TransformersPolicy(tiny_model_dir, generation=GenerationConfig(max_new_tokens=6))
    chat = [{"role": "user", "content": "Your goal: go to the red ball"}]
    first = policy.generate([PolicyRequest("a", chat), PolicyRequest("b", chat[:1])])
    assert first[0].info["reused_prompt_tokens"] == 0 and set(policy._sessions) == {"a", "b"}
    grown = [*chat, {"role": "assistant", "content": first[0].text}, {"role": "user", "content": "ok"}]
    second = policy.generate([PolicyRequest("a", grown)])
    assert second[0].info["reused_prompt_tokens"] >= first[0].prompt_tokens
    policy.end("a")
    policy.end("b")
    assert policy._sessions == {}


def test_a_turn_tokenizes_only_the_new_text_and_gets_the_whole_chats_tokens(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlas_evaluator.policies import transformers

    policy = transformers.TransformersPolicy(tiny_model_dir, generation=GenerationConfig(max_new_tokens=4))
    policy._incremental_checks = 0  # no comparison with a full tokenization: this test makes it
    tokenized: list[str] = []
    real = policy._tokenize
    monkeypatch.setattr(policy, "_tokenize", lambda text, at: tokenized.append(text) or real(text, at))
    chat = [{"role": "system", "content": "You play a text game."}, {"role": "user", "content": "Go north."}]
    for turn in range(4):
        tokenized.clear()
        ids = policy._prompt_ids(PolicyRequest("e", chat))
        assert ids == policy._full_ids(PolicyRequest("e", chat))
        if turn:  # from the previous prompt's last <|im_start|> on, not the whole chat
            assert len(tokenized) == 1 and tokenized[0].startswith("<|im_start|>assistant")
            assert "Go north." not in tokenized[0]
        chat = [*chat, {"role": "assistant", "content": f"Action: wait {turn}"}]
        chat.append({"role": "user", "content": f"Nothing happens.\n\n turn {turn}"})
    # A chat that does not extend the previous one (an edited history) is tokenized whole.
    edited = [chat[0], {"role": "user", "content": "Go south."}]
    tokenized.clear()
    assert policy._prompt_ids(PolicyRequest("e", edited)) == policy._full_ids(PolicyRequest("e", edited))
    assert len(tokenized) == 1 and "Go south." in tokenized[0]
    policy.end("e")
    assert policy._rendered == {}


def test_incremental_tokenization_turns_itself_off_when_a_check_disagrees(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from atlas_evaluator.policies import transformers

    policy = transformers.TransformersPolicy(tiny_model_dir, generation=GenerationConfig(max_new_tokens=4))
    chat = [{"role": "user", "content": "Go north."}]
    policy._prompt_ids(PolicyRequest("e", chat))
    real = policy._tokenize

    def wrong(text: str, at: int) -> tuple[list[int], list[int], list[int]]:
        ids, cuts, tokens = real(text, at)
        return [*ids, ids[-1]], cuts, tokens  # a tokenizer that does not split at added tokens

    monkeypatch.setattr(policy, "_tokenize", wrong)
    grown = [*chat, {"role": "assistant", "content": "Action: wait"}, {"role": "user", "content": "ok"}]
    assert policy._prompt_ids(PolicyRequest("e", grown)) == policy._full_ids(PolicyRequest("e", grown))
    assert "every prompt is tokenized whole from now on" in caplog.text
    assert policy._incremental_checks == -1 and policy._rendered == {}


def test_a_new_episode_starts_from_a_shared_instruction_prefix(tiny_model_dir: Path) -> None:
    from atlas_evaluator.policies.transformers import TransformersPolicy

    instruction = {"role": "user", "content": "You are in a grid world. Reply with Thought: ... Action: ..."}
    goals = ["Your goal: go to the red ball", "Your goal: pick up the blue key"]
    generation = GenerationConfig(max_new_tokens=6)
    shared = TransformersPolicy(tiny_model_dir, generation=generation)
    fresh = TransformersPolicy(tiny_model_dir, generation=generation, reuse_cache=False)
    replies = []
    for episode, goal in enumerate(goals):
        chat = [instruction, {"role": "assistant", "content": "OK."}, {"role": "user", "content": goal}]
        [reply] = shared.generate([PolicyRequest(f"e{episode}", chat)])
        shared.end(f"e{episode}")
        [alone] = fresh.generate([PolicyRequest(f"e{episode}", chat)])
        assert reply.text == alone.text  # reusing another episode's keys/values changes nothing
        replies.append(reply)
    assert replies[0].info["reused_prompt_tokens"] == 0
    # The second episode's first turn reused the instruction the first episode's cache holds.
    assert 16 <= replies[1].info["reused_prompt_tokens"] < replies[1].prompt_tokens


def test_sampling_is_reproducible_from_the_seed(model: Any) -> None:
    prompts = _prompts((8, 12))

    def sample(seed: int) -> list[list[int]]:
        sampler = Sampler(1.0, 0.9, torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            rows = decode(model, prompts, [None, None], max_new_tokens=8, stop_ids=set(), sampler=sampler)
        return [r.tokens for r in rows]

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_policy_device_names_are_checked() -> None:
    from atlas_evaluator.policies.transformers import resolve_device

    from atlas.errors import InvalidArgument

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidArgument, match="unknown device 'gpu'") as bad:
        resolve_device("gpu")
    assert bad.value.field_path == "policy_device"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgument, match="no CUDA GPU"):
            resolve_device("cuda:0")


@torch.inference_mode()
def test_decoding_stops_within_one_step_when_asked(model: Any) -> None:
    from atlas.errors import Cancelled

    asked = []

    def stop_after_three_steps() -> bool:
        asked.append(1)
        return len(asked) > 2 + 3  # two rows' prefills, then three decoding steps

    with pytest.raises(Cancelled):
        decode(
            model,
            _prompts((10, 12)),
            [None, None],
            max_new_tokens=50,
            stop_ids=set(),
            sampler=_greedy(),
            should_stop=stop_after_three_steps,
        )
    assert len(asked) == 6  # asked once more, then nothing else ran


def test_a_cancelled_runner_interrupts_the_policy_call_in_progress(tiny_model_dir: Path) -> None:
    import threading

    from atlas_evaluator.policies.transformers import TransformersPolicy
    from atlas_evaluator.runner import Runner, plan_suite

    from atlas.errors import Cancelled

    policy = TransformersPolicy(tiny_model_dir, generation=GenerationConfig(max_new_tokens=2000))
    cancel = threading.Event()
    steps = []
    decode_step = policy.model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:  # cancels from inside the first policy call
        steps.append(1)
        if len(steps) == 20:
            cancel.set()
        return decode_step(*args, **kwargs)

    policy.model.forward = forward  # type: ignore[method-assign]
    with Runner(policy, concurrency=2, cancel=cancel) as runner, pytest.raises(Cancelled):
        runner.run(plan_suite(["babyai/GoToLocal"], 2, seed=0, max_turns=3))
    assert runner.stats.policy_calls == 0  # the first call never returned
    assert 20 <= len(steps) <= 21  # not the 2,000 tokens it was asked for

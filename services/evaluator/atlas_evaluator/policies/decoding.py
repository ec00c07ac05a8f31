"""Batched decoding with a KV cache kept per episode across turns, for the transformers policy.

Why not ``model.generate`` on the whole re-rendered chat each turn: an episode's prompt at turn *t*
is its prompt at turn *t-1* plus the reply and one observation, so re-encoding the whole chat every
turn makes the cost of a turn grow with the conversation (most of the time of a 6-turn BabyAI
episode went to re-prefilling the chat), and ``generate`` keeps finished rows of a batch decoding
until the last row stops. Here:

1. each row's prompt is compared with the tokens its episode's cache already holds (the chat template
   renders earlier turns identically, so the common prefix is everything but the new observation);
   only the new suffix is run through the model, one row at a time and without padding (the fast
   causal attention path; prefill is compute bound, and batching the suffixes into one padded pass
   measured no faster here). A row with no cache of its own
   starts from the longest prefix it shares with a row prefilled before it in the same batch
   (episodes of one env open with the same instruction, so a suite's first turn prefills that
   instruction once instead of once per episode);
2. the rows' caches are left-padded into one batch cache and decoded together, one token per step
   for all rows, with explicit positions and an attention mask that hides the padding. Leading
   tokens that every row holds with identical keys/values (at least ``SHARED_PREFIX_MIN``: the
   system prompt and an env's instructions) stay out of the batch cache, kept once, and each step
   attends to them with all rows' queries in one pass (``attention.shared_prefix``);
3. a row that produces an end-of-turn token (or reaches ``max_new_tokens``) leaves the batch at once,
   its cache slice saved for its episode's next turn.

Greedy decoding gives the same tokens as decoding the row alone (padding is masked out exactly, up
to float rounding); sampling uses one ``torch.Generator`` seeded from the policy seed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from atlas.errors import Cancelled
from atlas_evaluator.policies import attention


@dataclass(slots=True)
class Session:
    """What the model has already seen of one episode: token ids and their per-layer (keys, values),
    each of shape ``(1, kv_heads, len(ids), head_dim)``."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(slots=True)
class Decoded:
    """One row's result: generated tokens (end-of-turn token excluded) and the cache to keep."""

    tokens: list[int]
    session: Session
    reused_tokens: int  # prompt tokens whose keys/values came from a cache (earlier turn or shared prefix)


MIN_SHARED_PREFIX = 16  # tokens; a shorter common prefix is not worth a cache copy

Layers = list[tuple[torch.Tensor, torch.Tensor]]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _cache(layers: list[tuple[torch.Tensor, torch.Tensor]] | None) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()


def _batch_cache(layers: list[tuple[torch.Tensor, torch.Tensor]], capacity: int) -> Any:
    """A cache whose layers append in place (``DynamicCache`` copies the whole cache every token)."""
    from transformers.cache_utils import Cache, DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            super().__init__()
            b, h, n, d = keys.shape
            self._k = keys.new_empty((b, h, max(capacity, n), d))
            self._v = values.new_empty((b, h, max(capacity, n), values.shape[-1]))
            self._k[:, :, :n] = keys
            self._v[:, :, :n] = values
            self._n = n
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self._view()

        def _view(self) -> None:
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            m = key_states.shape[-2]
            if self._n + m > self._k.shape[-2]:  # more tokens than planned: grow once, by doubling
                self._k = torch.cat([self._k, torch.empty_like(self._k)], dim=-2)
                self._v = torch.cat([self._v, torch.empty_like(self._v)], dim=-2)
            self._k[:, :, self._n : self._n + m] = key_states
            self._v[:, :, self._n : self._n + m] = value_states
            self._n += m
            self._view()
            return self._k[:, :, : self._n], self._v[:, :, : self._n]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._view()

    return Cache(layers=[GrowingLayer(k, v) for k, v in layers])


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class Sampler:
    """Greedy (``temperature == 0``) or temperature/top-p sampling from a seeded generator."""

    def __init__(self, temperature: float, top_p: float, generator: torch.Generator) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.generator = generator

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` (rows, vocab) -> next token per row (rows,)."""
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        # On the generator's device (the CPU): the same draws wherever the model runs.
        probs = torch.softmax(logits.float().cpu() / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest set whose mass reaches top_p (the first token always stays).
            drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= self.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)


def _prefill(model: Any, prompt: list[int], session: Session | None) -> tuple[torch.Tensor, Any, int]:
    """Run the part of ``prompt`` the session has not seen; returns (last logits, cache, reused)."""
    reused = common_prefix(session.ids, prompt) if session is not None else 0
    reused = min(reused, len(prompt) - 1)  # at least one token must run, for the next-token logits
    layers = None
    if session is not None and reused > 0:
        layers = [(k[:, :, :reused], v[:, :, :reused]) for k, v in session.layers]
    cache = _cache(layers)
    mask = None
    if reused:
        # The new tokens see every cached one and each other causally. Built here once, additive,
        # in the 4D form transformers takes as given: otherwise it builds a boolean one on every
        # call (vmapped index functions) and attention converts that to additive once per layer,
        # ~1.1 of the 6.4 ms a 170-token BabyAI turn took to prefill with the tiny model.
        new = len(prompt) - reused
        mask = torch.zeros((1, 1, new, len(prompt)), dtype=model.dtype, device=model.device)
        mask[..., reused:] = torch.full_like(mask[0, 0, :, :new], float("-inf")).triu_(1)
    out = model(
        input_ids=torch.tensor([prompt[reused:]], dtype=torch.long, device=model.device),
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[0, -1], out.past_key_values, reused


def _sibling(prompts: Sequence[list[int]], row_layers: list[Layers], row: int) -> Session | None:
    """The already-prefilled row (``row_layers`` holds rows before ``row``) sharing the longest prefix
    (>= MIN_SHARED_PREFIX) with ``row``."""
    prompt = prompts[row]
    best, length = None, MIN_SHARED_PREFIX - 1
    for j in range(len(row_layers)):
        if prompts[j][:MIN_SHARED_PREFIX] != prompt[:MIN_SHARED_PREFIX]:
            continue
        n = common_prefix(prompts[j], prompt)
        if n > length:
            best, length = j, n
    return None if best is None else Session(list(prompts[best]), row_layers[best])


def _row_cache(batch: Any, j: int, start: int, shared: Layers) -> Layers:
    """Row ``j``'s keys/values from the batch cache (its own, from ``start``, past the padding), as
    copies so a session does not keep the whole batch cache alive; with a ``shared`` prefix, that
    prefix in front again, so the session holds the row's complete cache."""
    own = [(k[j : j + 1, :, start:], v[j : j + 1, :, start:]) for k, v in _layers(batch)]
    if not shared:
        return [(k.clone(), v.clone()) for k, v in own]
    return [
        (torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2))
        for (pk, pv), (k, v) in zip(shared, own, strict=True)
    ]


SHARED_PREFIX_MIN = 64  # tokens; below this, attending to a shared prefix separately is not worth it


def _shared_prefix_length(
    model: Any, prompts: Sequence[list[int]], rows: list[int], lengths: list[int], row_layers: list[Layers]
) -> int:
    """How many leading tokens every one of ``rows`` holds with identical keys/values (checked, not
    assumed: a row that computed them itself may differ in the last bits), or 0 where shared-prefix
    attention does not apply (one row, a model not on ``attention.NAME``, a prefix under
    ``SHARED_PREFIX_MIN``)."""
    if len(rows) < 2 or getattr(model.config, "_attn_implementation", None) != attention.NAME:
        return 0
    first = prompts[rows[0]]
    n = min(min(common_prefix(first, prompts[r]) for r in rows[1:]), min(lengths[r] for r in rows))
    if n < SHARED_PREFIX_MIN:
        return 0
    base = row_layers[rows[0]]
    for r in rows[1:]:
        for (k0, v0), (k, v) in zip(base, row_layers[r], strict=True):
            if not (torch.equal(k0[:, :, :n], k[:, :, :n]) and torch.equal(v0[:, :, :n], v[:, :, :n])):
                return 0
    return n


def decode(
    model: Any,
    prompts: Sequence[list[int]],
    sessions: Sequence[Session | None],
    *,
    max_new_tokens: int,
    stop_ids: set[int],
    sampler: Sampler,
    share_prefixes: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> list[Decoded]:
    """Generate up to ``max_new_tokens`` for every prompt, in one batch after per-row prefill.

    ``share_prefixes``: a row without a session reuses the keys/values of an earlier row of the batch
    that shares at least ``MIN_SHARED_PREFIX`` leading tokens (read only: caches are sliced and
    extended by copy, never written in place).

    ``should_stop`` is asked before every row's prefill and every decoding step; when it answers true
    the call raises :class:`~atlas.errors.Cancelled` (a cancelled job, or a stopping service, does not
    wait for a batch that can take minutes on a CPU)."""

    def check() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled("generation interrupted: the evaluation was cancelled")

    rows = len(prompts)
    device = model.device
    lengths = [len(p) for p in prompts]
    first_logits = []
    row_layers: list[Layers] = []
    reused = []
    for i, (prompt, session) in enumerate(zip(prompts, sessions, strict=True)):
        check()
        if session is None and share_prefixes:
            session = _sibling(prompts, row_layers, i)
        logits, cache, n = _prefill(model, prompt, session)
        first_logits.append(logits)
        row_layers.append(_layers(cache))
        reused.append(n)
    tokens: list[list[int]] = [[int(t)] for t in sampler(torch.stack(first_logits)).tolist()]
    results: list[Decoded | None] = [None] * rows

    def finish(row: int, layers: list[tuple[torch.Tensor, torch.Tensor]], fed: int) -> None:
        """``fed`` generated tokens of ``row`` went through the model (their keys are in ``layers``)."""
        generated = tokens[row]
        kept = generated[:-1] if generated[-1] in stop_ids else generated
        session = Session(list(prompts[row]) + generated[:fed], layers)
        results[row] = Decoded(kept, session, reused[row])

    def done(row: int) -> bool:
        return tokens[row][-1] in stop_ids or len(tokens[row]) >= max_new_tokens

    active = [r for r in range(rows) if not done(r)]
    for r in range(rows):
        if r not in active:
            finish(r, row_layers[r], 0)
    if not active:
        return [r for r in results if r is not None]

    # Leading tokens all rows hold identically are kept once, outside the batch cache, and attended
    # to with every row's queries in one pass (attention.shared_prefix); 0 when not worth it.
    prefix = _shared_prefix_length(model, prompts, active, lengths, row_layers) if share_prefixes else 0
    shared: Layers = (
        [(k[:, :, :prefix].contiguous(), v[:, :, :prefix].contiguous()) for k, v in row_layers[active[0]]]
        if prefix
        else []
    )
    # One left-padded batch cache for the rows still generating (their tokens after the prefix).
    own = [lengths[r] - prefix for r in active]
    width = max(own)

    def pad(t: torch.Tensor, n: int) -> torch.Tensor:
        t = t[:, :, prefix:]
        return torch.nn.functional.pad(t, (0, 0, width - n, 0)) if n < width else t

    batch = _batch_cache(
        [
            (
                torch.cat([pad(row_layers[r][i][0], n) for r, n in zip(active, own, strict=True)]),
                torch.cat([pad(row_layers[r][i][1], n) for r, n in zip(active, own, strict=True)]),
            )
            for i in range(len(row_layers[active[0]]))
        ],
        width + max_new_tokens,
    )
    row_layers.clear()
    # The attention mask, already in the 4D form attention takes (rows, 1, query, keys; True =
    # attend): transformers uses a 4D mask as given instead of rebuilding it from a 2D one on every
    # token, which cost as much as the attention itself for a small model. With a shared prefix it
    # covers the rows' own keys and is additive (0 or -inf), as the kernel that also returns the
    # log-sum-exp takes it.
    mask = torch.tensor(
        [[False] * (width - n) + [True] * n for n in own],
        dtype=torch.bool,
        device=device,
    )[:, None, None, :]
    attend = torch.ones((len(active), 1, 1, 1), dtype=torch.bool, device=device)
    if prefix:
        dtype = shared[0][0].dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, float("-inf"))
        attend = torch.zeros(attend.shape, dtype=dtype, device=device)
    with attention.shared_prefix(shared) if prefix else contextlib.nullcontext():
        step = 0
        while active:
            check()
            step += 1
            ids = torch.tensor([[tokens[r][-1]] for r in active], dtype=torch.long, device=device)
            positions = torch.tensor(
                [[lengths[r] + step - 1] for r in active], dtype=torch.long, device=device
            )
            mask = torch.cat([mask, attend[: len(active)]], dim=-1)
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=batch,
                use_cache=True,
                logits_to_keep=1,
            )
            batch = out.past_key_values
            for r, token in zip(active, sampler(out.logits[:, -1]).tolist(), strict=True):
                tokens[r].append(int(token))
            keep = []
            for j, r in enumerate(active):
                if not done(r):
                    keep.append(j)
                    continue
                finish(r, _row_cache(batch, j, width - (lengths[r] - prefix), shared), step)
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                active = [active[j] for j in keep]
                if active:
                    batch.batch_select_indices(index)
                    mask = mask[index]
    return [r for r in results if r is not None]

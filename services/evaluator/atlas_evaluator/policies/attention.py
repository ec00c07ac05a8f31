"""Grouped-query attention without repeating keys/values, for batched decoding on the CPU.

transformers' ``sdpa`` attention repeats each key/value head for its group of query heads
(``repeat_kv``) whenever an attention mask is given on the CPU, and a batched decode always has one
(it hides the left padding). That copies every layer's whole cache on every generated token: with
SmolLM2-135M (9 query heads over 3 key/value heads), 8 rows and ~1,000 cached tokens, 28 ms per
layer per token against 1.7 ms when torch's kernel groups the heads itself (``enable_gqa``). This
module registers that variant as attention implementation ``atlas_sdpa_gqa``; everything else
(mask slicing, causal flag, scaling) follows transformers' ``sdpa_attention_forward``. CUDA keeps
``sdpa``: its fast kernels take no mask with ``enable_gqa``.

**Shared-prefix attention** (``shared_prefix``): the rows of a decoding batch often open with the
same tokens (the system prompt and an env's instructions: 391 of 466-1,965 tokens in the BabyAI
suite of ``bench/evaluator_batching.py``). While ``decode`` holds that prefix's keys/values once,
each one-token step attends to it with all rows' queries in one pass over the one copy, and to each
row's own (padded) keys separately; the two partial results are merged by their log-sum-exp, which is
exact up to float rounding. It cuts the per-row attention work that batching cannot share.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

NAME = "atlas_sdpa_gqa"

_prefix = threading.local()  # .layers: per layer (keys, values) of the shared prefix, or None


@contextmanager
def shared_prefix(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Within this block (on this thread), one-token decoding steps of a batch also attend to
    ``layers[i]`` = (keys, values) of shape ``(1, kv_heads, prefix, head_dim)`` in layer ``i``, ahead
    of the keys in the cache, which then hold only each row's tokens after the prefix."""
    _prefix.layers = layers
    try:
        yield
    finally:
        _prefix.layers = None


def _with_prefix(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    scaling: float | None,
) -> torch.Tensor:
    """One decoding step: (batch, heads, 1, dim) queries over a shared prefix and each row's own keys
    (``mask``: float, additive, for the own keys) -> (batch, 1, heads, dim)."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    q = query.reshape(batch, kv_heads, groups, dim)  # a key/value head's query heads as its queries
    # All rows' queries over the one copy of the prefix: (1, kv_heads, batch * groups, dim).
    shared_q = q.transpose(0, 1).reshape(1, kv_heads, batch * groups, dim)
    out_p, lse_p = flash(shared_q, prefix[0], prefix[1], 0.0, False, scale=scaling)
    out_p = out_p.reshape(kv_heads, batch, groups, dim).transpose(0, 1)
    lse_p = lse_p.reshape(kv_heads, batch, groups).transpose(0, 1)
    out_o, lse_o = flash(q, key, value, 0.0, False, attn_mask=mask, scale=scaling)  # (batch, kv, groups, ..)
    # The prefix part's share of the softmax mass, exp(lse_p) / (exp(lse_p) + exp(lse_o)), is
    # sigmoid(lse_p - lse_o): stable for any gap, and three ops instead of a max/exp/normalise chain
    # (this runs per layer per generated token; the chain cost ~45 us of ~300 at 8 rows).
    share = torch.sigmoid(lse_p - lse_o).unsqueeze(-1)
    out = torch.lerp(out_o, out_p, share)
    return out.view(batch, heads, 1, dim).transpose(1, 2).contiguous()


def sdpa_gqa_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """(batch, heads, q, dim) queries over (batch, kv_heads, k, dim) keys -> (batch, q, heads, dim)."""
    q_length, kv_length = query.shape[2], key.shape[2]
    if attention_mask is not None and attention_mask.ndim == 4:
        attention_mask = attention_mask[:, :, :, :kv_length]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_length > 1 and attention_mask is None and causal)
    if causal and kv_length > q_length:  # an empty static cache's tail (as transformers does)
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    batch, heads, kv_heads = query.shape[0], query.shape[1], key.shape[1]
    prefixes = getattr(_prefix, "layers", None)
    if prefixes is not None and q_length == 1 and attention_mask is not None:
        return _with_prefix(query, key, value, attention_mask, prefixes[module.layer_idx], scaling), None
    if q_length == 1 and batch > 1 and heads != kv_heads and attention_mask is not None:
        # One decoding step of a batch: each key/value head's group of query heads becomes that
        # head's queries (the mask has one query row, so it broadcasts over them). Half the time
        # of ``enable_gqa`` at 8 rows x 1,000 keys on one thread (201 vs 404 us for the tiny model).
        out = torch.nn.functional.scaled_dot_product_attention(
            query.view(batch, kv_heads, heads // kv_heads, query.shape[-1]),
            key,
            value,
            attn_mask=attention_mask,
            scale=scaling,
        )
        return out.view(batch, heads, 1, -1).transpose(1, 2).contiguous(), None
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout if module.training else 0.0,
        scale=scaling,
        is_causal=causal,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def attention_for(device: torch.device) -> str:
    """The attention implementation to load a model with on ``device`` (registered on first use)."""
    if device.type != "cpu":
        return "sdpa"
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, sdpa_gqa_attention_forward)
    # The same masks as ``sdpa`` (a name without a mask function gets no padding mask at all).
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return NAME

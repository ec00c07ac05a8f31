"""In-process policy: a causal LM (plus an optional peft adapter) with batched, left-padded generation.

All conversations of a runner round are rendered with the tokenizer's chat template (the training
template) and generated in one ``model.generate`` call; left padding keeps every prompt's last token
next to its first generated one. A chat that no longer fits ``max_context`` (prompt plus
``max_new_tokens``) is not generated: its reply says ``context_exceeded`` and the episode stops.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atlas.errors import InvalidArgument
from atlas_evaluator.policies.base import GenerationConfig, Policy, PolicyReply, PolicyRequest


class TransformersPolicy(Policy):
    """``TransformersPolicy(model_dir, adapter_dir=None, generation=GenerationConfig())``."""

    name = "transformers"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        adapter_dir: str | Path | None = None,
        generation: GenerationConfig | None = None,
        max_context: int | None = None,
        max_batch_size: int = 64,
        adapter_uri: str = "",
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_path = Path(model_dir)
        if not (model_path / "config.json").is_file():
            raise InvalidArgument(
                f"no model at {model_path} (config.json missing)", field_path="policy.model"
            )
        self.model_dir = str(model_path)
        self.adapter_dir = str(adapter_dir) if adapter_dir else ""
        # Where the adapter came from (object storage), for provenance; the local copy is scratch.
        self.adapter_uri = adapter_uri or self.adapter_dir
        self.generation = generation or GenerationConfig()
        self.max_batch_size = max_batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        if self.adapter_dir:
            if not (Path(self.adapter_dir) / "adapter_config.json").is_file():
                raise InvalidArgument(
                    f"no peft adapter at {self.adapter_dir} (adapter_config.json missing)",
                    field_path="policy.adapter",
                )
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter_dir)
        model.eval()
        self.model = model
        limit = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_context = min(max_context or limit, limit)
        self._generator = torch.Generator().manual_seed(self.generation.seed)
        torch.manual_seed(self.generation.seed)

    def describe(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "model": self.model_dir,
            "adapter": self.adapter_uri,
            "max_context": self.max_context,
            **self.generation.as_dict(),
        }

    def _prompt_ids(self, request: PolicyRequest) -> list[int]:
        ids: Any = self.tokenizer.apply_chat_template(
            request.messages, add_generation_prompt=True, tokenize=True
        )
        if not isinstance(ids, list):  # a BatchEncoding in some transformers versions
            ids = ids["input_ids"]
        return [int(t) for t in ids]

    def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyReply]:
        prompts = [self._prompt_ids(r) for r in requests]
        replies: list[PolicyReply | None] = [None] * len(requests)
        budget = self.max_context - self.generation.max_new_tokens
        todo = []
        for i, ids in enumerate(prompts):
            if len(ids) > budget:
                replies[i] = PolicyReply("", prompt_tokens=len(ids), context_exceeded=True)
            else:
                todo.append(i)
        for start in range(0, len(todo), self.max_batch_size):
            chunk = todo[start : start + self.max_batch_size]
            for i, reply in zip(chunk, self._generate_batch([prompts[i] for i in chunk]), strict=True):
                replies[i] = reply
        return [r for r in replies if r is not None]

    def _generate_batch(self, prompts: list[list[int]]) -> list[PolicyReply]:
        import torch

        width = max(len(p) for p in prompts)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
        g = self.generation
        kwargs: dict[str, Any] = {"max_new_tokens": g.max_new_tokens, "pad_token_id": pad}
        if g.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=g.temperature, top_p=g.top_p, top_k=0)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        seconds = time.perf_counter() - started
        new = output[:, width:]
        replies = []
        eos = self.tokenizer.eos_token_id
        for p, row in zip(prompts, new.tolist(), strict=True):
            tokens = [t for t in row if t != pad]
            if eos in tokens:
                tokens = tokens[: tokens.index(eos)]
            text = str(self.tokenizer.decode(tokens, skip_special_tokens=True))
            replies.append(
                PolicyReply(
                    text.strip(),
                    prompt_tokens=len(p),
                    completion_tokens=len(tokens),
                    info={"batch_size": len(prompts), "batch_seconds": seconds},
                )
            )
        return replies

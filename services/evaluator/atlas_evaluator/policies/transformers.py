"""In-process policy: a causal LM (plus an optional peft adapter) with batched, left-padded generation.

All conversations of a runner round are rendered with the tokenizer's chat template (the training
template) and decoded together as one left-padded batch (``decoding.decode``); each episode keeps its
KV cache between turns, so a turn only runs the new observation through the model, and a row that
ends its turn leaves the batch at once. A chat that no longer fits ``max_context`` (prompt plus
``max_new_tokens``) is not generated: its reply says ``context_exceeded`` and the episode stops.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas.errors import InvalidArgument
from atlas_evaluator.policies.base import GenerationConfig, Policy, PolicyReply, PolicyRequest

if TYPE_CHECKING:
    from atlas_evaluator.policies.decoding import Session


MAX_SHARED_PREFIXES = 4  # first-turn caches kept for new episodes to start from
INCREMENTAL_CHECKS = 8  # prompts tokenized in pieces that are checked against a full tokenization

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Rendered:
    """An episode's last prompt: the chat template's text, its token ids, and where added tokens
    (``<|im_start|>``...) begin: ``cuts[i]`` is the character offset of token ``tokens[i]``."""

    text: str
    ids: list[int]
    cuts: list[int]
    tokens: list[int]


def resolve_device(name: str) -> Any:
    """``auto`` -> the first CUDA GPU when torch sees one, else the CPU; ``cpu``/``cuda[:N]`` as named."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        message = f"unknown device {name!r} (auto, cpu, cuda:N)"
        raise InvalidArgument(message, field_path="policy_device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {name!r}: torch sees no CUDA GPU here", field_path="policy_device")
    return device


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
        reuse_cache: bool = True,
        num_threads: int = 0,
        device: str = "auto",
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from atlas_evaluator.policies.decoding import Sampler

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
        self.device = resolve_device(device)
        # float32 on every device: greedy decoding then picks the same tokens on CPU and GPU (up to
        # kernel rounding), so a GPU evaluation is comparable with a CPU one.
        from atlas_evaluator.policies.attention import attention_for

        model: Any = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=torch.float32, attn_implementation=attention_for(self.device)
        )
        if self.adapter_dir:
            if not (Path(self.adapter_dir) / "adapter_config.json").is_file():
                raise InvalidArgument(
                    f"no peft adapter at {self.adapter_dir} (adapter_config.json missing)",
                    field_path="policy.adapter",
                )
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter_dir)
        model.to(self.device).eval()
        self.model = model
        limit = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_context = min(max_context or limit, limit)
        if num_threads > 0:
            # On a small, busy CPU box more intra-op threads than free cores make every small op
            # wait on a barrier; one thread per policy is often fastest there.
            torch.set_num_threads(num_threads)
        torch.manual_seed(self.generation.seed)
        g = self.generation
        self._sampler = Sampler(g.temperature, g.top_p, torch.Generator().manual_seed(g.seed))
        self.reuse_cache = reuse_cache
        self.max_sessions = 4 * max_batch_size
        self._sessions: dict[str, Session] = {}
        # Each episode's last rendered prompt, so the next turn tokenizes only what is new.
        self._rendered: dict[str, Rendered] = {}
        self._added_ids = {int(i) for i in self.tokenizer.added_tokens_decoder}
        # Prompts still to compare with a full tokenization; -1: every prompt is tokenized whole.
        self._incremental_checks = INCREMENTAL_CHECKS if reuse_cache and self.tokenizer.is_fast else -1
        # First-turn caches of recent episodes: a new episode of the same env starts with the same
        # instruction, so its first prefill reuses that shared prefix (vLLM's prefix caching, in small).
        self._prefixes: list[Session] = []
        self._interrupt: threading.Event | None = None
        stops = model.generation_config.eos_token_id if model.generation_config is not None else None
        stops = stops if isinstance(stops, list) else [stops]
        self._stop_ids = {int(t) for t in [*stops, self.tokenizer.eos_token_id] if t is not None}

    def describe(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "model": self.model_dir,
            "adapter": self.adapter_uri,
            "device": str(self.device),
            "max_context": self.max_context,
            **self.generation.as_dict(),
        }

    def _full_ids(self, request: PolicyRequest) -> list[int]:
        ids: Any = self.tokenizer.apply_chat_template(
            request.messages, add_generation_prompt=True, tokenize=True
        )
        if not isinstance(ids, list):  # a BatchEncoding in some transformers versions
            ids = ids["input_ids"]
        return [int(t) for t in ids]

    def _tokenize(self, text: str, offset: int) -> tuple[list[int], list[int], list[int]]:
        """``text`` (found at ``offset`` of the prompt) -> ids, and the offsets and indices of its added
        tokens."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = [int(t) for t in encoded["input_ids"]]
        added = [i for i, t in enumerate(ids) if t in self._added_ids]
        spans = encoded["offset_mapping"]
        return ids, [offset + spans[i][0] for i in added], added

    def _prompt_ids(self, request: PolicyRequest) -> list[int]:
        """The chat template's token ids for ``request``.

        An episode's prompt is its previous prompt plus the reply and the new observation, and the
        template renders earlier turns identically. So when the new text extends the previous one,
        only the text from the previous prompt's last added token (the generation prompt's
        ``<|im_start|>``) is tokenized and appended to the ids before it: a fast tokenizer splits
        text at added tokens before anything else, so that is the tokenization of the whole text.
        Re-tokenizing the whole chat took 2.1 ms per BabyAI prompt (2-3k characters); this, 0.7 ms.
        The first ``INCREMENTAL_CHECKS`` prompts of a policy are compared with the chat template's own
        tokenization; a mismatch (a tokenizer that does not split that way) turns this off.
        """
        if self._incremental_checks < 0:
            return self._full_ids(request)
        text = str(
            self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        )
        previous = self._rendered.pop(request.episode_id, None)
        at = -1
        if previous is not None and previous.cuts and text.startswith(previous.text):
            at = bisect.bisect_right(previous.cuts, len(previous.text) - 1) - 1
        if previous is not None and at >= 0:
            start, keep = previous.cuts[at], previous.tokens[at]
            ids, cuts, tokens = self._tokenize(text[start:], start)
            ids = previous.ids[:keep] + ids
            cuts = previous.cuts[:at] + cuts
            tokens = previous.tokens[:at] + [keep + i for i in tokens]
        else:
            ids, cuts, tokens = self._tokenize(text, 0)
        if self._incremental_checks > 0:
            self._incremental_checks -= 1
            full = self._full_ids(request)
            if ids != full:
                log.warning(
                    "%s: tokenizing a chat's text in pieces differs from the chat template's tokens; "
                    "every prompt is tokenized whole from now on",
                    self.model_dir,
                )
                self._incremental_checks = -1
                self._rendered.clear()
                return full
        self._rendered[request.episode_id] = Rendered(text, ids, cuts, tokens)
        while len(self._rendered) > self.max_sessions:  # episodes never ended: drop the oldest
            self._rendered.pop(next(iter(self._rendered)))
        return list(ids)

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
            batch = self._generate_batch([requests[i].episode_id for i in chunk], [prompts[i] for i in chunk])
            for i, reply in zip(chunk, batch, strict=True):
                replies[i] = reply
        return [r for r in replies if r is not None]

    def end(self, episode_id: str) -> None:
        self._sessions.pop(episode_id, None)
        self._rendered.pop(episode_id, None)

    def interrupt_on(self, event: threading.Event) -> None:
        # Checked before every prefill and decoding step: a 20-row SmolLM2 call can take minutes on
        # a loaded CPU, and a cancel (or a stopping service) should not wait for it.
        self._interrupt = event

    def _shared_prefix(self, prompt: list[int]) -> Session | None:
        """The remembered first-turn cache sharing the longest prefix with ``prompt`` (>= 16 tokens;
        rows of one batch also share with each other, see ``decoding.decode``).

        Reading it is safe: decoding slices and copies cached keys/values, never writes into them.
        """
        from atlas_evaluator.policies.decoding import MIN_SHARED_PREFIX, common_prefix

        best, length = None, MIN_SHARED_PREFIX - 1
        for session in self._prefixes:
            n = common_prefix(session.ids, prompt)
            if n > length:
                best, length = session, n
        return best

    def _remember_prefix(self, session: Session) -> None:
        self._prefixes.append(session)
        del self._prefixes[:-MAX_SHARED_PREFIXES]

    def _generate_batch(self, episode_ids: list[str], prompts: list[list[int]]) -> list[PolicyReply]:
        import torch

        from atlas_evaluator.policies.decoding import decode

        own = [self._sessions.pop(e, None) if self.reuse_cache else None for e in episode_ids]
        sessions = [
            s if s is not None or not self.reuse_cache else self._shared_prefix(p)
            for s, p in zip(own, prompts, strict=True)
        ]
        started = time.perf_counter()
        with torch.inference_mode():
            decoded = decode(
                self.model,
                prompts,
                sessions,
                max_new_tokens=self.generation.max_new_tokens,
                stop_ids=self._stop_ids,
                sampler=self._sampler,
                should_stop=self._interrupt.is_set if self._interrupt is not None else None,
            )
        seconds = time.perf_counter() - started
        replies = []
        for episode_id, p, row, had in zip(episode_ids, prompts, decoded, own, strict=True):
            if self.reuse_cache:
                if had is None:
                    self._remember_prefix(row.session)
                self._sessions[episode_id] = row.session
                while len(self._sessions) > self.max_sessions:  # episodes never ended: drop the oldest
                    self._sessions.pop(next(iter(self._sessions)))
            text = str(self.tokenizer.decode(row.tokens, skip_special_tokens=True))
            replies.append(
                PolicyReply(
                    text.strip(),
                    prompt_tokens=len(p),
                    completion_tokens=len(row.tokens),
                    info={
                        "batch_size": len(prompts),
                        "batch_seconds": seconds,
                        "reused_prompt_tokens": row.reused_tokens,
                    },
                )
            )
        return replies

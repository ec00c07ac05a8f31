"""Policy over any OpenAI-compatible chat server (in production vLLM with LoRA adapters loaded).

A batch of conversations becomes that many concurrent ``/chat/completions`` requests from a thread
pool; vLLM batches concurrent requests itself (continuous batching), so this is how "all pending policy
calls of a step go to the model together" looks over HTTP. The adapter is chosen per request through
the ``model`` field (vLLM's ``--lora-modules name=path`` or dynamic LoRA loading names it).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from atlas.errors import InvalidArgument, Unavailable
from atlas_evaluator.policies.base import GenerationConfig, Policy, PolicyReply, PolicyRequest

_CONTEXT_WORDS = (
    "maximum context length",
    "context length",
    "too long",
    "max_model_len",
    "maximum model length",
)


class OpenAIPolicy(Policy):
    """``OpenAIPolicy("http://host:8000/v1", model="base-or-adapter-name")``."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        generation: GenerationConfig | None = None,
        max_workers: int = 32,
        timeout_s: float = 300.0,
        api_key: str = "",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"base_url must be http(s)://...: {base_url!r}", field_path="policy.base_url"
            )
        if not model:
            raise InvalidArgument(
                "model (served model or adapter name) is required", field_path="policy.model"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.generation = generation or GenerationConfig()
        self.timeout_s = timeout_s
        self.api_key = api_key
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="openai")

    def describe(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "base_url": self.base_url,
            "model": self.model,
            **self.generation.as_dict(),
        }

    def served_models(self) -> list[str]:
        """The model ids the server offers (base model and loaded adapters)."""
        data = self._call("GET", "/models", None)
        return [str(m["id"]) for m in data.get("data", [])]

    def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyReply]:
        return list(self._pool.map(self._one, requests))

    def _one(self, request: PolicyRequest) -> PolicyReply:
        g = self.generation
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": g.max_new_tokens,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "seed": g.seed,
        }
        started = time.perf_counter()
        try:
            data = self._call("POST", "/chat/completions", body)
        except _ClientError as exc:
            if any(word in exc.body.lower() for word in _CONTEXT_WORDS):
                return PolicyReply("", context_exceeded=True, info={"error": exc.body[:500]})
            raise InvalidArgument(
                f"policy server rejected the request: {exc.body[:500]}", field_path="policy"
            ) from exc
        usage = data.get("usage") or {}
        text = data["choices"][0]["message"].get("content") or ""
        return PolicyReply(
            text.strip(),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            info={
                "seconds": time.perf_counter() - started,
                "finish_reason": data["choices"][0].get("finish_reason"),
            },
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                result: dict[str, Any] = json.load(reply)
                return result
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if 400 <= exc.code < 500:
                raise _ClientError(exc.code, text) from exc
            raise Unavailable(f"policy server {self.base_url} answered {exc.code}: {text[:300]}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"policy server {self.base_url} unreachable: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _ClientError(Exception):
    def __init__(self, code: int, body: str) -> None:
        super().__init__(f"HTTP {code}: {body[:200]}")
        self.code = code
        self.body = body

"""The judge over HTTP: any OpenAI-compatible chat-completions server (``vllm serve``, or GPT-4o as
the paper used). One request per trajectory; the selector keeps ``concurrency`` requests in flight,
which is where vLLM's batching throughput comes from."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from atlas.errors import Unavailable
from atlas_selector.judge.common import (
    CHARS_PER_TOKEN,
    Completion,
    Judge,
    JudgeCall,
    JudgeRefused,
    JudgeRequest,
    JudgeSettings,
    TooLongForJudge,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "HttpJudge",
    "JudgeCall",
    "JudgeRefused",
    "JudgeSettings",
    "TooLongForJudge",
    "request_body",
]


def request_body(request: JudgeRequest, settings: JudgeSettings) -> dict[str, Any]:
    """The chat-completions body of one judge request (also what bench/selector_vllm.py sends raw)."""
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": 0.0,
        "seed": request.seed,
    }
    if settings.api == "vllm":
        body["structured_outputs"] = {"json": request.schema}
    else:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "critical_steps", "schema": request.schema, "strict": True},
        }
    return body


class HttpJudge(Judge):
    def complete(self, request: JudgeRequest) -> Completion:
        reply = self._post(request_body(request, self.settings))
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        return Completion(
            text=(choice.get("message") or {}).get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            seconds=reply["_seconds"],
        )

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.settings.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            f"{self.settings.url.rstrip('/')}/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                reply: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            self.on_call(JudgeCall(time.perf_counter() - started, 0, 0, "refused"))
            if error.code == 400:
                # vLLM answers 400 for a prompt longer than its context, among other request faults.
                raise JudgeRefused(f"the judge refused the request (HTTP 400): {detail}") from None
            raise Unavailable(f"the judge answered HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.on_call(JudgeCall(time.perf_counter() - started, 0, 0, "unavailable"))
            raise Unavailable(f"the judge at {self.settings.url} did not answer: {error}") from None
        reply["_seconds"] = time.perf_counter() - started
        return reply

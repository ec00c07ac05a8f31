"""The judge over HTTP: any OpenAI-compatible chat-completions server (``vllm serve``, or GPT-4o as
the paper used). One request per trajectory; the selector keeps ``concurrency`` requests in flight,
which is where vLLM's batching throughput comes from."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from atlas.data.model import Trajectory
from atlas.errors import FailedPrecondition, Unavailable
from atlas_selector.contract import ContractViolation, ProposedLabel
from atlas_selector.judge.prompt import PROMPT_VERSION, render
from atlas_selector.judge.schema import answer_schema, parse_answer

CHARS_PER_TOKEN = 4  # a cheap, generous estimate: the server's own count is the final word


@dataclass(frozen=True)
class JudgeSettings:
    url: str  # base URL, e.g. http://127.0.0.1:8000/v1
    model: str
    api: str = "vllm"  # "vllm": structured_outputs; "openai": response_format json_schema
    max_tokens: int = 512
    max_context_tokens: int = 4096
    concurrency: int = 16
    timeout_s: float = 120.0
    api_key_env: str = "OPENAI_API_KEY"


@dataclass(frozen=True)
class JudgeCall:
    """What one request cost, for the judge latency and token metrics."""

    seconds: float
    prompt_tokens: int
    completion_tokens: int
    outcome: str  # "ok", "cut_off", "refused", "unavailable", "bad_answer"


class TooLongForJudge(FailedPrecondition):
    """The trajectory does not fit the judge's context window (a per-trajectory error)."""


class JudgeRefused(FailedPrecondition):
    """The judge server refused the request (HTTP 400: prompt over its context, schema it cannot compile)."""


class HttpJudge:
    name = "vllm"
    prompt_version = PROMPT_VERSION

    def __init__(self, settings: JudgeSettings, on_call: Callable[[JudgeCall], None] | None = None) -> None:
        self.settings = settings
        self.concurrency = settings.concurrency
        self.on_call = on_call or (lambda _call: None)

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        minimum = 1 if cap else 0
        messages = render(trajectory, cap, minimum)
        prompt_chars = sum(len(m["content"]) for m in messages)
        budget = self.settings.max_context_tokens - self.settings.max_tokens
        if prompt_chars / CHARS_PER_TOKEN > budget:
            raise TooLongForJudge(
                f"about {prompt_chars // CHARS_PER_TOKEN} prompt tokens; the judge's context leaves {budget} "
                f"({self.settings.max_context_tokens} minus {self.settings.max_tokens} for the answer)"
            )
        schema = answer_schema(trajectory.step_count, cap, minimum)
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "max_tokens": self.settings.max_tokens,
            "temperature": 0.0,
            "seed": seed,
        }
        if self.settings.api == "vllm":
            body["structured_outputs"] = {"json": schema}
        else:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "critical_steps", "schema": schema, "strict": True},
            }
        reply = self._post(body)
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        finish = choice.get("finish_reason")
        text = (choice.get("message") or {}).get("content") or ""
        if finish != "stop":
            self._report(reply, "cut_off")
            raise ContractViolation(
                f"the judge's answer was cut off (finish_reason={finish!r} after "
                f"{usage.get('completion_tokens', '?')} tokens); raise judge_max_tokens"
            )
        try:
            proposals = parse_answer(text)
        except ContractViolation:
            self._report(reply, "bad_answer")
            raise
        self._report(reply, "ok")
        return proposals

    def _report(self, reply: dict[str, Any], outcome: str) -> None:
        usage = reply.get("usage") or {}
        self.on_call(
            JudgeCall(
                reply.get("_seconds", 0.0),
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                outcome,
            )
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

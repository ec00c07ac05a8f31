"""Selector service configuration (flags and ATLAS_SELECTOR_* variables derive from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from atlas.config import ServerConfig, setting
from atlas.errors import InvalidArgument
from atlas_selector.judge.common import TRANSPORTS, JudgeSettings, parse_engine_args


@dataclass
class SelectorConfig(ServerConfig):
    SERVICE: ClassVar[str] = "selector"

    port: int = setting(50051, "gRPC port; 0 picks a free port (printed at start).")
    metrics_port: int = setting(
        9101, "Port of the Prometheus /metrics HTTP server; 0 picks a free one, -1 disables it."
    )
    max_batch_trajectories: int = setting(
        10_000, "Most trajectories in one SelectSteps request or stream message; more is INVALID_ARGUMENT."
    )
    max_message_chars: int = setting(
        1_000_000,
        "Longest message content (characters) the selector reads; a longer one fails its trajectory.",
    )
    stream_max_in_flight: int = setting(
        4096,
        "Trajectories a StreamSelectSteps call holds at once (read, not yet answered); the stream "
        "stops reading (back-pressure) until results are sent.",
    )
    stream_workers: int = setting(
        2, "Threads selecting for one stream; above 1 results may come back out of order."
    )
    job_workers: int = setting(1, "Selection jobs run at once; the rest wait QUEUED.")
    judge_transport: str = setting(
        "http",
        "How the vllm backend reaches its judge: http (an OpenAI-compatible server at judge_url) or "
        "inprocess (vllm.LLM loads judge_model into this process; needs the vllm package).",
    )
    judge_engine_args: str = setting(
        "{}",
        "For judge_transport inprocess: a JSON object of extra vllm.LLM arguments, e.g. "
        '\'{"dtype": "float32", "structured_outputs_config": {"backend": "xgrammar"}}\'.',
    )
    judge_url: str = setting(
        "",
        "Base URL of an OpenAI-compatible judge server for backend vllm (e.g. http://127.0.0.1:8000/v1); "
        "empty: the vllm backend is unavailable. An API key, if needed, comes from OPENAI_API_KEY.",
    )
    judge_model: str = setting(
        "", "Model name the judge server serves (a request's config.model overrides it)."
    )
    judge_api: str = setting(
        "vllm", "How to ask for structured output: vllm (structured_outputs) or openai (response_format)."
    )
    judge_max_tokens: int = setting(
        512, "Most tokens of one judge answer; an answer cut off fails its trajectory."
    )
    judge_max_context_tokens: int = setting(
        4096,
        "The judge's context window; a longer trajectory fails alone instead of being sent (or see "
        "judge_windows).",
    )
    judge_windows: bool = setting(
        False,
        "Show a trajectory too long for judge_max_context_tokens to the judge in windows of consecutive "
        "steps (each with its share of the cap, answers merged by rank) instead of failing it.",
    )
    judge_concurrency: int = setting(
        64,
        "Judge requests in flight at once per batch (vLLM batches them; its throughput comes from there).",
    )
    judge_timeout_s: float = setting(120.0, "Deadline of one judge request, in seconds.")

    def validate(self) -> list[str]:
        problems = super().validate()
        for name in (
            "max_batch_trajectories",
            "max_message_chars",
            "stream_max_in_flight",
            "stream_workers",
            "job_workers",
            "judge_max_tokens",
            "judge_max_context_tokens",
            "judge_concurrency",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.judge_api not in ("vllm", "openai"):
            problems.append(f"judge_api: {self.judge_api!r} is not vllm or openai")
        if self.judge_url and not self.judge_model:
            problems.append("judge_model: required with judge_url")
        if self.judge_transport not in TRANSPORTS:
            problems.append(f"judge_transport: {self.judge_transport!r} is not one of {TRANSPORTS}")
        if self.judge_transport == "inprocess" and self.judge_url:
            problems.append("judge_url: not used with judge_transport inprocess (judge_model is loaded here)")
        try:
            parse_engine_args(self.judge_engine_args)
        except InvalidArgument as error:
            problems.append(f"judge_engine_args: {error.message}")
        if self.judge_timeout_s <= 0:
            problems.append(f"judge_timeout_s: must be positive, got {self.judge_timeout_s}")
        return problems

    def judge_settings(self) -> JudgeSettings | None:
        settings = JudgeSettings(
            url=self.judge_url,
            model=self.judge_model,
            api=self.judge_api,
            max_tokens=self.judge_max_tokens,
            max_context_tokens=self.judge_max_context_tokens,
            concurrency=self.judge_concurrency,
            timeout_s=self.judge_timeout_s,
            transport=self.judge_transport,
            windows=self.judge_windows,
            engine_args=parse_engine_args(self.judge_engine_args),
        )
        return settings if settings.configured else None

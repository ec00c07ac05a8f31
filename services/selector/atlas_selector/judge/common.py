"""What every judge transport shares: settings, the request built from a trajectory (prompt, schema,
context check) and the reading of the answer. A transport only moves a request to a model and back
(:meth:`Judge.complete`), so the HTTP server and the in-process engine cannot drift apart on what
they ask or how they read the reply."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atlas.data.model import Trajectory
from atlas.errors import FailedPrecondition, InvalidArgument
from atlas_selector.contract import ContractViolation, ProposedLabel
from atlas_selector.judge.prompt import PROMPT_VERSION, render
from atlas_selector.judge.schema import answer_schema, parse_answer

CHARS_PER_TOKEN = 4  # a cheap, generous estimate: the model's own count is the final word
TRANSPORTS = ("http", "inprocess")


@dataclass(frozen=True)
class JudgeSettings:
    url: str  # base URL, e.g. http://127.0.0.1:8000/v1 (transport http)
    model: str  # served model name (http) or the model to load: a local path or hub id (inprocess)
    api: str = "vllm"  # "vllm": structured_outputs; "openai": response_format json_schema
    max_tokens: int = 512
    max_context_tokens: int = 4096
    concurrency: int = 64
    timeout_s: float = 120.0
    api_key_env: str = "OPENAI_API_KEY"
    transport: str = "http"  # "http" or "inprocess" (vllm.LLM in this process)
    # Show a trajectory too long for the context in windows of consecutive steps instead of failing it.
    windows: bool = False
    # Extra keyword arguments of vllm.LLM for transport inprocess (dtype, structured_outputs_config...).
    engine_args: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def configured(self) -> bool:
        """Whether the vllm backend can run: a server to call, or a model to load in-process."""
        return bool(self.url) if self.transport == "http" else bool(self.model)


def parse_engine_args(text: str, field_path: str = "judge_engine_args") -> dict[str, Any]:
    """The JSON object of extra vllm.LLM arguments; InvalidArgument for anything else."""
    try:
        value = json.loads(text or "{}")
    except ValueError as error:
        raise InvalidArgument(f"not JSON: {error}", field_path=field_path) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"must be a JSON object, got {text!r}", field_path=field_path)
    return value


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
    """The judge refused the request (prompt over its context, a schema it cannot compile)."""


@dataclass(frozen=True)
class JudgeRequest:
    """One trajectory's question to the judge: chat messages and the answer's JSON schema."""

    messages: list[dict[str, str]]
    schema: dict[str, Any]
    max_tokens: int
    seed: int
    prompt_ids: list[int] | None = None  # the prompt's token ids, where the transport counted them


@dataclass(frozen=True)
class Window:
    """Consecutive steps shown to the judge in one request, with their share of the cap."""

    steps: range
    cap: int
    messages: list[dict[str, str]]
    prompt_ids: list[int] | None


def window_cap(cap: int, window_steps: int, step_count: int) -> int:
    """A window's share of the cap, proportional to its steps, at least 1 (0 if the cap is 0)."""
    return max(1, int(cap * window_steps / step_count + 1e-9)) if cap else 0


def plan_windows(
    trajectory: Trajectory, cap: int, fit: Callable[[list[dict[str, str]]], list[int] | None]
) -> list[Window]:
    """Split the steps into consecutive windows, each as long as ``fit`` accepts (greedy).

    ``fit`` raises TooLongForJudge for a prompt that does not fit. A step that does not fit even alone
    fails the trajectory, with that reason.
    """
    total = trajectory.step_count
    windows: list[Window] = []
    start = 0
    while start < total:
        best: Window | None = None
        for stop in range(start + 1, total + 1):
            steps = range(start, stop)
            share = window_cap(cap, len(steps), total)
            messages = render(trajectory, share, 1 if share else 0, steps)
            try:
                ids = fit(messages)
            except TooLongForJudge as error:
                if best is None:
                    raise TooLongForJudge(
                        f"step {start} does not fit the judge's context even alone: {error.message}"
                    ) from None
                break
            best = Window(steps, share, messages, ids)
        assert best is not None
        windows.append(best)
        start = best.steps.stop
    return windows


def merge_windows(answers: list[list[ProposedLabel]], cap: int) -> list[ProposedLabel]:
    """One ranked list from the windows' ranked answers: every window's first choice, then every
    window's second, and so on (so no part of the episode is crowded out), cut at ``cap``."""
    merged: list[ProposedLabel] = []
    for rank in range(max((len(a) for a in answers), default=0)):
        merged.extend(answer[rank] for answer in answers if rank < len(answer))
    return merged[:cap]


@dataclass(frozen=True)
class Completion:
    """A transport's raw answer."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class Judge:
    """The ``vllm`` backend: build the request, let the transport complete it, read the answer.

    Subclasses implement :meth:`complete` (and may refine :meth:`fit` with an exact count).
    """

    name = "vllm"
    prompt_version = PROMPT_VERSION

    def __init__(self, settings: JudgeSettings, on_call: Callable[[JudgeCall], None] | None = None) -> None:
        self.settings = settings
        self.concurrency = settings.concurrency
        self.on_call = on_call or (lambda _call: None)

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        minimum = 1 if cap else 0
        step_count = trajectory.step_count
        messages = render(trajectory, cap, minimum)
        try:
            ids = self.fit(messages)
        except TooLongForJudge:
            if not self.settings.windows:
                raise
            return self.propose_in_windows(trajectory, cap, seed)
        request = JudgeRequest(
            messages, answer_schema(step_count, cap, minimum), self.settings.max_tokens, seed, ids
        )
        return self.read(self.complete(request))

    def propose_in_windows(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        """A trajectory over the context, one request per window (``windows`` setting): each window
        gets its share of the cap; the answers are merged by rank. Any window failing fails all."""
        answers = []
        for window in plan_windows(trajectory, cap, self.fit):
            minimum = 1 if window.cap else 0
            schema = answer_schema(trajectory.step_count, window.cap, minimum, window.steps)
            request = JudgeRequest(window.messages, schema, self.settings.max_tokens, seed, window.prompt_ids)
            answers.append(self.read(self.complete(request)))
        return merge_windows(answers, cap)

    def budget(self) -> int:
        """Prompt tokens a request may use: the context minus the room kept for the answer."""
        return self.settings.max_context_tokens - self.settings.max_tokens

    def fit(self, messages: list[dict[str, str]]) -> list[int] | None:
        """Raise TooLongForJudge for a prompt that cannot fit, before it costs a request.

        Here an estimate by characters (the server has the final word); a transport that can count
        exactly overrides it and returns the token ids, which its request then reuses.
        """
        prompt_chars = sum(len(m["content"]) for m in messages)
        if prompt_chars / CHARS_PER_TOKEN > self.budget():
            raise self.too_long(f"about {prompt_chars // CHARS_PER_TOKEN}")
        return None

    def too_long(self, tokens: str) -> TooLongForJudge:
        return TooLongForJudge(
            f"{tokens} prompt tokens; the judge's context leaves {self.budget()} "
            f"({self.settings.max_context_tokens} minus {self.settings.max_tokens} for the answer)"
        )

    def complete(self, request: JudgeRequest) -> Completion:
        raise NotImplementedError

    def read(self, completion: Completion) -> list[ProposedLabel]:
        """Proposals from a completed answer; a cut-off or non-JSON answer fails its trajectory."""
        if completion.finish_reason != "stop":
            self.report(completion, "cut_off")
            raise ContractViolation(
                f"the judge's answer was cut off (finish_reason={completion.finish_reason!r} after "
                f"{completion.completion_tokens} tokens); raise judge_max_tokens"
            )
        try:
            proposals = parse_answer(completion.text)
        except ContractViolation:
            self.report(completion, "bad_answer")
            raise
        self.report(completion, "ok")
        return proposals

    def report(self, completion: Completion, outcome: str) -> None:
        self.on_call(
            JudgeCall(completion.seconds, completion.prompt_tokens, completion.completion_tokens, outcome)
        )

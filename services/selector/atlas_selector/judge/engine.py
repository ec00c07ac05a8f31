"""The judge as an in-process vLLM engine (``vllm.LLM``): for a GPU container that runs judge and
service together, with no HTTP hop.

The selector asks one trajectory at a time from ``concurrency`` threads; ``vllm.LLM`` is not
thread-safe and gets its throughput from batches, so one engine thread collects the waiting
requests (lingering a few milliseconds for more) and runs them as one ``generate`` call. Prompts are
tokenised here with the model's chat template, which gives an exact length check: a trajectory that
does not fit fails alone instead of failing the engine's whole batch. vLLM is imported only when an
engine is built, so the rest of the selector never needs it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from atlas.errors import FailedPrecondition, Unavailable
from atlas_selector.judge.common import (
    Completion,
    Judge,
    JudgeCall,
    JudgeRefused,
    JudgeRequest,
    JudgeSettings,
)

LINGER_S = 0.005  # how long the engine thread waits for more requests to join a batch


@dataclass
class _Pending:
    prompt_ids: list[int]
    request: JudgeRequest
    future: Future[Completion]
    queued: float


class EngineJudge(Judge):
    """``vllm`` backend, transport ``inprocess``: ``settings.model`` is loaded into this process.

    ``llm`` may be passed in (an engine built elsewhere); otherwise one is built from the settings:
    ``vllm.LLM(model, max_model_len=max_context_tokens, seed=0, **engine_args)``.
    """

    def __init__(
        self,
        settings: JudgeSettings,
        on_call: Callable[[JudgeCall], None] | None = None,
        llm: Any = None,
    ) -> None:
        super().__init__(settings, on_call)
        if llm is None:
            try:
                from vllm import LLM
            except ImportError as error:
                raise FailedPrecondition(
                    f"judge_transport inprocess needs the vllm package in this environment ({error})",
                    field_path="config.backend",
                ) from None
            llm = LLM(
                model=settings.model,
                **{"max_model_len": settings.max_context_tokens, "seed": 0, **settings.engine_args},
            )
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len)
        self.largest_batch = 0  # most requests one generate call has run (batching at work)
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="judge-engine", daemon=True)
        self._thread.start()

    def budget(self) -> int:
        return min(self.settings.max_context_tokens, self.max_model_len) - self.settings.max_tokens

    def fit(self, messages: list[dict[str, str]]) -> list[int]:
        """Exact: the token ids of the chat-formatted prompt, as the engine will see them."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if len(ids) > self.budget():
            raise self.too_long(str(len(ids)))
        return ids

    def complete(self, request: JudgeRequest) -> Completion:
        ids = request.prompt_ids if request.prompt_ids is not None else self.fit(request.messages)
        pending = _Pending(ids, request, Future(), time.perf_counter())
        self._queue.put(pending)
        return pending.future.result()

    def close(self) -> None:
        """Stop the engine thread (the engine itself is released with this object)."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.perf_counter() + LINGER_S
            while len(batch) < self.concurrency:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self.largest_batch = max(self.largest_batch, len(batch))
            self._generate(batch)

    def _generate(self, batch: list[_Pending]) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=p.request.max_tokens,
                seed=p.request.seed,
                structured_outputs=StructuredOutputsParams(json=p.request.schema),
            )
            for p in batch
        ]
        try:
            outputs = self.llm.generate(
                [{"prompt_token_ids": p.prompt_ids} for p in batch], params, use_tqdm=False
            )
        except Exception as error:  # the engine refused one request: find it, answer the rest
            if len(batch) > 1:
                for one in batch:
                    self._generate([one])
                return
            self._fail(batch[0], error)
            return
        done = time.perf_counter()
        for pending, output in zip(batch, outputs, strict=True):
            answer = output.outputs[0]
            pending.future.set_result(
                Completion(
                    text=answer.text,
                    finish_reason=answer.finish_reason,
                    prompt_tokens=len(output.prompt_token_ids or pending.prompt_ids),
                    completion_tokens=len(answer.token_ids),
                    seconds=done - pending.queued,
                )
            )

    def _fail(self, pending: _Pending, error: Exception) -> None:
        seconds = time.perf_counter() - pending.queued
        if _refused(error):
            self.on_call(JudgeCall(seconds, 0, 0, "refused"))
            pending.future.set_exception(JudgeRefused(f"the judge engine refused the request: {error}"))
        else:
            self.on_call(JudgeCall(seconds, 0, 0, "unavailable"))
            pending.future.set_exception(Unavailable(f"the judge engine failed: {error}"))


def _refused(error: Exception) -> bool:
    """Whether vLLM rejected the request itself (length, schema), not failed while running it."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # an older vLLM: validation errors were ValueErrors
        return isinstance(error, ValueError)
    return isinstance(error, ValueError | VLLMClientError)

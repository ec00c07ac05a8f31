"""The selection core: validate a request, run a backend per trajectory, enforce the contract.

Plain Python (no gRPC): the servicer, the job runner, the CLI and the benchmarks all call
:meth:`Selector.select`. A bad trajectory becomes a per-trajectory :class:`Outcome` with an error;
only a request that is wrong as a whole (its options, its size) raises.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from atlas.data.model import Role, StepLabel, Trajectory
from atlas.errors import AtlasError, InvalidArgument
from atlas_selector.backends import Backend, make_backend
from atlas_selector.contract import enforce, label_cap

if TYPE_CHECKING:
    from atlas_selector.judge.common import JudgeCall, JudgeSettings
    from atlas_selector.judge.engine import EngineJudge

DEFAULT_MAX_RATIO = 0.3


@dataclass(frozen=True)
class SelectionOptions:
    """What a caller asks for; ``max_ratio`` 0 means the default (0.3, or 1 for backend ``all``)."""

    backend: str = "rules"
    max_ratio: float = 0.0
    min_steps: int = 1
    seed: int = 0
    model: str = ""
    complement_of: str = ""


@dataclass(frozen=True)
class Resolved:
    options: SelectionOptions
    backend: Backend
    max_ratio: float
    model: str = ""
    prompt_version: str = ""


@dataclass
class Outcome:
    """The result for one trajectory: labels (and the masked copy unless labels_only) or an error."""

    trajectory_id: str
    step_count: int
    labels: list[StepLabel]
    masked: Trajectory | None = None
    error: AtlasError | None = None
    repairs: int = 0


@dataclass(frozen=True)
class Undecodable:
    """A trajectory that could not be read (unknown role, bad label...): it fails alone."""

    trajectory_id: str
    error: AtlasError


class SelectionObserver(Protocol):
    """Where outcomes are counted (the service's Prometheus metrics); the core knows no metrics library."""

    def observed(self, backend: str, outcomes: Sequence[Outcome], seconds: float) -> None:
        """``outcomes`` of one batch, which took ``seconds`` (wall clock) to select."""


@dataclass(frozen=True)
class Limits:
    max_batch: int = 10_000
    max_message_chars: int = 1_000_000


class Selector:
    def __init__(
        self,
        limits: Limits | None = None,
        observer: SelectionObserver | None = None,
        judge: JudgeSettings | None = None,
        on_judge_call: Callable[[JudgeCall], None] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.observer = observer
        self.judge = judge
        self.on_judge_call = on_judge_call
        self._engine: EngineJudge | None = None
        self._engine_lock = threading.Lock()

    def judge_backend(self, settings: JudgeSettings) -> Backend:
        """The ``vllm`` backend for ``settings``: a new HTTP judge, or the one in-process engine.

        The engine loads its model once (the first call, or the server's start) and serves every
        request after; a request cannot switch it to another model (``config.model``).
        """
        if settings.transport != "inprocess":
            from atlas_selector.judge.http import HttpJudge

            return HttpJudge(settings, self.on_judge_call)
        loaded = self.judge.model if self.judge is not None else settings.model
        if settings.model != loaded:
            raise InvalidArgument(
                f"the in-process judge serves {loaded!r} only; leave config.model empty or name it",
                field_path="config.model",
            )
        with self._engine_lock:
            if self._engine is None:
                from atlas_selector.judge.engine import EngineJudge

                self._engine = EngineJudge(settings, self.on_judge_call)
            return self._engine

    def close(self) -> None:
        """Stop the in-process judge engine's thread, if one was started."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def resolve(self, options: SelectionOptions) -> Resolved:
        """Check the options as a whole; InvalidArgument with a ``config.*`` field path if they are wrong."""
        name = options.backend or "rules"
        judge = self.judge
        if judge is not None and options.model:
            judge = replace(judge, model=options.model)
        backend = make_backend(name, options.complement_of, judge, self.judge_backend)
        ratio = options.max_ratio or (1.0 if name == "all" else DEFAULT_MAX_RATIO)
        if not 0.0 < ratio <= 1.0:  # also rejects NaN
            raise InvalidArgument(f"must be in (0, 1], got {ratio}", field_path="config.max_ratio")
        if name == "all" and ratio != 1.0:
            raise InvalidArgument(
                "backend 'all' labels every step; leave max_ratio unset or set it to 1",
                field_path="config.max_ratio",
            )
        if options.min_steps < 0:
            raise InvalidArgument(
                f"must not be negative, got {options.min_steps}", field_path="config.min_steps"
            )
        model = judge.model if name == "vllm" and judge is not None else ""
        return Resolved(options, backend, ratio, model, getattr(backend, "prompt_version", ""))

    def check_batch(self, size: int, field_path: str = "trajectories") -> None:
        if size > self.limits.max_batch:
            raise InvalidArgument(
                f"{size} trajectories in one request; at most {self.limits.max_batch} "
                "(split the batch or use StreamSelectSteps)",
                field_path=field_path,
            )

    def select(
        self,
        trajectories: Sequence[Trajectory | Undecodable],
        resolved: Resolved,
        *,
        labels_only: bool = False,
        field_path: str = "trajectories",
    ) -> list[Outcome]:
        """One outcome per input, in order; an Undecodable input becomes its trajectory's error."""
        self.check_batch(len(trajectories), field_path)
        started = time.perf_counter()

        def one(k: int) -> Outcome:
            item = trajectories[k]
            if isinstance(item, Undecodable):
                return Outcome(item.trajectory_id, 0, [], error=item.error)
            return self.select_one(item, resolved, labels_only=labels_only, field_path=f"{field_path}[{k}]")

        workers = min(getattr(resolved.backend, "concurrency", 1), len(trajectories))
        if workers > 1:  # a remote judge: keep many requests in flight, results in input order
            with ThreadPoolExecutor(workers, thread_name_prefix="judge") as pool:
                outcomes = list(pool.map(one, range(len(trajectories))))
        else:
            outcomes = [one(k) for k in range(len(trajectories))]
        if self.observer is not None:
            self.observer.observed(resolved.backend.name, outcomes, time.perf_counter() - started)
        return outcomes

    def select_one(
        self, trajectory: Trajectory, resolved: Resolved, *, labels_only: bool = False, field_path: str = ""
    ) -> Outcome:
        steps = trajectory.step_count
        try:
            self._check(trajectory, field_path)
            options = resolved.options
            cap = label_cap(steps, resolved.max_ratio, options.min_steps)
            proposals = resolved.backend.propose(trajectory, cap, options.seed)
            enforced = enforce(proposals, steps, resolved.max_ratio, options.min_steps)
        except AtlasError as error:
            return Outcome(trajectory.id, steps, [], error=error)
        masked = None if labels_only else trajectory.with_critical_steps(enforced.labels)
        return Outcome(trajectory.id, steps, enforced.labels, masked, repairs=len(enforced.repairs))

    def _check(self, trajectory: Trajectory, field_path: str) -> None:
        prefix = f"{field_path}." if field_path else ""
        if not trajectory.messages:
            raise InvalidArgument("the trajectory has no messages", field_path=f"{prefix}messages")
        limit = self.limits.max_message_chars
        for i, message in enumerate(trajectory.messages):
            if len(message.content) > limit:
                raise InvalidArgument(
                    f"message of {len(message.content)} characters; at most {limit}",
                    field_path=f"{prefix}messages[{i}].content",
                )
        if not any(m.role is Role.ASSISTANT for m in trajectory.messages):
            raise InvalidArgument(
                "the trajectory has no assistant turn, so no step to select", field_path=f"{prefix}messages"
            )

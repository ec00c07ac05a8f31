"""Run many episodes at once: envs step in parallel, the policy sees every pending turn as one batch.

The loop keeps up to ``concurrency`` episodes in flight. Each round it (1) starts episodes in free
slots, (2) sends the next-turn request of *every* running episode to the policy in one call (one
padded ``generate`` for transformers, concurrent HTTP requests for vLLM), then (3) steps all envs with
their actions on a thread pool. A suite is therefore never a sequential loop of single-episode calls;
with ``concurrency=1`` it is, which is what the batching benchmark compares against.

Envs are reused across episodes of the same env id (``reset`` starts a fresh one), so JVM- or
process-backed envs are started once per slot, not once per episode. JVM-backed envs run in child
processes (``envs/process.py``), one per env, so their parallel steps never share a process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from atlas.errors import Cancelled, InvalidArgument
from atlas_evaluator.agent import EpisodeLoop, EpisodeResult
from atlas_evaluator.envs.base import TextEnv
from atlas_evaluator.envs.process import make_process_env, process_backed
from atlas_evaluator.envs.registry import env_spec, episode_plan, make_env
from atlas_evaluator.metrics import EvaluatorMetrics
from atlas_evaluator.policies.base import Policy

MAX_CONCURRENCY = 256
MAX_TURNS_LIMIT = 1000
MAX_EPISODES = 100_000


def make_private_env(env_id: str) -> TextEnv:
    """A new env that shares no mutable state with other instances in this process.

    JVM-backed families (``envs.process.PROCESS_BACKED``: ScienceWorld, TextWorld-Express) get a
    :class:`~atlas_evaluator.envs.process.ProcessEnv`: the env lives in its own child process, so
    envs stepped in parallel by the runner's thread pool never share a JVM or a process. Every
    other env owns its episode state (TextCraft envs share only the read-only recipe tree).
    """
    family = env_spec(env_id).family
    if process_backed(family):
        return make_process_env(env_id, family)
    return make_env(env_id)


@dataclass(frozen=True, slots=True)
class EpisodeSpec:
    """One episode to play: concrete env id, env seed, turn budget."""

    env_id: str
    seed: int
    max_turns: int

    @property
    def episode_id(self) -> str:
        return f"{self.env_id}:{self.seed}"


def plan_suite(
    env_ids: Sequence[str], episodes_per_env: int, seed: int = 0, max_turns: int | None = None
) -> list[EpisodeSpec]:
    """The episodes of a suite: ``episodes_per_env`` per requested id (aggregates spread over members).

    ``max_turns`` ``None`` uses each env's own budget from the registry.
    """
    if not env_ids:
        raise InvalidArgument("at least one env id is required", field_path="env_ids")
    if not 1 <= episodes_per_env <= MAX_EPISODES:
        raise InvalidArgument(
            f"episodes_per_env must be in [1, {MAX_EPISODES}]", field_path="episodes_per_env"
        )
    if max_turns is not None and not 1 <= max_turns <= MAX_TURNS_LIMIT:
        raise InvalidArgument(f"max_turns must be in [1, {MAX_TURNS_LIMIT}]", field_path="max_turns")
    specs: list[EpisodeSpec] = []
    for i, env_id in enumerate(env_ids):
        try:
            plan = episode_plan(env_id, episodes_per_env, seed)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field_path=f"env_ids[{i}]") from exc
        for concrete, episode_seed in plan:
            turns = max_turns if max_turns is not None else env_spec(concrete).max_turns
            specs.append(EpisodeSpec(concrete, episode_seed, turns))
    return specs


@dataclass(slots=True)
class RunStats:
    """Where the time went (the benchmark and the metrics read these)."""

    episodes: int = 0
    rounds: int = 0
    policy_calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    policy_seconds: float = 0.0
    env_seconds: float = 0.0
    seconds: float = 0.0
    completion_tokens: int = 0


class Runner:
    """Plays episode specs with one policy, ``concurrency`` episodes in flight."""

    def __init__(
        self,
        policy: Policy,
        *,
        concurrency: int = 8,
        env_factory: Callable[[str], TextEnv] = make_private_env,
        on_result: Callable[[EpisodeResult], None] | None = None,
        cancel: threading.Event | None = None,
        metrics: EvaluatorMetrics | None = None,
    ) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidArgument(f"concurrency must be in [1, {MAX_CONCURRENCY}]", field_path="concurrency")
        self.policy = policy
        self.concurrency = concurrency
        self.env_factory = env_factory
        self.on_result = on_result
        self.cancel = cancel or threading.Event()
        policy.interrupt_on(self.cancel)
        self.metrics = metrics
        self.stats = RunStats()
        self._idle: dict[str, list[TextEnv]] = defaultdict(list)
        self._all_envs: list[TextEnv] = []

    def _env(self, env_id: str) -> TextEnv:
        idle = self._idle[env_id]
        if idle:
            return idle.pop()
        env = self.env_factory(env_id)
        self._all_envs.append(env)
        return env

    def _start(self, spec: EpisodeSpec, env: TextEnv) -> EpisodeLoop:
        loop = EpisodeLoop(spec.episode_id, env, spec.seed, spec.max_turns)
        self.policy.begin(loop.episode_id, env, loop.reset)
        return loop

    def _step(self, loop: EpisodeLoop, reply: object) -> None:
        from atlas_evaluator.policies.base import PolicyReply

        assert isinstance(reply, PolicyReply)
        started = time.perf_counter()
        try:
            result = loop.apply(reply)
        except Exception as exc:  # an env bug must not take the suite down
            loop.fail(exc)
            return
        if self.metrics is not None and result is not None:
            self.metrics.env_step.observe(time.perf_counter() - started)
        if result is not None:
            self.policy.observe(loop.episode_id, result)

    def run(self, specs: Iterable[EpisodeSpec]) -> list[EpisodeResult]:
        """Play every spec; results in completion order. Raises :class:`Cancelled` when cancelled."""
        queue = deque(specs)
        active: list[EpisodeLoop] = []
        results: list[EpisodeResult] = []
        described = self.policy.describe()
        started = time.perf_counter()
        workers = min(self.concurrency, 8)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="env") as pool:
            try:
                while queue or active:
                    if self.cancel.is_set():
                        raise Cancelled("evaluation cancelled")
                    fresh = [queue.popleft() for _ in range(min(len(queue), self.concurrency - len(active)))]
                    t0 = time.perf_counter()
                    # Envs are built here, one at a time (first imports are not thread-safe); resets run
                    # on the pool.
                    envs = [self._env(spec.env_id) for spec in fresh]
                    # (BabyAI's reset redirects the process-wide stdout; it serialises that itself.)
                    starts = pool.map if workers > 1 else map
                    active.extend(starts(self._start, fresh, envs))
                    self.stats.env_seconds += time.perf_counter() - t0
                    waiting = [loop for loop in active if not loop.finished]
                    if waiting:
                        t0 = time.perf_counter()
                        if self.metrics is not None:
                            self.metrics.in_flight.set(len(waiting))
                        replies = self.policy.generate([loop.request() for loop in waiting])
                        elapsed = time.perf_counter() - t0
                        self.stats.policy_seconds += elapsed
                        if self.metrics is not None:
                            self.metrics.policy_call(elapsed, sum(r.completion_tokens for r in replies))
                        self.stats.policy_calls += 1
                        self.stats.batch_sizes.append(len(waiting))
                        if len(replies) != len(waiting):
                            raise RuntimeError(
                                f"policy returned {len(replies)} replies for {len(waiting)} requests"
                            )
                        t0 = time.perf_counter()
                        if workers > 1:
                            list(pool.map(self._step, waiting, replies))
                        else:
                            for loop, reply in zip(waiting, replies, strict=True):
                                self._step(loop, reply)
                        self.stats.env_seconds += time.perf_counter() - t0
                    self.stats.rounds += 1
                    still = []
                    for loop in active:
                        if not loop.finished:
                            still.append(loop)
                            continue
                        result = loop.result(described)
                        self.policy.end(loop.episode_id)
                        self._idle[loop.env.env_id].append(loop.env)
                        self.stats.episodes += 1
                        self.stats.completion_tokens += result.completion_tokens
                        results.append(result)
                        if self.metrics is not None:
                            self.metrics.episode(result)
                        if self.on_result is not None:
                            self.on_result(result)
                    active = still
            finally:
                for loop in active:
                    self.policy.end(loop.episode_id)
                if self.metrics is not None:
                    self.metrics.in_flight.set(0)
                self.stats.seconds += time.perf_counter() - started
        return results

    def close(self) -> None:
        """Close every env this runner built."""
        for env in self._all_envs:
            with contextlib.suppress(Exception):
                env.close()
        self._all_envs.clear()
        self._idle.clear()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

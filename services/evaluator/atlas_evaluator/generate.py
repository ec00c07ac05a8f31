"""Expert trajectories: play envs with their experts and publish AgentGym-format datasets.

Each episode is a conversation in AgentGym's layout: the env's instruction (human), the fixed
"OK. ..." reply (gpt), then observation (human) / ``Thought: ... Action: ...`` (gpt) turns, ending on
the expert's last action. Only successful episodes are written; every attempt is counted in the
manifest. Episode ``i`` uses seed ``seed + i`` both for the env and for the expert's wording and
recoveries, so a run is reproducible and can be split over processes without changing its output.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from atlas.data.model import Message, Role, Trajectory
from atlas.errors import InvalidArgument
from atlas_evaluator.envs.base import TextEnv
from atlas_evaluator.envs.registry import env_spec, episode_plan, make_env

ACKNOWLEDGEMENT = "OK. I'll follow your instructions and try my best to solve the task."
DEFAULT_RECOVERY_RATE = 0.1
MAX_RECOVERIES = 2


@dataclass(slots=True)
class Episode:
    """One attempt: the trajectory when the expert succeeded, and what happened either way."""

    env_id: str
    seed: int
    success: bool
    reward: float
    steps: int
    recoveries: int
    seconds: float
    trajectory: Trajectory | None = None
    error: str = ""


def assistant_turn(thought: str, action: str) -> str:
    return f"Thought:\n{thought}\n\nAction:\n{action}"


def play_episode(env: TextEnv, seed: int, *, recovery_rate: float = DEFAULT_RECOVERY_RATE) -> Episode:
    """Play one seeded episode with the env's expert and build its trajectory."""
    from atlas_evaluator.experts import ExpertGaveUp, expert_for

    started = time.perf_counter()
    rng = random.Random(f"{env.env_id}:{seed}")
    expert = expert_for(env, rng)
    reset = env.reset(seed=seed)
    messages = [
        Message(Role.USER, reset.instruction),
        Message(Role.ASSISTANT, ACKNOWLEDGEMENT),
        Message(Role.USER, reset.observation),
    ]
    expert.start(reset)
    limit = env_spec(env.env_id).max_turns
    reward, steps, recoveries, success, error = 0.0, 0, 0, False, ""
    last = None
    try:
        while steps < limit:
            decision = expert.decide(last)
            thought = decision.thought
            if recoveries < MAX_RECOVERIES and steps > 0 and rng.random() < recovery_rate:
                blunder = expert.blunder(decision)
                if blunder is not None:
                    wrong = env.step(blunder.action)
                    steps += 1
                    if wrong.info.get("valid", True) or wrong.done:
                        raise ExpertGaveUp(f"blunder {blunder.action!r} was accepted by the env")
                    messages.append(Message(Role.ASSISTANT, assistant_turn(blunder.thought, blunder.action)))
                    messages.append(Message(Role.USER, wrong.observation))
                    recoveries += 1
                    thought = f"{blunder.notice} {thought}"
            last = env.step(decision.action)
            steps += 1
            reward += last.reward
            messages.append(Message(Role.ASSISTANT, assistant_turn(thought, decision.action)))
            if last.done:
                success = bool(last.info.get("success"))
                break
            messages.append(Message(Role.USER, last.observation))
    except ExpertGaveUp as exc:
        error = str(exc)
    seconds = time.perf_counter() - started
    episode = Episode(env.env_id, seed, success, reward, steps, recoveries, seconds, error=error)
    if success:
        episode.trajectory = Trajectory(
            id=f"{env.env_id}:{seed}",
            messages=messages,
            source_env=env.env_id,
            task=reset.task,
            metadata={
                "env": env.env_id,
                "task": reset.task,
                "seed": str(seed),
                "success": "true",
                "reward": f"{reward:.4f}",
                "steps": str(steps),
                "recoveries": str(recoveries),
                "expert": type(expert).__name__,
            },
        )
    return episode


_ENVS: dict[str, TextEnv] = {}


def _play(job: tuple[str, int, float]) -> Episode:
    """Worker entry point: envs are built once per process and reused across episodes."""
    env_id, seed, recovery_rate = job
    env = _ENVS.get(env_id)
    if env is None:
        env = _ENVS[env_id] = make_env(env_id)
    return play_episode(env, seed, recovery_rate=recovery_rate)


def play_episodes(
    env_id: str, episodes: int, seed: int, *, workers: int = 1, recovery_rate: float = DEFAULT_RECOVERY_RATE
) -> Iterator[Episode]:
    """Episodes in plan order (the same output for any number of workers)."""
    jobs = [(eid, s, recovery_rate) for eid, s in episode_plan(env_id, episodes, seed)]
    if workers <= 1:
        try:
            yield from map(_play, jobs)
        finally:  # JVM-backed envs hold a process each; do not keep them past the run
            while _ENVS:
                _ENVS.popitem()[1].close()
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_play, jobs, chunksize=max(1, min(32, len(jobs) // (workers * 8) or 1)))


@dataclass(slots=True)
class Summary:
    """Counts and timings of a generation run (also written into the manifest)."""

    env: str
    attempted: int = 0
    succeeded: int = 0
    steps: int = 0
    recoveries: int = 0
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    per_env: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, episode: Episode) -> None:
        self.attempted += 1
        stats = self.per_env.setdefault(
            episode.env_id, {"attempted": 0, "succeeded": 0, "steps": 0, "seconds": 0.0}
        )
        stats["attempted"] += 1
        stats["seconds"] += episode.seconds
        self.seconds += episode.seconds
        if episode.success:
            self.succeeded += 1
            self.steps += episode.steps
            self.recoveries += episode.recoveries
            stats["succeeded"] += 1
            stats["steps"] += episode.steps
        else:
            reason = episode.error.split(":")[0] if episode.error else "not solved within the turn limit"
            self.failures[reason] = self.failures.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "success_rate": round(self.succeeded / self.attempted, 4) if self.attempted else 0.0,
            "mean_steps": round(self.steps / self.succeeded, 2) if self.succeeded else 0.0,
            "recoveries": self.recoveries,
            "mean_episode_seconds": round(self.seconds / self.attempted, 5) if self.attempted else 0.0,
            "failures": dict(self.failures),
            "per_env": self.per_env,
        }


def generate(
    env_id: str,
    episodes: int,
    seed: int,
    out: str,
    *,
    workers: int = 1,
    recovery_rate: float = DEFAULT_RECOVERY_RATE,
    overwrite: bool = False,
    progress: bool = True,
) -> Summary:
    """Play ``episodes`` seeded episodes and publish the successful ones at ``out`` (agentgym)."""
    from atlas.storage import DatasetWriter

    if episodes < 1:
        raise InvalidArgument("episodes must be at least 1", field_path="episodes")
    if not 0.0 <= recovery_rate <= 1.0:
        raise InvalidArgument("recovery_rate must be within [0, 1]", field_path="recovery_rate")
    if workers < 1:
        raise InvalidArgument("workers must be at least 1", field_path="workers")
    episode_plan(env_id, 1, seed)  # validates the env id before any work
    summary = Summary(env_id)
    with DatasetWriter(out, "agentgym", overwrite=overwrite) as writer:
        stream = play_episodes(env_id, episodes, seed, workers=workers, recovery_rate=recovery_rate)
        if progress:
            from tqdm import tqdm

            stream = tqdm(stream, total=episodes, desc=f"generate {env_id}", unit="ep")
        for episode in stream:
            summary.add(episode)
            if episode.trajectory is not None:
                writer.write(episode.trajectory)
        extra = {
            "generator": {
                "seed": seed,
                "workers": workers,
                "recovery_rate": recovery_rate,
                **summary.as_dict(),
            }
        }
        writer.commit(extra)
    return summary

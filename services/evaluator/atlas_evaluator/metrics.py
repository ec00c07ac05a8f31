"""Prometheus series of the evaluator (``atlas_evaluator_`` prefix), fed by the runner and the jobs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from atlas_evaluator.agent import EpisodeResult


class EvaluatorMetrics:
    """One set per service process; the runner reports into it while it plays episodes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.episodes = Counter(
            "atlas_evaluator_episodes",
            "Finished episodes by env, outcome (success/failure) and stop reason.",
            ["env", "outcome", "stop_reason"],
            registry=registry,
        )
        self.env_step = Histogram(
            "atlas_evaluator_env_step_seconds",
            "Latency of one env step (action in, observation out).",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=registry,
        )
        self.policy = Histogram(
            "atlas_evaluator_policy_seconds",
            "Latency of one policy call (a whole batch of pending turns).",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
        self.tokens_per_second = Gauge(
            "atlas_evaluator_policy_tokens_per_second",
            "Generated tokens per second of the last policy call.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "atlas_evaluator_episodes_in_flight", "Episodes being played now.", registry=registry
        )
        self.success_rate = Gauge(
            "atlas_evaluator_success_rate",
            "Running success rate of a job's episodes so far, per env.",
            ["job", "env"],
            registry=registry,
        )

    def episode(self, result: EpisodeResult) -> None:
        outcome = "success" if result.success else "failure"
        self.episodes.labels(result.env_id, outcome, str(result.stop_reason)).inc()

    def policy_call(self, seconds: float, tokens: int) -> None:
        self.policy.observe(seconds)
        if seconds > 0:
            self.tokens_per_second.set(tokens / seconds)

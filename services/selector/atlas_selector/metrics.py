"""The selector's Prometheus metrics (``atlas_selector_*``), registered in the server's registry."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from atlas_selector.judge.http import JudgeCall
from atlas_selector.selector import Outcome

RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)


class SelectorMetrics:
    """Counts every outcome; the servicer and the job runner report through :meth:`observed`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.trajectories = Counter(
            "atlas_selector_trajectories",
            "Trajectories processed, by backend and outcome (ok or the error's status code).",
            ["backend", "outcome"],
            registry=registry,
        )
        self.steps = Counter(
            "atlas_selector_steps",
            "Assistant turns processed, by backend and outcome (selected or context).",
            ["backend", "outcome"],
            registry=registry,
        )
        self.ratio = Histogram(
            "atlas_selector_selected_ratio",
            "Fraction of a trajectory's steps selected as critical.",
            ["backend"],
            buckets=RATIO_BUCKETS,
            registry=registry,
        )
        self.criteria = Counter(
            "atlas_selector_criteria",
            "Criteria named by selected steps.",
            ["backend", "criterion"],
            registry=registry,
        )
        self.repairs = Counter(
            "atlas_selector_repairs",
            "Backend answers the contract had to repair (repaired) or could not (failed).",
            ["backend", "result"],
            registry=registry,
        )
        self.select_seconds = Counter(
            "atlas_selector_select_seconds",
            "Wall-clock seconds spent selecting (backend and contract), by backend. Its rate against "
            "the callers' request time is the share of the service's time that is selection itself.",
            ["backend"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "atlas_selector_in_flight_trajectories",
            "Trajectories read by a streaming call and not yet answered.",
            registry=registry,
        )
        self.judge_latency = Histogram(
            "atlas_selector_judge_request_duration_seconds",
            "Time of one judge request, by outcome (ok, cut_off, bad_answer, refused, unavailable).",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.judge_tokens = Counter(
            "atlas_selector_judge_tokens",
            "Tokens the judge read (in) and wrote (out).",
            ["direction"],
            registry=registry,
        )
        self.jobs = Gauge(
            "atlas_selector_jobs",
            "Selection jobs this process knows, by state.",
            ["state"],
            registry=registry,
        )

    def judge_call(self, call: JudgeCall) -> None:
        self.judge_latency.labels(call.outcome).observe(call.seconds)
        self.judge_tokens.labels("in").inc(call.prompt_tokens)
        self.judge_tokens.labels("out").inc(call.completion_tokens)

    def observed(self, backend: str, outcomes: Sequence[Outcome], seconds: float) -> None:
        """Count a batch, tallied locally first: a few metric updates per batch, not per trajectory."""
        self.select_seconds.labels(backend).inc(seconds)
        results: Tally[str] = Tally()
        criteria: Tally[str] = Tally()
        selected = context = repaired = unrepairable = 0
        ratio = self.ratio.labels(backend)  # one label lookup per batch, not per trajectory
        for outcome in outcomes:
            if outcome.error is not None:
                results[outcome.error.code.lower()] += 1
                unrepairable += outcome.error.code == "FAILED_PRECONDITION"
                continue
            results["ok"] += 1
            chosen = len(outcome.labels)
            selected += chosen
            context += outcome.step_count - chosen
            repaired += bool(outcome.repairs)
            if outcome.step_count:
                ratio.observe(chosen / outcome.step_count)
            criteria.update(c.value for label in outcome.labels for c in label.criteria)
        for name, count in results.items():
            self.trajectories.labels(backend, name).inc(count)
        for name, count in criteria.items():
            self.criteria.labels(backend, name).inc(count)
        if selected or context:
            self.steps.labels(backend, "selected").inc(selected)
            self.steps.labels(backend, "context").inc(context)
        if repaired:
            self.repairs.labels(backend, "repaired").inc(repaired)
        if unrepairable:
            self.repairs.labels(backend, "failed").inc(unrepairable)

"""The selector's Prometheus metrics (``atlas_selector_*``), registered in the server's registry."""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

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
        self.ratio = BatchHistogram(
            "atlas_selector_selected_ratio",
            "Fraction of a trajectory's steps selected as critical.",
            "backend",
            RATIO_BUCKETS,
            registry,
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
        selected = context = repaired = unrepairable = 0
        ratios: list[float] = []
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
                ratios.append(chosen / outcome.step_count)
        self.ratio.observe_many(backend, ratios)
        criteria = Tally(c.value for o in outcomes for label in o.labels for c in label.criteria)
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


class BatchHistogram:
    """A histogram with one label that takes a batch's observations in one call.

    prometheus_client's ``Histogram.observe`` takes a lock and walks the buckets in Python for each
    value: 2.9 ms per 1,000 trajectories, a tenth of the service's overhead over the selection
    itself (bench/README.md, selector tenth pass). Here a batch is bucketed with ``bisect`` and added
    under one lock. It exposes the same samples as a Histogram (``_bucket`` with ``le``, ``_count``,
    ``_sum``), so queries and dashboards do not change.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._series: dict[str, tuple[list[int], list[float]]] = {}  # value -> (counts, [sum])
        registry.register(self)

    def observe_many(self, label_value: str, values: Sequence[float]) -> None:
        """Observe each of ``values`` under ``label_value``; NaN is refused as Histogram refuses it."""
        if not values:
            return
        bounds = self.bounds
        counts = [0] * (len(bounds) + 1)  # the last one is +Inf's own
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        total = math.fsum(values)
        if math.isnan(total):
            raise ValueError(f"{self.name}: cannot observe NaN")
        with self._lock:
            series = self._series.setdefault(label_value, ([0] * len(counts), [0.0]))
            for k, count in enumerate(counts):
                series[0][k] += count
            series[1][0] += total

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            snapshot = {value: (list(counts), sums[0]) for value, (counts, sums) in self._series.items()}
        for value, (counts, total) in sorted(snapshot.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([value], buckets, sum_value=total)
        yield family

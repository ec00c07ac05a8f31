"""Prometheus series of the trainer (``atlas_trainer_`` prefix), fed from the runs' progress lines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from atlas.jobs import JobState, JobStore


class _JobsByState(Collector):
    """Jobs per state, counted from the store at scrape time (so it is right after a restart too)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("atlas_trainer_jobs", "Training jobs by state.", labels=["state"])
        for state in JobState:
            count, token = 0, ""
            while True:
                page, token = self.store.list_jobs(page_size=1000, page_token=token, state=state)
                count += len(page)
                if not token:
                    break
            family.add_metric([state.value], count)
        yield family


class TrainerMetrics:
    def __init__(self, registry: CollectorRegistry, store: JobStore) -> None:
        registry.register(_JobsByState(store))
        self.tokens = Counter(
            "atlas_trainer_tokens", "Input tokens trained on (of the untruncated samples).", registry=registry
        )
        self.supervised_tokens = Counter(
            "atlas_trainer_supervised_tokens", "Tokens that carried loss.", registry=registry
        )
        self.tokens_per_second = Gauge(
            "atlas_trainer_tokens_per_second",
            "Training throughput of a running job.",
            ["job"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "atlas_trainer_step_seconds",
            "Wall time of one optimizer step.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.loss = Gauge(
            "atlas_trainer_loss", "Latest training loss of a running job.", ["job"], registry=registry
        )
        self.gpu_memory = Gauge(
            "atlas_trainer_gpu_memory_bytes", "Peak GPU memory of a running job.", ["job"], registry=registry
        )
        self._seen: dict[str, tuple[int, int]] = {}

    def progress(self, job_id: str, event: dict[str, Any]) -> None:
        tokens, supervised = int(event.get("tokens", 0)), int(event.get("supervised_tokens", 0))
        if job_id in self._seen:
            last_tokens, last_supervised = self._seen[job_id]
        elif event.get("step") == 1:
            last_tokens = last_supervised = 0
        else:  # first report this process sees of a resumed run: count from here
            last_tokens, last_supervised = tokens, supervised
        self.tokens.inc(max(0, tokens - last_tokens))
        self.supervised_tokens.inc(max(0, supervised - last_supervised))
        self._seen[job_id] = (tokens, supervised)
        self.tokens_per_second.labels(job_id).set(float(event.get("tokens_per_second", 0.0)))
        self.loss.labels(job_id).set(float(event.get("loss", 0.0)))
        self.step_seconds.observe(float(event.get("step_seconds", 0.0)))
        if event.get("gpu_memory_bytes"):
            self.gpu_memory.labels(job_id).set(float(event["gpu_memory_bytes"]))

    def finished(self, job_id: str) -> None:
        """A job's per-job series end with it."""
        self._seen.pop(job_id, None)
        for gauge in (self.tokens_per_second, self.loss, self.gpu_memory):
            with contextlib.suppress(KeyError):
                gauge.remove(job_id)

"""The summary `atlas select` prints and records: counts, ratio, criteria, failures."""

from __future__ import annotations

from collections import Counter
from typing import Any

from atlas_selector.selector import Outcome


class Summary:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.ok = 0
        self.failed = 0
        self.unreadable = 0
        self.steps = 0
        self.selected = 0
        self.criteria: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def add(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.failed += 1
            self.errors[outcome.error.code] += 1
            return
        self.ok += 1
        self.steps += outcome.step_count
        self.selected += len(outcome.labels)
        self.criteria.update(c.value for label in outcome.labels for c in label.criteria)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "trajectories_out": self.ok,
            "trajectories_failed": self.failed,
            "steps": self.steps,
            "selected_steps": self.selected,
            "ratio": self.selected / self.steps if self.steps else 0.0,
            "criteria": dict(sorted(self.criteria.items())),
            "errors": dict(sorted(self.errors.items())),
        }

    def table(self) -> str:
        rows = [
            ("backend", self.backend),
            ("trajectories labelled", str(self.ok)),
            ("trajectories failed", str(self.failed)),
            ("records unreadable", str(self.unreadable)),
            ("steps", str(self.steps)),
            ("selected steps", str(self.selected)),
            ("selected ratio", f"{self.selected / self.steps:.3f}" if self.steps else "-"),
            *((f"  {name}", str(count)) for name, count in sorted(self.criteria.items())),
            *((f"  error {code}", str(count)) for code, count in sorted(self.errors.items())),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)

"""`atlas validate`: schema-check a trajectory dataset and report every bad line.

Schema errors come from the format readers (file, line, field). On top of them it
counts what a training run cares about: trajectories without assistant turns,
duplicate ids, and masks that select nothing or everything — the silent failures
that peers' pipelines only discover after spending GPU time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from atlas import storage
from atlas.data.formats import ReadReport


@dataclass
class ValidationReport:
    source: str
    read: ReadReport = field(default_factory=ReadReport)
    trajectories: int = 0
    steps: int = 0
    trained_steps: int = 0
    masked_trajectories: int = 0
    without_steps: list[str] = field(default_factory=list)
    mask_selects_nothing: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)

    @property
    def records_bad(self) -> int:
        return self.read.records_bad

    def error_lines(self) -> list[str]:
        return [str(error) for error in self.read.errors]

    def summary(self) -> str:
        ratio = self.trained_steps / self.steps if self.steps else 0.0
        status = "OK" if not self.records_bad else f"{self.records_bad} BAD"
        parts = [
            f"{self.source}: {status}: {self.trajectories} trajectories, {self.steps} assistant steps",
            f"{self.masked_trajectories} with train flags, {self.trained_steps} trained steps ({ratio:.1%})",
        ]
        if self.records_bad > len(self.read.errors):
            parts.append(f"{self.records_bad - len(self.read.errors)} more bad records not listed")
        warnings = [
            ("trajectories without assistant turns", self.without_steps),
            ("masked trajectories whose mask selects no step", self.mask_selects_nothing),
            ("duplicate ids", self.duplicate_ids),
        ]
        for label, ids in warnings:
            if ids:
                shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
                parts.append(f"warning: {len(ids)} {label}: {shown}")
        return "; ".join(parts[:2]) + "".join(f"\n  {p}" for p in parts[2:])


def validate_dataset(uri: str, *, fmt: str = "auto", max_errors: int = 1000) -> ValidationReport:
    """Read the whole dataset (streaming), skipping and recording bad records."""
    report = ValidationReport(uri)
    report.read.max_errors = max_errors
    seen: Counter[str] = Counter()
    for trajectory in storage.read_trajectories(uri, fmt, errors="skip", report=report.read):
        report.trajectories += 1
        steps = trajectory.step_count
        report.steps += steps
        seen[trajectory.id] += 1
        if seen[trajectory.id] == 2:
            report.duplicate_ids.append(trajectory.id)
        if steps == 0:
            report.without_steps.append(trajectory.id)
        if trajectory.has_mask():
            report.masked_trajectories += 1
            trained = len(trajectory.trained_steps())
            report.trained_steps += trained
            if trained == 0:
                report.mask_selects_nothing.append(trajectory.id)
    return report

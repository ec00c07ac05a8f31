"""Agreement of a backend with hand labels: precision, recall and F1 over (trajectory, step) pairs.

The gold labels are the ``labels`` a dataset carries (``atlas.labels`` in AgentGym records). The
backend sees each trajectory with its labels removed, so it cannot copy them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from atlas.data.model import Trajectory
from atlas_selector.selector import SelectionOptions, Selector


@dataclass
class Agreement:
    backend: str
    trajectories: int = 0
    gold: int = 0
    predicted: int = 0
    matched: int = 0
    failed: int = 0

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self) -> str:
        return (
            f"backend={self.backend} trajectories={self.trajectories} gold={self.gold} "
            f"predicted={self.predicted} matched={self.matched} failed={self.failed} "
            f"precision={self.precision:.3f} recall={self.recall:.3f} f1={self.f1:.3f}"
        )


def agreement(
    trajectories: Iterable[Trajectory], options: SelectionOptions, selector: Selector | None = None
) -> Agreement:
    """Micro-averaged agreement of ``options.backend`` with the labels the trajectories carry."""
    selector = selector or Selector()
    resolved = selector.resolve(options)
    result = Agreement(resolved.backend.name)
    trajectories = list(trajectories)
    unlabelled = [replace(t, labels=[]) for t in trajectories]
    outcomes = selector.select(unlabelled, resolved, labels_only=True)
    for trajectory, outcome in zip(trajectories, outcomes, strict=True):
        gold = {label.step_index for label in trajectory.labels}
        result.trajectories += 1
        result.gold += len(gold)
        if outcome.error is not None:
            result.failed += 1
            continue
        predicted = {label.step_index for label in outcome.labels}
        result.predicted += len(predicted)
        result.matched += len(predicted & gold)
    return result

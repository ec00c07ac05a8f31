"""The selection contract the service enforces, whatever the backend or model said.

A selection for a trajectory with ``n`` assistant turns holds between ``floor_steps(n)`` and
``label_cap(n)`` labels, each naming a distinct step ``0 <= i < n`` with at least one known
criterion. Backends propose labels (:class:`ProposedLabel`, loosely typed because an LLM wrote
them); :func:`enforce` repairs what can be repaired by one fixed rule and refuses the rest.

Repair rule (deterministic, in this order):

1. drop proposals whose step index is not an integer in ``[0, n)``;
2. keep only known criteria (deduplicated, in the canonical order); drop proposals left without one;
3. merge proposals for the same step into the first one (union of criteria, first rationale);
4. keep the first ``label_cap(n)`` proposals in the order the backend gave them (a judge lists
   its most important steps first; rules backends rank by score);
5. if fewer than ``floor_steps(n)`` labels remain, the trajectory fails with :class:`ContractViolation`:
   the service never invents labels the backend did not give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from atlas.data.model import Criterion, StepLabel
from atlas.errors import FailedPrecondition

_CRITERIA = {c.value: c for c in Criterion}
_ORDER = {c: k for k, c in enumerate(Criterion)}
# floor(0.3 * 10) must be 3, not 2: products like 0.29 * 100 land a hair below the integer.
_EPSILON = 1e-9


class ContractViolation(FailedPrecondition):
    """A backend's answer could not be repaired into a valid selection (per-trajectory error)."""


@dataclass(frozen=True)
class ProposedLabel:
    """One label as a backend proposed it; ``criteria`` are names, possibly wrong ones."""

    step_index: object
    criteria: tuple[object, ...]
    rationale: str = ""


@dataclass
class Enforced:
    labels: list[StepLabel]
    repairs: list[str] = field(default_factory=list)


def label_cap(step_count: int, max_ratio: float, min_steps: int) -> int:
    """Most labels allowed: ``floor(max_ratio * n)``, raised to ``min(min_steps, n)``."""
    if step_count <= 0:
        return 0
    return max(math.floor(max_ratio * step_count + _EPSILON), floor_steps(step_count, min_steps))


def floor_steps(step_count: int, min_steps: int) -> int:
    """Fewest labels required: ``min(min_steps, n)``."""
    return max(0, min(min_steps, step_count))


def enforce(proposals: list[ProposedLabel], step_count: int, max_ratio: float, min_steps: int) -> Enforced:
    """Apply the repair rule of the module docstring; raise ContractViolation if it cannot."""
    repairs: list[str] = []
    merged: dict[int, tuple[list[Criterion], str]] = {}
    for proposal in proposals:
        step = proposal.step_index
        if type(step) is not int or not 0 <= step < step_count:
            repairs.append(f"dropped step index {step!r} (valid: 0..{step_count - 1})")
            continue
        criteria: list[Criterion] = []
        for name in proposal.criteria:
            criterion = _CRITERIA.get(name) if isinstance(name, str) else None
            if criterion is None:
                repairs.append(f"step {step}: dropped unknown criterion {name!r}")
            elif criterion not in criteria:
                criteria.append(criterion)
        if not criteria:
            repairs.append(f"step {step}: dropped, no known criterion")
            continue
        if step in merged:
            repairs.append(f"step {step}: merged a duplicate label")
            known = merged[step][0]
            known.extend(c for c in criteria if c not in known)
        else:
            merged[step] = (criteria, proposal.rationale)
    cap = label_cap(step_count, max_ratio, min_steps)
    kept = list(merged.items())
    if len(kept) > cap:
        repairs.append(f"kept the first {cap} of {len(kept)} labels (cap)")
        kept = kept[:cap]
    need = floor_steps(step_count, min_steps)
    if len(kept) < need:
        raise ContractViolation(
            f"the backend gave {len(kept)} valid label(s), at least {need} required"
            + (f" (repairs: {'; '.join(repairs[:5])})" if repairs else "")
        )
    labels = [
        StepLabel(step, tuple(sorted(criteria, key=_ORDER.__getitem__)), rationale)
        for step, (criteria, rationale) in sorted(kept)
    ]
    return Enforced(labels, repairs)

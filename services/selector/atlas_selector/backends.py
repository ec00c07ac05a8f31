"""Selection backends behind one interface, and the ablation backends (random, all, none_critical).

A backend *proposes* labels for one trajectory given the cap; the service then enforces the contract
(:mod:`atlas_selector.contract`), so a backend never has the last word on what is valid.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from atlas.data.model import Criterion, Trajectory
from atlas.errors import FailedPrecondition, InvalidArgument
from atlas_selector.contract import ProposedLabel
from atlas_selector.rules import RulesBackend

if TYPE_CHECKING:
    from atlas_selector.judge.common import JudgeSettings

BACKEND_NAMES = ("rules", "random", "all", "none_critical", "vllm")


class Backend(Protocol):
    name: str

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        """Labels for ``trajectory``, most important first, at most ``cap`` of them."""
        ...


def trajectory_rng(seed: int, trajectory_id: str) -> random.Random:
    """A generator that depends only on the seed and the trajectory, not on batch order or process."""
    return random.Random(f"{seed}:{trajectory_id}")


class RandomBackend:
    """``cap`` steps drawn uniformly, reproducibly (the paper's "random 30%" ablation)."""

    name = "random"

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        chosen = trajectory_rng(seed, trajectory.id).sample(range(trajectory.step_count), cap)
        return [
            ProposedLabel(i, (Criterion.CRITICAL_ACTION.value,), "random ablation") for i in sorted(chosen)
        ]


class AllBackend:
    """Every step (the all-steps SFT baseline); only valid with max_ratio 1."""

    name = "all"

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        return [
            ProposedLabel(i, (Criterion.CRITICAL_ACTION.value,), "all-steps ablation")
            for i in range(trajectory.step_count)
        ]


class NoneCriticalBackend:
    """``cap`` steps drawn (seeded) from those the base backend did *not* choose at the same cap.

    This is the paper's "non-critical 30%" ablation. The labels carry CRITICAL_ACTION only because a
    label needs a criterion; their rationale says they are the complement.
    """

    name = "none_critical"

    def __init__(self, base: Backend) -> None:
        self.base = base

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        critical = {p.step_index for p in self.base.propose(trajectory, cap, seed)}
        rest = [i for i in range(trajectory.step_count) if i not in critical]
        chosen = trajectory_rng(seed, trajectory.id).sample(rest, min(cap, len(rest)))
        why = f"non-critical ablation: not chosen by {self.base.name}"
        return [ProposedLabel(i, (Criterion.CRITICAL_ACTION.value,), why) for i in sorted(chosen)]


def make_backend(
    name: str,
    complement_of: str = "",
    judge: JudgeSettings | None = None,
    build_judge: Callable[[JudgeSettings], Backend] | None = None,
) -> Backend:
    """The backend called ``name``; InvalidArgument (field ``config.backend``) for an unknown one.

    ``vllm`` needs ``judge`` (the server's judge settings); without one it is FailedPrecondition.
    ``build_judge`` makes the judge backend from them (the Selector's, which keeps one in-process
    engine); without it an HTTP judge is built.
    """
    simple: dict[str, Backend] = {"rules": RulesBackend(), "random": RandomBackend(), "all": AllBackend()}
    if name in simple:
        if complement_of:
            raise InvalidArgument(
                "complement_of is only for backend none_critical", field_path="config.complement_of"
            )
        return simple[name]
    if name == "none_critical":
        base = complement_of or "rules"
        if base not in simple or base == "all":
            raise InvalidArgument(
                f"none_critical complements rules or random, got {base!r}", field_path="config.complement_of"
            )
        return NoneCriticalBackend(simple[base])
    if name == "vllm":
        if complement_of:
            raise InvalidArgument(
                "complement_of is only for backend none_critical", field_path="config.complement_of"
            )
        if judge is None or not judge.configured:
            raise FailedPrecondition(
                "backend 'vllm' needs a judge: start the selector with --judge-url and --judge-model "
                "(a judge server), or --judge-transport inprocess and --judge-model (load it here)",
                field_path="config.backend",
            )
        if build_judge is not None:
            return build_judge(judge)
        from atlas_selector.judge.http import HttpJudge

        return HttpJudge(judge)
    raise InvalidArgument(
        f"unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}", field_path="config.backend"
    )

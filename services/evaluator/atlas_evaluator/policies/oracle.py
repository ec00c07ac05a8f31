"""A scripted policy that replays the env's expert: proves the runner counts success correctly.

It plays through the same interface as a model (a batch of chats in, ``Thought/Action`` text out)
and the runner parses its replies like any other, so if the oracle's success rate over a suite
equals the expert's own (``atlas_evaluator.generate.play_episode`` with no blunders), stepping,
parsing, stopping and success counting agree with the env.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv
from atlas_evaluator.policies.base import Policy, PolicyReply, PolicyRequest


class OraclePolicy(Policy):
    """Replays the expert of each episode's env (``atlas_evaluator.experts``)."""

    name = "oracle"

    def __init__(self) -> None:
        self._experts: dict[str, Any] = {}
        self._last: dict[str, StepResult | None] = {}

    def begin(self, episode_id: str, env: TextEnv, reset: ResetResult) -> None:
        from atlas_evaluator.experts import expert_for

        seed = reset.info.get("seed", episode_id)
        expert = expert_for(env, random.Random(f"{env.env_id}:{seed}"))
        expert.start(reset)
        self._experts[episode_id] = expert
        self._last[episode_id] = None

    def observe(self, episode_id: str, result: StepResult) -> None:
        self._last[episode_id] = result

    def end(self, episode_id: str) -> None:
        self._experts.pop(episode_id, None)
        self._last.pop(episode_id, None)

    def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyReply]:
        from atlas_evaluator.experts import ExpertGaveUp

        replies = []
        for request in requests:
            expert = self._experts[request.episode_id]
            try:
                decision = expert.decide(self._last[request.episode_id])
            except ExpertGaveUp as exc:
                # Not an action: the agent loop treats it as a parse failure, like a confused model.
                replies.append(PolicyReply(f"Thought:\nI give up ({exc}).", info={"gave_up": True}))
                continue
            replies.append(PolicyReply(f"Thought:\n{decision.thought}\n\nAction:\n{decision.action}"))
        return replies

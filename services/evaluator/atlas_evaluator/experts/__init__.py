"""Experts that play the built-in envs and explain their actions as ReAct thoughts."""

from __future__ import annotations

import random

from atlas_evaluator.envs.base import TextEnv
from atlas_evaluator.experts.base import Blunder, Decision, Expert, ExpertGaveUp


def expert_for(env: TextEnv, rng: random.Random) -> Expert:
    """The expert that plays ``env`` (by env family)."""
    family = env.env_id.split("/", 1)[0]
    if family == "babyai":
        from atlas_evaluator.envs.babyai import BabyAIEnv
        from atlas_evaluator.experts.babyai import BabyAIExpert

        assert isinstance(env, BabyAIEnv)
        return BabyAIExpert(env, rng)
    if family == "textcraft":
        from atlas_evaluator.envs.textcraft import TextCraftEnv
        from atlas_evaluator.experts.textcraft import TextCraftExpert

        assert isinstance(env, TextCraftEnv)
        return TextCraftExpert(env, rng)
    if family == "twx":
        from atlas_evaluator.envs.twx import TextWorldExpressEnv
        from atlas_evaluator.experts.twx import TextWorldExpressExpert

        assert isinstance(env, TextWorldExpressEnv)
        return TextWorldExpressExpert(env, rng)
    if family == "sciworld":
        from atlas_evaluator.envs.sciworld import ScienceWorldEnv
        from atlas_evaluator.experts.sciworld import ScienceWorldExpert

        assert isinstance(env, ScienceWorldEnv)
        return ScienceWorldExpert(env, rng)
    if family == "textworld":
        from atlas_evaluator.envs.textworld_env import TextWorldEnv
        from atlas_evaluator.envs.textworld_household import HouseholdEnv

        if isinstance(env, HouseholdEnv):
            from atlas_evaluator.experts.textworld_household import HouseholdExpert

            return HouseholdExpert(env, rng)
        from atlas_evaluator.experts.textworld_expert import TextWorldExpert

        assert isinstance(env, TextWorldEnv)
        return TextWorldExpert(env, rng)
    raise ValueError(f"no expert for env {env.env_id!r}")


__all__ = ["Blunder", "Decision", "Expert", "ExpertGaveUp", "expert_for"]

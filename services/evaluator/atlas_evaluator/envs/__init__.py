"""Text environments: one interface (:class:`TextEnv`), the built-in envs, the registry with the
held-in / held-out split, and AgentGym's HTTP protocol (client env and server)."""

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv
from atlas_evaluator.envs.registry import AGGREGATES, ENVIRONMENTS, EnvSpec, env_spec, make_env, members

__all__ = [
    "AGGREGATES",
    "ENVIRONMENTS",
    "EnvSpec",
    "ResetResult",
    "StepResult",
    "TextEnv",
    "env_spec",
    "make_env",
    "members",
]

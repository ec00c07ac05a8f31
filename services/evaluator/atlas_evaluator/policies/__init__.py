"""Policies the evaluator runs: ``transformers`` (in-process), ``openai`` (a server), ``oracle``."""

from atlas_evaluator.policies.base import GenerationConfig, Policy, PolicyReply, PolicyRequest

__all__ = ["GenerationConfig", "Policy", "PolicyReply", "PolicyRequest"]

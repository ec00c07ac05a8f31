"""Per-env tallies of evaluated episodes and the report built from them (table, JSON, Markdown).

The numbers follow the paper's tables: success rate and mean reward (progress) per environment,
then the averages over held-in and held-out environments (a plain mean over envs, so every env
weighs the same however many episodes it had).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from atlas_evaluator.agent import EpisodeResult
from atlas_evaluator.envs.registry import ENVIRONMENTS


@dataclass
class EnvTally:
    """Running totals of one env's episodes (also the live progress of a job)."""

    env_id: str
    episodes: int = 0
    successes: int = 0
    reward: float = 0.0
    turns: int = 0

    def add(self, result: EpisodeResult) -> None:
        self.episodes += 1
        self.successes += int(result.success)
        self.reward += result.reward
        self.turns += result.turns

    @property
    def held_out(self) -> bool:
        spec = ENVIRONMENTS.get(self.env_id)
        return bool(spec and spec.held_out)

    def as_dict(self) -> dict[str, Any]:
        n = max(1, self.episodes)
        return {
            "env_id": self.env_id,
            "held_out": self.held_out,
            "episodes": self.episodes,
            "successes": self.successes,
            "success_rate": round(self.successes / n, 4),
            "mean_reward": round(self.reward / n, 4),
            "mean_turns": round(self.turns / n, 2),
        }


def tally(results: Iterable[EpisodeResult]) -> dict[str, EnvTally]:
    tallies: dict[str, EnvTally] = {}
    for result in results:
        tallies.setdefault(result.env_id, EnvTally(result.env_id)).add(result)
    return dict(sorted(tallies.items()))


def split_averages(envs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean success rate / reward over held-in and held-out envs (each env weighs the same)."""
    out: dict[str, dict[str, float]] = {}
    for split, held_out in (("held-in", False), ("held-out", True)):
        rows = [e for e in envs.values() if bool(e["held_out"]) is held_out]
        if rows:
            out[split] = {
                "success_rate": round(sum(float(e["success_rate"]) for e in rows) / len(rows), 4),
                "mean_reward": round(sum(float(e["mean_reward"]) for e in rows) / len(rows), 4),
                "envs": len(rows),
            }
    return out


def markdown_table(runs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """One row per env, one success/reward/turns column group per run (``runs``: name -> envs)."""
    names = list(runs)
    env_ids = sorted({e for envs in runs.values() for e in envs})
    header = "| env | split | " + " | ".join(f"{n} success | {n} reward | {n} turns" for n in names) + " |"
    rule = "|---|---|" + "---|---|---|" * len(names)
    lines = [header, rule]
    for env_id in env_ids:
        spec = ENVIRONMENTS.get(env_id)
        cells = []
        for name in names:
            e = runs[name].get(env_id)
            cells.append(
                f"{e['success_rate']:.1%} | {e['mean_reward']:.3f} | {e['mean_turns']:.1f}"
                if e
                else "- | - | -"
            )
        lines.append(
            f"| {env_id} | {'held-out' if spec and spec.held_out else 'held-in'} | "
            + " | ".join(cells)
            + " |"
        )
    for split in ("held-in", "held-out"):
        cells = []
        for name in names:
            avg = split_averages(runs[name]).get(split)
            cells.append(f"{avg['success_rate']:.1%} | {avg['mean_reward']:.3f} | -" if avg else "- | - | -")
        if any(c != "- | - | -" for c in cells):
            lines.append(f"| **{split} average** | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_report(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``runs``: name -> {"envs": {env_id: tally dict}, "policy": {...}, ...} -> the report.json body."""
    return {
        "runs": {name: {**dict(run), "averages": split_averages(run["envs"])} for name, run in runs.items()},
    }


def write_report(out_dir: str, report: Mapping[str, Any]) -> list[str]:
    """Write report.json, report.md and report.png (success rate per env, one bar per run)."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {name: run["envs"] for name, run in report["runs"].items()}
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text("# Evaluation report\n\n" + markdown_table(runs))
    _bar_chart(runs, out / "report.png")
    return [str(out / n) for n in ("report.json", "report.md", "report.png")]


def _bar_chart(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = sorted({e for envs in runs.values() for e in envs})
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(env_ids) * max(1, len(runs)) ** 0.5), 4.0))
    for k, (name, envs) in enumerate(runs.items()):
        xs = [i + k * width for i in range(len(env_ids))]
        ax.bar(xs, [float(envs.get(e, {}).get("success_rate", 0.0)) for e in env_ids], width, label=name)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(env_ids))])
    ax.set_xticklabels(env_ids, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

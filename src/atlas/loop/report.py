"""The loop's report: the evaluator's comparison table and chart, plus timings and provenance.

The per-env table, held-in/held-out averages and the PNG bar chart come from the evaluator's own
report module (``atlas_evaluator.report``), so ``atlas eval`` and the demo print the same table.
This module adds what only the loop knows: a summary row per run (success, how often the agent kept
the action format), the seconds of every stage, and the provenance chain (each stage's job id and
output URI, in order), so a reader can follow expert data → masked dataset → adapter → results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atlas.loop.stages import StageResult


def evaluation_runs(evaluations: Mapping[str, StageResult]) -> dict[str, dict[str, Any]]:
    """Run name -> the shape ``atlas_evaluator.report.build_report`` takes."""
    return {
        name: {
            "envs": result.stats["envs"],
            "policy": result.stats.get("policy", {}),
            "job_id": result.job_id,
            "output_uri": result.output_uri,
            "action_format": result.stats.get("action_format", {}),
        }
        for name, result in evaluations.items()
    }


def summary_table(evaluations: Mapping[str, StageResult]) -> str:
    """One row per run: held-in/held-out success and the action-format numbers (Markdown)."""
    lines = [
        "| run | held-in success | held-out success | action format kept | valid actions | episodes |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in evaluations.items():
        averages = result.stats.get("averages", {})
        fmt = result.stats.get("action_format", {})

        def rate(split: str, averages: Mapping[str, Any] = averages) -> str:
            return f"{averages[split]['success_rate']:.1%}" if split in averages else "-"

        lines.append(
            f"| {name} | {rate('held-in')} | {rate('held-out')} | {fmt.get('format_rate', 0.0):.1%} | "
            f"{fmt.get('valid_action_rate', 0.0):.1%} | {fmt.get('episodes', 0)} |"
        )
    return "\n".join(lines) + "\n"


def timings_table(stages: Sequence[StageResult], total_seconds: float | None = None) -> str:
    lines = ["| stage | seconds | job | output |", "|---|---|---|---|"]
    for stage in stages:
        lines.append(f"| {stage.stage} | {stage.seconds:.1f} | {stage.job_id or '-'} | {stage.output_uri} |")
    if total_seconds is not None:
        lines.append(f"| **total (wall)** | {total_seconds:.1f} | | |")
    return "\n".join(lines) + "\n"


def write_loop_report(
    out_dir: Path,
    *,
    stages: Sequence[StageResult],
    evaluations: Mapping[str, StageResult],
    settings: Mapping[str, Any],
    total_seconds: float,
    extra_timings: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write report.json, report.md and report.png under ``out_dir``; returns their paths.

    ``stages`` is every stage in the order it ran (the provenance chain); ``evaluations`` the
    evaluation stages by run name (base, all-steps, critical-steps).
    """
    from atlas_evaluator.report import build_report, markdown_table, write_report

    runs = evaluation_runs(evaluations)
    report = build_report(runs)
    write_report(str(out_dir), report)  # report.png (and a plain report.json/.md, replaced below)
    document = {
        **report,
        "settings": dict(settings),
        "timings": {
            "total_seconds": round(total_seconds, 1),
            "stages": {s.stage: round(s.seconds, 1) for s in stages},
            **{k: round(v, 1) for k, v in (extra_timings or {}).items()},
        },
        "provenance": [s.as_dict() for s in stages],
    }
    (out_dir / "report.json").write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    markdown = "\n".join(
        [
            "# ATLaS loop report",
            "",
            "## Summary",
            "",
            summary_table(evaluations),
            "## Per environment",
            "",
            markdown_table({name: run["envs"] for name, run in runs.items()}),
            "![success rate per environment](report.png)",
            "",
            "## Stages and provenance",
            "",
            timings_table(stages, total_seconds),
            "## Settings",
            "",
            "```json",
            json.dumps(dict(settings), indent=1, sort_keys=True, default=str),
            "```",
            "",
        ]
    )
    (out_dir / "report.md").write_text(markdown)
    return [out_dir / name for name in ("report.json", "report.md", "report.png")]

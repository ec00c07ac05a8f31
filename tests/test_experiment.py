"""`atlas experiment`: config validation, statistics against hand-computed values, the harness end to end.

The fast tests need no service. The slow one runs experiments/smoke.yaml through a real local fleet
(selection, training and evaluation jobs over gRPC), then checks that a rerun skips finished runs
and that a run whose record is missing is completed from its recorded stages without new jobs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from atlas.errors import FailedPrecondition, InvalidArgument
from atlas.experiment.config import load_config, parse_config
from atlas.experiment.harness import Experiment
from atlas.experiment.stats import (
    Episode,
    bootstrap_mean_of_means,
    condition_summary,
    mean_t_interval,
    wilson_interval,
)

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "experiments" / "smoke.yaml"


def _smoke_raw() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SMOKE.read_text())
    return raw


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_its_launch_command(path: Path) -> None:
    config = load_config(path)
    assert config.seeds and config.conditions
    assert path.read_text().startswith(f"# atlas experiment --config experiments/{path.name}")


def test_config_errors_name_the_file_and_every_bad_field(tmp_path: Path) -> None:
    raw = _smoke_raw()
    raw["conditions"] = ["base", "critical"]
    raw["data"]["envs"] = ["babyai/GoToLocal", "babyai/SynthLoc"]  # SynthLoc is held out
    raw["evaluation"]["held_out"] = ["babyai/GoToLocal"]  # held in
    raw["training"]["lora"]["rank"] = 8
    raw["training"]["learning_rate"] = 5.0
    raw["seeds"] = [0, -1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidArgument) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for field in (
        "conditions[1]: unknown condition 'critical'",
        "data.envs[1]: 'babyai/SynthLoc' is not a held-in env",
        "evaluation.held_out[0]: 'babyai/GoToLocal' is not a held-out env",
        "training.lora.rank: unknown key",
        "training.learning_rate: must be in (0, 1]",
        "seeds[1]: must be an integer >= 0",
    ):
        assert field in message, field


def test_config_refuses_evaluating_on_the_expert_data_seeds() -> None:
    raw = _smoke_raw()
    raw["evaluation"]["seed"] = raw["data"]["seed"] + 1
    with pytest.raises(
        InvalidArgument, match=re.escape("evaluation.seed: run seed 0 evaluates seeds 1..2, which overlap")
    ):
        parse_config(raw, "x.yaml")


def test_config_type_and_yaml_errors(tmp_path: Path) -> None:
    raw = _smoke_raw()
    raw["evaluation"]["episodes_per_env"] = "two"
    raw["extra"] = 1
    with pytest.raises(InvalidArgument) as info:
        parse_config(raw, "x.yaml")
    assert "evaluation.episodes_per_env: must be int, got 'two'" in str(info.value)
    assert "extra: unknown key" in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(InvalidArgument, match=re.escape("broken.yaml: not valid YAML")):
        load_config(broken)
    with pytest.raises(InvalidArgument, match="cannot read the config"):
        load_config(tmp_path / "missing.yaml")


def test_resume_refuses_a_different_config_and_fresh_refuses_a_foreign_directory(tmp_path: Path) -> None:
    config = load_config(SMOKE)
    Experiment(config, tmp_path / "exp").prepare()
    changed = parse_config({**_smoke_raw(), "seeds": [0, 1]}, "changed.yaml")
    with pytest.raises(FailedPrecondition, match="different config"):
        Experiment(changed, tmp_path / "exp").prepare()
    Experiment(changed, tmp_path / "exp", fresh=True).prepare()  # --fresh starts over
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not an experiment")
    with pytest.raises(FailedPrecondition, match="refusing to delete"):
        Experiment(config, foreign, fresh=True).prepare()
    assert (foreign / "keep.txt").exists()


def test_seed_free_selections_run_once_and_seeded_ones_per_seed(tmp_path: Path) -> None:
    from atlas.experiment.harness import RunKey, write_json_atomic

    config = parse_config({**_smoke_raw(), "seeds": [0, 1, 2]}, "seeds.yaml")
    exp = Experiment(config, tmp_path / "exp")
    exp.prepare()
    done = {"job_id": "sel-1", "output_uri": "/x/selected", "seconds": 42.0, "stage": "selection"}
    for condition in ("critical_rules", "random", "non_critical"):
        write_json_atomic(exp.run_dir(RunKey(condition, 0)) / "stages.json", {"selection": done})
    shared = exp._shared_selection(RunKey("critical_rules", 2))
    assert shared is not None
    assert shared["job_id"] == "sel-1" and shared["output_uri"] == "/x/selected"
    assert shared["shared_from"] == "critical_rules/seed-0" and shared["seconds"] == 0.0  # no double count
    assert exp._shared_selection(RunKey("random", 1)) is None  # seeded: its own draw
    assert exp._shared_selection(RunKey("non_critical", 1)) is None
    assert exp._shared_selection(RunKey("critical_vllm", 1)) is None  # nothing to share yet


# -- statistics (hand-computed values) -----------------------------------------------------------


def test_wilson_interval_matches_hand_computed_values() -> None:
    # z = 1.959964: 0/10 -> upper z^2 / (n + z^2) = 3.841459 / 13.841459
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    # 8/10: centre (0.8 + 0.192073) / 1.384146 = 0.716741, half 1.959964 * 0.160012 / 1.384146 = 0.226580
    assert wilson_interval(8, 10) == pytest.approx((0.490162, 0.943321), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mean_t_interval_matches_hand_computed_values() -> None:
    # mean 2, sd 1, se 1/sqrt(3) = 0.577350, t(0.975, 2) = 4.303 -> half 2.484339
    est = mean_t_interval([1.0, 2.0, 3.0])
    assert (est.value, est.low, est.high) == pytest.approx((2.0, -0.484339, 4.484339), abs=1e-5)
    one = mean_t_interval([0.4])
    assert (one.value, one.low, one.high) == (0.4, 0.4, 0.4)


def test_stratified_bootstrap_of_a_mean_over_envs() -> None:
    # env b always succeeds; env a's resampled mean is 0, 0.5 or 1 (P = 1/4, 1/2, 1/4), so the
    # average over envs is 0.5, 0.75 or 1.0 and the 95% interval spans exactly [0.5, 1.0].
    est = bootstrap_mean_of_means({"a": [1.0, 0.0], "b": [1.0, 1.0, 1.0, 1.0]})
    assert (est.value, est.low, est.high, est.n) == (0.75, 0.5, 1.0, 6)
    constant = bootstrap_mean_of_means({"a": [0.0, 0.0], "b": [1.0]})
    assert (constant.value, constant.low, constant.high) == (0.5, 0.5, 0.5)


def test_condition_summary_pools_seeds_and_reports_the_spread_across_seeds() -> None:
    def episodes(held_in_successes: int, seed: int) -> list[Episode]:
        rows = [Episode("babyai/GoToLocal", False, i < held_in_successes, 0.5, seed) for i in range(4)]
        rows += [Episode("babyai/SynthLoc", True, False, 0.0, seed) for _ in range(2)]
        return rows

    summary = condition_summary({0: episodes(1, 0), 1: episodes(3, 1)})
    env = summary["envs"]["babyai/GoToLocal"]  # type: ignore[index]
    assert (env["episodes"], env["successes"]) == (8, 4)
    assert env["success_rate"]["value"] == 0.5
    assert env["success_rate"]["low"] == pytest.approx(wilson_interval(4, 8)[0], abs=1e-4)
    held_in = summary["held_in"]
    assert held_in["success_rate"]["value"] == 0.5  # type: ignore[index]
    # per-seed held-in rates 0.25 and 0.75: mean 0.5, sd 0.353553, se 0.25, t(1) 12.706 -> +-3.1765,
    # which a rate's interval cannot be: cut to [0, 1]
    across = held_in["success_rate_across_seeds"]  # type: ignore[index]
    assert (across["value"], across["low"], across["high"]) == pytest.approx((0.5, 0.0, 1.0))
    narrow = condition_summary({0: episodes(2, 0), 1: episodes(2, 1), 2: episodes(3, 2)})["held_in"]
    # rates 0.5, 0.5, 0.75: mean 0.583333, sd 0.144338, se 0.083333, t(2) 4.302653 -> +-0.358554
    assert narrow["success_rate_across_seeds"]["low"] == pytest.approx(0.224779, abs=1e-4)  # type: ignore[index]
    assert narrow["success_rate_across_seeds"]["high"] == pytest.approx(0.941887, abs=1e-4)  # type: ignore[index]
    # Every held-out episode failed: not a zero-width interval but Wilson's for 0/4 (3.841459 / 7.841459).
    held_out = summary["held_out"]["success_rate"]  # type: ignore[index]
    assert (held_out["value"], held_out["low"], held_out["high"]) == (
        0.0,
        0.0,
        pytest.approx(0.4899, abs=1e-4),
    )


# -- the harness end to end ----------------------------------------------------------------------


def _run_smoke(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas.experiment", "--config", str(SMOKE), "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~3 min on 2 quiet cores; much longer when the machine is shared
def test_smoke_experiment_end_to_end_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    first = _run_smoke(out)
    assert first.returncode == 0, first.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    config = load_config(SMOKE)
    assert set(results["conditions"]) == set(config.conditions)
    for name, entry in results["conditions"].items():
        assert entry["seeds_finished"] == [0]
        run = entry["runs"][0]
        stages = run["stages"]
        assert stages["evaluation"]["job_id"].startswith("eva-")
        if name == "base":
            assert set(stages) == {"evaluation"} and entry["tokens"]["supervised"] == 0
            continue
        assert stages["training"]["job_id"].startswith("tra-")
        assert Path(stages["training"]["adapter_uri"], "adapter_config.json").exists()
        assert entry["tokens"]["supervised"] > 0
        if name != "all":
            assert stages["selection"]["job_id"].startswith("sel-")
        held_in = entry["stats"]["held_in"]
        assert held_in["episodes"] == len(config.evaluation.held_in) * config.evaluation.episodes_per_env
    # Same expert data and steps everywhere; the masks differ, so do the supervised tokens.
    tokens = {
        name: results["conditions"][name]["tokens"] for name in ("all", "critical_rules", "non_critical")
    }
    assert tokens["all"]["supervised"] > tokens["critical_rules"]["supervised"]
    assert tokens["all"]["supervised"] > tokens["non_critical"]["supervised"]
    assert len({results["conditions"][n]["runs"][0]["experts_uri"] for n in results["conditions"]}) == 1
    table = (out / "results.md").read_text()
    assert "held-out avg [95% CI]" in table
    lines = table.splitlines()
    first_row = next(i for i, line in enumerate(lines) if line.startswith("|---")) + 1
    labels = ["base model (untuned)", "all steps", "random 30%", "non-critical 30%", "critical 30% (rules)"]
    rows = [line.split(" | ")[0] for line in lines[first_row : first_row + len(labels)]]
    assert rows == [f"| {label}" for label in labels]  # the paper's row order
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A rerun finds every run finished: no fleet, no job.
    second = _run_smoke(out)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "5 run(s) finished, 0 to run" in second.stderr
    assert "starting the fleet" not in second.stderr

    # A run interrupted after its last stage: completed from the recorded stages, no new job.
    record_path = out / "runs" / "random" / "seed-0" / "record.json"
    before = json.loads(record_path.read_text())
    record_path.unlink()
    third = _run_smoke(out)
    assert third.returncode == 0, third.stderr[-4000:]
    assert "4 run(s) finished, 1 to run" in third.stderr
    after = json.loads(record_path.read_text())
    for stage in ("selection", "training", "evaluation"):
        assert after["stages"][stage]["job_id"] == before["stages"][stage]["job_id"]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_stops_the_fleet_and_keeps_the_directory_resumable(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "smoke"
    log = tmp_path / "experiment.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atlas.experiment", "--config", str(SMOKE), "--out", str(out)],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 600
        while "run base/seed-0" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert _processes_mentioning(str(out / "fleet")), "the fleet's services are running"
        proc.send_signal(signal.SIGTERM)  # a scheduler's timeout, `kill`
        assert proc.wait(timeout=180) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(out / "fleet")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(str(out / "fleet")) == []  # no service left behind
    assert "interrupted" in log.read_text()
    assert (out / "experiment.json").exists()  # the same command resumes from here

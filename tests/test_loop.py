"""The loop package against real services: Fleet start/stop, `atlas up`/`atlas down`, the stages end to
end (experts → selection job → training job → evaluation job → report), and Ctrl-C of the demo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import start_process, stop_process, wait_until

from atlas.errors import AtlasError, InvalidArgument
from atlas.loop import stages
from atlas.loop.fleet import SERVICES, Fleet, FleetAddresses, connect
from atlas.loop.report import write_loop_report

ROOT = Path(__file__).resolve().parent.parent


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # a zombie is stopped, only not yet reaped


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (a test's own temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv and not _gone(int(entry.name)):
            found.append(f"{entry.name}: {argv}")
    return found


# -- Fleet ------------------------------------------------------------------------------------------


def test_fleet_starts_three_serving_services_and_stops_them_for_good(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "data")
    with fleet:
        addresses = fleet.addresses
        assert addresses is not None
        for name in SERVICES:
            assert _serving(getattr(addresses, name)), name
        pids = {name: proc.pid for name, proc in fleet.processes.items()}
        ports = [int(a.rsplit(":", 1)[1]) for a in addresses.as_dict().values()]
        ports += list(addresses.metrics_ports.values())
        assert len(set(ports)) == 6
        # The typed clients work against the running services.
        from atlas.evaluator.v1 import evaluator_service_pb2 as epb

        assert fleet.evaluator.list_environments(epb.ListEnvironmentsRequest()).environments
        assert (tmp_path / "data" / "logs" / "selector.log").read_text().count("READY") == 1
    assert all(_gone(pid) for pid in pids.values()), pids
    assert all(_port_free(port) for port in ports), ports
    fleet.stop()  # idempotent


def test_fleet_fails_fast_naming_the_service_and_stops_the_others(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, extra_args={"trainer": ["--max-workers", "0"]})
    started = time.monotonic()
    with pytest.raises(AtlasError) as caught:
        fleet.start()
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "trainer exited with status" in message and str(tmp_path / "logs" / "trainer.log") in message
    assert "max_workers" in message  # the tail of the log says why
    assert fleet.processes == {}
    assert _processes_mentioning(str(tmp_path)) == []


def test_fleet_refuses_unknown_service_names(tmp_path: Path) -> None:
    with pytest.raises(AtlasError, match="unknown services"):
        Fleet(tmp_path, ports={"selektor": 1})


# -- atlas up / atlas down ---------------------------------------------------------------------------


def _loop_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas.loop.cli", *args], capture_output=True, text=True, timeout=180
    )


def test_up_and_down_as_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = _loop_cli("up", "--data-dir", str(data), "--free-ports")
    assert up.returncode == 0, up.stderr
    state = json.loads((data / "fleet.json").read_text())
    services = state["services"]
    assert set(services) == set(SERVICES)
    try:
        for name, info in services.items():
            assert info["address"] in up.stdout
            assert _serving(info["address"]), name
            assert (data / "logs" / f"{name}.log").exists()
        again = _loop_cli("up", "--data-dir", str(data), "--free-ports")
        assert again.returncode == 2 and "already running" in again.stderr
        with connect(FleetAddresses(**{n: i["address"] for n, i in services.items()})) as clients:
            from atlas.selector.v1 import selector_service_pb2 as spb

            assert clients.selector.list_selection_jobs(spb.ListSelectionJobsRequest()).jobs == []
    finally:
        down = _loop_cli("down", "--data-dir", str(data))
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 3
    assert all(_gone(info["pid"]) for info in services.values())
    assert not (data / "fleet.json").exists()
    nothing = _loop_cli("down", "--data-dir", str(data))
    assert nothing.returncode == 0 and "nothing to stop" in nothing.stdout


def test_down_tolerates_a_stale_state_file(tmp_path: Path) -> None:
    # A pid that is not a service (this test's python) and one that does not exist.
    stale = {
        "services": {
            "selector": {"pid": os.getpid(), "address": "127.0.0.1:1"},
            "trainer": {"pid": 2**22 + 17, "address": "127.0.0.1:2"},
        }
    }
    (tmp_path / "fleet.json").write_text(json.dumps(stale))
    down = _loop_cli("down", "--data-dir", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stale") == 2
    assert not (tmp_path / "fleet.json").exists()


# -- the stages end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("loop")) as running:
        yield running


@pytest.fixture(scope="module")
def tiny_model(fleet: Fleet) -> str:
    from atlas.models.tiny import build_tiny_model

    return str(build_tiny_model(fleet.data_dir / "model"))


@pytest.mark.slow  # ~40 s on a quiet machine, ~2 min at load 16 (a training subprocess imports torch)
def test_stages_run_the_loop_through_the_services(fleet: Fleet, tiny_model: str) -> None:
    data = fleet.data_dir
    events: list[stages.StageEvent] = []
    experts = stages.generate_experts(
        ["babyai/GoToLocal"], 4, 0, str(data / "experts"), progress=events.append
    )
    assert experts.job_id is None and experts.stats["trajectories"] == 4
    assert [e.done for e in events] == [1, 2, 3, 4]

    selection = stages.run_selection(
        fleet.selector, experts.output_uri, str(data / "masked"), "rules", progress=events.append
    )
    assert selection.job_id and selection.job_id.startswith("sel-")
    assert selection.stats["record_count"] == 4 and selection.stats["backend"] == "rules"
    assert 0 < selection.stats["selected_steps"] < selection.stats["steps"]
    assert any(e.stage == "selection" and e.job_id == selection.job_id for e in events)

    overrides = {"max_steps": 1, "micro_batch_size": 1, "max_seq_length": 256, "lora": {"r": 4}}
    training = stages.run_training(
        fleet.trainer, selection.output_uri, tiny_model, str(data / "runs" / "critical"),
        overrides=overrides, progress=events.append,
    )  # fmt: skip
    assert training.job_id and training.stats["steps"] == 1
    adapter = Path(training.stats["adapter_uri"])
    assert (adapter / "adapter_config.json").exists()
    provenance = json.loads(Path(training.stats["provenance_uri"]).read_text())
    assert provenance["dataset"]["uri"] == selection.output_uri
    assert provenance["job_spec"]["training"]["lora"]["r"] == 4

    evaluation = stages.run_evaluation(
        fleet.evaluator,
        base_model=tiny_model,
        adapter_uri=str(adapter),
        training_job_id=training.job_id,
        env_ids=["babyai/GoToLocal"],
        episodes_per_env=2,
        seed=100,
        max_turns=2,
        max_new_tokens=8,
        concurrency=2,
        out_uri=str(data / "evaluations" / "critical"),
        name="critical",
        progress=events.append,
    )
    assert evaluation.stage == "eval[critical]" and evaluation.job_id
    env = evaluation.stats["envs"]["babyai/GoToLocal"]
    assert env["episodes"] == 2
    fmt = evaluation.stats["action_format"]
    assert fmt["episodes"] == 2 and 2 <= fmt["turns"] <= 4
    assert 0.0 <= fmt["format_rate"] <= 1.0 and fmt["invalid_actions"] >= fmt["parse_failures"]
    results = json.loads(Path(evaluation.stats["results_uri"]).read_text())
    assert results["provenance"]["training_job_id"] == training.job_id

    chain = [experts, selection, training, evaluation]
    paths = write_loop_report(
        data / "report",
        stages=chain,
        evaluations={"critical": evaluation},
        settings={"model": "tiny"},
        total_seconds=1.0,
    )
    assert [p.name for p in paths] == ["report.json", "report.md", "report.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    report = json.loads(paths[0].read_text())
    assert [s["job_id"] for s in report["provenance"]] == [
        None,
        selection.job_id,
        training.job_id,
        evaluation.job_id,
    ]
    assert report["runs"]["critical"]["averages"]["held-in"]["success_rate"] == env["success_rate"]
    markdown = paths[1].read_text()
    assert training.job_id in markdown and "| critical |" in markdown


def test_a_failed_job_raises_with_its_id_and_message(fleet: Fleet) -> None:
    data = fleet.data_dir
    experts = stages.generate_experts(["babyai/GoToLocal"], 2, 50, str(data / "experts-2"))
    # none_critical at ratio 1: the complement of "every step" is empty, so every trajectory fails.
    with pytest.raises(stages.JobFailed) as caught:
        stages.run_selection(
            fleet.selector, experts.output_uri, str(data / "never"), "none_critical", max_ratio=1.0
        )
    failed = caught.value
    assert failed.state == "FAILED" and failed.job_id.startswith("sel-")
    assert failed.job_id in str(failed)
    assert not (data / "never" / "manifest.json").exists()


def test_bad_stage_arguments_are_refused_before_any_job(fleet: Fleet, tiny_model: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown training settings"):
        stages.run_training(fleet.trainer, "x", tiny_model, "y", overrides={"max_stepz": 1})
    with pytest.raises(InvalidArgument) as caught:
        stages.run_evaluation(
            fleet.evaluator, base_model=tiny_model, adapter_uri=None, env_ids=["no-such-env"],
            episodes_per_env=1, seed=0, max_turns=1, out_uri=str(fleet.data_dir / "e"),
        )  # fmt: skip
    assert caught.value.field_path == "spec.env_ids[0]"


# -- the demo: Ctrl-C ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_of_the_demo_cancels_the_job_and_stops_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    log = tmp_path / "demo.log"
    env = {**os.environ, "DEMO_OUT": str(out), "PYTHONUNBUFFERED": "1"}
    demo = start_process([sys.executable, str(ROOT / "scripts" / "demo.py")], log, env=env)
    try:
        # Once the critical-steps training job runs, interrupt as a terminal's Ctrl-C would.
        wait_until(lambda: "train[dataset] [tra-" in log.read_text(), 240, demo, log, what="a training job")
        os.kill(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=90)
    finally:
        stop_process(demo)
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert "interrupted" in text and "services stopped" in text
    assert _processes_mentioning(str(out)) == []
    import sqlite3

    with sqlite3.connect(out / "trainer.sqlite") as db:
        states = [row[0] for row in db.execute("SELECT state FROM jobs")]
    assert states == ["CANCELLED"], states

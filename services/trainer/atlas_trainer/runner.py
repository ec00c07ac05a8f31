"""The local runner: one ``python -m atlas_trainer.train`` subprocess per job, its log kept.

``Runner`` is what ``TrainerCore`` asks of a runner; the Kubernetes one is in ``atlas_trainer.k8s``.

The run's stdout is a stream of JSON progress lines; a thread per run copies every line into the
job's log (``<data_dir>/jobs/<id>/train.log``, stderr goes there too) and hands the events to the
service. The child watches its parent (``ATLAS_TRAINER_PARENT_PID``) and exits if the service dies,
so a SIGKILLed service never leaves a run writing to an output that a resumed run also writes to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from atlas_trainer.spec import JobSpec

PARENT_PID_ENV = "ATLAS_TRAINER_PARENT_PID"

EventHandler = Callable[[str, dict[str, Any]], None]
ExitHandler = Callable[[str, int, dict[str, Any] | None], None]


class Run(Protocol):
    @property
    def result_fields(self) -> dict[str, Any]:
        """What the job's result records about this run (where its log or object is)."""
        ...


class Runner(Protocol):
    """Starts runs and reports their events and exits through the callbacks it was built with."""

    outlives_service: bool
    """Whether runs go on while the service is down (cluster objects) or stop with it (subprocesses)."""

    def start(self, job_id: str, spec: JobSpec, attempt: int = 1) -> Run: ...

    def running(self) -> list[str]: ...

    def stop(self, job_id: str) -> bool:
        """Cancel the run of ``job_id``; False if this runner has none."""
        ...

    def shutdown(self, timeout: float) -> None:
        """The service is stopping: stop (or let go of) every run."""
        ...

    def reattach(self, job_id: str, result: dict[str, Any]) -> bool:
        """At start: follow a run a previous service process started; False if there is none."""
        ...


@dataclass
class LocalRun:
    job_id: str
    proc: subprocess.Popen[str]
    log_path: Path
    last_failure: dict[str, Any] | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def result_fields(self) -> dict[str, Any]:
        return {"pid": self.proc.pid, "log": str(self.log_path)}


class LocalRunner:
    outlives_service = False

    def __init__(self, jobs_dir: Path, on_event: EventHandler, on_exit: ExitHandler) -> None:
        self.jobs_dir = jobs_dir
        self.on_event = on_event
        self.on_exit = on_exit
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def start(self, job_id: str, spec: JobSpec, attempt: int = 1) -> LocalRun:
        """Write the job's spec.json and start its run; returns at once (one log for all attempts)."""
        directory = self.job_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        spec_path = directory / "spec.json"
        spec_path.write_text(spec.to_json())
        log_path = directory / "train.log"
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        with open(log_path, "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "atlas_trainer.train", "--spec", str(spec_path)],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
            )
        run = LocalRun(job_id, proc, log_path)
        run.thread = threading.Thread(target=self._follow, args=(run,), name=f"follow-{job_id}", daemon=True)
        with self._lock:
            self._runs[job_id] = run
        run.thread.start()
        return run

    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def stop(self, job_id: str) -> bool:
        """SIGTERM the run of ``job_id``; False if this runner has none."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            return False
        if run.proc.poll() is None:
            run.proc.terminate()
        return True

    def shutdown(self, timeout: float) -> None:
        """SIGTERM every run and wait for its follower to record the exit."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self.stop(run.job_id)
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout)

    def reattach(self, job_id: str, result: dict[str, Any]) -> bool:
        """Never: a local run does not outlive the service that started it (see ``watch_parent``)."""
        return False

    def _follow(self, run: LocalRun) -> None:
        assert run.proc.stdout is not None
        with open(run.log_path, "a") as log:
            for line in run.proc.stdout:
                log.write(line)
                log.flush()
                event = parse_event(line)
                if event is None:
                    continue
                if event.get("event") == "failed":
                    run.last_failure = event
                try:
                    self.on_event(run.job_id, event)
                except Exception as error:
                    log.write(f"[runner] could not record event: {error!r}\n")
        code = run.proc.wait()
        with self._lock:
            self._runs.pop(run.job_id, None)
        self.on_exit(run.job_id, code, run.last_failure)


def parse_event(line: str) -> dict[str, Any] | None:
    """A progress line of the run (``{"event": ...}``), or None for any other output."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def watch_parent() -> None:
    """In the run: exit when the service that started it is gone (called by the train entry point)."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return

    def check() -> None:
        import time

        while True:
            if os.getppid() != int(parent):
                os._exit(137)
            time.sleep(0.5)

    threading.Thread(target=check, name="watch-parent", daemon=True).start()

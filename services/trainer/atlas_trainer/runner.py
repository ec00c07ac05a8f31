"""The local runner: one ``python -m atlas_trainer.train`` subprocess per job, its log kept.

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
from typing import Any

from atlas_trainer.spec import JobSpec

PARENT_PID_ENV = "ATLAS_TRAINER_PARENT_PID"

EventHandler = Callable[[str, dict[str, Any]], None]
ExitHandler = Callable[[str, int, dict[str, Any] | None], None]


@dataclass
class LocalRun:
    job_id: str
    proc: subprocess.Popen[str]
    log_path: Path
    last_failure: dict[str, Any] | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class LocalRunner:
    def __init__(self, jobs_dir: Path, on_event: EventHandler, on_exit: ExitHandler) -> None:
        self.jobs_dir = jobs_dir
        self.on_event = on_event
        self.on_exit = on_exit
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def start(self, job_id: str, spec: JobSpec) -> LocalRun:
        """Write the job's spec.json and start its run; returns at once."""
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

    def join(self, timeout: float) -> None:
        """Wait for every run's follower to finish (after ``stop``)."""
        with self._lock:
            threads = [run.thread for run in self._runs.values() if run.thread is not None]
        for thread in threads:
            thread.join(timeout)

    def _follow(self, run: LocalRun) -> None:
        assert run.proc.stdout is not None
        with open(run.log_path, "a") as log:
            for line in run.proc.stdout:
                log.write(line)
                log.flush()
                event = _parse(line)
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


def _parse(line: str) -> dict[str, Any] | None:
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

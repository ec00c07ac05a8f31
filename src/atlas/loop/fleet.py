"""The three services as local subprocesses: start them, wait until each is ready, stop them.

A :class:`Fleet` runs ``atlas serve <service>`` for the selector, trainer and evaluator, each in its
own process group (so a Ctrl-C at the terminal reaches the driver only, which cancels its jobs first
and then stops the services in order) with stdout and stderr in ``<log_dir>/<service>.log``. It is
ready when every service has printed its ``READY ... port=P metrics_port=M`` line, which also tells
the bound ports when they were 0 (free). ``stop`` sends SIGTERM (the services drain in-flight calls
and put running training jobs back to QUEUED), then SIGKILL after a grace period.

:func:`connect` gives the same three clients for a fleet that is already running (``atlas up``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas.errors import AtlasError, FailedPrecondition

if TYPE_CHECKING:
    from atlas_evaluator.client import EvaluatorClient
    from atlas_selector.client import SelectorClient
    from atlas_trainer.client import TrainerClient

SERVICES = ("selector", "trainer", "evaluator")
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0
_LOG_TAIL_CHARS = 3000


@dataclass
class FleetAddresses:
    """Where the three gRPC services listen ("127.0.0.1:PORT"); metrics ports when known."""

    selector: str
    trainer: str
    evaluator: str
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in SERVICES}


class FleetClients:
    """The three typed clients of one fleet; close them (or use ``with``) when done."""

    def __init__(self, addresses: FleetAddresses, *, timeout: float = 60.0, retries: int = 3) -> None:
        from atlas_evaluator.client import EvaluatorClient
        from atlas_selector.client import SelectorClient
        from atlas_trainer.client import TrainerClient

        self.addresses = addresses
        self.selector: SelectorClient = SelectorClient(addresses.selector, timeout=timeout, retries=retries)
        self.trainer: TrainerClient = TrainerClient(addresses.trainer, timeout=timeout, retries=retries)
        self.evaluator: EvaluatorClient = EvaluatorClient(
            addresses.evaluator, timeout=timeout, retries=retries
        )

    def close(self) -> None:
        for client in (self.selector, self.trainer, self.evaluator):
            client.close()

    def __enter__(self) -> FleetClients:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def connect(addresses: FleetAddresses, *, timeout: float = 60.0, retries: int = 3) -> FleetClients:
    """Clients for a fleet that is already running (for example one started with ``atlas up``)."""
    return FleetClients(addresses, timeout=timeout, retries=retries)


def serve_command(service: str) -> list[str]:
    """The command that runs one service with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "atlas.cli", "serve", service]


def read_ready_line(log_path: Path) -> dict[str, str] | None:
    """The fields of the READY line in a service log, or None while it has not been printed."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("READY "):
            return dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
    return None


def log_tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Signal the process group led by ``pid`` (services start in their own session); False if gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # not ours: a recycled pid
        return False
    return True


class Fleet:
    """The selector, trainer and evaluator as ``atlas serve`` subprocesses on loopback.

    ``with Fleet(data_dir) as fleet:`` starts them (free ports unless ``ports`` names them) and stops
    them on exit, also on an exception or Ctrl-C. All three share ``data_dir`` (each keeps its own
    SQLite job store there) so its folder is the file:// object store every service may use.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        ports: Mapping[str, int] | None = None,
        metrics_ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Mapping[str, list[str]] | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        grace: float = STOP_GRACE_S,
    ) -> None:
        unknown = set(ports or {}) | set(metrics_ports or {}) | set(extra_args or {})
        unknown -= set(SERVICES)
        if unknown:
            raise FailedPrecondition(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}")
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.ports = dict(ports or {})
        self.metrics_ports = dict(metrics_ports or {})
        self.env = dict(env or {})
        self.extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.addresses: FleetAddresses | None = None
        self._clients: FleetClients | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FleetAddresses:
        """Start the three services and wait for each READY line.

        Fails fast (stopping whatever did start) when a service exits or is not ready within
        ``ready_timeout``, naming the service and the tail of its log.
        """
        if self.processes:
            raise FailedPrecondition("this fleet is already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in SERVICES:
                self.processes[name] = self._spawn(name)
            ready = {name: self._wait_ready(name) for name in SERVICES}
        except BaseException:
            self.stop()
            raise
        self.addresses = FleetAddresses(
            **{name: f"127.0.0.1:{fields['port']}" for name, fields in ready.items()},
            metrics_ports={n: int(f["metrics_port"]) for n, f in ready.items() if f.get("metrics_port")},
        )
        return self.addresses

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        args = [
            *serve_command(name),
            "--port",
            str(self.ports.get(name, 0)),
            "--metrics-port",
            str(self.metrics_ports.get(name, 0)),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args.get(name, []),
        ]
        log_path = self.log_path(name)
        log_path.write_bytes(b"")  # a READY line from an earlier run must not count
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
            )

    def _wait_ready(self, name: str) -> dict[str, str]:
        proc, log_path = self.processes[name], self.log_path(name)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            fields = read_ready_line(log_path)
            if fields is not None:
                return fields
            if proc.poll() is not None:
                raise AtlasError(
                    f"{name} exited with status {proc.returncode} before it was ready; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise AtlasError(
                    f"{name} was not ready within {self.ready_timeout:.0f}s; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.05)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service, SIGKILL what is left after ``grace`` seconds; exit codes by service.

        Idempotent: a second call (or one after a failed start) does nothing more.
        """
        if self._clients is not None:
            self._clients.close()
            self._clients = None
        for proc in self.processes.values():
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + self.grace
        for name, proc in self.processes.items():
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait(timeout=10)
            # Grandchildren (a training run) live in the service's group; none may outlive it.
            signal_group(proc.pid, signal.SIGKILL)
        self.processes.clear()
        return codes

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- access ----------------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    @property
    def clients(self) -> FleetClients:
        if self.addresses is None:
            raise FailedPrecondition("the fleet is not started")
        if self._clients is None:
            self._clients = FleetClients(self.addresses)
        return self._clients

    @property
    def selector(self) -> SelectorClient:
        return self.clients.selector

    @property
    def trainer(self) -> TrainerClient:
        return self.clients.trainer

    @property
    def evaluator(self) -> EvaluatorClient:
        return self.clients.evaluator

    def describe(self) -> dict[str, Any]:
        """Pids, addresses, metrics ports and logs (what ``atlas up`` writes to fleet.json)."""
        if self.addresses is None:
            raise FailedPrecondition("the fleet is not started")
        return {
            "data_dir": str(self.data_dir),
            "services": {
                name: {
                    "pid": proc.pid,
                    "address": getattr(self.addresses, name),
                    "metrics_port": self.addresses.metrics_ports.get(name),
                    "log": str(self.log_path(name)),
                    "command": [str(a) for a in proc.args],  # type: ignore[union-attr]
                }
                for name, proc in self.processes.items()
            },
        }

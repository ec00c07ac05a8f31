"""Helpers for tests that run real servers as subprocesses (S3, the gRPC services, vLLM...).

The pattern: pick a free loopback port, start the server in its own process group with its
output in a log file, poll until it answers, fail fast with the log if it dies, and kill the
whole group at teardown so no grandchild outlives the test session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(log_path: str | Path | None, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log file, for failure messages ("" if there is none)."""
    if log_path is None or not Path(log_path).exists():
        return ""
    text = Path(log_path).read_text(errors="replace")
    return text[-chars:]


def start_process(
    args: Sequence[str],
    log_path: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new process group (session), stdout and stderr into ``log_path``.

    ``env`` replaces the environment when given (pass ``{**os.environ, ...}`` to extend it).
    Stop it with :func:`stop_process`, which signals the whole group.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM the process group of ``proc``, SIGKILL it if alive after ``timeout``; returns the exit code."""
    # start_new_session made proc the leader of a group whose id is its pid.
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: str | Path | None = None,
    *,
    interval: float = 0.05,
    what: str = "",
) -> None:
    """Poll ``predicate`` until it returns True.

    Raises RuntimeError at once if ``proc`` exits meanwhile, and TimeoutError after ``timeout``
    seconds; both messages carry the tail of ``log_path``. An exception from the predicate
    counts as "not yet" (a server still starting refuses connections).
    """
    deadline = time.monotonic() + timeout
    label = what or getattr(predicate, "__name__", "condition")
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except Exception as error:
            last_error = error
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args!r} exited with code {proc.returncode} before {label}; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(
                f"{label} not reached within {timeout:.0f}s{detail}; log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(interval)

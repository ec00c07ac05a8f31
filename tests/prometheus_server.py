"""A real Prometheus (Debian's `prometheus` package, installed by `make test`) as a test subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import free_port, start_process, stop_process, wait_until


@dataclass
class Prometheus:
    url: str
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


def start_prometheus(
    targets: dict[str, list[str]], workdir: Path
) -> tuple[subprocess.Popen[bytes], Prometheus]:
    """Scrape ``{job: ["127.0.0.1:PORT", ...]}`` every second; returns once the server is ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError(
            "prometheus not installed: `make test` installs Debian's package (apt-get install prometheus)"
        )
    scrape = "\n".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(addresses)}"
        for job, addresses in targets.items()
    )
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape}\n"
    )
    port = free_port()
    log = workdir / "prometheus.log"
    proc = start_process(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as reply:
            return bool(reply.status == 200)

    try:
        wait_until(ready, 60, proc, log, interval=0.5, what="Prometheus /-/ready")
    except BaseException:
        stop_process(proc)
        raise
    return proc, server

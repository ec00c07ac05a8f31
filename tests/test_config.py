"""Service configuration: precedence, validation of everything at once, docs in sync."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from atlas_selector.config import SelectorConfig

from atlas.cli import SERVICES, _config_class
from atlas.config import ConfigError, add_arguments, load_config, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SelectorConfig)
    return parser.parse_args(argv)


def test_defaults_then_environment_then_flags() -> None:
    assert load_config(SelectorConfig, _parse([]), environ={}).port == 50051
    env = {"ATLAS_SELECTOR_PORT": "6000", "ATLAS_SELECTOR_STORAGE_ROOTS": "s3://atlas-data/fleet, /srv/data"}
    from_env = load_config(SelectorConfig, _parse([]), environ=env)
    assert from_env.port == 6000
    assert from_env.storage_roots == ["s3://atlas-data/fleet", "/srv/data"]
    assert load_config(SelectorConfig, _parse(["--port", "7000"]), environ=env).port == 7000


def test_every_problem_is_reported_at_once() -> None:
    env = {"ATLAS_SELECTOR_MAX_MESSAGE_MB": "0", "ATLAS_SELECTOR_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as caught:
        load_config(SelectorConfig, _parse(["--port", "70000", "--grace-seconds", "-1"]), environ=env)
    fields = sorted(problem.split(":")[0] for problem in caught.value.problems)
    assert fields == ["grace_seconds", "log_level", "max_message_mb", "port"]
    assert caught.value.code == "INVALID_ARGUMENT"


def test_unparseable_values_name_their_source() -> None:
    with pytest.raises(ConfigError, match="ATLAS_SELECTOR_PORT"):
        load_config(SelectorConfig, _parse([]), environ={"ATLAS_SELECTOR_PORT": "fifty"})


def test_services_have_distinct_default_ports() -> None:
    ports = [load_config(_config_class(s), {}, environ={}) for s in SERVICES]
    assert len({c.port for c in ports} | {c.metrics_port for c in ports}) == 6


def test_docs_list_every_setting() -> None:
    """docs/configuration.md embeds `atlas config` output; regenerate it when a field changes."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for service in SERVICES:
        assert markdown_table(_config_class(service)) in doc, f"docs/configuration.md is stale for {service}"


def test_bad_storage_roots_are_reported_with_the_rest() -> None:
    env = {"ATLAS_SELECTOR_STORAGE_ROOTS": "http://example.invalid/x"}
    with pytest.raises(ConfigError) as caught:
        load_config(SelectorConfig, _parse(["--port", "70000"]), environ=env)
    assert sorted(problem.split(":")[0] for problem in caught.value.problems) == ["port", "storage_roots"]

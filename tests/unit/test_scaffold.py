"""`init`'s pure parts: which compose services become apps, their names, the config text, the packaging."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from trafficshift.config import parse_config_text
from trafficshift.scaffold import (
    PACKAGE_DATA,
    STARTER_FILES,
    ProposedApp,
    app_name,
    find_compose_files,
    propose,
    render_config,
    starter_source,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("service", "name"),
    [
        ("web", "web"),
        ("api_v2", "api-v2"),
        ("My.Service", "my-service"),
        ("2fa", "fa"),
        ("x" * 50, "x" * 40),
        ("_-_", None),
        ("123", None),
    ],
)
def test_app_names_are_valid_app_names(service: str, name: str | None) -> None:
    assert app_name(service) == name


def test_an_app_per_service_with_a_port_and_no_container_name() -> None:
    services = {
        "web": {"expose": ["8080/tcp", "9000"]},
        "api": {"ports": [{"target": 53, "protocol": "udp"}, {"target": 80, "protocol": "tcp"}]},
        "range": {"expose": ["9000-9001"]},
        "db": {"expose": ["5432"], "container_name": "db"},
        "worker": {},
        "Web": {"expose": ["81"]},
    }
    proposal = propose(services, compose_file="docker-compose.yml")
    assert proposal.apps == (
        ProposedApp(name="web", service="web", port=8080),
        ProposedApp(name="api", service="api", port=80),
        ProposedApp(name="range", service="range", port=9000),
        ProposedApp(name="web-2", service="Web", port=81),
    )
    notes = "\n".join(proposal.notes)
    assert "services.api.ports: remove it" in notes
    assert "services.db: left out: it has a container_name" in notes
    assert "services.worker: left out: it has no port" in notes


def test_the_config_names_every_compose_file_and_parses(tmp_path: Path) -> None:
    apps = [ProposedApp(name="web", service="true", port=8080)]
    text = render_config(apps, compose_files=["compose.yaml", "compose.override.yaml"])
    doc = yaml.safe_load(text)
    # A service named like a YAML keyword stays a string.
    assert doc["apps"]["web"]["compose"] == {
        "file": ["./compose.yaml", "./compose.override.yaml"],
        "service": "true",
    }
    config = parse_config_text(text, source="trafficshift.yml", base_dir=tmp_path)
    assert config.traefik.api_url == "http://127.0.0.1:8080"
    assert list(config.apps) == ["web"]


def test_without_apps_the_config_is_valid_and_shows_an_example(tmp_path: Path) -> None:
    text = render_config([], compose_files=[])
    assert parse_config_text(text, source="trafficshift.yml", base_dir=tmp_path).apps == {}
    example = "\n".join(line.removeprefix("# ") for line in text.splitlines() if line.startswith("# "))
    assert yaml.safe_load(example[example.index("\napps:") :])["apps"]["web"]["port"] == 8080


def test_compose_files_are_found_in_compose_order(tmp_path: Path) -> None:
    assert find_compose_files(tmp_path) == []
    for name in ("docker-compose.yml", "compose.yaml", "docker-compose.override.yml"):
        (tmp_path / name).write_text("services: {}\n")
    assert find_compose_files(tmp_path) == ["compose.yaml", "docker-compose.override.yml"]


def test_the_wheel_carries_each_starter_file_where_init_looks() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for name in STARTER_FILES:
        assert included[name] == f"trafficshift/{PACKAGE_DATA}/{name}"
        assert starter_source(name) == ROOT / name  # a source checkout: the repository's own file

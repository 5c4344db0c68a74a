"""The files users run Traefik with: the compose file and the static config keep their promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> Any:
    return yaml.safe_load((REPO / name).read_text())


def test_compose_mounts_the_traefik_folder_and_keeps_api_and_metrics_on_loopback() -> None:
    traefik = _load("docker-compose.traefik.yml")["services"]["traefik"]
    assert traefik["image"] == "traefik:v3.7"
    # A folder, never a single file: a file bind-mount pins the inode and atomic replaces never arrive.
    assert traefik["volumes"] == ["./traefik:/etc/traefik"]
    assert (REPO / "traefik").is_dir()
    ports = traefik["ports"]
    assert "127.0.0.1:8080:8080" in ports
    assert "127.0.0.1:8082:8082" in ports
    assert "--configFile=/etc/traefik/traefik.yml" in traefik["command"]


def test_static_config_watches_the_folder_with_version_checks_off() -> None:
    static = _load("traefik/traefik.yml")
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert static["providers"]["file"] == {"directory": "/etc/traefik/dynamic", "watch": True}
    assert static["providers"]["providersThrottleDuration"] == "200ms"
    assert static["api"]["insecure"] is True
    assert set(static["entryPoints"]) == {"web", "traefik", "metrics"}
    prometheus = static["metrics"]["prometheus"]
    assert prometheus["entryPoint"] == "metrics"
    assert prometheus["addServicesLabels"] is True
    # Fine enough below a second for a p95 against max_p95_latency.
    assert sum(1 for b in prometheus["buckets"] if b <= 0.5) >= 8

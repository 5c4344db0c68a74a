"""The CLI is a client: it never loads the server, and each command loads only what it uses.

Start-up time is most of what a person waits for in `trafficshift check` or `--help`, and a command that
pulls in the aiohttp server, Jinja2 or the Prometheus client for nothing pays for them on every run. The
real command runs in a subprocess with Python's import-time report on (PYTHONPROFILEIMPORTTIME, the
environment form of `-X importtime`), which names every module the run imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.factories import BASE_CONFIG

BIN = Path(sys.executable).parent / "trafficshift"

# Loaded only when used: the HTTP server (`serve`), Jinja2 (writing a dynamic file) and the Prometheus
# client (analysis, the service's /metrics).
SERVER_ONLY = ("aiohttp.web", "jinja2", "prometheus_client")


def _imported(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """Run `trafficshift ARGS` with a config in `tmp_path`: its exit code and every module it imported."""
    (tmp_path / "trafficshift.yml").write_text(BASE_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICSHIFT_")}
    # The unit suite has no Docker: an address where none answers makes `status` fail fast (exit 3) after
    # it has loaded all it needs, instead of reading whatever engine this machine runs.
    env |= {"PYTHONPROFILEIMPORTTIME": "1", "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    run = subprocess.run(
        [str(BIN), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    # Lines read `import time:  self | cumulative | <indent>module`; the first one is the header.
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "trafficshift.cli" in modules, run.stderr  # the report was read: a check that can fail
    return run.returncode, modules


def _loaded(modules: set[str], prefix: str) -> list[str]:
    return sorted(m for m in modules if m == prefix or m.startswith(prefix + "."))


@pytest.mark.parametrize("args", [("--help",), ("check",)])
def test_help_and_check_load_no_server_and_no_docker(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, modules = _imported(tmp_path, *args)
    assert code == 0
    # asyncio too: neither runs an event loop, and asyncio (with ssl) is most of the CLI's start-up time.
    # rich neither: it draws the live display of a rollout on a terminal, and only then is it loaded.
    for name in (*SERVER_ONLY, "aiodocker", "trafficshift.service", "asyncio", "rich"):
        assert _loaded(modules, name) == [], f"`trafficshift {' '.join(args)}` loads {name}"


def test_status_loads_no_server(tmp_path: Path) -> None:
    code, modules = _imported(tmp_path, "status")
    assert code == 3  # got as far as asking Docker for the containers: the whole command path was loaded
    # aiodocker is allowed here: it is status's Docker client, which lists the app's containers.
    assert _loaded(modules, "aiodocker") != []
    for name in (*SERVER_ONLY, "trafficshift.service"):
        assert _loaded(modules, name) == [], f"`trafficshift status` loads {name}"


def test_init_loads_no_event_loop_and_no_docker(tmp_path: Path) -> None:
    code, modules = _imported(tmp_path, "init")
    assert code == 0
    assert (tmp_path / "traefik" / "traefik.yml").is_file()  # it ran: the starter files are there
    for name in (*SERVER_ONLY, "aiodocker", "trafficshift.service", "asyncio"):
        assert _loaded(modules, name) == [], f"`trafficshift init` loads {name}"

"""contrib/: the compose service of `trafficshift serve` as Compose v2 reads it, the systemd unit as systemd
reads it, and the Dockerfile's sources. No Docker needed (the image's base cannot be pulled here).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from trafficshift.compose.runner import compose_command

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib"


def compose_config(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of the contrib compose file copied into `project`, as its README says."""
    shutil.copy(CONTRIB / "docker-compose.trafficshift.yml", project)
    environment = {k: v for k, v in os.environ.items() if k not in ("TRAFFICSHIFT_UID", "DOCKER_GID")}
    return subprocess.run(
        [*compose_command(), "-f", "docker-compose.trafficshift.yml", "config", "--format", "json"],
        cwd=project,
        env=environment | {"PWD": str(project)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compose_service_mounts_the_socket_the_project_and_the_state(tmp_path: Path) -> None:
    run = compose_config(tmp_path, {"TRAFFICSHIFT_UID": "1000", "DOCKER_GID": "999"})
    assert run.returncode == 0, run.stderr
    service = json.loads(run.stdout)["services"]["trafficshift"]
    assert service["command"] == ["serve"]
    assert (service["network_mode"], service["pid"], service["user"]) == ("host", "host", "1000:999")
    assert service["environment"]["TRAFFICSHIFT_CONFIG"] == f"{tmp_path}/trafficshift.yml"
    mounts = {m["target"]: m for m in service["volumes"]}
    assert mounts["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    # The project at its own path, read-only; the state and Traefik's folders writable, never created.
    assert mounts[str(tmp_path)]["source"] == str(tmp_path)
    assert mounts[str(tmp_path)]["read_only"] is True
    for folder in (".trafficshift", "traefik"):
        mount = mounts[f"{tmp_path}/{folder}"]
        assert mount["source"] == f"{tmp_path}/{folder}"
        assert not mount.get("read_only")
        assert not mount.get("bind", {}).get("create_host_path")


def test_the_compose_service_names_what_is_missing(tmp_path: Path) -> None:
    run = compose_config(tmp_path, {})
    assert run.returncode != 0
    assert "set TRAFFICSHIFT_UID to the owner of the project" in run.stderr


def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    unit = (CONTRIB / "trafficshift.service").read_text()
    assert "ExecStart=/opt/trafficshift/bin/trafficshift serve\n" in unit
    if shutil.which("systemd-analyze") is None:
        # No systemd here: at least the unit parses as an INI file with the sections systemd needs.
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit)
        assert parser.sections() == ["Unit", "Service", "Install"]
        assert parser["Service"]["User"] == "trafficshift"
        return
    # systemd checks that ExecStart's binary exists: this venv's, in an otherwise identical copy.
    local = unit.replace(
        "/opt/trafficshift/bin/trafficshift", str(Path(sys.executable).parent / "trafficshift")
    )
    path = tmp_path / "trafficshift.service"
    path.write_text(local)
    run = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    # The check can fail: a key systemd does not know is reported.
    path.write_text(local.replace("Restart=", "Restar="))
    run = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert "Unknown key" in run.stderr


def test_the_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    dockerfile = (CONTRIB / "Dockerfile").read_text()
    sources = [
        source
        for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.MULTILINE)
        for source in line.split()[:-1]
    ]
    assert sources, dockerfile
    for source in sources:
        assert (REPO / source).exists(), source
    # Every data file the wheel force-includes is among them.
    for name in ("templates", "docker-compose.traefik.yml", "traefik/traefik.yml"):
        assert name in sources
    assert "pip install --no-cache-dir '/src[compose]'" in dockerfile
    # The checkout's .venv is not sent to the builder: its ignore file lets through exactly these.
    ignore = (CONTRIB / "Dockerfile.dockerignore").read_text().splitlines()
    assert sorted(line[1:] for line in ignore if line.startswith("!")) == sorted(sources)

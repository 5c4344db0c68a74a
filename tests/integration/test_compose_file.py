"""docker-compose itself accepts the shipped compose file (it fails, never skips, without docker-compose)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.docker


def test_docker_compose_accepts_the_shipped_file() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose")
    result = subprocess.run(
        [compose, "-f", str(REPO / "docker-compose.traefik.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

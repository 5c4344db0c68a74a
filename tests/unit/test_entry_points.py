"""`python -m trafficshift` is the `trafficshift` command, and the version has one source."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import trafficshift


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "trafficshift.yml"
    config.write_text("traefik: {dynamic_dir: ./dyn}\napps:\n  web: {image: 'a:1', port: 0}\n")
    run = subprocess.run(
        [sys.executable, "-m", "trafficshift", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Exit 2 and a config error naming the line: the CLI ran, not just an import.
    assert run.returncode == 2
    assert "trafficshift.yml:3: apps.web.port: must be 1..65535, got 0" in run.stderr


def test_version_prints_the_package_version() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "trafficshift", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout == f"trafficshift {trafficshift.__version__}\n"


def test_installed_metadata_reads_the_version_from_the_package() -> None:
    # pyproject.toml has no version of its own: hatch reads trafficshift/__init__.py (dynamic version).
    assert importlib.metadata.version("trafficshift") == trafficshift.__version__

"""Pytest fixtures over the real Traefik binary: a missing binary fails the test, it never skips it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.traefik import TraefikMissing, TraefikProc, run_traefik


@pytest.fixture
async def traefik(tmp_path: Path) -> AsyncIterator[TraefikProc]:
    """A Traefik on loopback that watches `tmp_path / "dynamic"`, with a 200ms providers throttle."""
    try:
        async with run_traefik(dynamic_dir=tmp_path / "dynamic", work_dir=tmp_path / "traefik") as proc:
            yield proc
    except TraefikMissing as exc:
        pytest.fail(str(exc))

"""A short slice of `make bench-scale` (benchmarks/scale.py --smoke): 4 apps under one `trafficshift serve`.

The benchmark's figures are not held to its targets here (the machine is shared, the slice small), only that
it runs end to end against the real Docker engine, Traefik and service: the promotes posted at once lose no
request and all end done, every figure of the table is measured, the restarted service gets ready, and the
run cleans up after itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import scale
from tests.support.docker_fixtures import prefixed_containers

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


async def test_bench_scale_smoke_promotes_at_once_lose_nothing_and_every_figure_is_measured(
    tmp_path: Path,
) -> None:
    doc = await scale.bench(scale.parse_args(["--smoke", "--out", str(tmp_path)]))

    [run] = doc["results"]
    assert json.loads((tmp_path / "scale.json").read_text())["results"] == json.loads(json.dumps([run]))
    assert (run["apps"], run["promotes"]) == (4, 3)
    assert run["outcomes"] == {"done": 3}
    assert run["failed"] == 0, run["failures"]
    assert run["requests"] > 100
    # Every figure measured: the walls, the Docker floor, step confirmations, the service's own.
    for key in ("first_deploy", "one", "batch", "floor_start", "floor_stop", "rss_after_batch"):
        assert run[key] > 0, (key, run)
    idle = run["idle"]
    assert 0 < idle["start_listening"] <= idle["start_ready"]
    assert idle["rss"] > 0
    assert run["batch"] >= doc["params"]["pause"] * len(doc["params"]["steps"])  # the pauses are held
    assert 0 < run["confirm_median"] <= run["confirm_max"]
    assert idle["api_failed"] == 0, idle["api_failures"]
    assert idle["api_requests"] > 0
    assert 0 < idle["api_p50"] <= idle["api_p99"]
    table = (tmp_path / "scale.md").read_text()
    assert table.startswith("Scale: N apps under one `trafficshift serve`")
    assert "| 4 | 3 | 3 | **0** of " in table
    assert await prefixed_containers(doc["prefix"]) == []

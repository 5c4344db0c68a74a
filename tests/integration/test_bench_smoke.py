"""A short smoke of `make bench` (benchmarks/cutover.py --smoke): structure, and no request lost by promote.

The benchmark's numbers are not asserted here (it is a benchmark, not a timed test), only that it runs
end to end against the real Docker engine and Traefik, cleans up, and that trafficshift lost nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import cutover
from benchmarks.scenarios import SCENARIOS, TRAFFICSHIFT
from tests.support.docker_fixtures import prefixed_containers

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


async def test_bench_smoke_runs_each_way_and_promote_loses_nothing(tmp_path: Path) -> None:
    doc = await cutover.bench(cutover.parse_args(["--smoke", "--out", str(tmp_path)]))

    assert (tmp_path / "latest.md").read_text().startswith("Cutover under load")
    assert json.loads((tmp_path / "latest.json").read_text())["summary"] == json.loads(
        json.dumps(doc["summary"])
    )
    assert [r["scenario"] for r in doc["runs"]] == list(SCENARIOS)
    for run in doc["runs"]:
        assert run["requests"] > 0, run
        assert run["wall"] > 0, run
        assert run["steady_p99"] is not None, run

    ts = next(r for r in doc["runs"] if r["scenario"] == TRAFFICSHIFT)
    assert ts["failed"] == 0, ts["failures"]
    assert [s["weight"] for s in ts["steps"]] == [10, 50, 100]
    assert all(s["confirm"] > 0 and s["requests"] > 0 for s in ts["steps"]), ts["steps"]
    table = (tmp_path / "latest.md").read_text()
    assert "| trafficshift promote | 1 |" in table
    assert "| docker-rollout (labels + healthcheck + retry) | 1 |" in table
    rollout = next(r for r in doc["runs"] if r["scenario"] == "docker-rollout")
    assert 0 < rollout["extra"]["waited"] < rollout["wall"], rollout  # until v2 was healthy
    # Nothing left behind: every container the run made is gone.
    assert doc["prefix"].startswith("bench")
    assert await prefixed_containers(doc["prefix"]) == []

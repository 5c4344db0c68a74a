"""A short smoke of `make bench-store` (benchmarks/store_loop.py): it runs end to end, every mode progresses.

Its numbers are not asserted (it is a benchmark, not a timed test); only that every table is printed and
that the simulated rollouts committed steps in each mode, the async store's and the real engine's included.
"""

from __future__ import annotations

import re

import pytest

from benchmarks import store_loop


def test_bench_store_runs_every_part_and_each_mode_commits_steps(capsys: pytest.CaptureFixture[str]) -> None:
    modes = "on,off1,off,off-commits,off-own,engine-on-all,engine"
    argv = ["--apps", "4", "--events", "400", "--runs", "4", "--seconds", "1.5", "--pause", "0.2"]
    assert store_loop.main([*argv, "--drain", "0.1", "--apply", "0.05", "--modes", modes]) == 0
    out = capsys.readouterr().out
    assert "Part 1: store operations, on a store of 400 events" in out
    assert "| events(after=0) (all: the first /metrics scrape) | 3 |" in out
    assert "| GET /metrics, first scrape (folds every event) | 3 |" in out
    rows = re.findall(r"^\| (on the loop|off the loop[^|]*|real engine[^|]*) \|(.*)$", out, re.M)
    simulated = [(name, cells.split("|")) for name, cells in rows if cells.count("|") == 10]
    assert [name for name, _ in simulated] == [
        "on the loop",
        "off the loop (1 thread)",
        "off the loop (AsyncStateStore: writer + reader thread)",
        "off the loop (AsyncStateStore: writer + reader thread), commits only",
        "off the loop (AsyncStateStore: writer + reader thread), _emit of its own events",
        "real engine over a StateStore on the loop, _emit of every app's events (before)",
        "real engine over AsyncStateStore, _emit of its own events (now)",
    ]
    # A real Engine's rollout that does not end `done` fails the run (store_loop.simulate_engine).
    for name, cells in simulated:
        steps_done = int(cells[8])  # "steps done"
        assert steps_done > 0, name

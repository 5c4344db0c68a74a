"""`promote --all`'s order: one after another or N at a time, none started after the first failure."""

from __future__ import annotations

import asyncio
import json

import pytest

from trafficshift.batch import BatchResult, Ran, run_batch

APPS = ["a", "b", "c", "d"]


class Apps:
    """Each app's promote: ends with its `codes` entry (default 0) after `delay` seconds."""

    def __init__(self, codes: dict[str, int] | None = None, *, unchanged: tuple[str, ...] = ()) -> None:
        self.codes = codes or {}
        self.unchanged = unchanged
        self.started: list[str] = []
        self.running = 0
        self.most = 0

    async def run(self, app: str) -> Ran:
        self.started.append(app)
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01 * (1 + APPS.index(app) % 2))
        self.running -= 1
        return Ran(self.codes.get(app, 0), unchanged=app in self.unchanged)


async def test_one_after_another_in_order_and_each_unchanged_one_counted() -> None:
    apps = Apps(unchanged=("b",))
    result = await run_batch(APPS, parallel=1, run_one=apps.run)
    assert apps.started == APPS
    assert apps.most == 1
    assert result == BatchResult(rolled=("a", "c", "d"), unchanged=("b",))
    assert result.code == 0
    assert result.lines() == ["rolled out: a, c, d; unchanged: b"]


async def test_the_first_failure_stops_the_batch_and_gives_its_code() -> None:
    apps = Apps({"b": 3, "c": 1})
    result = await run_batch(APPS, parallel=1, run_one=apps.run)
    assert apps.started == ["a", "b"]
    assert (result.first_failure, result.not_attempted, result.code) == (("b", 3), ("c", "d"), 3)
    assert result.lines() == [
        "rolled out: a; failed: b; not attempted: c, d",
        "stopped at the first failure: b (exit 3)",
    ]


async def test_n_at_a_time_and_those_running_at_a_failure_finish() -> None:
    apps = Apps({"a": 1})
    result = await run_batch(APPS, parallel=2, run_one=apps.run)
    # a fails first (it is the quicker one); b, started beside it, runs to its end; c and d never start.
    assert apps.started == ["a", "b"]
    assert apps.most == 2
    assert (result.rolled, result.failed, result.not_attempted, result.code) == (
        ("b",),
        ("a",),
        ("c", "d"),
        1,
    )


async def test_all_at_once_never_more_than_asked() -> None:
    apps = Apps()
    result = await run_batch(APPS, parallel=3, run_one=apps.run)
    assert sorted(apps.started) == APPS
    assert apps.most == 3
    assert result.rolled == tuple(APPS)


async def test_a_signal_starts_nothing_more() -> None:
    stop: list[str] = []
    apps = Apps()

    async def run(app: str) -> Ran:
        stop.append("interrupted by SIGINT")
        return await apps.run(app)

    result = await run_batch(APPS, parallel=1, run_one=run, stopped=lambda: stop[0] if stop else None)
    assert apps.started == ["a"]
    assert (result.not_attempted, result.code) == (("b", "c", "d"), 130)
    assert result.lines()[-1] == "stopped: interrupted by SIGINT"


async def test_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await run_batch(APPS, parallel=0, run_one=Apps().run)


def test_the_report_of_all_for_people_and_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    from trafficshift.promoting import report_all

    result = BatchResult(
        rolled=("a",), unchanged=("b",), failed=("c",), first_failure=("c", 3), not_attempted=("d",)
    )
    report_all(result, as_json=False)
    assert capsys.readouterr().err.splitlines() == [
        "trafficshift: promote --all: rolled out: a; unchanged: b; failed: c; not attempted: d",
        "trafficshift: promote --all: stopped at the first failure: c (exit 3)",
    ]
    report_all(result, as_json=True)
    assert json.loads(capsys.readouterr().out) == {
        "all": {
            "rolled_out": ["a"],
            "unchanged": ["b"],
            "failed": ["c"],
            "not_attempted": ["d"],
            "exit_code": 3,
        }
    }

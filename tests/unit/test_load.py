"""The load generator counts exactly what a local server answered, failures and shares included."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.load import Load, LoadSummary, Sample, percentile, run_load, share, summarize


@dataclass
class Answers:
    """What the server answered, to compare with what the load generator recorded."""

    bodies: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    hosts: set[str] = field(default_factory=set)
    slow: bool = False


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, Answers]]:
    answers = Answers()
    n = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal n
        n += 1
        answers.hosts.add(request.host)
        if answers.slow:
            await asyncio.sleep(1)
        # Every 5th request fails, the others alternate between colours: shares are exactly known.
        if n % 5 == 0:
            status, body = 500, "  boom\n"
        else:
            status, body = 200, ("blue\n" if n % 2 else "green\n")
        answers.statuses[status] += 1
        answers.bodies[body.strip()] += 1
        return web.Response(status=status, text=body)

    app = web.Application()
    app.router.add_get("/", handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv, answers
    finally:
        await srv.close()


async def test_counts_failures_and_bodies_match_the_server(server: tuple[TestServer, Answers]) -> None:
    srv, answers = server
    async with run_load(url=str(srv.make_url("/")), host="web.localhost", concurrency=4) as load:
        await load.wait_for(requests=200)
        assert load.total >= 200
        assert load.failed > 0
    samples = load.samples
    summary = summarize(samples)
    assert summary.requests == sum(answers.statuses.values()) == load.total
    assert summary.failed == answers.statuses[500] == load.failed
    assert summary.by_body == dict(answers.bodies)
    assert answers.hosts == {"web.localhost"}
    assert all(s.error is None and s.status in (200, 500) for s in samples)
    assert {s.body for s in samples} == {"blue", "green", "boom"}
    assert share(samples, "boom") == pytest.approx(answers.bodies["boom"] / summary.requests)
    assert summary.failed_span > 0
    assert summary.p50 is not None
    assert summary.p99 is not None
    assert 0 < summary.p50 <= summary.p99


async def test_live_share_since_a_mark(server: tuple[TestServer, Answers]) -> None:
    srv, _ = server
    async with Load(url=str(srv.make_url("/")), host="h", concurrency=2) as load:
        await load.wait_for(requests=50)
        mark = load.mark()
        before = load.total
        await load.wait_for(requests=before + 100)
        recent = load.recent(since=mark)
        assert recent
        assert all(s.started >= mark for s in recent)
        total = sum(load.share(b, since=mark) for b in ("blue", "green", "boom"))
        assert total == pytest.approx(1.0)
        assert load.share("boom", last=60) == pytest.approx(0.2, abs=0.05)
    assert len(load.recent()) == load.total


async def test_connection_errors_are_failures_with_no_status() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now: every request is refused.
    async with run_load(url=f"http://127.0.0.1:{port}/", host="h", concurrency=2) as load:
        await load.wait_for(requests=5)
    summary = summarize(load.samples)
    assert summary.failed == summary.requests >= 5
    assert all(s.status is None and s.error and s.body == "" for s in load.samples)
    assert summary.by_body == {"": summary.requests}


async def test_timeouts_are_failures(server: tuple[TestServer, Answers]) -> None:
    srv, answers = server
    answers.slow = True
    async with run_load(url=str(srv.make_url("/")), host="h", concurrency=1, timeout=0.1) as load:
        await load.wait_for(requests=2)
    assert load.failed == load.total >= 2
    assert all(s.status is None and s.error and s.error.startswith("TimeoutError") for s in load.samples)


def _sample(started: float, status: int | None = 200, body: str = "blue", latency: float = 0.01) -> Sample:
    return Sample(started=started, latency=latency, status=status, body=body, error=None)


def test_summarize_empty() -> None:
    assert summarize([]) == LoadSummary(0, 0, 0.0, None, None, {})


def test_summarize_failed_span_and_percentiles() -> None:
    samples = [
        _sample(1.0),
        _sample(2.0, status=503, body="x"),
        _sample(3.0, status=None, body=""),
        _sample(4.5, status=404, body="nf"),
        _sample(5.0, latency=1.0),
    ]
    summary = summarize(samples)
    assert summary.requests == 5
    assert summary.failed == 3
    assert summary.failed_span == pytest.approx(2.5)
    assert summary.p50 == 0.01
    assert summary.p99 == 1.0
    assert summary.by_body == {"blue": 2, "x": 1, "": 1, "nf": 1}


def test_share_window_is_half_open() -> None:
    samples = [_sample(1.0, body="blue"), _sample(2.0, body="green"), _sample(3.0, body="green")]
    assert share(samples, "green") == pytest.approx(2 / 3)
    assert share(samples, "green", since=2.0) == 1.0
    assert share(samples, "blue", until=2.0) == 1.0
    assert share(samples, "blue", since=1.0, until=1.0) == 0.0


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 0.5, None), ([1.0], 0.99, 1.0), ([1.0, 2.0], 0.5, 1.0), ([1.0, 2.0, 3.0, 4.0], 0.99, 4.0)],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected

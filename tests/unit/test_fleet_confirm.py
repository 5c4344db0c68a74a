"""A fleet's confirmation (every instance must show a step) and its metrics (summed over instances)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.support.traefik import free_port
from tests.unit.test_watch import POLL, FakeTraefik, routing, session, traefik
from trafficshift.errors import StepNotApplied
from trafficshift.models import Bucket, MetricsSnapshot, ServiceMetrics
from trafficshift.traefik.fleet import Fleet
from trafficshift.traefik.scrape import merge_snapshots

__all__ = ["session", "traefik"]  # fixtures shared with the watcher's tests


def _fleet(urls: list[str], session: aiohttp.ClientSession) -> Fleet:
    fleet = Fleet(api_urls=urls, session=session, provider="file")
    for watcher in fleet.watchers:
        watcher.poll = POLL
    return fleet


async def test_a_step_counts_once_every_instance_shows_it(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    fleet = _fleet([traefik.url, traefik.url + "/"], session)  # two watchers of one fake: both must see it
    wait = asyncio.create_task(fleet.wait_until_applied(routing("a", 10), timeout=5))
    await asyncio.sleep(POLL * 5)
    assert not wait.done()
    traefik.shown["a"] = routing("a", 10)
    assert await wait < 5


async def test_an_unreachable_instance_fails_the_step_naming_it(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    traefik.shown["a"] = routing("a", 10)
    with pytest.raises(StepNotApplied) as info:
        await _fleet([traefik.url, dead], session).wait_until_applied(routing("a", 10), timeout=0.5)
    message = str(info.value)
    assert "a@file on 1 of 2 Traefik instances" in message
    assert dead in message
    assert traefik.url not in message.split("observed")[1]


def test_fleet_metrics_sum_each_service_over_the_instances() -> None:
    def snapshot(taken: float, ok: float, errors: float, fast: float) -> MetricsSnapshot:
        metrics = ServiceMetrics(
            requests={"2xx": ok, "5xx": errors},
            buckets=(Bucket(0.1, fast), Bucket(float("inf"), ok + errors)),
        )
        return MetricsSnapshot(taken_at=taken, services={"web-green@redis": metrics})

    merged = merge_snapshots([snapshot(1.0, 10, 1, 8), snapshot(2.0, 30, 0, 29)])
    assert merged.taken_at == 2.0
    green = merged.service("web-green@redis")
    assert green.requests == {"2xx": 40, "5xx": 1}
    assert green.buckets == (Bucket(0.1, 37), Bucket(float("inf"), 41))
    assert merge_snapshots([]).services == {}


async def test_going_back_leaves_out_an_instance_that_does_not_answer(
    traefik: FakeTraefik, session: aiohttp.ClientSession
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    traefik.shown["a"] = routing("a", 0)
    fleet = _fleet([traefik.url, dead], session)
    fleet.apis[0].ping = _answers  # type: ignore[method-assign]  # the fake serves only the listing
    assert await fleet.wait_until_applied(routing("a", 0), timeout=2, back=True) < 2
    with pytest.raises(StepNotApplied):  # forward, the same instance fails the step
        await fleet.wait_until_applied(routing("a", 0), timeout=0.3)


async def _answers() -> None:
    return None

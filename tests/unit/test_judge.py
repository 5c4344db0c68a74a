"""StepWatch against a local metrics endpoint on 127.0.0.1: windows, failures with figures, lost scrapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.factories import make_rollout
from trafficshift.errors import AnalysisFailed
from trafficshift.judge import StepWatch, describe, watch_step
from trafficshift.models import AnalysisSpec, AppSpec, Colour, Phase, Verdict
from trafficshift.traefik.scrape import TraefikMetrics

SPEC = AnalysisSpec(max_error_rate=0.05, max_p95_latency=0.5, min_requests=10)
URL = "http://m/metrics"


@dataclass
class Counts:
    """What the fake Traefik has counted for web-green@file (and web-blue@file), all at 10 ms."""

    green: dict[str, int] = field(default_factory=dict)
    blue: dict[str, int] = field(default_factory=dict)
    down: bool = False

    def text(self) -> str:
        lines = ["# TYPE traefik_service_requests_total counter"]
        buckets = ["# TYPE traefik_service_request_duration_seconds histogram"]
        for colour, counts in (("green", self.green), ("blue", self.blue)):
            service = f"web-{colour}@file"
            for code, n in counts.items():
                lines.append(f'traefik_service_requests_total{{code="{code}",service="{service}"}} {n}')
            total = sum(counts.values())
            for le in ("0.01", "0.1", "1", "+Inf"):
                labels = f'service="{service}",le="{le}"'
                buckets.append(f"traefik_service_request_duration_seconds_bucket{{{labels}}} {total}")
        return "\n".join(lines + buckets) + "\n"


@pytest.fixture
async def metrics() -> AsyncIterator[tuple[str, Counts]]:
    counts = Counts()

    async def handle(request: web.Request) -> web.Response:
        if counts.down:
            return web.Response(status=503)
        return web.Response(text=counts.text())

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/metrics", counts
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _watch(url: str, session: aiohttp.ClientSession, spec: AnalysisSpec = SPEC) -> StepWatch:
    return StepWatch(
        metrics=TraefikMetrics(url=url, session=session),
        app="web",
        new=Colour.GREEN,
        old=Colour.BLUE,
        spec=spec,
        step="step 1/3",
    )


async def test_window_starts_at_the_first_scrape_and_a_bad_one_fails_with_figures(
    metrics: tuple[str, Counts], session: aiohttp.ClientSession
) -> None:
    url, counts = metrics
    counts.green = {"200": 500, "500": 500}  # before the step: not this step's business
    watch = _watch(url, session)
    assert await watch.observe() is None
    counts.green = {"200": 520, "500": 500}
    verdict = await watch.observe()
    assert verdict is not None
    assert (verdict.ok, verdict.requests, verdict.error_rate) == (True, 20, 0.0)
    counts.green = {"200": 530, "500": 510}
    with pytest.raises(AnalysisFailed) as info:
        await watch.observe()
    assert str(info.value) == (
        "analysis failed at step 1/3: web-green@file: error rate 0.25 > 0.05 over 40 requests"
    )
    assert info.value.verdict is not None
    assert info.value.verdict.requests == 40


async def test_errors_the_old_colour_shares_are_forgiven_unless_told_otherwise(
    metrics: tuple[str, Counts], session: aiohttp.ClientSession
) -> None:
    url, counts = metrics
    shared = _watch(url, session)
    alone = AnalysisSpec(max_error_rate=0.05, min_requests=10, compare_to_old=False)
    strict = _watch(url, session, spec=alone)
    await shared.observe()
    await strict.observe()
    counts.green = {"200": 18, "500": 2}
    counts.blue = {"200": 180, "500": 20}
    verdict = await shared.observe()
    assert verdict is not None
    assert verdict.ok
    with pytest.raises(AnalysisFailed):
        await strict.observe()


async def test_a_lost_scrape_is_skipped_but_a_step_never_judged_fails(
    metrics: tuple[str, Counts], session: aiohttp.ClientSession
) -> None:
    url, counts = metrics
    watch = _watch(url, session)
    await watch.observe()
    counts.green = {"200": 30}
    assert (await watch.observe()) is not None
    counts.down = True
    assert await watch.observe() is None
    assert "503" in (watch.last_error or "")
    verdict = await watch.finish()  # the last verdict of the step stands
    assert verdict.requests == 30

    blind = _watch(url, session)
    with pytest.raises(AnalysisFailed, match=r"could not be judged: .*503"):
        await blind.finish()


def test_describe_gives_the_figures() -> None:
    assert describe(Verdict(ok=True, requests=120, error_rate=0.0, p95=0.0123)) == (
        "120 requests, 5xx rate 0.000, p95 0.012s"
    )
    few = Verdict(ok=True, requests=3, error_rate=None, p95=None, reason="judged on health alone")
    assert describe(few) == "3 requests, 5xx rate -, p95 - (judged on health alone)"


@pytest.mark.parametrize(
    ("analysis", "metrics_url", "changes", "step"),
    [
        (SPEC, URL, {}, "step 2/3 (50% on green)"),
        (SPEC, URL, {"phase": Phase.DRAINING, "weights": {Colour.GREEN: 100}}, "drain (100% on green)"),
        (None, URL, {}, None),
        (SPEC, None, {}, None),
        (SPEC, URL, {"from_colour": None, "weights": {Colour.GREEN: 100}}, None),
        (SPEC, URL, {"weights": {Colour.BLUE: 100, Colour.GREEN: 0}}, None),
    ],
)  # fmt: skip
async def test_watch_step_only_where_there_is_something_to_judge(
    analysis: AnalysisSpec | None,
    metrics_url: str | None,
    changes: dict[str, Any],
    step: str | None,
    session: aiohttp.ClientSession,
) -> None:
    spec = AppSpec(name="web", image="web:1", port=80, rule="r", publish="127.0.0.1", analysis=analysis)
    watch = watch_step(
        spec=spec,
        rollout=make_rollout(**({"step": 1, "weights": {Colour.BLUE: 50, Colour.GREEN: 50}} | changes)),
        metrics=TraefikMetrics(url=metrics_url, session=session) if metrics_url else None,
    )
    assert (watch.step if watch else None) == step

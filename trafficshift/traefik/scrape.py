"""Scrape Traefik's Prometheus endpoint into per-service request counts and latency histograms."""

from __future__ import annotations

import time
from collections import defaultdict

import aiohttp

from trafficshift.errors import UnreachableError
from trafficshift.models import Bucket, MetricsSnapshot, ServiceMetrics

# Family names as prometheus_client reports them: counters lose their `_total` suffix, histograms their
# `_bucket`/`_sum`/`_count` suffixes (the samples keep them).
_REQUESTS = "traefik_service_requests"
_DURATION = "traefik_service_request_duration_seconds"
_TIMEOUT = aiohttp.ClientTimeout(total=5.0)


def status_class(code: str) -> str:
    """`"503"` -> `"5xx"`; anything that is not a three-digit code -> `"other"`."""
    if len(code) == 3 and code.isdigit():
        return f"{code[0]}xx"
    return "other"


def parse_metrics(*, text: str, taken_at: float) -> MetricsSnapshot:
    """Read Traefik's Prometheus text into a snapshot; raises ValueError on text that is not Prometheus."""
    # Imported here: the engine imports this module for analysis, and `status` should not pay for the
    # Prometheus client at start-up.
    from prometheus_client.parser import text_string_to_metric_families

    requests: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: defaultdict[str, defaultdict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        if family.name == _REQUESTS:
            for sample in family.samples:
                service = sample.labels.get("service")
                if service is not None and sample.name == _REQUESTS + "_total":
                    requests[service][status_class(sample.labels.get("code", ""))] += sample.value
        elif family.name == _DURATION:
            for sample in family.samples:
                service = sample.labels.get("service")
                if service is not None and sample.name == _DURATION + "_bucket":
                    # Series differ by code/method/protocol; a step is judged on all of a service's requests.
                    buckets[service][float(sample.labels["le"])] += sample.value
    services = {
        name: ServiceMetrics(
            requests=dict(requests.get(name, {})),
            buckets=tuple(Bucket(le=le, count=n) for le, n in sorted(buckets.get(name, {}).items())),
        )
        for name in requests.keys() | buckets.keys()
    }
    return MetricsSnapshot(taken_at=taken_at, services=services)


async def scrape(*, url: str, session: aiohttp.ClientSession) -> MetricsSnapshot:
    """Fetch and parse Traefik's metrics; UnreachableError when the endpoint cannot be read.

    Bounded by a 5 s timeout of its own so that a hung Traefik never stalls a rollout step; wrap the call
    in `asyncio.timeout()` for a shorter bound.
    """
    try:
        async with session.get(url, timeout=_TIMEOUT) as response:
            if response.status != 200:
                raise UnreachableError(f"Traefik metrics at {url} answered HTTP {response.status}")
            text = await response.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UnreachableError(f"cannot read Traefik metrics at {url}: {exc!r}") from exc
    taken_at = time.monotonic()
    try:
        return parse_metrics(text=text, taken_at=taken_at)
    except ValueError as exc:
        # A wrong metrics_url (e.g. the dashboard) answers 200 with something else: say so, don't crash.
        raise UnreachableError(f"{url} does not serve Prometheus metrics: {exc}") from exc


class TraefikMetrics:
    """The live `ports.MetricsSource`: Traefik's Prometheus endpoint at `url`."""

    def __init__(self, *, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def scrape(self) -> MetricsSnapshot:
        return await scrape(url=self.url, session=self._session)

"""Scrape Traefik's Prometheus endpoint into per-service request counts and latency histograms.

A scrape is bounded (MAX_BODY, and a timeout) and parsed in a thread, of the judged services only when a step
asks: the text of a Traefik with 300 services (20,000 series) takes 0.5-1 s of CPU to parse, which on the
event loop stalled the service's API, its event streams, its provider and every other rollout at each
`analysis.interval`. Whatever cannot be read or parsed is "metrics unreadable" (UnreachableError: exit 3 at a
promote's preflight), not an internal error.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Collection, Sequence

import aiohttp

from trafficshift.errors import UnreachableError
from trafficshift.models import Bucket, MetricsSnapshot, ServiceMetrics

# Family names as prometheus_client reports them: counters lose their `_total` suffix, histograms their
# `_bucket`/`_sum`/`_count` suffixes (the samples keep them).
_REQUESTS = "traefik_service_requests"
_DURATION = "traefik_service_request_duration_seconds"
_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
# Traefik writes about 8 KiB per service (three code/method series of 16 buckets): 16 MiB is some 2,000
# services, far beyond what one Traefik routes for trafficshift; more is not a metrics endpoint to trust.
MAX_BODY = 16 * 1024 * 1024
_CHUNK = 256 * 1024
# A line that is neither blank, nor a comment, nor starts with a metric name.
_NOT_A_SAMPLE = re.compile(r"\n[^\s#a-zA-Z_:]")


def status_class(code: str) -> str:
    """`"503"` -> `"5xx"`; anything that is not a three-digit code -> `"other"`."""
    if len(code) == 3 and code.isdigit():
        return f"{code[0]}xx"
    return "other"


def parse_metrics(*, text: str, taken_at: float, services: Collection[str] | None = None) -> MetricsSnapshot:
    """Read Traefik's Prometheus text into a snapshot (of `services` only, when given).

    ValueError (or whatever else the parser raises) on text that is not Prometheus, or on a histogram
    bucket without its `le` label.
    """
    # Imported here: the engine imports this module for analysis, and `status` should not pay for the
    # Prometheus client at start-up.
    from prometheus_client.parser import text_string_to_metric_families

    if services is not None:
        text = _series_of(text, services)
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
                    le = sample.labels.get("le")
                    if le is None:
                        raise ValueError(f"{sample.name} of service {service} has no `le` label")
                    buckets[service][float(le)] += sample.value
    found = {
        name: ServiceMetrics(
            requests=dict(requests.get(name, {})),
            buckets=tuple(Bucket(le=le, count=n) for le, n in sorted(buckets.get(name, {}).items())),
        )
        for name in requests.keys() | buckets.keys()
        if services is None or name in services
    }
    return MetricsSnapshot(taken_at=taken_at, services=found)


def _series_of(text: str, services: Collection[str]) -> str:
    """The comment lines and the series of `services`; every other line only has to look like Prometheus.

    The parser takes some 25 us a line: at 300 services, 20,000 lines and 0.5-1 s of CPU at every scrape of
    every rollout, most of it for services the step does not judge. Finding the lines that name them (and
    the comments) costs a few `str.find` calls per line kept, whatever the size of the text. A series that
    merely names one of `services` in another label is parsed and told apart by its labels, as before.
    """
    if match := _NOT_A_SAMPLE.search("\n" + text):
        number = text.count("\n", 0, match.start()) + 1
        line = text[match.start() :].partition("\n")[0]
        raise ValueError(f"line {number} is not a Prometheus sample: {line[:60]!r}")
    starts: set[int] = set()
    for needle in ["\n#", *(f'service="{name}"' for name in services)]:
        at = text.find(needle)
        while at != -1:
            starts.add(text.rfind("\n", 0, at + 1 if needle == "\n#" else at) + 1)
            at = text.find(needle, at + 1)
    if text.startswith("#"):
        starts.add(0)
    lines = []
    for start in sorted(starts):
        end = text.find("\n", start)
        lines.append(text[start : None if end == -1 else end])
    return "\n".join(lines) + "\n"


async def scrape(
    *, url: str, session: aiohttp.ClientSession, services: Collection[str] | None = None
) -> MetricsSnapshot:
    """Fetch and parse Traefik's metrics; UnreachableError when the endpoint cannot be read or parsed.

    With `services`, only their series are parsed (a few dozen lines of tens of thousands); without, all of
    them (the preflight: it also checks that the endpoint serves Prometheus text throughout).

    Bounded by a 5 s timeout of its own so that a hung Traefik never stalls a rollout step; wrap the call
    in `asyncio.timeout()` for a shorter bound (a parse already running in its thread then ends unheard).
    """
    try:
        async with session.get(url, timeout=_TIMEOUT) as response:
            if response.status != 200:
                raise UnreachableError(f"Traefik metrics at {url} answered HTTP {response.status}")
            body = await _read_body(response, url=url)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UnreachableError(f"cannot read Traefik metrics at {url}: {exc!r}") from exc
    taken_at = time.monotonic()
    try:
        return await asyncio.to_thread(_parse_body, body, taken_at, services)
    except Exception as exc:  # whatever the parser raises, these are no metrics to judge by
        # A wrong metrics_url (e.g. the dashboard) answers 200 with something else: say so, don't crash.
        raise UnreachableError(
            f"metrics unreadable: {url} does not serve Prometheus metrics: {type(exc).__name__}: {exc}"
        ) from exc


async def _read_body(response: aiohttp.ClientResponse, *, url: str) -> bytes:
    """The whole body, or UnreachableError as soon as it is larger than MAX_BODY (decompressed)."""
    too_large = UnreachableError(f"metrics unreadable: {url} answered a body larger than {MAX_BODY} bytes")
    if response.content_length is not None and response.content_length > MAX_BODY:
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > MAX_BODY:
            raise too_large
    return bytes(body)


def _parse_body(body: bytes, taken_at: float, services: Collection[str] | None) -> MetricsSnapshot:
    # In a worker thread: decoding and parsing megabytes is CPU work the event loop must not wait for.
    return parse_metrics(text=body.decode("utf-8", errors="replace"), taken_at=taken_at, services=services)


class TraefikMetrics:
    """The live `ports.MetricsSource`: Traefik's Prometheus endpoint at `url`."""

    def __init__(self, *, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def scrape(self, services: Collection[str] | None = None) -> MetricsSnapshot:
        return await scrape(url=self.url, session=self._session, services=services)


class FleetMetrics:
    """The live `ports.MetricsSource` of several Traefik instances: each service's counts summed over all.

    A fleet behind one name splits the requests between its instances: judging one instance would see a
    share of the new colour's traffic (too few requests, or another mix of errors). All are scraped at
    once; one that cannot be read makes the snapshot unreadable (UnreachableError), as a partial sum would
    understate the window and a later full one overstate it.
    """

    def __init__(self, *, urls: Sequence[str], session: aiohttp.ClientSession) -> None:
        self.urls = tuple(urls)
        self._session = session

    async def scrape(self, services: Collection[str] | None = None) -> MetricsSnapshot:
        snapshots = await asyncio.gather(
            *(scrape(url=url, session=self._session, services=services) for url in self.urls)
        )
        return merge_snapshots(snapshots)


def merge_snapshots(snapshots: Sequence[MetricsSnapshot]) -> MetricsSnapshot:
    """One snapshot whose every service counts what all of `snapshots` counted (pure).

    Histogram buckets are summed by their bound `le`: the instances of a fleet share their static config,
    so their buckets are the same.
    """
    requests: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: defaultdict[str, defaultdict[float, float]] = defaultdict(lambda: defaultdict(float))
    for snapshot in snapshots:
        for name, metrics in snapshot.services.items():
            for code, count in metrics.requests.items():
                requests[name][code] += count
            for bucket in metrics.buckets:
                buckets[name][bucket.le] += bucket.count
    services = {
        name: ServiceMetrics(
            requests=dict(requests[name]),
            buckets=tuple(Bucket(le=le, count=count) for le, count in sorted(buckets[name].items())),
        )
        for name in requests.keys() | buckets.keys()
    }
    return MetricsSnapshot(taken_at=max((s.taken_at for s in snapshots), default=0.0), services=services)

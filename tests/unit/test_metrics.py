"""Parsing and scraping Traefik's Prometheus text (series shaped as Traefik 3.7 writes them)."""

# Real Prometheus lines are longer than the line limit and are kept verbatim.
# ruff: noqa: E501

from __future__ import annotations

import math
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from trafficshift.errors import UnreachableError
from trafficshift.models import Bucket, MetricsSnapshot, ServiceMetrics
from trafficshift.traefik.scrape import parse_metrics, scrape, status_class

# Shaped after a real `traefik` 3.7 scrape with `addServicesLabels: true` (plus a second code/method for
# web-green, and entrypoint/bytes series that must be ignored).
TRAEFIK_TEXT = """\
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP traefik_entrypoint_requests_total How many HTTP requests processed on an entrypoint.
# TYPE traefik_entrypoint_requests_total counter
traefik_entrypoint_requests_total{code="200",entrypoint="web",method="GET",protocol="http"} 99
# HELP traefik_service_request_duration_seconds How long it took to process the request on a service.
# TYPE traefik_service_request_duration_seconds histogram
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-blue@file",le="0.1"} 5
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-blue@file",le="0.3"} 5
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-blue@file",le="1.2"} 5
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-blue@file",le="5"} 5
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-blue@file",le="+Inf"} 5
traefik_service_request_duration_seconds_sum{code="200",method="GET",protocol="http",service="web-blue@file"} 0.0066
traefik_service_request_duration_seconds_count{code="200",method="GET",protocol="http",service="web-blue@file"} 5
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-green@file",le="0.1"} 3
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-green@file",le="0.3"} 4
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-green@file",le="1.2"} 6
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-green@file",le="5"} 6
traefik_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="web-green@file",le="+Inf"} 6
traefik_service_request_duration_seconds_sum{code="200",method="GET",protocol="http",service="web-green@file"} 1.5
traefik_service_request_duration_seconds_count{code="200",method="GET",protocol="http",service="web-green@file"} 6
traefik_service_request_duration_seconds_bucket{code="502",method="POST",protocol="http",service="web-green@file",le="0.1"} 1
traefik_service_request_duration_seconds_bucket{code="502",method="POST",protocol="http",service="web-green@file",le="0.3"} 1
traefik_service_request_duration_seconds_bucket{code="502",method="POST",protocol="http",service="web-green@file",le="1.2"} 1
traefik_service_request_duration_seconds_bucket{code="502",method="POST",protocol="http",service="web-green@file",le="5"} 2
traefik_service_request_duration_seconds_bucket{code="502",method="POST",protocol="http",service="web-green@file",le="+Inf"} 2
traefik_service_request_duration_seconds_sum{code="502",method="POST",protocol="http",service="web-green@file"} 3.1
traefik_service_request_duration_seconds_count{code="502",method="POST",protocol="http",service="web-green@file"} 2
# HELP traefik_service_requests_bytes_total The total size of requests in bytes handled by a service.
# TYPE traefik_service_requests_bytes_total counter
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http",service="web-blue@file"} 0
# HELP traefik_service_requests_total How many HTTP requests processed on a service.
# TYPE traefik_service_requests_total counter
traefik_service_requests_total{code="200",method="GET",protocol="http",service="web-blue@file"} 5
traefik_service_requests_total{code="200",method="GET",protocol="http",service="web-green@file"} 6
traefik_service_requests_total{code="502",method="POST",protocol="http",service="web-green@file"} 2
traefik_service_requests_total{code="404",method="GET",protocol="http",service="web-green@file"} 1
"""


def test_parse_groups_by_service_and_status_class() -> None:
    snap = parse_metrics(text=TRAEFIK_TEXT, taken_at=12.5)
    assert snap.taken_at == 12.5
    assert set(snap.services) == {"web-blue@file", "web-green@file"}
    green = snap.service("web-green@file")
    assert green.requests == {"2xx": 6, "5xx": 2, "4xx": 1}
    assert green.total == 9
    assert green.buckets == (
        Bucket(0.1, 4),
        Bucket(0.3, 5),
        Bucket(1.2, 7),
        Bucket(5.0, 8),
        Bucket(math.inf, 8),
    )
    assert snap.service("web-blue@file").requests == {"2xx": 5}


def test_unknown_service_is_empty() -> None:
    snap = parse_metrics(text=TRAEFIK_TEXT, taken_at=0)
    assert snap.service("nope@file") == ServiceMetrics()
    assert snap.service("nope@file").total == 0


def test_empty_text() -> None:
    assert parse_metrics(text="", taken_at=0) == MetricsSnapshot(taken_at=0, services={})


@pytest.mark.parametrize(
    ("code", "expected"), [("200", "2xx"), ("503", "5xx"), ("101", "1xx"), ("0", "other"), ("", "other")]
)
def test_status_class(code: str, expected: str) -> None:
    assert status_class(code) == expected


def test_not_prometheus_text_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        parse_metrics(text="<html><body>dashboard</body></html>", taken_at=0)


async def _serve(text: str, status: int = 200) -> TestServer:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    return srv


async def test_scrape_reads_a_live_endpoint() -> None:
    srv = await _serve(TRAEFIK_TEXT)
    try:
        async with aiohttp.ClientSession() as session:
            snap = await scrape(url=str(srv.make_url("/metrics")), session=session)
    finally:
        await srv.close()
    assert snap.service("web-green@file").requests["5xx"] == 2


@pytest.mark.parametrize(("text", "status", "match"), [("x", 404, "HTTP 404"), ("<html>", 200, "Prometheus")])
async def test_scrape_wrong_endpoint_is_unreachable(text: str, status: int, match: str) -> None:
    srv = await _serve(text, status)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(UnreachableError, match=match):
                await scrape(url=str(srv.make_url("/metrics")), session=session)
    finally:
        await srv.close()


async def test_scrape_refused_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UnreachableError, match="cannot read Traefik metrics") as info:
            await scrape(url=f"http://127.0.0.1:{port}/metrics", session=session)
    assert info.value.exit_code == 3

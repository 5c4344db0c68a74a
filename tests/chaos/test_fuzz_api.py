"""A fuzz of the API's request bodies: arbitrary JSON (and bytes) into every POST route, never a 500.

The real aiohttp app in-process (aiohttp's test client, as tests/unit/test_api.py does) over the engine's
in-memory fakes (tests/support/fakes.py), so that a body the validation accepts really starts a rollout, an
abort or a rollback, and whatever the engine makes of it runs too. Every answer must be a 2xx or a clear 4xx
(JSON `{"error", "field"}`), and nothing may be logged with a traceback: not by a handler, not by a rollout
that a body started in the background.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import trafficshift.engine as engine_module
from tests.support.checks import deploy_blue
from tests.support.fakes import APP, FAST_TMP, World, make_world
from trafficshift.models import Outcome
from trafficshift.service import routes
from trafficshift.service.metrics import ServiceMetrics
from trafficshift.service.openapi import document
from trafficshift.service.requests import MAX_BODY
from trafficshift.service.runner import Runner
from trafficshift.service.scheduler import Scheduler
from trafficshift.store.aio import AsyncScheduleStore, AsyncStateStore

pytestmark = [pytest.mark.chaos]

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every POST route the API documents (a new one is fuzzed too), with a concrete app in its path.
POST_ROUTES = sorted(path for path, operations in document()["paths"].items() if "post" in operations)
CLIENT_ERRORS = frozenset({400, 404, 405, 409, 413})


class Traces(logging.Handler):
    """Error records of the service's loggers: a traceback (exc_info) is what the fuzz must never cause."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.exc_info]


@dataclass
class Api:
    """The app under fuzz, on one event loop for all examples (hypothesis calls the test many times)."""

    loop: asyncio.Runner
    client: TestClient[web.Request, web.Application]
    runner: Runner
    world: World
    traces: Traces

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async def call() -> tuple[int, Any]:
            async with self.client.post(path, data=body, headers={**AUTH, **(headers or {})}) as response:
                text = await response.text()
                try:
                    return response.status, json.loads(text)
                except ValueError:
                    return response.status, text

        return self.loop.run(call())

    def settle(self) -> None:
        """Abort what a body started and wait until nothing runs: each example starts from a still app."""

        async def settle() -> None:
            async with asyncio.timeout(15):
                while self.runner.running():
                    if await self.runner.store.active_rollout(APP) is not None:
                        async with self.client.post(f"/apps/{APP}/abort", headers=AUTH) as response:
                            assert response.status in (202, 409), await response.text()
                    await asyncio.sleep(0.01)

        self.loop.run(settle())


async def _open(world: World) -> tuple[TestClient[web.Request, web.Application], Runner]:
    await deploy_blue(world)  # web:1, then web:2: promote and rollback have something to work on
    assert (await world.engine().promote(app=APP, image="web:2")).outcome is Outcome.DONE
    config = world.config
    store, schedules = AsyncStateStore(config.state_dir), AsyncScheduleStore(config.state_dir)

    async def start(app: str, image: str) -> Any:
        raise AssertionError("the scheduler does not run here: no schedule fires")

    runner = Runner(adapters=world.adapters())
    context = routes.Context(
        store=store,
        schedules=schedules,
        runner=runner,
        scheduler=Scheduler(store=schedules, grace=60, start=start),
        metrics=ServiceMetrics(config=config, store=store),
        shutdown=asyncio.Event(),
    )
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(routes.build_app(context, token=TOKEN))
    )
    await client.start_server()
    return client, runner


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    traces = Traces()
    logger = logging.getLogger("trafficshift")
    with (
        tempfile.TemporaryDirectory(dir=FAST_TMP, prefix="trafficshift-fuzz-") as tmp,
        asyncio.Runner() as loop,
        mock.patch.object(engine_module, "POLL", 0.002),
    ):
        world = make_world(Path(tmp))
        logger.addHandler(traces)
        try:
            client, runner = loop.run(_open(world))
            try:
                yield Api(loop=loop, client=client, runner=runner, world=world, traces=traces)
            finally:
                loop.run(runner.stop(timeout=10))
                context = client.app[routes.CONTEXT]
                loop.run(client.close())
                loop.run(context.schedules.aclose())
                loop.run(context.store.aclose())
        finally:
            logger.removeHandler(traces)
            world.close()


# ---------------------------------------------------------------- what is sent

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and infinities too: Python's json writes them, and reads them back
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
images = st.sampled_from(["web:2", "web:1", "registry.local:5000/team/web:3", "WEB", "web:", "a" * 600]) | (
    st.from_regex(r"\A[a-z0-9][a-z0-9._/-]{0,20}(:[A-Za-z0-9_.-]{1,10})?\Z")
)
durations = st.sampled_from(["0s", "1ms", "5s", "24h", "25h", "1e400s", "-1s", "1m30s", "", "5"]) | st.text(
    max_size=8
)
steps = st.lists(st.integers(min_value=-5, max_value=105), max_size=6) | st.lists(json_scalars, max_size=4)
times = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.timezones()
).map(dt.datetime.isoformat) | st.sampled_from(["2999-01-01T00:00:00+00:00", "2999-01-01T00:00:00", "now"])
# Bodies near what each route takes: each of its fields, mostly present, with a value mostly right, else
# nearly right or of any type; now and then one field too many.
_RIGHT = {
    "image": st.sampled_from(["web:2", "web:3", "registry.local:5000/team/web:4"]),
    "steps": st.sampled_from([[100], [10, 100], [1, 2, 50, 100]]),
    "pause": st.sampled_from(["0s", "1ms"]),
    "now": st.booleans(),
    "app": st.just(APP),
    "at": st.sampled_from(["2999-01-01T00:00:00+00:00", "2999-01-01T00:00:00.5-05:00"]),
    "weight": st.sampled_from([10, 30, 100]),
    "hold_at": st.sampled_from([10, 50]),
}
_NEAR = {
    "image": images | json_scalars,
    "steps": steps | json_values,
    "pause": durations | json_scalars,
    "now": json_scalars,
    "app": st.sampled_from(["nope", "", "WEB"]) | json_scalars,
    "at": times | json_scalars,
    "weight": st.integers(-5, 120) | json_scalars,
    "hold_at": st.integers(-5, 120) | json_scalars,
}
_MISSING = object()


def _field(name: str) -> st.SearchStrategy[Any]:
    """Right 7 times in 10, else near or of any type (1 in 10: absent)."""
    return st.integers(0, 9).flatmap(
        lambda n: _RIGHT[name] if n < 7 else st.just(_MISSING) if n == 9 else _NEAR[name]
    )


def near_bodies(route: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = routes.BODY_FIELDS.get(route, ())
    own = st.fixed_dictionaries({name: _field(name) for name in fields}).map(
        lambda body: {name: value for name, value in body.items() if value is not _MISSING}
    )
    extra = st.dictionaries(st.sampled_from(sorted(_NEAR)) | st.text(max_size=6), json_values, max_size=1)
    return st.tuples(own, st.sampled_from([False] * 4 + [True]), extra).map(
        lambda t: {**t[0], **t[2]} if t[1] else t[0]
    )


any_bodies = st.dictionaries(st.text(max_size=10), json_values, max_size=5) | json_values


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


raw_bodies = st.one_of(
    st.sampled_from(POST_ROUTES).flatmap(near_bodies).map(_encode),
    any_bodies.map(_encode),
    st.binary(max_size=64),
    st.just(b"[" * 100_000 + b"]" * 100_000),  # deeper than json's recursion limit
    st.just(b" " * (MAX_BODY + 1)),
    st.sampled_from(
        [b"", b"{}", b"null", b'{"image": NaN}', b'{"steps": [1e999]}', b"\xff\xfe", b'{"a":1,"a":2}']
    ),
)
apps = st.sampled_from([APP] * 6 + ["nope", "WEB", "web%2Fx", "%00", "a" * 300]) | st.text(
    min_size=1, max_size=12
)


def _path(route: str, app: str) -> str:
    return route.replace("{app}", urllib.parse.quote(app, safe="%"))


# ---------------------------------------------------------------- the property


def _check(api: Api, route: str, app: str, body: bytes, content_type: str) -> None:
    status, doc = api.post(_path(route, app), body, headers={"Content-Type": content_type})
    event(f"{route}: {status}")
    assert status < 500, (status, doc)
    assert 200 <= status < 300 or status in CLIENT_ERRORS, (status, doc)
    if status >= 400:
        assert isinstance(doc, dict), doc
        assert set(doc) == {"error", "field"}, doc
        assert isinstance(doc["error"], str), doc
        assert doc["error"], doc
        assert "Traceback" not in doc["error"], doc
        if status == 400 and doc["field"] is not None:
            # The field named is one the route takes, or the unknown one the body sent.
            sent = json.loads(body) if body.strip().startswith(b"{") else {}
            assert doc["field"] in routes.BODY_FIELDS.get(route, ()) or doc["field"] in sent, doc
    api.settle()
    assert not api.traces.tracebacks(), api.traces.tracebacks()
    assert api.world.records.active_rollout(APP) is None


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    route=st.sampled_from(POST_ROUTES),
    app=apps,
    body=raw_bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
)
def test_arbitrary_bodies_into_every_post_route(
    api: Api, route: str, app: str, body: bytes, content_type: str
) -> None:
    _check(api, route, app, body, content_type)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), route=st.sampled_from(POST_ROUTES), busy=st.booleans())
def test_bodies_near_the_schema_of_the_known_app(
    api: Api, data: st.DataObject, route: str, busy: bool
) -> None:
    """Mostly right bodies for the app that exists: past validation, into the runner and the engine; while
    a rollout of it holds a step (`busy`), or not."""
    body = data.draw(near_bodies(route), label="body")
    if busy:
        status, doc = api.post(f"/apps/{APP}/promote", _encode({"image": "web:8", "pause": "1h"}))
        assert status == 202, doc
    _check(api, route, APP, _encode(body), "application/json")


def test_the_fuzz_reaches_every_outcome(api: Api) -> None:
    """The routes do accept work here (else the fuzz above would only ever test refusals)."""
    status, doc = api.post(f"/apps/{APP}/promote", _encode({"image": "web:9", "steps": [50, 100]}))
    assert status == 202, doc
    api.settle()
    assert api.world.records.history(APP)[0].to_image == "web:9"
    assert not math.isnan(api.world.records.history(APP)[0].pause)

"""The HTTP API in-process over a real state store (routes that need no Docker), and its OpenAPI document."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from trafficshift import report
from trafficshift.config import parse_config_text
from trafficshift.containers import Containers
from trafficshift.engine import Engine
from trafficshift.errors import (
    ContainerError,
    ImageError,
    LockedError,
    ShuttingDown,
    TraefikApiError,
    UnreachableError,
)
from trafficshift.models import AppState, Colour, Event, Figures, Live, Outcome, Phase, Rollout
from trafficshift.ports import Adapters
from trafficshift.service import metrics as metrics_module
from trafficshift.service import routes
from trafficshift.service.metrics import ServiceMetrics
from trafficshift.service.openapi import document
from trafficshift.service.runner import Runner
from trafficshift.service.scheduler import Scheduler
from trafficshift.store.aio import AsyncScheduleStore, AsyncStateStore
from trafficshift.store.locks import AppLock, FileLocks
from trafficshift.store.rollouts import StateStore
from trafficshift.traefik.publish import TraefikPublisher
from trafficshift.webhooks import Notifier

TOKEN = "t0ken-for-tests"
# A blocking connection to the service's state folder, for a test to record rollouts with.
RECORDS = web.AppKey("records", StateStore)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    config = parse_config_text(
        "traefik:\n  dynamic_dir: ./dyn\napps:\n  web:\n    image: web:1\n    port: 80\n"
        "    rule: Host(`web`)\n    publish: 127.0.0.1\n",
        source="ts.yml",
        base_dir=tmp_path,
    )
    store, schedules = AsyncStateStore(config.state_dir), AsyncScheduleStore(config.state_dir)
    records = StateStore(config.state_dir)

    async def start(app: str, image: str) -> Rollout:
        raise AssertionError("no schedule is due in these tests")

    async with aiohttp.ClientSession() as session:
        adapters = Adapters(
            config=config,
            store=store,
            containers=Containers(cast(Any, None)),  # no route under test reaches Docker
            routing=TraefikPublisher(config=config, session=session),
            locks=FileLocks(config.state_dir),
            notifier=Notifier(config=config, session=session),
            metrics=None,
            http=session,
        )
        runner = Runner(adapters=adapters)
        context = routes.Context(
            store=store,
            schedules=schedules,
            runner=runner,
            scheduler=Scheduler(store=schedules, grace=60, start=start),
            metrics=ServiceMetrics(config=config, store=store),
            shutdown=asyncio.Event(),
        )
        app = routes.build_app(context, token=TOKEN)
        app[RECORDS] = records
        async with TestClient(TestServer(app)) as test_client:
            yield test_client
    records.close()
    await schedules.aclose()
    await store.aclose()


def _store(client: TestClient[web.Request, web.Application]) -> StateStore:
    """A blocking connection to the service's store, for a test to record rollouts with."""
    return client.app[RECORDS]


def _finished_rollout(store: StateStore) -> Rollout:
    rollout = store.create_rollout(
        app="web",
        from_state=AppState(app="web"),
        to_colour=Colour.BLUE,
        to_image="web:1",
        steps=(100,),
        pause=0,
    )
    rollout = store.advance(rollout, message="ready", phase=Phase.READY)
    rollout = store.advance(
        rollout, message="step 1/1", phase=Phase.SHIFTING, step=0, weights={Colour.BLUE: 100}
    )
    rollout = store.advance(rollout, message="step 1/1 confirmed")
    return store.finish(
        rollout,
        outcome=Outcome.DONE,
        reason=None,
        live=AppState(app="web", colour=Colour.BLUE, image="web:1"),
    )


async def test_every_route_but_healthz_needs_the_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert (await client.get("/healthz")).status == 200
    for path, operations in document()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            if path == "/healthz":
                continue
            for headers in (
                {},
                {"Authorization": "Bearer nope"},
                {"Authorization": TOKEN},
                {"Authorization": ""},
            ):
                response = await client.request(method.upper(), concrete, headers=headers)
                assert response.status == 401, (method, path, headers)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert await response.json() == {"error": "missing or wrong bearer token", "field": None}
    assert (await client.get("/no/such/route")).status == 401
    assert (await client.post("/healthz")).status == 401


async def test_rollouts_history_and_metrics_from_the_store(
    client: TestClient[web.Request, web.Application],
) -> None:
    rollout = _finished_rollout(_store(client))
    got = await client.get(f"/rollouts/{rollout.id}", headers=AUTH)
    assert got.status == 200
    doc = await got.json()
    assert (doc["id"], doc["app"], doc["image"], doc["state"], doc["outcome"]) == (
        rollout.id, "web", "web:1", "done", "done",
    )  # fmt: skip
    assert [r["id"] for r in await (await client.get("/apps/web/history", headers=AUTH)).json()] == [
        rollout.id
    ]
    assert (await client.get("/rollouts/nope", headers=AUTH)).status == 404
    assert (await client.get("/apps/nope/history", headers=AUTH)).status == 404

    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    assert 'trafficshift_rollouts_total{app="web",outcome="done"} 1.0' in metrics
    assert 'trafficshift_weight{app="web",colour="blue"} 100.0' in metrics
    assert 'trafficshift_weight{app="web",colour="green"} 0.0' in metrics
    assert 'trafficshift_step_duration_seconds_count{app="web"} 1.0' in metrics
    assert 'trafficshift_promote_duration_seconds_count{app="web",outcome="done"} 1.0' in metrics
    assert 'trafficshift_rollout_in_progress{app="web"} 0.0' in metrics


async def test_conflicts_and_bodies(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/apps/web/abort", headers=AUTH)
    assert response.status == 409
    response = await client.post("/apps/web/rollback", headers=AUTH, data=b'{"now": true}')
    assert response.status == 409
    assert "earlier image" in (await response.json())["error"]
    response = await client.post("/apps/web/promote", headers=AUTH, data=b'{"image": "web:2", "steps": [5]}')
    assert (response.status, (await response.json())["field"]) == (400, "steps")
    response = await client.post("/apps/web/promote", headers=AUTH, data=b"x" * 100_000)
    assert response.status == 413
    response = await client.get("/events", headers={**AUTH, "Last-Event-ID": "abc"})
    assert response.status == 400


@pytest.mark.parametrize(
    ("headers", "query", "field"),
    [
        ({"Last-Event-ID": "9" * 30}, "", "Last-Event-ID"),  # beyond SQLite's integers: failed mid-stream
        ({"Last-Event-ID": "9223372036854775808"}, "", "Last-Event-ID"),  # 2**63
        ({"Last-Event-ID": "9" * 5000}, "", "Last-Event-ID"),
        ({"Last-Event-ID": "-1"}, "", "Last-Event-ID"),
        ({"Last-Event-ID": "\u0661\u0662"}, "", "Last-Event-ID"),  # digits, but not ASCII ones
        ({}, "?after=99999999999999999999", "after"),
        ({}, "?after=", "after"),
    ],
)
async def test_a_bad_event_id_is_refused_before_the_stream_starts(
    client: TestClient[web.Request, web.Application], headers: dict[str, str], query: str, field: str
) -> None:
    response = await client.get(f"/events{query}", headers={**AUTH, **headers})
    assert response.status == 400
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["field"] == field
    assert len(body["error"]) < 200  # the value is shown shortened


async def test_the_largest_event_id_streams(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/events", headers={**AUTH, "Last-Event-ID": str(2**63 - 1)})
    assert response.status == 200
    # It opens with the id it resumes after: what a client that wants nothing older notes.
    opening = b": stream of rollout transitions\nid: 9223372036854775807\n\n"
    assert await response.content.readuntil(b"\n\n") == opening
    response.close()


async def test_schedules_add_list_cancel(client: TestClient[web.Request, web.Application]) -> None:
    body = {"app": "web", "image": "web:2", "at": "2099-01-01T00:00:00+01:00"}
    created = await client.post("/schedules", headers=AUTH, json=body)
    assert created.status == 201
    schedule_id = (await created.json())["id"]
    listed = await (await client.get("/schedules", headers=AUTH)).json()
    assert [(s["id"], s["state"], s["at"]) for s in listed] == [(schedule_id, "pending", body["at"])]
    cancelled = await client.delete(f"/schedules/{schedule_id}", headers=AUTH)
    assert (cancelled.status, (await cancelled.json())["state"]) == (200, "cancelled")
    assert (await client.delete(f"/schedules/{schedule_id}", headers=AUTH)).status == 409
    assert (await client.delete("/schedules/nope", headers=AUTH)).status == 404


def _rollout_ids(text: str) -> list[int]:
    """The ids of a stream's `rollout` events (not the opening id, which has no event)."""
    return [int(i) for i in re.findall(r"^id: (\d+)\nevent: rollout$", text, re.M)]


async def test_events_stream_from_the_store_and_resume_after_last_event_id(
    client: TestClient[web.Request, web.Application],
) -> None:
    store = _store(client)
    rollout = _finished_rollout(store)
    seqs = [e.seq for e in store.events(rollout_id=rollout.id)]
    response = await client.get("/events", headers={**AUTH, "Last-Event-ID": str(seqs[1])})
    assert response.headers["Content-Type"] == "text/event-stream"
    text = ""
    async with asyncio.timeout(5):
        while text.count("\n\n") < 1 + len(seqs) - 2:  # the opening comment, then the events after seqs[1]
            text += (await response.content.readany()).decode()
    assert text.startswith(f": stream of rollout transitions\nid: {seqs[1]}\n\n")  # where it resumes
    ids = _rollout_ids(text)
    assert ids == seqs[2:]
    assert text.count("event: rollout\n") == len(ids)
    response.close()


def test_the_openapi_document_lists_exactly_the_routes_of_the_app() -> None:
    app = routes.build_app(cast(Any, None), token="x")
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None  # aiohttp adds HEAD to every GET
    }
    documented = {(method, path) for path, ops in document()["paths"].items() for method in ops}
    assert routed == documented
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            if path != "/healthz":
                assert "401" in op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413"} <= set(op["responses"]), (method, path)


async def test_the_bearer_scheme_is_case_insensitive(
    client: TestClient[web.Request, web.Application],
) -> None:
    for header in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN} "):
        assert (await client.get("/schedules", headers={"Authorization": header})).status == 200, header
    assert (await client.get("/schedules", headers={"Authorization": f"Basic {TOKEN}"})).status == 401


def _raise(exc: BaseException) -> Any:
    async def start(**kwargs: Any) -> Rollout:
        raise exc

    return start


@pytest.mark.parametrize(
    ("route", "exc", "status", "field"),
    [
        ("promote", ImageError("image web:9 is not on this host"), 400, "image"),
        ("rollback", ImageError("image web:0 is not on this host"), 502, None),  # not the body's image
        ("promote", ContainerError("container web-green-1: port is already allocated"), 502, None),
        ("rollback", ContainerError("container web-blue-1: no such container"), 502, None),
        ("promote", TraefikApiError("http://127.0.0.1:8080/api/version: HTTP 500"), 503, None),
        ("promote", UnreachableError("cannot reach the Docker engine"), 503, None),
        ("promote", ShuttingDown(), 503, None),
        ("promote", LockedError("web"), 409, None),
    ],
)
async def test_errors_map_to_their_status(
    client: TestClient[web.Request, web.Application],
    monkeypatch: pytest.MonkeyPatch,
    route: str,
    exc: Exception,
    status: int,
    field: str | None,
) -> None:
    monkeypatch.setattr(client.app[routes.CONTEXT].runner, route, _raise(exc))
    body = b'{"image": "web:9"}' if route == "promote" else b""
    response = await client.post(f"/apps/web/{route}", headers=AUTH, data=body)
    assert response.status == status
    assert response.content_type == "application/json"
    assert await response.json() == {"error": str(exc), "field": field}


async def test_an_unexpected_error_is_a_json_500_logged_with_its_traceback(
    client: TestClient[web.Request, web.Application],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(client.app[routes.CONTEXT].runner, "promote", _raise(KeyError("bug")))
    with caplog.at_level(logging.ERROR, logger="trafficshift.api"):
        response = await client.post("/apps/web/promote", headers=AUTH, data=b'{"image": "web:9"}')
    assert response.status == 500
    assert await response.json() == {"error": "internal error: KeyError", "field": None}
    assert any(r.exc_info is not None and "KeyError" in r.exc_text for r in caplog.records if r.exc_text)


async def test_deep_nesting_and_abort_fields_are_400(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/apps/web/promote", headers=AUTH, data=b"[" * 5000)
    assert (response.status, response.content_type) == (400, "application/json")
    response = await client.post("/apps/web/abort", headers=AUTH, data=b'{"force": true}')
    assert (response.status, (await response.json())["field"]) == (400, "force")


async def test_a_closed_runner_refuses_new_rollouts_and_aborts(
    client: TestClient[web.Request, web.Application],
) -> None:
    client.app[routes.CONTEXT].runner.close()
    for route, body in (("promote", b'{"image": "web:2"}'), ("abort", b""), ("rollback", b"")):
        response = await client.post(f"/apps/web/{route}", headers=AUTH, data=body)
        assert response.status == 503, route
        assert "shutting down" in (await response.json())["error"]


async def test_events_are_read_in_batches(
    client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(client)
    for _ in range(3):
        _finished_rollout(store)
    limits: list[int] = []
    served = client.app[routes.CONTEXT].store
    events = served.events

    async def spy(**kwargs: Any) -> list[Event]:
        limits.append(kwargs.get("limit", -1))
        return await events(**kwargs)

    monkeypatch.setattr(served, "events", spy)
    monkeypatch.setattr(routes, "SSE_BATCH", 4)
    response = await client.get("/events?after=0", headers=AUTH)
    text = ""
    async with asyncio.timeout(5):
        while len(_rollout_ids(text)) < store.last_event_seq():
            text += (await response.content.readany()).decode()
    response.close()
    assert _rollout_ids(text) == list(range(1, store.last_event_seq() + 1))
    assert limits
    assert set(limits) == {4}


async def test_a_schedule_claimed_while_its_cancel_waits_for_the_store_is_not_cancelled(
    client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"app": "web", "image": "web:2", "at": "2099-01-01T00:00:00+01:00"}
    schedule_id = (await (await client.post("/schedules", headers=AUTH, json=body)).json())["id"]
    schedules = client.app[routes.CONTEXT].schedules
    settle = schedules.settle

    async def scheduler_first(schedule_id: str, **kwargs: Any) -> bool:
        assert await schedules.claim(schedule_id)  # the scheduler's tick got there first
        return await settle(schedule_id, **kwargs)

    monkeypatch.setattr(schedules, "settle", scheduler_first)
    response = await client.delete(f"/schedules/{schedule_id}", headers=AUTH)
    assert response.status == 409
    assert "starting its rollout right now" in (await response.json())["error"]
    assert [s["state"] for s in await (await client.get("/schedules", headers=AUTH)).json()] == ["firing"]


async def test_concurrent_scrapes_fold_each_event_once(
    client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "FOLD_BATCH", 2)  # several reads of the log per scrape
    _finished_rollout(_store(client))
    texts = await asyncio.gather(*(client.get("/metrics", headers=AUTH) for _ in range(5)))
    for response in texts:
        text = await response.text()
        assert 'trafficshift_step_duration_seconds_count{app="web"} 1.0' in text
        assert 'trafficshift_promote_duration_seconds_count{app="web",outcome="done"} 1.0' in text


def _interrupted_rollout(store: StateStore) -> Rollout:
    """A promote web:1 -> web:2 that stopped at its first step with nobody driving it (a killed CLI)."""
    _finished_rollout(store)
    rollout = store.create_rollout(
        app="web",
        from_state=store.app_state("web"),
        to_colour=Colour.GREEN,
        to_image="web:2",
        steps=(10, 100),
        pause=0,
    )
    weights = {Colour.BLUE: 90, Colour.GREEN: 10}
    return store.advance(rollout, message="step 1/2", phase=Phase.SHIFTING, step=0, weights=weights)


async def test_a_promote_without_an_image_resumes_the_rollout_nobody_drives(
    client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What trafficshift advises after an interruption (`promote` carries on) works through the API too."""
    for body in (b"", b"{}", b'{"image": null}'):  # nothing to resume: the image is required
        response = await client.post("/apps/web/promote", headers=AUTH, data=body)
        assert (response.status, (await response.json())["field"]) == (400, "image"), body
    interrupted = _interrupted_rollout(_store(client))
    resumed: list[tuple[str, Phase]] = []

    async def drive(engine: Engine, spec: Any, rollout: Rollout) -> Rollout:
        resumed.append((rollout.id, rollout.phase))
        return rollout

    monkeypatch.setattr(Engine, "_drive", drive)
    response = await client.post("/apps/web/promote", headers=AUTH, data=b"{}")
    assert (response.status, await response.json()) == (202, {"id": interrupted.id})
    response = await client.post("/apps/web/promote", headers=AUTH, json={"image": "web:2"})  # the same
    assert (response.status, await response.json()) == (202, {"id": interrupted.id})
    async with asyncio.timeout(5):
        while client.app[routes.CONTEXT].runner.running():  # noqa: ASYNC110 (the runner offers no event)
            await asyncio.sleep(0.01)
    assert resumed == [(interrupted.id, Phase.SHIFTING)] * 2
    # Another image while it is interrupted: 400 (resume it or abort it), not a conflict.
    response = await client.post("/apps/web/promote", headers=AUTH, json={"image": "web:3"})
    assert response.status == 400
    assert "trafficshift promote web" in (await response.json())["error"]


async def test_a_rollout_that_runs_is_still_a_conflict(
    client: TestClient[web.Request, web.Application], tmp_path: Path
) -> None:
    _interrupted_rollout(_store(client))
    driver = AppLock(client.app[routes.CONTEXT].runner.config.state_dir, "web")
    driver.acquire()  # another process drives it
    try:
        for body in (b"{}", b'{"image": "web:2"}'):
            response = await client.post("/apps/web/promote", headers=AUTH, data=body)
            assert response.status == 409, body
        assert (await client.post("/apps/web/rollback", headers=AUTH)).status == 409
    finally:
        driver.release()


async def test_events_of_one_rollout_with_its_progress_frames(
    client: TestClient[web.Request, web.Application],
) -> None:
    """`?rollout=ID` streams that rollout's transitions only; `?progress=true` adds where it stands."""
    store = _store(client)
    other, mine = _finished_rollout(store), _finished_rollout(store)
    board = client.app[routes.CONTEXT].runner.progress
    live = Live(
        rollout_id=mine.id,
        app="web",
        phase="shifting",
        step=0,
        steps=2,
        weights={"blue": 90, "green": 10},
        hold=(3.0, 10.0),
        replicas={"web-green-1": "ready"},
        figures={"green": Figures(requests=12, error_rate=0.0, p95=0.01)},
    )
    board.publish(live)
    board.publish(dataclasses.replace(live, rollout_id=other.id))
    response = await client.get(f"/events?after=0&rollout={mine.id}&progress=true", headers=AUTH)
    text = ""
    mine_seqs = [e.seq for e in store.events(rollout_id=mine.id)]
    async with asyncio.timeout(5):
        while len(_rollout_ids(text)) < len(mine_seqs) or "event: progress" not in text:
            text += (await response.content.readany()).decode()
    response.close()
    assert _rollout_ids(text) == mine_seqs
    progress = re.findall(r"^event: progress\ndata: (.*)$", text, re.M)
    assert [report.live_of(json.loads(doc)) for doc in progress] == [live]

    bad = await client.get("/events?progress=maybe", headers=AUTH)
    assert bad.status == 400
    assert (await bad.json())["field"] == "progress"


# ---------------------------------------------------------------------- holds (pause, resume, weight)


async def test_hold_routes_refuse_bad_input_naming_the_field(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path, body, field in [
        ("weight", b"", None),
        ("weight", b"{}", "weight"),
        ("weight", b'{"weight": 0}', "weight"),
        ("weight", b'{"weight": 100.0}', "weight"),
        ("weight", b'{"weight": true}', "weight"),
        ("weight", b'{"weight": 30, "now": 1}', "now"),
        ("pause", b'{"reason": "x"}', "reason"),
        ("resume", b"[]", None),
        ("promote", b'{"image": "web:2", "hold_at": 0}', "hold_at"),
    ]:
        response = await client.post(f"/apps/web/{path}", headers=AUTH, data=body)
        assert (response.status, (await response.json())["field"]) == (400, field), (path, body)
    # Nothing in progress: a conflict (409), nothing recorded.
    for path in ("pause", "resume"):
        assert (await client.post(f"/apps/web/{path}", headers=AUTH)).status == 409
    assert (await client.post("/apps/web/weight", headers=AUTH, json={"weight": 30})).status == 409
    assert (await client.post("/apps/nope/pause", headers=AUTH)).status == 404
    assert _store(client).last_event_seq() == 0


async def test_pause_records_the_hold_and_resume_drives_a_rollout_nobody_drives(
    client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted = _interrupted_rollout(_store(client))
    response = await client.post("/apps/web/pause", headers=AUTH, data=b"{}")
    doc = await response.json()
    assert (response.status, doc["id"], doc["held"]) == (200, interrupted.id, "paused by request")
    held = _store(client).rollout(interrupted.id)
    assert held is not None
    assert held.held == "paused by request"  # recorded before the answer
    driven: list[str | None] = []

    async def drive(engine: Engine, spec: Any, rollout: Rollout) -> Rollout:
        driven.append(rollout.held)
        return rollout

    async def settled() -> None:
        async with asyncio.timeout(5):
            while client.app[routes.CONTEXT].runner.running():  # noqa: ASYNC110 (the runner offers no event)
                await asyncio.sleep(0.01)

    monkeypatch.setattr(Engine, "_drive", drive)
    # A weight for a rollout nobody drives: the service takes it over (to apply it), still held.
    response = await client.post("/apps/web/weight", headers=AUTH, json={"weight": 100})
    assert (response.status, await response.json()) == (202, {"id": interrupted.id})
    await settled()
    response = await client.post("/apps/web/resume", headers=AUTH)
    assert (response.status, await response.json()) == (202, {"id": interrupted.id})
    await settled()
    assert driven == ["paused by request", None]  # released, then taken over again
    response = await client.post("/apps/web/resume", headers=AUTH)
    assert response.status == 409
    assert "not held" in (await response.json())["error"]

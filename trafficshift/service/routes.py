"""The HTTP API: routes map JSON to the runner, store and scheduler; auth and errors are middlewares.

Every route but `GET /healthz` needs `Authorization: Bearer <token>` (compared in constant time); anything
else, unknown paths included, gets 401 before it is routed further.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from trafficshift import report
from trafficshift.containers import ContainerError
from trafficshift.errors import (
    ImageError,
    LockedError,
    NothingToDo,
    TrafficShiftError,
    UnreachableError,
    UsageError,
)
from trafficshift.service.metrics import CONTENT_TYPE, ServiceMetrics
from trafficshift.service.openapi import document
from trafficshift.service.requests import (
    MAX_BODY,
    ApiError,
    abort_request,
    event_cursor,
    parse_body,
    promote_request,
    rollback_request,
    schedule_request,
)
from trafficshift.service.runner import Runner, ShuttingDown
from trafficshift.service.scheduler import Scheduler
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import ScheduleState, ScheduleStore, schedule_dict
from trafficshift.traefik.api import TraefikApiError

log = logging.getLogger("trafficshift.api")

SSE_POLL = 0.2
SSE_HEARTBEAT = 15.0
SSE_BATCH = 500  # events read per query: a stream from `after=0` is sent in batches, not read whole
# Only these routes take an image from the request: there, an image Docker refuses is the body's fault.
IMAGE_ROUTES = frozenset({"/apps/{app}/promote", "/schedules"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Context:
    """What the handlers reach: the service's parts (shared, one of each per process)."""

    store: StateStore
    schedules: ScheduleStore
    runner: Runner
    scheduler: Scheduler
    metrics: ServiceMetrics
    shutdown: asyncio.Event


CONTEXT = web.AppKey("context", Context)
routes = web.RouteTableDef()


def build_app(context: Context, *, token: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_auth(token), _errors])
    app[CONTEXT] = context
    app.router.add_routes(routes)
    return app


# ---------------------------------------------------------------------- middlewares


def _auth(token: str) -> Any:
    expected = token.encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), expected
        )
        if not ok:
            return web.json_response(
                {"error": "missing or wrong bearer token", "field": None},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="trafficshift"'},
            )
        return await handler(request)

    return auth


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a JSON `{"error", "field"}` answer; never aiohttp's plain-text 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except (LockedError, NothingToDo) as exc:
        error = ApiError(409, str(exc))
    except ShuttingDown as exc:
        error = ApiError(503, str(exc))
    except ImageError as exc:
        # An image Docker cannot find or pull (or parse) is the request's fault where it names one.
        if _route(request) in IMAGE_ROUTES:
            error = ApiError(400, str(exc), field="image")
        else:
            log.error("%s %s: %s", request.method, request.path, exc)
            error = ApiError(502, str(exc))
    except ContainerError as exc:
        log.error("%s %s: Docker failed: %s", request.method, request.path, exc)
        error = ApiError(502, str(exc))
    except UsageError as exc:
        error = ApiError(400, str(exc))
    except (UnreachableError, TraefikApiError) as exc:
        # Docker or Traefik could not be reached (or answered nonsense) before anything changed.
        error = ApiError(503, str(exc))
    except web.HTTPRequestEntityTooLarge:
        error = ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(exc.status, exc.reason)
    except TrafficShiftError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        error = ApiError(500, str(exc))
    except (asyncio.CancelledError, ConnectionError):
        raise  # the client went away, or the service is stopping
    except Exception as exc:
        log.exception("%s %s: unexpected error", request.method, request.path)
        error = ApiError(500, f"internal error: {type(exc).__name__}")
    return web.json_response(error.body(), status=error.status)


def _route(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    return info.canonical if info is not None else None


# ---------------------------------------------------------------------- helpers


def _ctx(request: web.Request) -> Context:
    return request.app[CONTEXT]


def _app_name(request: web.Request) -> str:
    name = request.match_info["app"]
    if name not in _ctx(request).runner.config.apps:
        raise ApiError(404, f"unknown app {name!r}")
    return name


async def _body(request: web.Request, *, required: bool) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    return parse_body(await request.read(), required=required)


def _accepted(rollout_id: str) -> web.Response:
    return web.json_response({"id": rollout_id}, status=202)


# ---------------------------------------------------------------------- routes


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


@routes.get("/apps")
async def list_apps(request: web.Request) -> web.Response:
    runner = _ctx(request).runner
    engine = runner.engine()
    return web.json_response([await engine.status(app) for app in sorted(runner.config.apps)])


@routes.get("/apps/{app}")
async def get_app(request: web.Request) -> web.Response:
    app = _app_name(request)
    return web.json_response(await _ctx(request).runner.engine().status(app))


@routes.post("/apps/{app}/promote")
async def promote(request: web.Request) -> web.Response:
    app = _app_name(request)
    wanted = promote_request(await _body(request, required=False))
    runner = _ctx(request).runner
    if wanted.image is None and runner.store.active_rollout(app) is None:
        raise ApiError(
            400, "required (only the resume of an interrupted rollout of the app takes none)", field="image"
        )
    rollout = await runner.promote(app=app, image=wanted.image, steps=wanted.steps, pause=wanted.pause)
    return _accepted(rollout.id)


@routes.post("/apps/{app}/abort")
async def abort(request: web.Request) -> web.Response:
    app = _app_name(request)
    abort_request(await _body(request, required=False))
    return _accepted(_ctx(request).runner.abort(app=app).id)


@routes.post("/apps/{app}/rollback")
async def rollback(request: web.Request) -> web.Response:
    app = _app_name(request)
    now = rollback_request(await _body(request, required=False))
    return _accepted((await _ctx(request).runner.rollback(app=app, now=now)).id)


@routes.get("/apps/{app}/history")
async def history(request: web.Request) -> web.Response:
    app = _app_name(request)
    return web.json_response([report.rollout_dict(r) for r in _ctx(request).store.history(app)])


@routes.get("/rollouts/{id}")
async def get_rollout(request: web.Request) -> web.Response:
    rollout = _ctx(request).store.rollout(request.match_info["id"])
    if rollout is None:
        raise ApiError(404, f"no rollout {request.match_info['id']!r}")
    return web.json_response(report.rollout_dict(rollout))


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one `rollout` event per transition, `id` = its sequence number."""
    ctx = _ctx(request)
    # Validated before the response starts: once it has, an error can only cut the stream.
    if start := request.headers.get("Last-Event-ID"):  # an empty one is no id (as EventSource sends none)
        cursor = event_cursor(start, field="Last-Event-ID")
    elif (start := request.query.get("after")) is not None:
        cursor = event_cursor(start, field="after")
    else:
        cursor = ctx.store.last_event_seq()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    beat = loop.time() + SSE_HEARTBEAT
    try:
        await response.write(b": stream of rollout transitions\n\n")
        while not ctx.shutdown.is_set():
            for event in ctx.store.events(after=cursor, limit=SSE_BATCH):
                data = json.dumps(report.event_dict(event))
                await response.write(f"id: {event.seq}\nevent: rollout\ndata: {data}\n\n".encode())
                cursor = event.seq
            if loop.time() >= beat:
                await response.write(b": keep-alive\n\n")
                beat = loop.time() + SSE_HEARTBEAT
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SSE_POLL):
                    await ctx.shutdown.wait()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    return response


@routes.get("/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    return web.json_response([schedule_dict(s) for s in _ctx(request).schedules.all()])


@routes.post("/schedules")
async def add_schedule(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    wanted = schedule_request(
        await _body(request, required=True), apps=ctx.runner.config.apps, now=dt.datetime.now(dt.UTC)
    )
    schedule = ctx.schedules.add(app=wanted.app, image=wanted.image, at=wanted.at)
    ctx.scheduler.wake()
    log.info("schedule %s: %s -> %s at %s", schedule.id, schedule.app, schedule.image, schedule.at_text)
    return web.json_response({"id": schedule.id, **schedule_dict(schedule)}, status=201)


@routes.delete("/schedules/{id}")
async def cancel_schedule(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    schedule_id = request.match_info["id"]
    schedule = ctx.schedules.get(schedule_id)
    if schedule is None:
        raise ApiError(404, f"no schedule {schedule_id!r}")
    if ctx.scheduler.firing(schedule_id):
        raise ApiError(409, f"schedule {schedule_id} is starting its rollout right now")
    if not ctx.schedules.settle(
        schedule_id, state=ScheduleState.CANCELLED, reason="cancelled through the API"
    ):
        raise ApiError(409, f"schedule {schedule_id} is {schedule.state}, not pending")
    ctx.scheduler.wake()
    cancelled = ctx.schedules.get(schedule_id)
    assert cancelled is not None
    return web.json_response(schedule_dict(cancelled))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = _ctx(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

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

from trafficshift import holding, report
from trafficshift.config import require_app
from trafficshift.errors import TrafficShiftError, Unchanged
from trafficshift.service.metrics import CONTENT_TYPE, ServiceMetrics
from trafficshift.service.openapi import document
from trafficshift.service.requests import (
    MAX_BODY,
    PROMOTE_FIELDS,
    ROLLBACK_FIELDS,
    SCHEDULE_FIELDS,
    WEIGHT_FIELDS,
    ApiError,
    abort_request,
    empty_request,
    event_cursor,
    parse_body,
    promote_request,
    rollback_request,
    schedule_request,
    stream_flag,
    weight_request,
)
from trafficshift.service.runner import Runner
from trafficshift.service.scheduler import Scheduler
from trafficshift.store.aio import AsyncScheduleStore, AsyncStateStore
from trafficshift.store.schedules import ScheduleState, schedule_dict

log = logging.getLogger("trafficshift.api")

SSE_POLL = 0.2
SSE_HEARTBEAT = 15.0
SSE_BATCH = 500  # events read per query: a stream from `after=0` is sent in batches, not read whole
# The fields each route takes from its body: an error about one of them (an image Docker refuses) is the
# request's fault there (400 naming the field), and the service's or Docker's elsewhere (its own status).
BODY_FIELDS = {
    "/apps/{app}/promote": PROMOTE_FIELDS,
    "/apps/{app}/rollback": ROLLBACK_FIELDS,
    "/schedules": SCHEDULE_FIELDS,
    "/apps/{app}/weight": WEIGHT_FIELDS,
}
# Failures of the service or of Docker are logged; a 4xx is the caller's, a 503 only says "not now".
LOGGED_STATUSES = frozenset({500, 502})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Context:
    """What the handlers reach: the service's parts (shared, one of each per process)."""

    store: AsyncStateStore
    schedules: AsyncScheduleStore
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
    except TrafficShiftError as exc:
        error = _answer(request, exc)
    except web.HTTPRequestEntityTooLarge:
        error = ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(exc.status, exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise  # the client went away, or the service is stopping
    except Exception as exc:
        log.exception("%s %s: unexpected error", request.method, request.path)
        error = ApiError(500, f"internal error: {type(exc).__name__}")
    return web.json_response(error.body(), status=error.status)


def _answer(request: web.Request, exc: TrafficShiftError) -> ApiError:
    """A project error as an answer: the status its class carries (`errors.py`), or 400 for a body field."""
    if exc.field is not None and exc.field in BODY_FIELDS.get(_route(request) or "", ()):
        return ApiError(400, str(exc), field=exc.field)
    if exc.http_status in LOGGED_STATUSES:
        log.error("%s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
    return ApiError(exc.http_status, str(exc))


def _route(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    return info.canonical if info is not None else None


# ---------------------------------------------------------------------- helpers


def _ctx(request: web.Request) -> Context:
    return request.app[CONTEXT]


def _app_name(request: web.Request) -> str:
    return require_app(_ctx(request).runner.config, request.match_info["app"]).name


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
    compose_backed = runner.config.apps[app].compose is not None
    if wanted.image is None and not compose_backed and await runner.store.active_rollout(app) is None:
        raise ApiError(
            400,
            "required (only the resume of an interrupted rollout of the app, or a compose-backed app, takes"
            " none)",
            field="image",
        )
    try:
        rollout = await runner.promote(
            app=app, image=wanted.image, steps=wanted.steps, pause=wanted.pause, hold_at=wanted.hold_at
        )
    except Unchanged as exc:
        return web.json_response({"id": None, "unchanged": True, "message": str(exc)})
    return _accepted(rollout.id)


@routes.post("/apps/{app}/abort")
async def abort(request: web.Request) -> web.Response:
    app = _app_name(request)
    abort_request(await _body(request, required=False))
    return _accepted((await _ctx(request).runner.abort(app=app)).id)


@routes.post("/apps/{app}/rollback")
async def rollback(request: web.Request) -> web.Response:
    app = _app_name(request)
    now = rollback_request(await _body(request, required=False))
    return _accepted((await _ctx(request).runner.rollback(app=app, now=now)).id)


# ---------------------------------------------------------------------- holds (holding.py)


@routes.post("/apps/{app}/pause")
async def pause(request: web.Request) -> web.Response:
    """Hold the app's rollout at its weights until resumed; 200 with the rollout, recorded held."""
    app = _app_name(request)
    empty_request(await _body(request, required=False), what="a pause")
    runner = _ctx(request).runner
    held = await holding.pause(runner.engine(), app)
    return web.json_response(report.rollout_dict(held))


@routes.post("/apps/{app}/resume")
async def resume(request: web.Request) -> web.Response:
    """Resume the app's held rollout; where no process drives it (killed), the service does from now on."""
    app = _app_name(request)
    empty_request(await _body(request, required=False), what="a resume")
    runner = _ctx(request).runner
    released = await runner.engine().record(app, lambda: runner.store.release(app, reason=holding.RESUMED))
    await runner.adopt(app)
    return _accepted(released.id)


@routes.post("/apps/{app}/weight")
async def set_weight(request: web.Request) -> web.Response:
    """Ask for the new colour at an exact weight, held there; its driver (or, with none, the service)
    applies it, confirmed through Traefik's API: the `set to N% ... confirmed` event says when."""
    app = _app_name(request)
    weight = weight_request(await _body(request, required=True))
    runner = _ctx(request).runner
    asked = await runner.engine().record(app, lambda: runner.store.request_weight(app, weight=weight))
    await runner.adopt(app)
    return _accepted(asked.id)


@routes.get("/apps/{app}/history")
async def history(request: web.Request) -> web.Response:
    app = _app_name(request)
    return web.json_response([report.rollout_dict(r) for r in await _ctx(request).store.history(app)])


@routes.get("/rollouts/{id}")
async def get_rollout(request: web.Request) -> web.Response:
    rollout = await _ctx(request).store.rollout(request.match_info["id"])
    if rollout is None:
        raise ApiError(404, f"no rollout {request.match_info['id']!r}")
    return web.json_response(report.rollout_dict(rollout))


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one `rollout` event per transition, `id` = its sequence number.

    `?rollout=ID` streams that rollout's only; `?progress=true` adds `progress` frames (no id: they are not
    stored) with where each rollout the service drives stands, once a second while a step holds. The stream
    opens with `id: <cursor>` and no data: the id a client resumes after to miss nothing from then on.
    """
    ctx = _ctx(request)
    # Validated before the response starts: once it has, an error can only cut the stream.
    if start := request.headers.get("Last-Event-ID"):  # an empty one is no id (as EventSource sends none)
        cursor = event_cursor(start, field="Last-Event-ID")
    elif (start := request.query.get("after")) is not None:
        cursor = event_cursor(start, field="after")
    else:
        cursor = await ctx.store.last_event_seq()
    rollout_id = request.query.get("rollout") or None
    progress = stream_flag(request.query.get("progress"), field="progress")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    beat = loop.time() + SSE_HEARTBEAT
    version = 0
    try:
        await response.write(f": stream of rollout transitions\nid: {cursor}\n\n".encode())
        while not ctx.shutdown.is_set():
            for event in await ctx.store.events(after=cursor, rollout_id=rollout_id, limit=SSE_BATCH):
                data = json.dumps(report.event_dict(event))
                await response.write(f"id: {event.seq}\nevent: rollout\ndata: {data}\n\n".encode())
                cursor = event.seq
            if progress:
                version, lives = ctx.runner.progress.since(version, rollout_id=rollout_id)
                for live in lives:
                    data = json.dumps(report.live_dict(live))
                    await response.write(f"event: progress\ndata: {data}\n\n".encode())
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
    return web.json_response([schedule_dict(s) for s in await _ctx(request).schedules.all()])


@routes.post("/schedules")
async def add_schedule(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    wanted = schedule_request(
        await _body(request, required=True), apps=ctx.runner.config.apps, now=dt.datetime.now(dt.UTC)
    )
    schedule = await ctx.schedules.add(app=wanted.app, image=wanted.image, at=wanted.at)
    ctx.scheduler.wake()
    log.info("schedule %s: %s -> %s at %s", schedule.id, schedule.app, schedule.image, schedule.at_text)
    return web.json_response({"id": schedule.id, **schedule_dict(schedule)}, status=201)


@routes.delete("/schedules/{id}")
async def cancel_schedule(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    schedule_id = request.match_info["id"]
    schedule = await ctx.schedules.get(schedule_id)
    if schedule is None:
        raise ApiError(404, f"no schedule {schedule_id!r}")
    if ctx.scheduler.firing(schedule_id):
        raise ApiError(409, f"schedule {schedule_id} is starting its rollout right now")
    if not await ctx.schedules.settle(
        schedule_id, state=ScheduleState.CANCELLED, reason="cancelled through the API"
    ):
        # Read again: the scheduler may have claimed it while the settle waited for the store's thread.
        now = await ctx.schedules.get(schedule_id) or schedule
        if now.state is ScheduleState.FIRING:
            raise ApiError(409, f"schedule {schedule_id} is starting its rollout right now")
        raise ApiError(409, f"schedule {schedule_id} is {now.state}, not pending")
    ctx.scheduler.wake()
    cancelled = await ctx.schedules.get(schedule_id)
    assert cancelled is not None
    return web.json_response(schedule_dict(cancelled))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await _ctx(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

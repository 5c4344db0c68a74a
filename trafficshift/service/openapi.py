"""The OpenAPI document of the HTTP API (`GET /openapi.json`); a test keeps it and the router in step."""

from __future__ import annotations

import functools
from typing import Any

from trafficshift import __version__
from trafficshift.models import Colour, Outcome, Phase
from trafficshift.service.requests import IMAGE_PATTERN, MAX_EVENT_ID, MAX_IMAGE
from trafficshift.store.schedules import ScheduleState

JSON = dict[str, Any]
_PHASES = [str(p) for p in Phase]
_COLOURS = [str(c) for c in Colour]
_OUTCOMES = [str(o) for o in Outcome]
_SCHEDULE_STATES = [str(s) for s in ScheduleState]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: JSON) -> JSON:
    return {**schema, "nullable": True}


def _json(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def _answer(text: str, schema: JSON | None = None) -> JSON:
    return {"description": text, "content": _json(schema or _ref("Error"))}


_WEIGHTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}}
_ROLLOUT_PROPS: JSON = {
    "id": {"type": "string"},
    "app": {"type": "string"},
    "image": {"type": "string", "description": "the image the rollout deploys"},
    "from_image": _nullable({"type": "string"}),
    "from_colour": _nullable({"type": "string", "enum": _COLOURS}),
    "to_colour": {"type": "string", "enum": _COLOURS},
    "state": {"type": "string", "enum": _PHASES},
    "step": {"type": "integer", "description": "index into steps; -1 before the first"},
    "steps": {"type": "array", "items": {"type": "integer"}},
    "weights": _WEIGHTS,
    "outcome": _nullable({"type": "string", "enum": _OUTCOMES}),
    "reason": _nullable({"type": "string"}),
    "started_at": {"type": "string", "format": "date-time"},
    "ended_at": _nullable({"type": "string", "format": "date-time"}),
    "spec": _nullable(
        {"type": "string", "description": "a compose-backed app's: digest of the spec it deploys"}
    ),
    "changed": _nullable(
        {
            "type": "array",
            "items": {"type": "string"},
            "description": "the spec keys that differ from the live one when it started (compose-backed)",
        }
    ),
    "held": _nullable(
        {
            "type": "string",
            "description": "why the rollout is held at its weights until resumed (null: it is not held)",
            "example": "paused by request",
        }
    ),
    "pauses": _nullable(
        {
            "type": "array",
            "items": _nullable({"type": "string", "example": "until-resumed"}),
            "description": "each step's own pause (`5s`, `until-resumed`; null: the rollout's pause)",
        }
    ),
}
_SCHEDULE_PROPS: JSON = {
    "id": {"type": "string"},
    "app": {"type": "string"},
    "image": {"type": "string"},
    "at": {"type": "string", "format": "date-time"},
    "state": {"type": "string", "enum": _SCHEDULE_STATES},
    "created_at": {"type": "string", "format": "date-time"},
    "fired_at": _nullable({"type": "string", "format": "date-time"}),
    "rollout": _nullable({"type": "string", "description": "id of the rollout it started"}),
    "reason": _nullable({"type": "string"}),
}
_IMAGE = {"type": "string", "pattern": IMAGE_PATTERN, "maxLength": MAX_IMAGE, "example": "example/web:2.0"}

SCHEMAS: JSON = {
    "Error": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong"},
            "field": _nullable({"type": "string", "description": "the body field at fault"}),
        },
    },
    "Accepted": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    "Unchanged": {
        "type": "object",
        "description": "a compose-backed app whose live colour runs the spec already: nothing started",
        "required": ["id", "unchanged", "message"],
        "properties": {
            "id": _nullable({"type": "string", "description": "null: no rollout was started"}),
            "unchanged": {"type": "boolean"},
            "message": {"type": "string"},
        },
    },
    "Rollout": {"type": "object", "required": list(_ROLLOUT_PROPS), "properties": _ROLLOUT_PROPS},
    "Container": {
        "type": "object",
        "required": ["name", "colour", "image", "running", "health", "url"],
        "properties": {
            "name": {"type": "string"},
            "colour": {"type": "string", "enum": _COLOURS},
            "image": {"type": "string"},
            "running": {"type": "boolean"},
            "health": _nullable({"type": "string"}),
            "url": _nullable({"type": "string"}),
        },
    },
    "AppStatus": {
        "type": "object",
        "required": [
            "app",
            "colour",
            "image",
            "spec",
            "weights",
            "routed",
            "containers",
            "rollout",
            "file",
            "traefik",
        ],
        "properties": {
            "app": {"type": "string"},
            "colour": _nullable({"type": "string", "enum": _COLOURS}),
            "image": _nullable({"type": "string"}),
            "spec": _nullable({"type": "string", "description": "a compose-backed app's live spec digest"}),
            "weights": _WEIGHTS,
            "routed": _nullable(
                {
                    **_WEIGHTS,
                    "description": "what the app's dynamic file routes now (as Traefik confirmed it), next to"
                    " the recorded `weights`: where a stuck or held rollout really stands; null: no readable"
                    " file",
                }
            ),
            "containers": {"type": "array", "items": _ref("Container")},
            "rollout": _nullable(
                {
                    "type": "object",
                    "description": "the rollout in progress or interrupted, as Rollout plus `interrupted`",
                    "required": [*_ROLLOUT_PROPS, "interrupted"],
                    "properties": {**_ROLLOUT_PROPS, "interrupted": {"type": "boolean"}},
                }
            ),
            "file": _ref("FileStatus"),
            "traefik": {
                "type": "object",
                "description": "what each Traefik instance's API routes for the app, by API URL"
                " (`traefik.api_url`/`api_urls`): each colour's weight, or why it could not be read;"
                " empty in `GET /apps`, which reads no Traefik",
                "additionalProperties": {"oneOf": [_WEIGHTS, {"type": "string"}]},
            },
        },
    },
    "FileStatus": {
        "type": "object",
        "description": "what the app's dynamic file routes, and where that misses its containers (e.g. after"
        " Docker restarted them on new published ports: `trafficshift reconcile` repairs it)",
        "required": ["in_sync", "readable", "servers", "stale", "unrouted"],
        "properties": {
            "in_sync": {"type": "boolean", "description": "readable, nothing stale, nothing unrouted"},
            "readable": {"type": "boolean"},
            "servers": {"type": "array", "items": {"type": "string"}},
            "stale": {
                "type": "array",
                "items": {"type": "string"},
                "description": "servers in the file at which no running container answers",
            },
            "unrouted": {
                "type": "array",
                "description": "running containers of a colour the file lists (or should), missing from it",
                "items": {
                    "type": "object",
                    "required": ["name", "colour", "url"],
                    "properties": {
                        "name": {"type": "string"},
                        "colour": {"type": "string", "enum": _COLOURS},
                        "url": {"type": "string"},
                    },
                },
            },
        },
    },
    "Event": {
        "type": "object",
        "description": "one rollout transition (the `data` of an SSE `rollout` event; its `id` is `seq`)",
        "required": ["seq", "rollout", "app", "at", "state", "step", "weights", "message"],
        "properties": {
            "seq": {"type": "integer"},
            "rollout": {"type": "string"},
            "app": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "state": {"type": "string", "enum": _PHASES},
            "step": {"type": "integer"},
            "weights": _WEIGHTS,
            "message": {"type": "string"},
        },
    },
    "Schedule": {"type": "object", "required": list(_SCHEDULE_PROPS), "properties": _SCHEDULE_PROPS},
    "PromoteBody": {
        "type": "object",
        "description": "without `image`: resume the app's interrupted rollout; else, for a compose-backed"
        " app, the image its compose file names now (re-read for every promote); else 400",
        "additionalProperties": False,
        "properties": {
            "image": _IMAGE,
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "integer", "minimum": 1, "maximum": 100},
                "description": "strictly rising percentages on the new colour, ending at 100",
                "example": [10, 50, 100],
            },
            "pause": {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+$", "example": "5s"},
            "hold_at": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "hold the rollout at this percentage on the new colour until it is resumed"
                " (a step of its own when it is not one of the steps)",
                "example": 10,
            },
        },
    },
    "EmptyBody": {
        "type": "object",
        "description": "optional and empty: the route takes no fields (any field is a 400)",
        "additionalProperties": False,
        "properties": {},
    },
    "WeightBody": {
        "type": "object",
        "required": ["weight"],
        "additionalProperties": False,
        "properties": {
            "weight": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "percentage on the new colour; the rollout is held there until resumed",
                "example": 30,
            }
        },
    },
    "AbortBody": {
        "type": "object",
        "description": "optional and empty: an abort takes no fields (any field is a 400)",
        "additionalProperties": False,
        "properties": {},
    },
    "RollbackBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"now": {"type": "boolean", "default": False}},
    },
    "ScheduleBody": {
        "type": "object",
        "required": ["app", "image", "at"],
        "additionalProperties": False,
        "properties": {
            "app": {"type": "string"},
            "image": _IMAGE,
            "at": {"type": "string", "format": "date-time", "description": "ISO 8601 with offset, ahead"},
        },
    },
}

_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}
_APP = {"name": "app", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_401 = {"401": _answer("no or wrong bearer token")}
_404 = {"404": _answer("unknown app or id")}
_503 = {"503": _answer("Docker or Traefik could not be reached, or the service is shutting down")}
_502 = {"502": _answer("Docker failed while the request was handled")}
_500 = {"500": _answer("an unexpected error (logged by the service)")}
_BODY_ERRORS = {"400": _answer("bad body: `field` says which"), "413": _answer("body too large")}


def _op(summary: str, responses: JSON, *, params: list[JSON] | None = None, body: JSON | None = None) -> JSON:
    op: JSON = {"summary": summary, "responses": {**responses, **_401, **_500}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    return op


def _body(schema: str, *, required: bool) -> JSON:
    return {"required": required, "content": _json(_ref(schema))}


def _paths() -> JSON:
    accepted = {"202": _answer("started; the id of the rollout", _ref("Accepted"))}
    rollouts = {"type": "array", "items": _ref("Rollout")}
    return {
        "/healthz": {
            "get": {
                "summary": "liveness (no token needed); `ready` once the start-up reconcile is through",
                "security": [],
                "responses": {
                    "200": _answer(
                        "the service runs",
                        {
                            "type": "object",
                            "required": ["status", "ready"],
                            "properties": {"status": {"type": "string"}, "ready": {"type": "boolean"}},
                        },
                    )
                },
            }
        },
        "/openapi.json": {"get": _op("this document", {"200": _answer("OpenAPI 3.0", {"type": "object"})})},
        "/apps": {
            "get": _op(
                "every app as `status --json` gives it",
                {"200": _answer("the apps", {"type": "array", "items": _ref("AppStatus")}), **_503},
            )
        },
        "/apps/{app}": {
            "get": _op(
                "one app: colour, image, weights, containers, rollout",
                {"200": _answer("the app", _ref("AppStatus")), **_404, **_503},
                params=[_APP],
            )
        },
        "/apps/{app}/promote": {
            "post": _op(
                "start a promote of `image`, or resume the app's interrupted rollout",
                {
                    "200": _answer("a compose-backed app that runs this spec already", _ref("Unchanged")),
                    **accepted,
                    **_BODY_ERRORS,
                    **_404,
                    "409": _answer("a rollout of the app runs"),
                    **_502,
                    **_503,
                },
                params=[_APP],
                body=_body("PromoteBody", required=False),
            )
        },
        "/apps/{app}/abort": {
            "post": _op(
                "send all traffic back to the old colour and remove the new one",
                {
                    **accepted,
                    **_BODY_ERRORS,
                    **_404,
                    "409": _answer("no rollout of the app runs"),
                    "503": _answer("the service is shutting down"),
                },
                params=[_APP],
                body=_body("AbortBody", required=False),
            )
        },
        "/apps/{app}/rollback": {
            "post": _op(
                "promote the previous image again (`now`: in one step)",
                {
                    **accepted,
                    **_BODY_ERRORS,
                    **_404,
                    "409": _answer("a rollout runs, or there is no earlier image"),
                    **_502,
                    **_503,
                },
                params=[_APP],
                body=_body("RollbackBody", required=False),
            )
        },
        "/apps/{app}/pause": {
            "post": _op(
                "hold the app's rollout at its weights until it is resumed (recorded before it answers)",
                {
                    "200": _answer("the rollout, held", _ref("Rollout")),
                    **_BODY_ERRORS,
                    **_404,
                    "409": _answer("no rollout of the app runs, or its phase cannot be held"),
                },
                params=[_APP],
                body=_body("EmptyBody", required=False),
            )
        },
        "/apps/{app}/resume": {
            "post": _op(
                "resume the app's held rollout; the service drives it when no process does",
                {
                    **accepted,
                    **_BODY_ERRORS,
                    **_404,
                    "409": _answer("no rollout of the app runs, or it is not held"),
                    **_503,
                },
                params=[_APP],
                body=_body("EmptyBody", required=False),
            )
        },
        "/apps/{app}/weight": {
            "post": _op(
                "set the new colour of the app's rollout to `weight` (held there until resumed); applied by"
                " its driver, or by the service when none runs, and confirmed through Traefik's API: the"
                " `set to N% on COLOUR: confirmed` event says when",
                {
                    **accepted,
                    **_BODY_ERRORS,
                    **_404,
                    "409": _answer("no rollout of the app runs, or its phase takes no weight"),
                    **_503,
                },
                params=[_APP],
                body=_body("WeightBody", required=True),
            )
        },
        "/apps/{app}/history": {
            "get": _op(
                "past rollouts, newest first", {"200": _answer("rollouts", rollouts), **_404}, params=[_APP]
            )
        },
        "/rollouts/{id}": {
            "get": _op("one rollout", {"200": _answer("the rollout", _ref("Rollout")), **_404}, params=[_ID])
        },
        "/events": {
            "get": _op(
                "server-sent events, one `rollout` event per transition; resumes after `Last-Event-ID`;"
                " `rollout` streams one rollout's only; `progress=true` adds `progress` frames (no id)",
                {
                    "200": {
                        "description": "opens with `id: <cursor>` (no data); then `id: <seq>`,"
                        " `event: rollout`, `data: <Event as JSON>`; with progress=true also"
                        " `event: progress`, `data: <Progress as JSON>` (where a rollout the service"
                        " drives stands: hold, replicas, analysis figures)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _answer("bad Last-Event-ID, after or progress (checked before the stream starts)"),
                },
                params=[
                    {"name": "Last-Event-ID", "in": "header", "schema": _EVENT_ID},
                    {"name": "after", "in": "query", "schema": _EVENT_ID},
                    {"name": "rollout", "in": "query", "schema": {"type": "string"}},
                    {"name": "progress", "in": "query", "schema": {"enum": ["true", "false", "1", "0"]}},
                ],
            )
        },
        "/schedules": {
            "get": _op(
                "every schedule",
                {"200": _answer("schedules", {"type": "array", "items": _ref("Schedule")})},
            ),
            "post": _op(
                "schedule a promote at a time",
                {"201": _answer("scheduled", _ref("Schedule")), **_BODY_ERRORS},
                body=_body("ScheduleBody", required=True),
            ),
        },
        "/schedules/{id}": {
            "delete": _op(
                "cancel a pending schedule",
                {
                    "200": _answer("cancelled", _ref("Schedule")),
                    **_404,
                    "409": _answer("the schedule is not pending any more"),
                },
                params=[_ID],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "rollouts by outcome, weights, step and promote durations",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
    }


@functools.cache
def document() -> JSON:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "trafficshift",
            "version": __version__,
            "description": "Zero-downtime weighted cutovers of Docker apps behind Traefik.",
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

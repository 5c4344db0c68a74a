"""The Traefik dynamic file of one app: rendered from a template, then parsed back and checked."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import trafficshift
from trafficshift.errors import RenderCheckError
from trafficshift.models import AppSpec, ColourRoute, MirrorRoute, Pin, Routing
from trafficshift.traefik import names, rules

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "dynamic.yml.j2"


def quote_yaml(value: object) -> str:
    """Return `value` as a YAML scalar that parses back verbatim (the template's `yaml` filter).

    Strings become double-quoted with everything outside printable ASCII escaped, so no character can end
    the scalar, fold a line or trip YAML's printable-character rules, and the second `{` of a `{{` is
    escaped too: Traefik runs every dynamic file through Go templates before it parses the YAML.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote_str(value)
    raise TypeError(f"no YAML form for {type(value).__name__}: {value!r}")


def _quote_str(text: str) -> str:
    out = ['"']
    previous = ""
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "{" and previous == "{":
            out.append("\\u007b")
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"lone surrogate in {text!r}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
        previous = char
    out.append('"')
    return "".join(out)


def go_duration(seconds: float) -> str:
    """Return a duration as Go's time.ParseDuration reads it, to the millisecond (`1s`, `500ms`)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


@functools.cache
def _environment() -> jinja2.Environment:
    # Imported here: `status` reads dynamic files (parse_dynamic) but never renders one, and Jinja2 costs
    # every such run start-up time for nothing.
    import jinja2

    # The installed wheel carries the templates inside the package; a source checkout has them at the root.
    package_dir = Path(trafficshift.__file__).parent
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(package_dir / "templates"),
                jinja2.FileSystemLoader(package_dir.parent / "templates"),
            ]
        ),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML: the `yaml` filter does all the quoting.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["yaml"] = quote_yaml
    return env


def render_dynamic(*, app: AppSpec, routing: Routing, entrypoints: Sequence[str]) -> str:
    """Return the dynamic file for `routing`, parsed back and checked; raises rather than return a bad one.

    `entrypoints` is the config's global list; the app's own `entrypoints` win over it. Half of invariant 3
    (docs/ARCHITECTURE.md): no file that was not checked is ever written.
    """
    _check_input(app=app, routing=routing, entrypoints=entrypoints)
    text = _render(_parts(app=app, routing=routing, entrypoints=entrypoints))
    expected = expected_document(app=app, routing=routing, entrypoints=entrypoints)
    _check_output(text=text, expected=expected, app=app.name)
    if parse_dynamic(text) != routing:
        raise RenderCheckError(f"{routing.app}: rendered file does not read back as {routing!r}")
    return text


def render_trial(*, app: AppSpec, entrypoints: Sequence[str], router: str) -> str:
    """Return the trial file of the app's router options: one router that no real request matches.

    It carries the app's rule, entrypoints, TLS and middlewares (and its own copy of the retry
    middleware) to `noop@internal`: Traefik reports it in error for an unknown middleware, entrypoint or
    TLS option, or a rule it cannot parse, while the app's own router keeps serving.
    """
    _check_input(app=app, routing=None, entrypoints=entrypoints)
    retry = _retry(app, names.trial_retry_middleware(app.name))
    trial = _router(
        app,
        entrypoints,
        name=router,
        rule=rules.matching(app_rule=app.rule, header=TRIAL_HEADER, cookie=None, value="trial"),
        service=TRIAL_SERVICE,
        retry=retry["name"],
        priority=app.priority,
    )
    parts: dict[str, Any] = {**_NO_ROUTES, "routers": [trial], "retry": retry}
    text = _render(parts)
    _check_output(text=text, expected=_document(parts), app=app.name)
    return text


# The trial router's target: Traefik's built-in service that answers nothing (used for redirect routers).
TRIAL_SERVICE = "noop@internal"
TRIAL_HEADER = "X-Trafficshift-Trial"


def options_digest(options: Any) -> str:
    """A short digest of `options_of` (the trial router's name carries it)."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def router_options(document: Any, app: str) -> Any:
    """The parts of a parsed dynamic file that the trial checks: the app's router and its retry middleware.

    None when the document has no such router. Two files with equal options need no new trial.
    """
    try:
        router = dict(document["http"]["routers"][names.router(app)])
        retry = document["http"]["middlewares"][names.retry_middleware(app)]
    except (KeyError, TypeError):
        return None
    router.pop("service", None)
    return {"router": router, "retry": retry}


def options_of(*, app: AppSpec, entrypoints: Sequence[str]) -> Any:
    """`router_options` of the file `render_dynamic` would write for `app` (whatever its routing)."""
    retry = _retry(app, names.retry_middleware(app.name))
    router = _router(
        app,
        entrypoints,
        name=names.router(app.name),
        rule=app.rule,
        service="",
        retry=retry["name"],
        priority=app.priority,
    )
    return router_options(_document({**_NO_ROUTES, "routers": [router], "retry": retry}), app.name)


_NO_ROUTES: dict[str, Any] = {"routes": [], "service": "", "health": None, "sticky": None}


def _render(parts: dict[str, Any]) -> str:
    return _environment().get_template(TEMPLATE).render(**parts)


def _parts(*, app: AppSpec, routing: Routing, entrypoints: Sequence[str]) -> dict[str, Any]:
    """Everything the template needs, in Traefik's own key names: the one description of the file."""
    weighted = names.weighted_service(app.name)
    retry = _retry(app, names.retry_middleware(app.name))
    routers = [
        _router(
            app,
            entrypoints,
            name=names.router(app.name),
            rule=app.rule,
            service=weighted,
            retry=retry["name"],
            priority=app.priority,
        )
    ]
    for pin in routing.pins:
        routers.append(
            _router(
                app,
                entrypoints,
                name=names.pin_router(app.name, pin.name),
                rule=pin.rule,
                service=names.colour_service(app.name, pin.colour),
                retry=retry["name"],
                priority=pin_priority(app, pin),
            )
        )
    health = None
    if app.health.path is not None:
        health = {
            "path": app.health.path,
            "interval": go_duration(app.health.interval),
            "timeout": go_duration(app.health.timeout),
        }
    sticky = app.rollout.sticky
    return {
        "routers": routers,
        "retry": retry,
        "service": weighted,
        "health": health,
        "sticky": None
        if sticky is None
        else {
            "name": sticky.cookie,
            "secure": sticky.secure,
            "httpOnly": sticky.http_only,
            "sameSite": sticky.same_site,
        },
        "routes": [
            {"service": names.colour_service(app.name, r.colour), "weight": r.weight, "servers": r.servers}
            for r in routing.routes
        ],
    }


def pin_priority(app: AppSpec, pin: Pin) -> int:
    """A pin's router outranks the app's, whose priority is its own or Traefik's default (rule length)."""
    return (app.priority if app.priority is not None else len(app.rule)) + pin.rank


def _retry(app: AppSpec, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "attempts": app.retry.attempts,
        "initialInterval": go_duration(app.retry.initial_interval),
    }


def _router(
    app: AppSpec,
    entrypoints: Sequence[str],
    *,
    name: str,
    rule: str,
    service: str,
    retry: str,
    priority: int | None,
) -> dict[str, Any]:
    tls = None
    if app.tls is not None:
        tls = {
            "certResolver": app.tls.cert_resolver,
            "options": app.tls.options,
            "domains": [{"main": d.main, "sans": list(d.sans)} for d in app.tls.domains],
        }
    return {
        "name": name,
        "rule": rule,
        "priority": priority,
        # The app's own list wins over the config's.
        "entrypoints": list(app.entrypoints or entrypoints),
        "service": service,
        # Those defined elsewhere first (`auth@file` refuses before anything is retried), the retry last.
        "middlewares": [*app.middlewares, retry],
        "tls": tls,
    }


def _check_input(*, app: AppSpec, routing: Routing | None, entrypoints: Sequence[str]) -> None:
    if isinstance(entrypoints, str) or not (app.entrypoints or entrypoints):
        raise ValueError(f"{app.name}: entrypoints must be a non-empty list, got {entrypoints!r}")
    if routing is None:
        return
    if routing.app != app.name:
        raise ValueError(f"routing is for {routing.app!r}, app is {app.name!r}")
    if not routing.routes:
        raise ValueError(f"{app.name}: no colour to route to; remove the dynamic file instead")
    colours = [r.colour for r in routing.routes]
    if len(set(colours)) != len(colours):
        raise ValueError(f"{app.name}: a colour is listed twice: {colours}")
    for route in routing.routes:
        # A child without servers answers 503; the caller lists only colours that have containers.
        service = names.colour_service(app.name, route.colour)
        if not route.servers:
            raise ValueError(f"{service}: no servers")
        if isinstance(route.weight, bool) or not isinstance(route.weight, int) or route.weight < 0:
            raise ValueError(f"{service}: weight must be a whole number >= 0: {route.weight!r}")
    pins = [p.name for p in routing.pins]
    if len(set(pins)) != len(pins):
        raise ValueError(f"{app.name}: a pin is listed twice: {pins}")
    for pin in routing.pins:
        # A pinned router to a service that is not in the file would be in error: invariant 7
        # (docs/ARCHITECTURE.md) for pins.
        if pin.colour not in colours:
            raise ValueError(f"{app.name}: pin {pin.name} routes to {pin.colour}, which has no servers")
        if pin.rank < 1:
            raise ValueError(f"{app.name}: pin {pin.name} must outrank the app's router: {pin.rank!r}")


def expected_document(*, app: AppSpec, routing: Routing, entrypoints: Sequence[str]) -> dict[str, Any]:
    """Return what the rendered file must parse to: the check is independent of the template."""
    return _document(_parts(app=app, routing=routing, entrypoints=entrypoints))


def _document(parts: dict[str, Any]) -> dict[str, Any]:
    routers: dict[str, Any] = {}
    for r in parts["routers"]:
        router: dict[str, Any] = {"rule": r["rule"]}
        if r["priority"] is not None:
            router["priority"] = r["priority"]
        router |= {"entryPoints": r["entrypoints"], "service": r["service"], "middlewares": r["middlewares"]}
        if r["tls"] is not None:
            router["tls"] = _tls_document(r["tls"])
        routers[r["name"]] = router
    retry = parts["retry"]
    http: dict[str, Any] = {
        "routers": routers,
        "middlewares": {
            retry["name"]: {
                "retry": {"attempts": retry["attempts"], "initialInterval": retry["initialInterval"]}
            }
        },
    }
    if parts["routes"]:
        weighted: dict[str, Any] = {}
        if parts["health"] is not None:
            weighted["healthCheck"] = {}
        if (sticky := parts["sticky"]) is not None:
            cookie = {k: v for k, v in sticky.items() if v is not None}
            weighted["sticky"] = {"cookie": cookie}
        weighted["services"] = [{"name": r["service"], "weight": r["weight"]} for r in parts["routes"]]
        services: dict[str, Any] = {parts["service"]: {"weighted": weighted}}
        for route in parts["routes"]:
            balancer: dict[str, Any] = {
                "passHostHeader": True,
                "servers": [{"url": u} for u in route["servers"]],
            }
            if parts["health"] is not None:
                balancer["healthCheck"] = dict(parts["health"])
            services[route["service"]] = {"loadBalancer": balancer}
        http["services"] = services
    return {"http": http}


def router_document(*, app: AppSpec, entrypoints: Sequence[str]) -> dict[str, Any]:
    """The app's router as its file must parse to; the mirror's router is this one with another rule."""
    parts = _parts(app=app, routing=Routing(app=app.name, routes=()), entrypoints=entrypoints)
    router: dict[str, Any] = _document(parts)["http"]["routers"][names.router(app.name)]
    return router


def _tls_document(tls: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("certResolver", "options"):
        if tls[key] is not None:
            out[key] = tls[key]
    if tls["domains"]:
        out["domains"] = [
            {"main": d["main"], **({"sans": d["sans"]} if d["sans"] else {})} for d in tls["domains"]
        ]
    return out


def _check_output(*, text: str, expected: dict[str, Any], app: str) -> None:
    if "{{" in text:  # invariant 8 (docs/ARCHITECTURE.md)
        raise RenderCheckError(f"{app}: rendered file contains a Go template opening")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderCheckError(f"{app}: rendered file is not valid YAML: {exc}") from exc
    if parsed != expected:
        raise RenderCheckError(f"{app}: rendered file parses to {parsed!r}, expected {expected!r}")


def parse_dynamic(text: str) -> Routing:
    """Return the routing a dynamic file describes (render_dynamic's inverse); ValueError if it is not one."""
    try:
        doc = yaml.safe_load(text)
        services: dict[str, Any] = doc["http"]["services"]
        weighted = [(name, s["weighted"]) for name, s in services.items() if "weighted" in s]
        if len(weighted) != 1:
            raise ValueError(f"expected one weighted service, found {len(weighted)}")
        app, spec = weighted[0]
        routes = []
        for child in spec["services"]:
            colour = names.colour_of_service(app, str(child["name"]))
            if colour is None:
                raise ValueError(f"{child['name']!r} is not a colour service of {app!r}")
            servers = tuple(s["url"] for s in services[child["name"]]["loadBalancer"]["servers"])
            routes.append(ColourRoute(colour=colour, weight=int(child["weight"]), servers=servers))
        pins = _parse_pins(app, doc["http"]["routers"])
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a trafficshift dynamic file: {exc!r}") from exc
    return Routing(app=app, routes=tuple(routes), pins=pins)


# ---------------------------------------------------------------- the mirror phase's file


def mirror_rule(rule: str, methods: Sequence[str]) -> str:
    """The app's rule restricted to `methods`: longer than the rule, so Traefik gives it a higher priority."""
    matchers = " || ".join(f"Method(`{method}`)" for method in methods)
    return f"({rule}) && ({matchers})"


def mirror_document(*, app: AppSpec, mirror: MirrorRoute, entrypoints: Sequence[str]) -> dict[str, Any]:
    """What the app's mirror file must parse to: a router for the mirrored methods and a mirroring service.

    The router is the app's own (entrypoints, middlewares and all, so a mirrored request is handled as any
    other) with the methods added to its rule; the mirroring service answers from the weighted service, so
    clients get exactly what the app's router would give them, and copies `percent`% to the new colour.
    """
    router = router_document(app=app, entrypoints=entrypoints)
    router["rule"] = mirror_rule(app.rule, mirror.methods)
    router["service"] = names.mirror_service(app.name)
    if isinstance(router.get("priority"), int):  # an explicit priority must still lose to the mirror's
        router["priority"] += 1
    mirroring = {
        "service": names.weighted_service(app.name),
        "mirrors": [{"name": names.colour_service(app.name, mirror.colour), "percent": mirror.percent}],
    }
    return {
        "http": {
            "routers": {names.mirror_router(app.name): router},
            "services": {names.mirror_service(app.name): {"mirroring": mirroring}},
        }
    }


def render_mirror(*, app: AppSpec, mirror: MirrorRoute, entrypoints: Sequence[str]) -> str:
    """Return the app's mirror file, parsed back and checked: invariant 3 (docs/ARCHITECTURE.md).

    Written from its document rather than a template: its router is the app's router (whatever that one
    carries), so the file cannot drift from it.
    """
    if mirror.app != app.name:
        raise ValueError(f"mirror is for {mirror.app!r}, app is {app.name!r}")
    if not 1 <= mirror.percent <= 100 or not mirror.methods:
        raise ValueError(f"{app.name}: a mirror copies 1..100% of at least one method, got {mirror!r}")
    expected = mirror_document(app=app, mirror=mirror, entrypoints=entrypoints)
    lines = [
        "# Written by trafficshift for the mirror phase of a rollout; removed when the phase ends.",
        *_block(expected, 0),
    ]
    text = "\n".join(lines) + "\n"
    if "{{" in text:  # invariant 8 (docs/ARCHITECTURE.md)
        raise RenderCheckError(f"{app.name}: rendered mirror file contains a Go template opening")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderCheckError(f"{app.name}: rendered mirror file is not valid YAML: {exc}") from exc
    if parsed != expected:
        raise RenderCheckError(f"{app.name}: mirror file parses to {parsed!r}, expected {expected!r}")
    return text


def _block(value: object, depth: int) -> list[str]:
    """Block-style YAML lines of nested dicts and lists, every scalar (keys too) through `quote_yaml`."""
    pad = "  " * depth
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines += [f"{pad}{quote_yaml(key)}:", *_block(item, depth + 1)]
            else:
                lines.append(f"{pad}{quote_yaml(key)}: {_flow(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                first, *rest = _block(item, depth + 1)
                lines += [f"{pad}- {first.lstrip()}", *rest]
            else:
                lines.append(f"{pad}- {_flow(item)}")
    else:
        raise TypeError(f"not a block: {value!r}")
    return lines


def _flow(value: object) -> str:
    if isinstance(value, dict | list):  # only empty ones come here
        return "{}" if isinstance(value, dict) else "[]"
    return quote_yaml(value)


def _parse_pins(app: str, routers: dict[str, Any]) -> tuple[Pin, ...]:
    main = routers[names.router(app)]
    base = int(main["priority"]) if "priority" in main else len(str(main["rule"]))
    pins = []
    for router_name, router in routers.items():
        pin = names.pin_of_router(app, router_name)
        if pin is None:
            continue
        colour = names.colour_of_service(app, str(router["service"]))
        if colour is None:
            raise ValueError(f"pin {router_name!r} routes to {router['service']!r}, not a colour of {app!r}")
        pins.append(
            Pin(name=pin, colour=colour, rule=str(router["rule"]), rank=int(router["priority"]) - base)
        )
    return tuple(pins)

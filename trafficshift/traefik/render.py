"""The Traefik dynamic file of one app: rendered from a template, then parsed back and checked."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import trafficshift
from trafficshift.errors import RenderCheckError
from trafficshift.models import AppSpec, ColourRoute, MirrorRoute, Routing
from trafficshift.traefik import names

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

    Half of invariant 3 (docs/ARCHITECTURE.md): no file that was not checked is ever written.
    """
    _check_input(app=app, routing=routing, entrypoints=entrypoints)
    expected = expected_document(app=app, routing=routing, entrypoints=entrypoints)
    health = None
    if app.health.path is not None:
        health = {
            "path": app.health.path,
            "interval": go_duration(app.health.interval),
            "timeout": go_duration(app.health.timeout),
        }
    text = (
        _environment()
        .get_template(TEMPLATE)
        .render(
            router=names.router(app.name),
            service=names.weighted_service(app.name),
            rule=app.rule,
            entrypoints=list(entrypoints),
            retry=names.retry_middleware(app.name),
            health=health,
            routes=[
                {
                    "service": names.colour_service(app.name, r.colour),
                    "weight": r.weight,
                    "servers": r.servers,
                }
                for r in routing.routes
            ],
        )
    )
    _check_output(text=text, expected=expected, routing=routing)
    return text


def _check_input(*, app: AppSpec, routing: Routing, entrypoints: Sequence[str]) -> None:
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
    if isinstance(entrypoints, str) or not entrypoints:
        raise ValueError(f"{app.name}: entrypoints must be a non-empty list, got {entrypoints!r}")


def expected_document(*, app: AppSpec, routing: Routing, entrypoints: Sequence[str]) -> dict[str, Any]:
    """Return what the rendered file must parse to: the check is independent of the template."""
    name = app.name
    retry = names.retry_middleware(name)
    weighted_name = names.weighted_service(name)
    weighted: dict[str, Any] = {
        "services": [
            {"name": names.colour_service(name, r.colour), "weight": r.weight} for r in routing.routes
        ]
    }
    services: dict[str, Any] = {weighted_name: {"weighted": weighted}}
    for route in routing.routes:
        balancer: dict[str, Any] = {"passHostHeader": True, "servers": [{"url": u} for u in route.servers]}
        if app.health.path is not None:
            balancer["healthCheck"] = {
                "path": app.health.path,
                "interval": go_duration(app.health.interval),
                "timeout": go_duration(app.health.timeout),
            }
        services[names.colour_service(name, route.colour)] = {"loadBalancer": balancer}
    if app.health.path is not None:
        weighted["healthCheck"] = {}
    return {
        "http": {
            "routers": {names.router(name): router_document(app=app, entrypoints=entrypoints)},
            "middlewares": {retry: {"retry": {"attempts": 3, "initialInterval": "100ms"}}},
            "services": services,
        }
    }


def router_document(*, app: AppSpec, entrypoints: Sequence[str]) -> dict[str, Any]:
    """The app's router as its file must parse to; the mirror's router is this one with another rule."""
    return {
        "rule": app.rule,
        "entryPoints": list(entrypoints),
        "service": names.weighted_service(app.name),
        "middlewares": [names.retry_middleware(app.name)],
    }


def _check_output(*, text: str, expected: dict[str, Any], routing: Routing) -> None:
    if "{{" in text:  # invariant 8 (docs/ARCHITECTURE.md)
        raise RenderCheckError(f"{routing.app}: rendered file contains a Go template opening")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderCheckError(f"{routing.app}: rendered file is not valid YAML: {exc}") from exc
    if parsed != expected:
        raise RenderCheckError(f"{routing.app}: rendered file parses to {parsed!r}, expected {expected!r}")
    if parse_dynamic(text) != routing:
        raise RenderCheckError(f"{routing.app}: rendered file does not read back as {routing!r}")


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
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a trafficshift dynamic file: {exc!r}") from exc
    return Routing(app=app, routes=tuple(routes))


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

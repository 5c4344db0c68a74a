"""Traefik API adapter: read back what Traefik actually routes (one app, or every service at once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from trafficshift.errors import StepNotApplied, TraefikApiError, UnreachableError
from trafficshift.models import Colour, ColourRoute, Routing
from trafficshift.traefik import names

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)
# Services a page of the listing: every service of a few hundred apps in one answer.
_PAGE = 1000


@dataclass(frozen=True)
class ObservedRoute:
    """One child of the weighted service as Traefik runs it."""

    service: str  # without the provider suffix, e.g. `web-blue`
    colour: Colour | None  # None for a child that is not `<app>-<colour>` (not written by trafficshift)
    weight: int
    servers: tuple[str, ...]  # empty while the child service itself is missing
    server_status: Mapping[str, str] = field(default_factory=dict)  # url -> "UP" / "DOWN"
    status: str | None = None  # "enabled", "disabled", "warning"; None while the child is missing


@dataclass(frozen=True)
class ObservedRouter:
    """One of the app's routers as Traefik runs it (its own, or a pin's)."""

    name: str  # without the provider suffix, e.g. `web-pin-canary-always`
    service: str  # without the provider suffix
    rule: str
    status: str | None  # "enabled", "disabled" (in error), "warning"
    errors: tuple[str, ...] = ()

    @property
    def serving(self) -> bool:
        return self.status in ("enabled", "warning")


@dataclass(frozen=True)
class ObservedRouting:
    """What the Traefik API shows for one app; `present` is False when `<app>@file` does not exist.

    `routers` holds the app's router and its pins' routers (by name, without the provider suffix).
    """

    app: str
    present: bool
    status: str | None = None
    routes: tuple[ObservedRoute, ...] = ()
    routers: Mapping[str, ObservedRouter] = field(default_factory=dict)

    def routing(self) -> Routing:
        """Return the observation as a Routing (children that are not `<app>-<colour>` left out)."""
        return Routing(
            app=self.app,
            routes=tuple(
                ColourRoute(colour=r.colour, weight=r.weight, servers=r.servers)
                for r in self.routes
                if r.colour is not None
            ),
        )

    def matches(self, expected: Routing) -> bool:
        """Whether Traefik runs exactly `expected`: same colours, weights and servers (in any order), the
        app's router serving, and exactly the expected pins' routers, each serving and to its colour."""
        if not expected.routes:
            return not self.present and not self.routers
        if not self.present or self.status == "disabled":
            return False
        if any(r.colour is None or r.status is None or r.status == "disabled" for r in self.routes):
            return False
        routes = Routing(app=self.app, routes=self.routing().routes)
        if routes.canonical() != Routing(app=expected.app, routes=expected.routes).canonical():
            return False
        return self.routers_match(expected)

    def routers_match(self, expected: Routing) -> bool:
        """Whether the routers are the app's (serving) and exactly the expected pins' (serving, each to
        its colour with its rule): a pin left out of the file counts only once Traefik has dropped it."""
        app = self.app
        main = self.routers.get(names.router(app))
        if main is None or not main.serving or main.service != names.weighted_service(app):
            return False
        wanted = {
            names.pin_router(app, pin.name): (names.colour_service(app, pin.colour), pin.rule)
            for pin in expected.pins
        }
        shown = {
            name: (router.service, router.rule)
            for name, router in self.routers.items()
            if name != names.router(app) and router.serving
        }
        return shown == wanted and len(self.routers) == len(wanted) + 1


@dataclass(frozen=True)
class ObservedMirror:
    """The app's mirror router and mirroring service as Traefik's API shows them (None: not there)."""

    router: Mapping[str, Any] | None
    service: Mapping[str, Any] | None

    def matches(self, expected: Mapping[str, Any] | None) -> bool:
        """Whether Traefik runs the mirror file's `expected` document (render.mirror_document) enabled.

        None expects the mirror gone: neither its router nor its service is left.
        """
        if expected is None:
            return self.router is None and self.service is None
        if self.router is None or self.service is None:
            return False
        ((_, router),) = expected["http"]["routers"].items()
        ((_, service),) = expected["http"]["services"].items()
        observed = self.service.get("mirroring") or {}
        listed = observed.get("mirrors") or []
        mirrors = [{"name": m.get("name"), "percent": m.get("percent")} for m in listed]
        return (
            self.router.get("status") == "enabled"
            and self.service.get("status") == "enabled"
            and self.router.get("rule") == router["rule"]
            and self.router.get("service") == router["service"]
            and sorted(self.router.get("entryPoints") or []) == sorted(router["entryPoints"])
            and observed.get("service") == service["mirroring"]["service"]
            and mirrors == service["mirroring"]["mirrors"]
        )


class TraefikApi:
    """A running Traefik, reached through its API (`api.insecure`, or a router to `api@internal`)."""

    def __init__(
        self, *, api_url: str, session: aiohttp.ClientSession, provider: str = names.PROVIDER
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.provider = provider  # whose objects to read: `file`, or `redis` for the Redis backend
        self._session = session

    async def ping(self) -> None:
        """Raise UnreachableError unless a Traefik API answers (not just any HTTP server at that URL)."""
        try:
            version = await self._get("/api/version")
        except TraefikApiError as exc:
            raise UnreachableError(f"no Traefik API at {self.api_url}: {exc}") from None
        if not isinstance(version, dict) or "Version" not in version:
            raise UnreachableError(
                f"no Traefik API at {self.api_url} (GET /api/version answered {version!r:.80});"
                " api_url must point at Traefik's API entrypoint"
            )

    async def has_service(self, qualified: str) -> bool:
        """Whether Traefik runs the HTTP service `qualified` (`name@provider`), e.g. `doctor`'s probe."""
        return await self._get(f"/api/http/services/{qualified}") is not None

    async def read_routing(self, app: str) -> ObservedRouting:
        """Return the app's weighted service, its children and its routers as Traefik runs them (one
        app's GETs)."""
        weighted = names.qualified(names.weighted_service(app), self.provider)
        weighted_doc, routers = await asyncio.gather(
            self._get(f"/api/http/services/{weighted}"), self._app_routers(app)
        )
        found: dict[str, Any] = {}
        if weighted_doc is not None:
            found[weighted] = weighted_doc
            children = _children(self.api_url, weighted, weighted_doc)
            qualified = [_qualified_child(name, self.provider) for name, _ in children]
            # gather, not a TaskGroup: a failed read must surface as itself, not as an ExceptionGroup.
            docs = await asyncio.gather(*(self._get(f"/api/http/services/{name}") for name in qualified))
            found |= {name: doc for name, doc in zip(qualified, docs, strict=True) if doc is not None}
        return observe(self.api_url, app, found, routers, provider=self.provider)

    async def read_routers(self, app: str) -> dict[str, ObservedRouter]:
        """The app's router and its pins' routers, as Traefik shows them now."""
        return app_routers(self.api_url, app, await self._app_routers(app), provider=self.provider)

    async def _app_routers(self, app: str) -> list[Any]:
        main = names.qualified(names.router(app), self.provider)
        # `search` narrows by name; app_routers keeps out another app whose name starts alike.
        main_doc, listed = await asyncio.gather(
            self._get(f"/api/http/routers/{main}"),
            self._get(f"/api/http/routers?search={names.pin_router(app, '')}&per_page=1000"),
        )
        return ([main_doc] if main_doc is not None else []) + list(listed or [])

    async def read_router(self, name: str) -> ObservedRouter | None:
        """One router of this provider by name (no suffix); None while Traefik does not show it."""
        doc = await self._get(f"/api/http/routers/{names.qualified(name, self.provider)}")
        return None if doc is None else router_of(self.api_url, doc, provider=self.provider)

    async def wait_router_verdict(
        self,
        name: str,
        *,
        timeout: float,  # noqa: ASYNC109
        poll: float = 0.05,
    ) -> ObservedRouter:
        """Poll until Traefik shows router `name`; return it, in error or not. StepNotApplied on timeout."""
        observed: ObservedRouter | str | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        observed = await self.read_router(name)
                    except (UnreachableError, TraefikApiError) as exc:  # restarting, or mid-reload
                        observed = str(exc)
                    else:
                        if observed is not None and observed.status is not None:
                            return observed
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise StepNotApplied(names.qualified(name, self.provider), "the router", observed) from None

    async def routers(self, *, per_page: int = _PAGE) -> list[Any]:
        """Every HTTP router Traefik runs, in one listing (paged as `services`)."""
        return list((await self._listing("routers", per_page=per_page)).values())

    async def services(self, *, per_page: int = _PAGE) -> dict[str, Any]:
        """Every HTTP service Traefik runs, by qualified name (`web-green@file`), in one listing.

        The list is paged (100 a page by default): ask for big pages and follow `X-Next-Page`, which
        names the next page, or 1 after the last one.
        """
        return await self._listing("services", per_page=per_page)

    async def _listing(self, kind: str, *, per_page: int) -> dict[str, Any]:
        found: dict[str, Any] = {}
        page = 1
        while True:
            doc, next_page = await self._get_page(f"/api/http/{kind}?per_page={per_page}&page={page}")
            if not isinstance(doc, list):
                raise TraefikApiError(f"{self.api_url}: unexpected list of {kind}: {doc!r:.200}")
            for item in doc:
                if isinstance(item, dict) and "name" in item:
                    found[str(item["name"])] = item
            if next_page <= page:
                return found
            page = next_page

    async def read_mirror(self, app: str) -> ObservedMirror:
        """The app's mirror router and mirroring service, as Traefik runs them."""
        router, service = await asyncio.gather(
            self._get(f"/api/http/routers/{names.qualified(names.mirror_router(app), self.provider)}"),
            self._get(f"/api/http/services/{names.qualified(names.mirror_service(app), self.provider)}"),
        )
        return ObservedMirror(router=router, service=service)

    async def wait_until_mirrored(
        self,
        app: str,
        expected: Mapping[str, Any] | None,
        *,
        timeout: float,  # noqa: ASYNC109
        poll: float = 0.05,
    ) -> float:
        """Poll until Traefik runs the app's mirror file `expected` (None: until the mirror is gone).

        Returns the seconds it took; StepNotApplied with the last observation on timeout.
        """
        started = time.monotonic()
        observed: ObservedMirror | str | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        observed = await self.read_mirror(app)
                    except (UnreachableError, TraefikApiError) as exc:  # restarting, or mid-reload
                        observed = str(exc)
                    else:
                        if observed.matches(expected):
                            return time.monotonic() - started
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise StepNotApplied(
                names.qualified(names.mirror_service(app), self.provider), expected or "no mirror", observed
            ) from None

    async def _get(self, path: str) -> Any:
        """Return the decoded JSON at `path`, or None for a 404."""
        return (await self._get_page(path))[0]

    async def _get_page(self, path: str) -> tuple[Any, int]:
        """The decoded JSON at `path` (None for a 404) and the `X-Next-Page` it names (1 without one)."""
        url = self.api_url + path
        try:
            async with self._session.get(url, timeout=_REQUEST_TIMEOUT) as response:
                if response.status == 404:
                    return None, 1
                if response.status != 200:
                    body = await response.text()
                    raise TraefikApiError(f"{url}: HTTP {response.status}: {body[:200]}")
                next_page = response.headers.get("X-Next-Page", "1")
                return await response.json(), int(next_page) if next_page.isdigit() else 1
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise UnreachableError(f"Traefik API at {self.api_url} is unreachable ({url}): {exc}") from exc
        except aiohttp.ContentTypeError as exc:
            raise TraefikApiError(f"{url}: not a Traefik API answer: {exc}") from exc


def observe(
    api_url: str,
    app: str,
    services: Mapping[str, Any],
    routers: Iterable[Any] = (),
    *,
    provider: str = names.PROVIDER,
) -> ObservedRouting:
    """The app's routing as Traefik runs it, from its services by qualified name and its routers (pure).

    `services` holds at least the app's weighted service and the children Traefik has, `routers` at least
    the app's router and pins: listings of every service and router (`TraefikApi.services`, `.routers`),
    or one app's reads. TraefikApiError for a malformed answer.
    """
    weighted = names.qualified(names.weighted_service(app), provider)
    weighted_doc = services.get(weighted)
    found = app_routers(api_url, app, routers, provider=provider)
    if weighted_doc is None:
        return ObservedRouting(app=app, present=False, routers=found)
    routes = []
    for name, weight in _children(api_url, weighted, weighted_doc):
        colour = names.colour_of_service(app, name)
        doc = services.get(_qualified_child(name, provider))
        if doc is None:  # named by the weighted service, not (yet) defined
            routes.append(ObservedRoute(service=name, colour=colour, weight=weight, servers=()))
            continue
        servers = tuple(str(s["url"]) for s in doc.get("loadBalancer", {}).get("servers", []))
        routes.append(
            ObservedRoute(
                service=name,
                colour=colour,
                weight=weight,
                servers=servers,
                server_status=dict(doc.get("serverStatus", {})),
                status=doc.get("status"),
            )
        )
    return ObservedRouting(
        app=app, present=True, status=weighted_doc.get("status"), routes=tuple(routes), routers=found
    )


def app_routers(
    api_url: str, app: str, docs: Iterable[Any], *, provider: str = names.PROVIDER
) -> dict[str, ObservedRouter]:
    """The app's router and its pins' routers among `docs` (routers as the API shows them), by name."""
    main, pin_prefix = names.router(app), names.pin_router(app, "")
    routers = {}
    for doc in docs:
        router = router_of(api_url, doc, provider=provider)
        if router is not None and (router.name == main or router.name.startswith(pin_prefix)):
            routers[router.name] = router
    return routers


def router_of(api_url: str, doc: Any, *, provider: str = names.PROVIDER) -> ObservedRouter | None:
    """One router as the API shows it; None for another provider's."""
    suffix = "@" + provider
    try:
        name = str(doc["name"])
        if not name.endswith(suffix):
            return None
        return ObservedRouter(
            name=name.removesuffix(suffix),
            service=str(doc.get("service", "")).removesuffix(suffix),
            rule=str(doc.get("rule", "")),
            status=doc.get("status"),
            errors=tuple(str(e) for e in doc.get("error", ())),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise TraefikApiError(f"{api_url}: unexpected answer for a router: {doc!r:.200}") from exc


def _children(api_url: str, weighted: str, doc: Any) -> list[tuple[str, int]]:
    try:
        return [(str(c["name"]), int(c["weight"])) for c in doc["weighted"]["services"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise TraefikApiError(f"{api_url}: unexpected answer for {weighted}: {doc}") from exc


def _qualified_child(name: str, provider: str) -> str:
    # Children come back without `@<provider>`; a child from another provider would carry its own suffix.
    return name if "@" in name else names.qualified(name, provider)

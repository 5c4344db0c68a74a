"""Traefik API adapter: read back what Traefik actually routes, and wait until it shows what was written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from trafficshift.errors import StepNotApplied, TraefikApiError, UnreachableError
from trafficshift.models import Colour, ColourRoute, Routing
from trafficshift.traefik import names

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)


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
        """Return the app's weighted service and its children as Traefik runs them."""
        weighted = names.qualified(names.weighted_service(app), self.provider)
        weighted_doc, routers = await asyncio.gather(
            self._get(f"/api/http/services/{weighted}"), self.read_routers(app)
        )
        if weighted_doc is None:
            return ObservedRouting(app=app, present=False, routers=routers)
        try:
            children = [(str(c["name"]), int(c["weight"])) for c in weighted_doc["weighted"]["services"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise TraefikApiError(
                f"{self.api_url}: unexpected answer for {weighted}: {weighted_doc}"
            ) from exc
        # gather, not a TaskGroup: a failed read must surface as itself, not as an ExceptionGroup.
        routes = await asyncio.gather(*(self._read_child(app, name, weight) for name, weight in children))
        return ObservedRouting(
            app=app, present=True, status=weighted_doc.get("status"), routes=tuple(routes), routers=routers
        )

    async def read_routers(self, app: str) -> dict[str, ObservedRouter]:
        """The app's router and its pins' routers, as Traefik's file provider shows them now."""
        main = names.qualified(names.router(app), self.provider)
        # `search` narrows by name; the prefix test below keeps out another app whose name starts alike.
        pin_prefix = names.pin_router(app, "")
        main_doc, listed = await asyncio.gather(
            self._get(f"/api/http/routers/{main}"),
            self._get(f"/api/http/routers?search={pin_prefix}&per_page=1000"),
        )
        docs = [main_doc] if main_doc is not None else []
        docs += [
            d for d in listed or [] if isinstance(d, dict) and str(d.get("name", "")).startswith(pin_prefix)
        ]
        routers = {}
        for doc in docs:
            router = self._router(doc)
            if router is not None:
                routers[router.name] = router
        return routers

    async def read_router(self, name: str) -> ObservedRouter | None:
        """One router of the file provider by name (no suffix); None while Traefik does not show it."""
        doc = await self._get(f"/api/http/routers/{names.qualified(name, self.provider)}")
        return None if doc is None else self._router(doc)

    def _router(self, doc: Any) -> ObservedRouter | None:
        try:
            name = str(doc["name"])
            if not name.endswith("@" + self.provider):
                return None
            return ObservedRouter(
                name=name.removesuffix("@" + self.provider),
                service=str(doc.get("service", "")).removesuffix("@" + self.provider),
                rule=str(doc.get("rule", "")),
                status=doc.get("status"),
                errors=tuple(str(e) for e in doc.get("error", ())),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise TraefikApiError(f"{self.api_url}: unexpected answer for a router: {doc!r:.200}") from exc

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

    async def _read_child(self, app: str, name: str, weight: int) -> ObservedRoute:
        # Children come back without `@file`; a child from another provider would carry its own suffix.
        colour = names.colour_of_service(app, name)
        qualified = name if "@" in name else names.qualified(name, self.provider)
        doc = await self._get(f"/api/http/services/{qualified}")
        if doc is None:
            return ObservedRoute(service=name, colour=colour, weight=weight, servers=())
        servers = tuple(str(s["url"]) for s in doc.get("loadBalancer", {}).get("servers", []))
        return ObservedRoute(
            service=name,
            colour=colour,
            weight=weight,
            servers=servers,
            server_status=dict(doc.get("serverStatus", {})),
            status=doc.get("status"),
        )

    # The deadline is part of the contract of this call (engine passes one per step), hence `timeout`.
    async def wait_until_applied(
        self,
        routing: Routing,
        *,
        timeout: float,  # noqa: ASYNC109
        poll: float = 0.05,
    ) -> float:
        """Poll until Traefik runs exactly `routing` (for no routes: until `<app>@file` is gone).

        Returns the seconds it took; raises StepNotApplied with the last observation on timeout. A Traefik
        that is briefly unreachable (restarting) is polled on: only the deadline decides.
        """
        started = time.monotonic()
        observed: ObservedRouting | str | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        observed = await self.read_routing(routing.app)
                    except (UnreachableError, TraefikApiError) as exc:  # restarting, or mid-reload
                        observed = str(exc)
                    else:
                        if observed.matches(routing):
                            return time.monotonic() - started
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise StepNotApplied(
                names.qualified(names.weighted_service(routing.app), self.provider), routing, observed
            ) from None

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
        url = self.api_url + path
        try:
            async with self._session.get(url, timeout=_REQUEST_TIMEOUT) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    body = await response.text()
                    raise TraefikApiError(f"{url}: HTTP {response.status}: {body[:200]}")
                return await response.json()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise UnreachableError(f"Traefik API at {self.api_url} is unreachable ({url}): {exc}") from exc
        except aiohttp.ContentTypeError as exc:
            raise TraefikApiError(f"{url}: not a Traefik API answer: {exc}") from exc

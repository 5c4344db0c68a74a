"""Traefik API adapter: read back what Traefik actually routes (one app, or every service at once)."""

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
class ObservedRouting:
    """What the Traefik API shows for one app; `present` is False when `<app>@file` does not exist."""

    app: str
    present: bool
    status: str | None = None
    routes: tuple[ObservedRoute, ...] = ()

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
        """Whether Traefik runs exactly `expected`: same colours, weights and servers (in any order)."""
        if not expected.routes:
            return not self.present
        if not self.present or self.status == "disabled":
            return False
        if any(r.colour is None or r.status is None or r.status == "disabled" for r in self.routes):
            return False
        return self.routing().canonical() == expected.canonical()


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
        """Return the app's weighted service and its children as Traefik runs them (one app's GETs)."""
        weighted = names.qualified(names.weighted_service(app), self.provider)
        weighted_doc = await self._get(f"/api/http/services/{weighted}")
        if weighted_doc is None:
            return ObservedRouting(app=app, present=False)
        children = _children(self.api_url, weighted, weighted_doc)
        qualified = [_qualified_child(name, self.provider) for name, _ in children]
        # gather, not a TaskGroup: a failed read must surface as itself, not as an ExceptionGroup.
        docs = await asyncio.gather(*(self._get(f"/api/http/services/{name}") for name in qualified))
        found = {name: doc for name, doc in zip(qualified, docs, strict=True) if doc is not None}
        return observe(self.api_url, app, {weighted: weighted_doc, **found}, provider=self.provider)

    async def services(self, *, per_page: int = _PAGE) -> dict[str, Any]:
        """Every HTTP service Traefik runs, by qualified name (`web-green@file`), in one listing.

        The list is paged (100 a page by default): ask for big pages and follow `X-Next-Page`, which
        names the next page, or 1 after the last one.
        """
        found: dict[str, Any] = {}
        page = 1
        while True:
            doc, next_page = await self._get_page(f"/api/http/services?per_page={per_page}&page={page}")
            if not isinstance(doc, list):
                raise TraefikApiError(f"{self.api_url}: unexpected list of services: {doc!r:.200}")
            for service in doc:
                if isinstance(service, dict) and "name" in service:
                    found[str(service["name"])] = service
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
    api_url: str, app: str, services: Mapping[str, Any], *, provider: str = names.PROVIDER
) -> ObservedRouting:
    """The app's routing as Traefik runs it, from its services by qualified name (pure).

    `services` holds at least the app's weighted service and the children Traefik has: a listing of
    every service (`TraefikApi.services`), or one app's reads. TraefikApiError for a malformed answer.
    """
    weighted = names.qualified(names.weighted_service(app), provider)
    weighted_doc = services.get(weighted)
    if weighted_doc is None:
        return ObservedRouting(app=app, present=False)
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
    return ObservedRouting(app=app, present=True, status=weighted_doc.get("status"), routes=tuple(routes))


def _children(api_url: str, weighted: str, doc: Any) -> list[tuple[str, int]]:
    try:
        return [(str(c["name"]), int(c["weight"])) for c in doc["weighted"]["services"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise TraefikApiError(f"{api_url}: unexpected answer for {weighted}: {doc}") from exc


def _qualified_child(name: str, provider: str) -> str:
    # Children come back without `@file`; a child from another provider would carry its own suffix.
    return name if "@" in name else names.qualified(name, provider)

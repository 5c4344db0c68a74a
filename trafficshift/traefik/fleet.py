"""Every Traefik instance of a fleet: a step counts only when each one's API shows it.

One `RoutingWatcher` per API URL (the service's rollouts share them: one poller per instance, whatever the
number of waiting steps), all asked at once with the same deadline. An instance that is unreachable or lags
fails the step when the deadline passes, named in the error; the engine reverts the rollout as for any
unconfirmed step, so no instance is left serving a routing the others were never seen to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from trafficshift.errors import StepNotApplied, TraefikApiError, UnreachableError
from trafficshift.models import Routing
from trafficshift.traefik import names
from trafficshift.traefik.api import ObservedRouting, TraefikApi
from trafficshift.traefik.watch import RoutingWatcher


class Fleet:
    """The Traefik APIs of `traefik.api_url`/`api_urls`, reading the objects of `provider`."""

    def __init__(self, *, api_urls: Sequence[str], session: aiohttp.ClientSession, provider: str) -> None:
        self.provider = provider
        self.apis = tuple(TraefikApi(api_url=url, session=session, provider=provider) for url in api_urls)
        self.watchers = tuple(RoutingWatcher(api) for api in self.apis)

    async def ping(self) -> None:
        """UnreachableError naming the first instance whose API does not answer."""
        await asyncio.gather(*(api.ping() for api in self.apis))

    # The deadline is the caller's (one per step), hence `timeout`.
    async def wait_until_applied(
        self,
        routing: Routing,
        *,
        timeout: float,  # noqa: ASYNC109
        back: bool = False,
    ) -> float:
        """Wait until EVERY instance runs exactly `routing`; return the seconds the slowest took.

        StepNotApplied when any instance did not show it within `timeout`, naming each one that did not
        (with what it showed); the others' confirmations do not count then.

        `back` (a rollout going back): instances whose API does not answer now are left out, so that one
        Traefik down does not keep the others on the version being abandoned. A Traefik that is down
        routes nothing, and reads the routing as it is then when it starts. At least one must answer.
        """
        chosen = list(zip(self.apis, self.watchers, strict=True))
        if back and len(chosen) > 1:
            answering = [pair for pair, up in zip(chosen, await self._answering(), strict=True) if up]
            chosen = answering or chosen
        results = await asyncio.gather(
            *(w.wait_until_applied(routing, timeout=timeout) for _, w in chosen), return_exceptions=True
        )
        apis = [api for api, _ in chosen]
        failed = [(api, r) for api, r in zip(apis, results, strict=True) if isinstance(r, BaseException)]
        for _, result in failed:
            if not isinstance(result, StepNotApplied):
                raise result  # a bug, or cancellation: not a verdict on the instance
        if failed:
            if len(self.apis) == 1:
                raise failed[0][1]
            service = names.qualified(names.weighted_service(routing.app), self.provider)
            lagging = "; ".join(f"{api.api_url} showed {_observed(r)}" for api, r in failed)
            raise StepNotApplied(
                f"{service} on {len(failed)} of {len(apis)} Traefik instances", routing, lagging
            )
        return max((r for r in results if isinstance(r, float)), default=0.0)

    async def _answering(self) -> list[bool]:
        async def up(api: TraefikApi) -> bool:
            try:
                await api.ping()
            except UnreachableError:
                return False
            return True

        return list(await asyncio.gather(*(up(api) for api in self.apis)))

    async def views(self, app: str) -> dict[str, ObservedRouting | str]:
        """What each instance routes for `app` now, by API URL (why, as text, when it cannot be read)."""

        async def one(api: TraefikApi) -> ObservedRouting | str:
            try:
                return await api.read_routing(app)
            except (UnreachableError, TraefikApiError) as exc:
                return str(exc)

        seen = await asyncio.gather(*(one(api) for api in self.apis))
        return {api.api_url: view for api, view in zip(self.apis, seen, strict=True)}


def _observed(error: BaseException) -> object:
    return error.observed if isinstance(error, StepNotApplied) else error

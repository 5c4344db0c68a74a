"""One watcher of a Traefik's API for every step that waits to be confirmed in this process.

Each rollout used to poll Traefik on its own (three GETs an app, every 50 ms): with 20-50 apps shifting at
once that was hundreds of requests a second against one Traefik and this process's loop, and a step took a
median 1.2-1.5 s to be confirmed where Traefik needs 0.1-0.3 s. Here one poller lists every service in one
request and wakes each waiter whose routing it shows; the load on Traefik stays one request a poll whatever
the number of waiters, and the poller runs only while someone waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trafficshift.errors import StepNotApplied, TraefikApiError, UnreachableError
from trafficshift.models import Routing
from trafficshift.traefik import names
from trafficshift.traefik.api import ObservedRouting, TraefikApi, observe

# Seconds between two listings while someone waits: Traefik applies a change 60-300 ms after the write
# (its providers throttle is 200 ms), so this adds at most this much to a confirmation.
POLL = 0.05


@dataclass(eq=False)
class _Waiter:
    routing: Routing
    # Only a listing started after the waiter arrived can confirm it: one started before the file was
    # written could show what Traefik ran before (the same routing, then gone again, in between).
    after: int
    started: float
    done: asyncio.Future[float]
    observed: ObservedRouting | str | None = field(default=None)


class RoutingWatcher:
    """Confirms written routings through one Traefik API, for any number of concurrent waiters."""

    def __init__(self, api: TraefikApi, *, poll: float = POLL) -> None:
        self.api = api
        self.poll = poll
        self._waiters: set[_Waiter] = set()
        self._poller: asyncio.Task[None] | None = None
        # Listings started so far; a waiter counts only those started after it arrived.
        self._listings = 0

    @property
    def listings(self) -> int:
        """How many listings the poller has started (one request each to Traefik's API, unless paged)."""
        return self._listings

    # The deadline is part of the contract of this call (engine passes one per step), hence `timeout`.
    async def wait_until_applied(self, routing: Routing, *, timeout: float) -> float:  # noqa: ASYNC109
        """Wait until Traefik runs exactly `routing` (no routes: until `<app>@file` is gone).

        Returns the seconds it took; raises StepNotApplied with the last observation on timeout (this
        waiter alone: the others keep waiting). A Traefik that is briefly unreachable (restarting) is
        polled on: only the deadline decides.
        """
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            routing=routing, after=self._listings, started=time.monotonic(), done=loop.create_future()
        )
        self._waiters.add(waiter)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name=f"traefik-watch {self.api.api_url}")
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter.done)
        except TimeoutError:
            raise StepNotApplied(
                names.qualified(names.weighted_service(routing.app), self.api.provider),
                routing,
                waiter.observed,
            ) from None
        finally:
            self._waiters.discard(waiter)
            if not waiter.done.done():
                waiter.done.cancel()

    async def _poll(self) -> None:
        """List every service, wake the waiters it confirms; until nobody waits."""
        try:
            while self._waiters:
                self._listings += 1
                listing = self._listings
                try:
                    services: Mapping[str, Any] | str = await self.api.services()
                except (UnreachableError, TraefikApiError) as exc:  # restarting, or mid-reload
                    services = str(exc)
                self._see(listing, services)
                if self._waiters:
                    await asyncio.sleep(self.poll)
        except Exception as exc:  # a bug here must fail the steps that wait, not leave them to time out
            for waiter in self._waiters:
                if not waiter.done.done():
                    waiter.done.set_exception(exc)
        finally:
            self._poller = None

    def _see(self, listing: int, services: Mapping[str, Any] | str) -> None:
        """Record what listing `listing` shows each waiter that arrived before it; wake those it confirms."""
        now = time.monotonic()
        for waiter in self._waiters:
            if waiter.after >= listing or waiter.done.done():
                continue
            waiter.observed = self._observe(waiter.routing.app, services)
            if isinstance(waiter.observed, ObservedRouting) and waiter.observed.matches(waiter.routing):
                waiter.done.set_result(now - waiter.started)

    def _observe(self, app: str, services: Mapping[str, Any] | str) -> ObservedRouting | str:
        if isinstance(services, str):
            return services  # the listing failed: why
        try:
            return observe(self.api.api_url, app, services, provider=self.api.provider)
        except TraefikApiError as exc:  # this app's services malformed: the others may still be confirmed
            return str(exc)

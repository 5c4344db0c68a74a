"""A bound on the Docker calls that make the daemon work hard, shared by every rollout of a process.

Creating, starting and removing a container hold the daemon's storage driver and network setup; fifty apps
promoted at once used to send all of theirs together, and each took several times longer than alone while
the cheap calls a traffic step needs (list, inspect) queued behind them in the daemon. The gate lets at most
`limit` of the heavy calls run; reads never pass through it. A waiting start goes before a waiting removal:
a start holds up a rollout's next step, a removal only the end of one that already routes its new colour.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


class Gate:
    """At most `limit` holders at once; waiters go in by priority (lower first), then in arrival order."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a gate needs a limit of at least 1, got {limit}")
        self.limit = limit
        self._held = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def held(self) -> int:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(not f.done() for _, _, f in self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        """Hold one of the `limit` slots for the block."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._held < self.limit and not self.waiting:  # a free slot nobody is queued for
            self._held += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        try:
            await turn  # the releasing holder handed its slot over
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the slot passes on: `held` stays the same
                return
        self._held -= 1

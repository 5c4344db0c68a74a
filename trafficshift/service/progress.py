"""Where each rollout the service drives stands between transitions, for `GET /events?progress=true`.

The engines report it (`Engine(on_live=...)`, once a second while a step holds); the board keeps the latest
report of each rollout, numbered, so each stream sends what changed since it last looked. Nothing of it is
stored: a transition is an event in the store, this is only the picture of the moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trafficshift.models import Live

# A rollout not reported on for this long has ended (or its engine is gone): its picture is dropped.
KEEP_FOR = 300.0


class ProgressBoard:
    """The latest `Live` of each rollout, each with the version (a counter) at which it was reported."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._version = 0
        self._latest: dict[str, tuple[int, float, Live]] = {}

    def publish(self, live: Live) -> None:
        now = self._clock()
        self._version += 1
        self._latest[live.rollout_id] = (self._version, now, live)
        for rollout_id, (_, at, _) in list(self._latest.items()):
            if now - at > KEEP_FOR:
                del self._latest[rollout_id]

    def since(self, version: int, *, rollout_id: str | None = None) -> tuple[int, list[Live]]:
        """The reports newer than `version` (of one rollout, or all), oldest first, and the version now."""
        found = sorted(
            (v, live)
            for v, _, live in self._latest.values()
            if v > version and (rollout_id is None or live.rollout_id == rollout_id)
        )
        return self._version, [live for _, live in found]

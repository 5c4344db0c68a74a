"""Housekeeping of the service: old events of finished rollouts and old finished schedules are deleted.

Older than `service.retention`, in the background, in small batches. It works over its own connections in a
worker thread, so a batch waiting for SQLite's lock (another process writing) never stalls the event loop,
where the API answers. Rollout records themselves stay (`history`, `rollback`); the events of a rollout in
progress are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trafficshift.durations import format_duration
from trafficshift.store.rollouts import StateStore
from trafficshift.store.schedules import ScheduleStore

log = logging.getLogger("trafficshift.retention")

# A pass at start-up, then one an hour: an hour's growth is small next to days of retention.
EVERY = 3600.0
# Rows per delete, and a pause between deletes: each transaction stays short, writers get the lock between.
BATCH = 500
BATCH_PAUSE = 0.05


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    schedules: int = 0


def prune(
    state_dir: Path,
    *,
    before: float,
    batch: int = BATCH,
    pause: float = BATCH_PAUSE,
    stop: threading.Event | None = None,
) -> Pruned:
    """Delete events of rollouts that ended before `before`, and schedules finished before it, in batches.

    Blocking (SQLite): the service runs it in a worker thread. `stop` ends it between two batches.
    """
    halt = stop or threading.Event()
    store, schedules = StateStore(state_dir), ScheduleStore(state_dir)
    try:
        events = _in_batches(lambda: store.prune_events(ended_before=before, limit=batch), pause, halt)
        finished = _in_batches(lambda: schedules.prune_finished(before=before, limit=batch), pause, halt)
    finally:
        store.close()
        schedules.close()
    return Pruned(events=events, schedules=finished)


def _in_batches(delete: Callable[[], int], pause: float, stop: threading.Event) -> int:
    total = 0
    while not stop.is_set():
        deleted = delete()
        total += deleted
        if deleted == 0:
            break
        time.sleep(pause)
    return total


async def run(state_dir: Path, *, retention: float, every: float = EVERY) -> None:
    """Prune now and then every `every` seconds until cancelled; a failed pass is logged and tried again."""
    stop = threading.Event()
    try:
        while True:
            try:
                pruned = await asyncio.to_thread(prune, state_dir, before=time.time() - retention, stop=stop)
            except Exception as exc:  # disk full, a lock held past the timeout: the next pass tries again
                log.error("pruning the state older than %s failed: %s", format_duration(retention), exc)
            else:
                if pruned.events or pruned.schedules:
                    log.info(
                        "pruned %d event(s) of finished rollouts and %d finished schedule(s) older than %s",
                        pruned.events,
                        pruned.schedules,
                        format_duration(retention),
                    )
            await asyncio.sleep(every)
    finally:
        stop.set()  # a pass still running in its thread ends at its next batch

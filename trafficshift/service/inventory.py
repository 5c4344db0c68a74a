"""What `GET /apps` answers from: every app's status kept, and recomputed only where something changed.

Asked afresh, every app's status costs a Docker call, two store reads and a YAML parse of its file: at 200
apps a `GET /apps` took 0.2-0.3 s with no container at all, and 200 of them a second kept Docker and the
store's thread busy doing nothing new. Here each input is read once and kept while it is known current:

- the containers: one Docker listing of every managed container, kept until Docker reports an event about
  one (the provider forwards every event it follows: `invalidate`), or the store's event sequence moves (a
  rollout, here or by the CLI, changed something); one MAX_AGE old is still answered from, and listed again
  in the background (events missed while the stream reconnects);
- the records: every app's state and active rollout in one read, kept while the store's last event sequence
  number stays the same (every change to them appends an event: invariant 15 (docs/ARCHITECTURE.md));
- the files: each app's parsed file, kept while its (inode, size, mtime) stays the same;
- the document: each app's status, kept while all of the above and its lock's holder stay the same; the
  whole answer and its JSON, while none of it changed and no rollout is in progress.

A request reads the sequence number (one query on the store's reader thread) and stats the files (about
1 ms at 200 apps); requests that find the containers to be read again share one listing (single flight),
asked for after they arrived.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence

from trafficshift import plan, report
from trafficshift.models import AppState, ContainerInfo, Rollout, Routing
from trafficshift.ports import Adapters
from trafficshift.traefik.files import dynamic_path

# A listing is read again (in the background) when it is this old, even without an event: against an event
# the stream missed (the provider invalidates the view when its stream reconnects). Parsing Docker's answer
# for 200 containers takes the loop ~10 ms: once in 5 s keeps that off nearly every request.
MAX_AGE = 5.0

FileKey = tuple[int, int, int] | None  # (inode, size, mtime ns); None when there is no file


@dataclasses.dataclass(frozen=True)
class _Listing:
    generation: int  # of `Inventory._generation` when the listing was asked for
    seq: int  # the store's last event when it was asked for
    taken: float  # loop time it was asked for
    by_app: Mapping[str, Sequence[ContainerInfo]]


class Inventory:
    """Every app's status document for `GET /apps`, recomputed only from inputs that changed."""

    def __init__(self, *, adapters: Adapters, max_age: float = MAX_AGE) -> None:
        self.adapters = adapters
        self.apps = tuple(sorted(adapters.config.apps))
        self.max_age = max_age
        self._generation = 0
        self._listing: _Listing | None = None
        # The listing in flight: the generation and sequence number it was asked for at, and its task.
        self._pending: tuple[int, int, asyncio.Future[_Listing]] | None = None
        self._records: tuple[int, Mapping[str, tuple[AppState, Rollout | None]]] | None = None
        self._files: dict[str, tuple[FileKey, Routing | None]] = {}
        self._docs: dict[str, tuple[object, report.JSON]] = {}
        self._body: bytes | None = None
        dynamic_dir = adapters.config.traefik.dynamic_dir
        # With `provider: redis` there is no file to stat: each answer reads every app's routing again.
        self._paths: list[str | None] = [
            str(dynamic_path(dynamic_dir=dynamic_dir, app=app)) if dynamic_dir is not None else None
            for app in self.apps
        ]
        # The last answer and what it was made of (a listing and records by identity, the files' keys).
        self._last: tuple[_Listing, object, list[FileKey], list[report.JSON]] | None = None
        self.listings = 0  # Docker listings made (for tests and the benchmark)

    def invalidate(self) -> None:
        """Something about a managed container changed (a Docker event): list them again when asked."""
        self._generation += 1

    async def statuses(self) -> list[report.JSON]:
        """Every app's status, as `Engine.status` gives it, sorted by app."""
        return (await self._statuses())[0]

    async def encoded(self) -> bytes:
        """`statuses()` as JSON, encoded again only when a document changed."""
        docs, changed = await self._statuses()
        if changed or self._body is None:
            self._body = json.dumps(docs).encode()
        return self._body

    async def _statuses(self) -> tuple[list[report.JSON], bool]:
        seq = await self.adapters.store.last_event_seq()
        listing = await self._containers(seq)
        records = await self._overview(seq)
        keys = [_file_key(path) for path in self._paths]  # a path of None: a key never seen again
        last = self._last
        # Nothing changed since the last answer, and no rollout is in progress (whether one is interrupted
        # depends on its lock, which announces nothing): the same answer, without a look at each app.
        if (
            last is not None
            and (last[0], last[1], last[2]) == (listing, records, keys)
            and not any(rollout is not None for _, rollout in records.values())
        ):
            return last[3], False
        out, changed = [], False
        for app, file_key in zip(self.apps, keys, strict=True):
            state, rollout = records[app]
            containers = tuple(listing.by_app.get(app, ()))
            routing = self._file(app, file_key)
            # Whether a rollout in progress is interrupted (nobody holds its lock): asked only then.
            interrupted = rollout is not None and not self.adapters.locks.lock(app).is_held_elsewhere()
            key = (containers, state, rollout, file_key, interrupted)
            kept = self._docs.get(app)
            if kept is not None and kept[0] == key:
                out.append(kept[1])
                continue
            doc = report.app_status(
                state=state,
                weights=plan.current_weights(state, rollout, containers),
                rollout=rollout,
                interrupted=interrupted,
                containers=containers,
                listed=routing,
            )
            self._docs[app] = (key, doc)
            out.append(doc)
            changed = True
        self._last = (listing, records, keys, out)
        return out, changed

    # ------------------------------------------------------------------ the inputs

    async def _containers(self, seq: int) -> _Listing:
        """A listing that tells Docker's state after this request arrived (one shared by the requests that
        need one at the same time): after the last Docker event and the store's event `seq`."""
        generation = self._generation
        listing = self._listing
        if listing is not None and listing.generation == generation and listing.seq >= seq:
            if asyncio.get_running_loop().time() - listing.taken >= self.max_age:
                # As current as Docker's events tell; listed again in the background, never waited for:
                # a Docker slow to list 200 containers must not hold up every request.
                self._refresh(generation, seq)
            return listing
        return await asyncio.shield(self._refresh(generation, seq))

    def _refresh(self, generation: int, seq: int) -> asyncio.Future[_Listing]:
        """The listing in flight if none of what the caller knows happened after it was asked for."""
        pending = self._pending
        if pending is None or pending[2].done() or pending[0] < generation or pending[1] < seq:
            task = asyncio.ensure_future(self._list(seq))
            task.add_done_callback(_retrieved)  # a failure is the waiting request's to answer, or no one's
            pending = self._pending = (generation, seq, task)
        return pending[2]

    async def _list(self, seq: int) -> _Listing:
        generation, taken = self._generation, asyncio.get_running_loop().time()
        by_app: dict[str, list[ContainerInfo]] = {}
        for c in await self.adapters.containers.list_all():
            by_app.setdefault(c.app, []).append(c)
        self.listings += 1
        listing = _Listing(generation=generation, seq=seq, taken=taken, by_app=by_app)
        if self._listing is None or self._listing.taken <= taken:
            self._listing = listing
        return listing

    async def _overview(self, seq: int) -> Mapping[str, tuple[AppState, Rollout | None]]:
        if self._records is None or self._records[0] != seq:
            # Read after `seq`: it is at least as new as that sequence number says.
            self._records = (seq, await self.adapters.store.overview(self.apps))
        return self._records[1]

    def _file(self, app: str, key: FileKey) -> Routing | None:
        """What the app's file routes, parsed again only when its key changed since it was last parsed."""
        kept = self._files.get(app)
        if kept is not None and kept[0] == key:
            return kept[1]
        # Read after the stat: a file replaced in between is read new and stat'ed again next time.
        routing = self.adapters.routing.read(app)
        self._files[app] = (key, routing)
        return routing


def _file_key(path: str | None) -> FileKey:
    """(inode, size, mtime ns) of a file, None when there is none; an unreadable one (or no file at all: the
    Redis backend) a key never seen again (its routing is never kept)."""
    if path is None:
        return (-1, -1, time.monotonic_ns())
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return (-1, -1, time.monotonic_ns())
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _retrieved(task: asyncio.Future[_Listing]) -> None:
    if not task.cancelled():
        task.exception()

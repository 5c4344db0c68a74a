"""The Redis routing backend: each app's routing document as Traefik's Redis provider reads it.

Every Traefik instance of a fleet reads the same keys, so one write routes them all. What the measurements
on Traefik 3.7 and Redis 7 (issue 15) make this module do:
- Keys written one by one are served half-written (mixed weights, or a weighted service before its
  children's servers: the router disabled, 404 for everyone, for ~2 s): every change is ONE MULTI/EXEC
  transaction that sets what changed and deletes what went away, under WATCH of the app's version key, so
  two writers of one app never interleave (the loser retries on what the winner wrote).
- Traefik skips a configuration with no object in it (the last app removed keeps being served): a sentinel
  object under the root is set in every transaction.
- One value Traefik cannot parse stalls its whole Redis provider, every app: values are checked by
  `kv.flatten` before anything is sent.
- Traefik subscribes to keyspace notifications only at its start, and without them never sees a change:
  `check_notifications` refuses to start a rollout when they are off.
trafficshift's own keys (the last document written per app, the version counters) live under
`_trafficshift:<root>:`, never under the root, so Traefik never reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trafficshift.errors import LockedError, UnreachableError
from trafficshift.traefik import kv

if TYPE_CHECKING:
    import redis.asyncio

# The key that keeps the root's configuration non-empty: Traefik 3.7 skips an empty configuration ("Skipping
# empty configuration"), and a key it has no field for does not count. An unused headers middleware does,
# and changes nothing (no router uses it); it shows in the dashboard as `trafficshift-sentinel@redis`.
SENTINEL = "http/middlewares/trafficshift-sentinel/headers/customRequestHeaders/X-Trafficshift"
# Writers of the same app race only when two controllers drive it at once (the app lock should prevent
# that): a few retries on a fresh read settle any honest race; more means something keeps writing.
WRITE_ATTEMPTS = 5
NOTIFICATIONS_FIX = (
    "turn Redis keyspace notifications on (`redis-cli CONFIG SET notify-keyspace-events KEA`, and"
    " `notify-keyspace-events KEA` in redis.conf), then restart every Traefik: Traefik subscribes only at"
    " its start"
)


class RedisRoutes:
    """Apps' routing documents under `root` in one Redis database (`redis://host:port/db`)."""

    def __init__(self, *, url: str, root: str = "traefik", client: redis.asyncio.Redis | None = None) -> None:
        import redis.asyncio  # only for a config whose traefik.provider is redis

        kv.flatten({}, root=root)  # ValueError for a root Traefik could not use
        self.url = url
        self.root = root
        self.client = client or redis.asyncio.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=5.0, decode_responses=True
        )
        self._own = own_prefix(root)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        """UnreachableError (exit 3) unless Redis answers."""
        import redis.exceptions

        try:
            await self.client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            raise UnreachableError(f"cannot reach Redis at {self.url} (traefik.redis.url): {exc}") from None

    async def check_notifications(self) -> None:
        """UnreachableError (exit 3, with the fix) when Redis would not tell Traefik about changes."""
        import redis.exceptions

        try:
            answer = await self.client.config_get("notify-keyspace-events")
            flags = str(answer.get("notify-keyspace-events") or "")
        except redis.exceptions.ResponseError:
            return  # CONFIG is renamed or refused (a managed Redis): nothing to check from here
        except (redis.exceptions.RedisError, OSError) as exc:
            raise UnreachableError(f"cannot reach Redis at {self.url} (traefik.redis.url): {exc}") from None
        if not notifications_on(flags):
            raise UnreachableError(
                f"Redis at {self.url} has keyspace notifications off (notify-keyspace-events={flags!r}):"
                f" Traefik would never see a change; {NOTIFICATIONS_FIX}"
            )

    def doc_key(self, app: str) -> str:
        """Where the routing document last written for `app` is kept (JSON), outside the root."""
        return self._own + "doc:" + app

    async def document(self, app: str) -> dict[str, Any] | None:
        """The routing document last written for `app`, or None."""
        text = await self.client.get(self.doc_key(app))
        return None if text is None else dict(json.loads(text))

    async def write(
        self, app: str, doc: Mapping[str, Any] | None, *, fence: tuple[str, str] | None = None
    ) -> kv.KeyChange:
        """Make the keys of `app` say `doc` (None: remove them) in one transaction; return what it changed.

        With `fence` (the app's lock key and the value its holder set, store/redis_locks.py), the write
        happens only while that key still holds that value: it is watched with the version key, so a lease
        that expired and was taken by another controller meanwhile fails the transaction, and this write
        is refused (LockedError) instead of interleaving with the new holder's. UnreachableError when
        Redis does not answer.
        """
        import redis.exceptions

        try:
            return await self._write(app, doc, fence)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise UnreachableError(
                f"cannot write to Redis at {self.url} (traefik.redis.url): {exc}"
            ) from None

    async def _write(
        self, app: str, doc: Mapping[str, Any] | None, fence: tuple[str, str] | None
    ) -> kv.KeyChange:
        import redis.exceptions

        new = kv.flatten(doc, root=self.root) if doc else {}
        doc_key, version_key = self.doc_key(app), self._own + "version:" + app
        for _ in range(WRITE_ATTEMPTS):
            async with self.client.pipeline(transaction=True) as pipe:
                await pipe.watch(version_key, *([fence[0]] if fence else []))
                if fence is not None and await pipe.get(fence[0]) != fence[1]:
                    raise LockedError(app)  # the lease is gone: another controller may hold the app now
                text = await pipe.get(doc_key)
                old = kv.flatten(json.loads(text), root=self.root) if text else {}
                change = kv.change(old, new)
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                pipe.set(f"{self.root}/{SENTINEL}", "1")
                if change.set:
                    pipe.mset(dict(change.set))
                if change.delete:
                    pipe.delete(*change.delete)
                if doc:
                    pipe.set(doc_key, json.dumps(doc, sort_keys=True))
                else:
                    pipe.delete(doc_key)
                pipe.incr(version_key)
                try:
                    await pipe.execute()
                except redis.exceptions.WatchError:
                    continue
                return change
        raise LockedError(app)  # another controller keeps writing it: the app lock was bypassed


def own_prefix(root: str) -> str:
    """Where trafficshift keeps its own keys for `root` (documents, versions, locks): never under the root."""
    return f"_trafficshift:{root}:"


def notifications_on(flags: str) -> bool:
    """Whether `notify-keyspace-events` publishes what Traefik listens to: keyspace events (K) of string
    writes and deletions ($ and g, both in A)."""
    return "K" in flags and ("A" in flags or {"$", "g"} <= set(flags))

"""The API's connections, bounded: a cap on how many are open, and a deadline for each request head.

aiohttp's web server has no timeout for a request head that never completes (its keep-alive timer is the
only bound, an hour by default), and no cap: a client that opens sockets and sends half a head holds each
one, until the service runs out of file descriptors and its own state, lock and dynamic-file writes fail.
So each connection goes through a ConnectionGuard in front of aiohttp's protocol:

- a connection must send a complete request head (up to the empty line) within `header_timeout` of being
  accepted, or it is closed; the requests after it on a keep-alive connection are bounded by aiohttp's
  `keepalive_timeout` (idle, or with a head begun);
- at most `limit` connections are open. At the cap, a new one takes the place of the oldest that has not
  sent its head yet (so half-open sockets cannot lock out `/healthz`); when every open connection carries a
  request, the new one is closed at once.

What was refused, evicted or cut is logged at most once per LOG_EVERY, with counts. `raise_open_files_limit`
lifts the soft RLIMIT_NOFILE to the hard limit at start-up, and the cap is kept to half of it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trafficshift.connections")

LOG_EVERY = 10.0
# Descriptors the rest of the service may need whatever the API holds: state, locks, Docker, Traefik, files.
RESERVED_FILES = 64
# What asyncio says when accept() fails for want of descriptors (it retries a second later by itself).
ACCEPT_ERROR = "socket.accept() out of system resource"

ProtocolFactory = Callable[[], asyncio.Protocol]


class Throttled:
    """A recurring warning logged at most once per `every` seconds, with how many were held back."""

    def __init__(
        self, logger: logging.Logger, *, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last.get(key, -math.inf) < self._every:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        if held:
            message += f" ({held} more like it since the last such message)"
        self._last[key] = now
        self._log.warning(message, *args)


class ConnectionGuard:
    """Counts the open connections of one listener, caps them, and closes those slow to send a head."""

    def __init__(self, *, limit: int, header_timeout: float, logs: Throttled | None = None) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.logs = logs or Throttled(log)
        self._open: set[_Guarded] = set()
        # Connections that have not sent a complete head yet, oldest first (dicts keep insertion order).
        self._waiting: dict[_Guarded, None] = {}

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def waiting(self) -> int:
        """Open connections that have not sent a complete request head yet."""
        return len(self._waiting)

    def factory(self, inner: ProtocolFactory) -> ProtocolFactory:
        """A protocol factory for `loop.create_server`: each connection guarded, then handed to `inner`."""
        return lambda: _Guarded(self, inner)

    def _admit(self, connection: _Guarded) -> bool:
        if len(self._open) >= self.limit:
            if not self._waiting:
                self.logs.warning(
                    "refused", "API: %d connections open, each with a request: closed a new one", self.limit
                )
                return False
            oldest = next(iter(self._waiting))
            self.logs.warning(
                "evicted",
                "API: %d connections open: closed the oldest that had not sent a request head",
                self.limit,
            )
            oldest.close()
        self._open.add(connection)
        self._waiting[connection] = None
        return True

    def _headed(self, connection: _Guarded) -> None:
        self._waiting.pop(connection, None)

    def _timed_out(self, connection: _Guarded) -> None:
        self.logs.warning(
            "timeout",
            "API: closed a connection that sent no complete request head in %gs",
            self.header_timeout,
        )
        connection.close()

    def _release(self, connection: _Guarded) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)


class _Guarded(asyncio.Protocol):
    """One connection: admitted (or not) by the guard, timed until its first head, then aiohttp's own."""

    def __init__(self, guard: ConnectionGuard, inner: ProtocolFactory) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._release()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard._admit(self):
            transport.close()
            return
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(
            self._guard.header_timeout, self._guard._timed_out, self
        )
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return  # refused or closed: nothing reads it
        if self._timer is not None:
            # The head ends with an empty line: CRLF CRLF (or, leniently, LF LF).
            seen = self._tail + data
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._timer.cancel()
                self._timer = None
                self._guard._headed(self)
            self._tail = seen[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard._release(self)


def raise_open_files_limit() -> int:
    """Lift the soft limit of open files to the hard one (what an unprivileged process may); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:  # e.g. beyond fs.nr_open: keep what there is
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, exc)
    return int(soft)


def connection_cap(configured: int, *, open_files: int) -> int:
    """The cap on the API's connections: as configured, but leaving the service half its descriptors."""
    return max(1, min(configured, (open_files - RESERVED_FILES) // 2))


def install_accept_error_log(loop: asyncio.AbstractEventLoop, logs: Throttled) -> Callable[[], None]:
    """Log asyncio's accept() failures (out of descriptors) at most once per LOG_EVERY; return the undo.

    asyncio reports each failed accept, and retries every second: without this, a flood writes a traceback
    a second for as long as it lasts.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            logs.warning(
                "accept", "API: cannot accept connections: %s; trying again", context.get("exception")
            )
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return lambda: loop.set_exception_handler(previous)

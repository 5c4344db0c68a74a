"""A closed-loop HTTP load generator for tests, the benchmark and the demo.

`concurrency` workers share one keep-alive ClientSession; each sends a GET, records a Sample, and sends the
next one as soon as the answer is in. Every request is recorded (an append to a list: nothing is logged per
request), so zero-downtime checks can count every failure and tell when it happened.

    async with run_load(url="http://127.0.0.1:8000/", host="web.localhost") as load:
        await load.wait_for(requests=100)
        mark = load.mark()
        ...
        print(load.share("green", since=mark))
    print(summarize(load.samples))
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

import aiohttp

# After a connection error a worker would otherwise spin at CPU speed against a closed port, flooding the
# sample list; a short pause bounds that at `concurrency / _ERROR_PAUSE` failures per second.
_ERROR_PAUSE = 0.01
# Bodies are compared by their start only (the demo apps answer one word, e.g. their colour).
_BODY_CHARS = 64
_BODY_BYTES = 4 * _BODY_CHARS


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: `started` is `time.monotonic()`; `status` None means a connection error or timeout."""

    started: float
    latency: float
    status: int | None
    body: str
    error: str | None

    @property
    def failed(self) -> bool:
        return self.status is None or not 200 <= self.status < 300


@dataclass(frozen=True)
class LoadSummary:
    requests: int
    failed: int
    # Seconds from the start of the first failed request to the start of the last one (0.0 with < 2).
    failed_span: float
    p50: float | None
    p99: float | None
    by_body: dict[str, int]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of already sorted values; None when empty."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def summarize(samples: Iterable[Sample]) -> LoadSummary:
    """Counts, failures, latency percentiles and answers by body (connection errors count under "")."""
    items = list(samples)
    failures = [s.started for s in items if s.failed]
    latencies = sorted(s.latency for s in items)
    return LoadSummary(
        requests=len(items),
        failed=len(failures),
        failed_span=(max(failures) - min(failures)) if failures else 0.0,
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        by_body=dict(Counter(s.body for s in items)),
    )


def share(
    samples: Iterable[Sample], body: str, *, since: float | None = None, until: float | None = None
) -> float:
    """Share of the requests started in [since, until) that answered `body`; failures count in the total.

    0.0 for an empty window.
    """
    total = hits = 0
    for s in samples:
        if (since is None or s.started >= since) and (until is None or s.started < until):
            total += 1
            hits += s.body == body
    return hits / total if total else 0.0


class Load:
    """Runs the workers between `async with` entry and exit; counters are live while it runs."""

    def __init__(
        self,
        *,
        url: str,
        host: str,
        concurrency: int = 8,
        timeout: float = 5.0,
        method: str = "GET",
        numbered: bool = False,
        verify_tls: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = url
        self.method = method
        # Numbered: each request carries `?n=<k>` (k = 0, 1, ...), so a server's log can tell which it saw.
        self.numbered = numbered
        self.issued = 0
        self.host = host
        self.concurrency = concurrency
        self.timeout = timeout
        self.verify_tls = verify_tls  # False for a test's self-signed certificate
        self._samples: list[Sample] = []
        self._failed = 0
        self._bodies: dict[str, str] = {}
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set after every sample, so waiters wake without polling.
        self._progress = asyncio.Event()

    # ------------------------------------------------------------ live view

    @property
    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._samples)

    @property
    def total(self) -> int:
        return len(self._samples)

    @property
    def failed(self) -> int:
        return self._failed

    @staticmethod
    def mark() -> float:
        """Now, on the clock of `Sample.started`: pass it as `since`/`until`."""
        return time.monotonic()

    def recent(self, *, since: float | None = None, last: float | None = None) -> list[Sample]:
        """Samples started since a mark, or in the last `last` seconds (newest scanned first: cheap)."""
        if last is not None:
            since = time.monotonic() - last
        if since is None:
            return list(self._samples)
        out: list[Sample] = []
        # Samples are appended when they finish, so start times are only nearly sorted: a slow request
        # can land after faster, later ones. Scan back a full timeout beyond the window to catch it.
        horizon = since - self.timeout - 1.0
        for s in reversed(self._samples):
            if s.started >= since:
                out.append(s)
            elif s.started < horizon:
                break
        out.reverse()
        return out

    def share(self, body: str, *, since: float | None = None, last: float | None = None) -> float:
        return share(self.recent(since=since, last=last), body)

    def summary(self) -> LoadSummary:
        return summarize(self._samples)

    async def wait_for(self, *, requests: int, within: float = 10.0) -> None:
        """Wait until at least `requests` requests have finished (TimeoutError after `within` seconds)."""
        async with asyncio.timeout(within):
            while len(self._samples) < requests:
                self._progress.clear()
                await self._progress.wait()

    # ------------------------------------------------------------ running

    async def __aenter__(self) -> Load:
        # force_close=False: keep-alive, as browsers and real clients do, and what a reload must not break.
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, force_close=False, ssl=None if self.verify_tls else False
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
        )
        self._tasks = [asyncio.create_task(self._worker(), name=f"load-{i}") for i in range(self.concurrency)]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Let in-flight requests finish (bounded by their own timeout) so stopping never records a failure.
        self._stopping = True
        try:
            await asyncio.wait(self._tasks, timeout=self.timeout + 1.0)
        finally:
            # Also on our own cancellation: no worker may outlive the session it uses.
            for task in self._tasks:
                task.cancel()
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()
        # A worker that died of something unexpected would silently lower the load: surface it.
        crashed = [r for r in results if isinstance(r, Exception)]
        if crashed and exc is None:
            raise crashed[0]

    async def _worker(self) -> None:
        assert self._session is not None
        session, url, headers, method = self._session, self.url, {"Host": self.host}, self.method
        record, bodies, clock, progress = self._samples.append, self._bodies, time.monotonic, self._progress
        while not self._stopping:
            started = clock()
            if self.numbered:
                url = f"{self.url}?n={self.issued}"
            self.issued += 1
            try:
                async with session.request(method, url, headers=headers, allow_redirects=False) as response:
                    # Read it all (not just the prefix) so the keep-alive connection can be reused.
                    raw = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                record(Sample(started, clock() - started, None, "", f"{type(exc).__name__}: {exc}"[:200]))
                self._failed += 1
                progress.set()
                await asyncio.sleep(_ERROR_PAUSE)
                continue
            text = raw[:_BODY_BYTES].decode("utf-8", "replace").strip()[:_BODY_CHARS]
            # Interned: a long run answers the same few bodies hundreds of thousands of times.
            body = bodies.setdefault(text, text)
            sample = Sample(started, clock() - started, status, body, None)
            record(sample)
            self._failed += sample.failed
            progress.set()


def run_load(
    *,
    url: str,
    host: str,
    concurrency: int = 8,
    timeout: float = 5.0,
    method: str = "GET",
    numbered: bool = False,
    verify_tls: bool = True,
) -> Load:
    """`async with run_load(...) as load:` runs the load; `load.samples` keeps everything afterwards."""
    return Load(
        url=url,
        host=host,
        concurrency=concurrency,
        timeout=timeout,
        method=method,
        numbered=numbered,
        verify_tls=verify_tls,
    )


def load_app(
    *, web_url: str, app: str, concurrency: int = 4, method: str = "GET", numbered: bool = False
) -> Load:
    """Load on an app's router through Traefik's web entrypoint (rule `Host(`<app>.localhost`)`, as
    tests/support/cli.write_config writes it)."""
    return run_load(
        url=web_url + "/",
        host=f"{app}.localhost",
        concurrency=concurrency,
        method=method,
        numbered=numbered,
    )

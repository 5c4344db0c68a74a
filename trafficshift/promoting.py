"""`trafficshift promote`: one app, or every compose-backed app (`--all`, one after another or `--parallel
N` at a time, stopping at the first failure), each built first with `--build`; run in this process, or in the
running service as a sequence of API promotes, followed here as a local run would print them.

A compose-backed app whose live colour runs its spec already is not rolled out: it says so and counts as
done (exit 0). A service with `build:` whose image is not on this host is built first, as `docker compose
up` builds it; `--build` builds it every time (Compose's cache makes an unchanged context a no-op, and an
unchanged image then changes nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trafficshift.batch import BatchResult, Ran, run_batch
from trafficshift.console import Printer, install_signal_handlers, outcome_code
from trafficshift.durations import format_duration
from trafficshift.errors import TrafficShiftError, Unchanged, UsageError
from trafficshift.models import Config, Rollout

Interrupt = Callable[[str], None]


def chosen_apps(config: Config, args: argparse.Namespace) -> list[str]:
    """The apps the command line names (APP, or `--all`: the compose-backed ones in config order); UsageError
    (exit 2, nothing changed) for flags that do not go together."""
    if args.all == (args.app is not None):
        raise UsageError("promote: name one APP, or --all for every compose-backed app")
    if args.parallel is not None and not args.all:
        raise UsageError("promote: --parallel goes with --all")
    if args.hold_at is not None and args.all:
        raise UsageError("promote: --hold-at goes with one APP (the first held app would stop --all)")
    if args.image is not None and (args.all or args.build):
        raise UsageError(f"promote: --image does not go with {'--all' if args.all else '--build'}")
    if not args.all:
        app = config.apps[args.app]
        if args.build and (app.container is None or not app.container.build_context):
            what = "its compose service has no build:" if app.compose else "it is not compose-backed"
            raise UsageError(f"promote {args.app} --build: {what}; there is nothing to build")
        return [args.app]
    apps = [name for name, app in config.apps.items() if app.compose is not None]
    if not apps:
        raise UsageError(f"promote --all: {config.path.name} has no compose-backed app (compose:)")
    return apps


async def promote_command(config: Config, args: argparse.Namespace) -> int:
    """Run the promote(s) the command line asks for; the exit code (of the first failure, if any)."""
    from trafficshift.client import running_service

    apps = chosen_apps(config, args)
    printer = Printer(as_json=args.json)
    stop: list[str] = []
    service = None if args.local else running_service(config, cacert=args.cacert)
    if service is None:
        from trafficshift.runtime import open_engine

        async with open_engine(
            config=config, on_event=printer.event, on_progress=printer.progress, on_live=printer.live
        ) as engine:

            def interrupt(reason: str) -> None:
                stop.append(reason)
                engine.interrupt(reason)

            install_signal_handlers(interrupt)

            def start_local(app: str) -> Awaitable[Rollout]:
                return engine.promote(
                    app=app, image=args.image, steps=args.steps, pause=args.pause, hold_at=args.hold_at
                )

            result = await _run(config, args, apps, printer, start_local, stop)
    else:
        from trafficshift.remote import run_in_service

        # One handler for every promote followed at once: a signal asks each of them to go back.
        following: dict[str, Interrupt] = {}

        def interrupt_all(reason: str) -> None:
            stop.append(reason)
            for interrupt in list(following.values()):
                interrupt(reason)

        install_signal_handlers(interrupt_all)

        async def start_remote(app: str) -> Rollout:
            try:
                return await run_in_service(
                    config,
                    service,
                    command="promote",
                    app=app,
                    body=_body(args),
                    on_event=printer.event,
                    on_progress=printer.progress,
                    on_live=printer.live,
                    install_signals=lambda interrupt: following.__setitem__(app, interrupt),
                )
            finally:
                following.pop(app, None)

        result = await _run(config, args, apps, printer, start_remote, stop)
    if args.all:
        report_all(result, as_json=args.json)
    return result.code


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """The API promote's body. Without --image the service resumes an interrupted rollout, or deploys the
    image the app's compose file names when it reads it again (or, `run_in_service`, the config's)."""
    body: dict[str, Any] = {"image": args.image} if args.image else {}
    if args.steps is not None:
        body["steps"] = list(args.steps)
    if args.pause is not None:
        body["pause"] = format_duration(args.pause)
    if args.hold_at is not None:
        body["hold_at"] = args.hold_at
    return body


async def _run(
    config: Config,
    args: argparse.Namespace,
    apps: list[str],
    printer: Printer,
    start: Callable[[str], Awaitable[Rollout]],
    stop: list[str],
) -> BatchResult:
    async def run_one(app: str) -> Ran:
        started = time.monotonic()
        try:
            await _build_first(config, app, force=args.build, printer=printer)
            rollout = await start(app)
        except Unchanged as exc:
            printer.close()
            if args.json:
                print(json.dumps({"app": app, "unchanged": True, "message": str(exc)}), flush=True)
            else:
                print(exc, flush=True)
            return Ran(0, unchanged=True)
        except TrafficShiftError as exc:
            printer.close()
            for line in str(exc).splitlines():
                print(f"trafficshift: {line}", file=sys.stderr, flush=True)
            return Ran(exc.exit_code)
        printer.close()
        took = time.monotonic() - started
        return Ran(outcome_code(rollout, command="promote", as_json=args.json, took=took))

    parallel = args.parallel or 1
    return await run_batch(
        apps, parallel=parallel, run_one=run_one, stopped=lambda: stop[0] if stop else None
    )


async def _build_first(config: Config, app: str, *, force: bool, printer: Printer) -> None:
    """Build the app's image with Compose when asked (`--build`), or when its service has `build:` and the
    image is not on this host (as `docker compose up` does); nothing for other apps."""
    spec = config.apps[app]
    if spec.compose is None or spec.container is None or not spec.container.build_context:
        return
    why = "--build"
    if not force:
        from trafficshift.pull import image_present

        if await image_present(spec.image):
            return
        why = "not on this host"
    from trafficshift.compose.build import build_service

    printer.close()
    print(f"trafficshift: {app}: building {spec.image} with Compose ({why})", file=sys.stderr, flush=True)
    await asyncio.to_thread(build_service, spec.compose)


def report_all(result: BatchResult, *, as_json: bool) -> None:
    """What `--all` came to: summary lines on stderr, or one JSON line on stdout."""
    if as_json:
        doc = {
            "rolled_out": list(result.rolled),
            "unchanged": list(result.unchanged),
            "failed": list(result.failed),
            "not_attempted": list(result.not_attempted),
            "exit_code": result.code,
        }
        print(json.dumps({"all": doc}), flush=True)
        return
    for line in result.lines():
        print(f"trafficshift: promote --all: {line}", file=sys.stderr, flush=True)

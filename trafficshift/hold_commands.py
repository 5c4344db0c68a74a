"""`trafficshift pause|resume|set-weight APP`: in this process (holding.py), or through the running service.

Output goes through the console module, as a rollout's does: the events this process reports (the hold, the
resume, the weight, and all of a rollout it drives to its end) on stderr or as JSON lines, then one line on
stdout saying where the rollout stands (with --json, the rollout as `GET /rollouts/{id}` gives it).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse

from trafficshift import holding, report
from trafficshift.client import Client, running_service
from trafficshift.console import EXIT_OK, Printer, install_signal_handlers, outcome_code
from trafficshift.errors import Conflict, NothingToDo, TrafficShiftError
from trafficshift.models import Config, Rollout


async def hold_command(config: Config, args: argparse.Namespace) -> int:
    """Run `pause`, `resume` or `set-weight`; the exit code."""
    service = None if args.local else running_service(config)
    printer = Printer(as_json=args.json)
    if service is not None:
        return await _in_service(config, args, service, printer)
    from trafficshift.runtime import open_engine

    started = time.monotonic()
    async with open_engine(config=config, on_event=printer.event, on_progress=printer.progress) as engine:
        # Only where this process drives the rollout does a signal matter: it goes back, as a promote does.
        install_signal_handlers(engine.interrupt)
        if args.command == "pause":
            rollout = await holding.pause(engine, args.app)
        elif args.command == "set-weight":
            rollout = await holding.set_weight(engine, args.app, args.weight)
        else:
            rollout, drove = await holding.resume(engine, args.app)
            if drove:  # it had no driver: driven here to its end, reported as a promote is
                printer.close()
                took = time.monotonic() - started
                return outcome_code(rollout, command="promote", as_json=args.json, took=took)
    printer.close()
    say(rollout, command=args.command, as_json=args.json)
    return EXIT_OK


def say(r: Rollout, *, command: str, as_json: bool, where: str = "") -> None:
    """Where the rollout stands after the command (stdout)."""
    if as_json:
        print(json.dumps(report.rollout_dict(r)), flush=True)
        return
    weights = report.weights_text(r.weights) or "nothing routed"
    if command == "resume":
        print(f"resumed: rollout {r.id} of {r.app} goes on from {weights}{where}", flush=True)
    else:
        print(
            f"held: rollout {r.id} of {r.app} at {weights} ({r.held});"
            f" `trafficshift resume {r.app}` goes on{where}",
            flush=True,
        )


async def _in_service(config: Config, args: argparse.Namespace, service: Client, printer: Printer) -> int:
    """The same through the service's API; a set weight is followed in the state folder until confirmed."""
    import asyncio

    from trafficshift.store.aio import AsyncStateStore
    from trafficshift.store.locks import FileLocks

    app = urllib.parse.quote(args.app, safe="")
    where = f" (in the service at {service.url})"
    store = AsyncStateStore(config.state_dir)
    try:
        cursor = await store.last_event_seq()
        try:
            if args.command == "pause":
                doc = await asyncio.to_thread(service.call, "POST", f"/apps/{app}/pause")
                rollout = await store.rollout(str(doc["id"]))
            elif args.command == "resume":
                doc = await asyncio.to_thread(service.call, "POST", f"/apps/{app}/resume")
                rollout = await store.rollout(str(doc["id"]))
            else:
                body = {"weight": args.weight}
                doc = await asyncio.to_thread(service.call, "POST", f"/apps/{app}/weight", body)
                asked = await store.rollout(str(doc["id"]))
                assert asked is not None
                rollout = await holding.wait_weight(
                    store, FileLocks(config.state_dir), asked, args.weight, after=cursor
                )
        except Conflict as exc:  # 409: nothing in progress, or a phase that does not allow it (exit 2)
            raise NothingToDo(str(exc)) from None
        for event in await store.events(after=cursor, rollout_id=rollout.id if rollout else None):
            printer.event(event)
    finally:
        await store.aclose()
    printer.close()
    if rollout is None:
        raise TrafficShiftError(
            f"the service at {service.url} keeps its state in another folder than {config.state_dir}"
        )
    say(rollout, command=args.command, as_json=args.json, where=where)
    return EXIT_OK

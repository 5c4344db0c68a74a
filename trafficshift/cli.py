"""Command line: parse arguments, call the engine or the API, print, map outcomes to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trafficshift import __version__, plan, report
from trafficshift.config import load_config, require_app, resolve_config_path
from trafficshift.console import EXIT_OK, Printer, install_signal_handlers, outcome_code
from trafficshift.durations import parse_duration
from trafficshift.errors import ConfigError, TrafficShiftError, UsageError
from trafficshift.models import Config, Rollout

if TYPE_CHECKING:
    from trafficshift.client import Client
# Commands that never start a container: they work without reading compose files (even broken ones).
_NO_COMPOSE = ("status", "render", "history", "schedule", "reconcile", "doctor", "pause", "smoke")
# Manual stepping of a rollout in progress (hold_commands.py).
_HOLD_COMMANDS = ("pause", "resume", "set-weight")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's own default must not undo a `-c` given before the subcommand.
    common.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $TRAFFICSHIFT_CONFIG, else ./trafficshift.yml)",
    )
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print data as JSON")

    parser = argparse.ArgumentParser(
        prog="trafficshift",
        description="Zero-downtime weighted cutovers of Docker apps behind Traefik.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"trafficshift {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, parents=[common, *parents])

    add("check", "validate the config; print nothing but errors")

    # No config to read yet: `init` writes it (so no -c either).
    text = "write trafficshift.yml (an app per compose service), Traefik's files; keep what exists"
    p = sub.add_parser("init", help=text, description=text)
    p.add_argument("folder", nargs="?", default=".", help="the project's folder (default: here)")
    add("doctor", "check Docker, Traefik, the watched folder, the clock and permissions; one line each")

    p = add(
        "promote", "deploy a new image: first deploy, or a gradual cutover to the other colour", json_flag
    )
    p.add_argument("app", nargs="?")
    p.add_argument("--image", help="image to deploy (default: the config's image)")
    p.add_argument("--steps", type=_steps_arg, help="percentages on the new colour, e.g. 10,50,100")
    p.add_argument("--pause", type=_duration_arg, help="time held at each step, e.g. 5s")
    p.add_argument(
        "--all", action="store_true", help="every compose-backed app whose spec changed, one after another"
    )
    p.add_argument(
        "--parallel", type=_positive_arg, metavar="N", help="with --all: promote up to N apps at once"
    )
    p.add_argument(
        "--build", action="store_true", help="build the image from the compose service's build: first"
    )
    p.add_argument(
        "--hold-at",
        type=_percent_arg,
        metavar="PERCENT",
        help="hold the rollout at this percentage on the new colour until `trafficshift resume`",
    )
    _local_flag(p)

    p = add("pause", "hold the app's rollout at its current weights until `resume`", json_flag)
    p.add_argument("app")
    _local_flag(p)

    p = add(
        "resume",
        "resume the app's held rollout (driven here to its end when its process is gone)",
        json_flag,
    )
    p.add_argument("app")
    _local_flag(p)

    p = add(
        "set-weight",
        "move the app's rollout to an exact percentage on the new colour (confirmed), held there",
        json_flag,
    )
    p.add_argument("app")
    p.add_argument("weight", type=_percent_arg, metavar="PERCENT")
    _local_flag(p)

    p = add("abort", "stop a rollout in progress: all traffic back to the old colour", json_flag)
    p.add_argument("app")
    _local_flag(p)

    p = add("rollback", "after a completed promote, promote the previous image again", json_flag)
    p.add_argument("app")
    p.add_argument("--now", action="store_true", help="all traffic at once instead of gradually")
    _local_flag(p)

    p = add("status", "live colour, image, weights, containers and any rollout", json_flag)
    p.add_argument("app", nargs="?")

    p = add(
        "reconcile",
        "route an app's dynamic file to its containers where they are now (each probed ready first),"
        " e.g. after Docker restarted them on new published ports",
        json_flag,
    )
    p.add_argument("app", nargs="?")
    p.add_argument("--all", action="store_true", help="every app of the config")

    p = add(
        "smoke",
        "send an app's smoke checks through Traefik to its live colour; exit 1 when one fails",
    )
    p.add_argument("app")
    p.add_argument(
        "--colour",
        choices=("live", "new"),
        default="live",
        help="live (default): through the app's own router; new: refused, a promote checks its new colour",
    )

    p = add("render", "print the dynamic config that matches the current state; write nothing")
    p.add_argument("app", nargs="?")

    p = add("history", "past rollouts: when, from, to, outcome", json_flag)
    p.add_argument("app")

    p = add("serve", "run the service: HTTP API, Docker-event-driven config, scheduled cutovers")
    p.add_argument("--listen", help="host:port (default: service.listen, else 127.0.0.1:8700)")
    p.add_argument(
        "--tls-cert", metavar="PEM", help="serve https with this certificate chain (with --tls-key)"
    )
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")

    p = add("schedule", "scheduled cutovers: `schedule APP --image IMAGE --at TIME`, `list`, `cancel ID`")
    p.add_argument("args", nargs="+", metavar="APP|list|cancel")
    p.add_argument("--image")
    p.add_argument("--at", help="ISO 8601 time with offset, e.g. 2026-12-01T03:00:00+01:00")
    p.add_argument("--json", action="store_true", help="print data as JSON")
    _cacert_flag(p)
    return parser


def _local_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--local",
        action="store_true",
        help="run it in this process even while `trafficshift serve` runs for this config",
    )
    _cacert_flag(p)


def _cacert_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cacert",
        metavar="PEM",
        help="CA certificate that an https:// service's certificate is checked against"
        " (default: $TRAFFICSHIFT_CACERT, else the system's)",
    )


def _positive_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _percent_arg(text: str) -> int:
    from trafficshift.stepping import check_weight

    value = int(text) if text.isdigit() else text
    if problem := check_weight(value):
        raise argparse.ArgumentTypeError(problem)
    return int(text)


def _steps_arg(text: str) -> tuple[int, ...]:
    try:
        return plan.parse_steps(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------------- commands


async def _run_rollout(
    config: Config, args: argparse.Namespace, action: Callable[[Any], Awaitable[Rollout]]
) -> int:
    from trafficshift.runtime import open_engine

    printer = Printer(as_json=args.json)
    started = time.monotonic()
    async with open_engine(
        config=config, on_event=printer.event, on_progress=printer.progress, on_live=printer.live
    ) as engine:
        install_signal_handlers(engine.interrupt)
        rollout = await action(engine)
    printer.close()
    return outcome_code(rollout, command=args.command, as_json=args.json, took=time.monotonic() - started)


async def _run_in_service(config: Config, args: argparse.Namespace, service: Client) -> int:
    """The rollout in the running service, followed here: same output and exit codes as a local run."""
    from trafficshift.remote import run_in_service

    body: dict[str, Any] | None = None
    if args.command == "rollback":
        body = {"now": args.now}
    printer = Printer(as_json=args.json)
    started = time.monotonic()
    rollout = await run_in_service(
        config,
        service,
        command=args.command,
        app=args.app,
        body=body,
        on_event=printer.event,
        on_progress=printer.progress,
        on_live=printer.live,
        install_signals=install_signal_handlers,
    )
    printer.close()
    return outcome_code(rollout, command=args.command, as_json=args.json, took=time.monotonic() - started)


async def _status(config: Config, args: argparse.Namespace) -> int:
    from trafficshift.runtime import open_engine

    apps = [args.app] if args.app else sorted(config.apps)
    async with open_engine(config=config) as engine:
        statuses = [await engine.status(app) for app in apps]
    if args.json:
        print(json.dumps(statuses[0] if args.app else statuses, indent=2))
    else:
        print("\n".join(report.format_status(s) for s in statuses))
    return EXIT_OK


async def _reconcile(config: Config, args: argparse.Namespace) -> int:
    """Each app in turn (all are tried with --all); the exit code of the first one that failed."""
    from trafficshift.reconcile import describe, reconcile_app, reconciled_dict
    from trafficshift.runtime import open_adapters

    if bool(args.app) == bool(args.all):
        raise UsageError("reconcile: name one app, or give --all")
    apps = [args.app] if args.app else sorted(config.apps)
    printer = Printer(as_json=args.json)
    documents, code = [], EXIT_OK
    async with open_adapters(config) as adapters:
        for app in apps:
            try:
                done = await reconcile_app(adapters=adapters, app=app, on_progress=printer.progress)
            except TrafficShiftError as exc:
                if not args.all:
                    raise
                printer.close()
                for line in str(exc).splitlines():
                    print(f"trafficshift: {line}", file=sys.stderr)
                code = code or exc.exit_code
                continue
            printer.close()
            documents.append(reconciled_dict(done))
            if not args.json:
                print(describe(done))
                for name in done.left_out:
                    print(f"  {name} did not become ready: it is not routed", file=sys.stderr)
    if args.json:
        print(json.dumps(documents if args.all else documents[0], indent=2))
    return code


async def _smoke(config: Config, args: argparse.Namespace) -> int:
    """The app's smoke checks through its own router (what its users reach now); SmokeFailed is exit 1."""
    from trafficshift import smoke
    from trafficshift.errors import SmokeFailed
    from trafficshift.smoke_requests import run_checks

    spec = require_app(config, args.app)
    if args.colour == "new":
        raise UsageError(
            "smoke --colour new: a new colour exists only during a promote, which sends it these checks"
            " through Traefik before any weight; use --colour live"
        )
    url, host = config.traefik.entrypoint_url, smoke.host_of(spec.rule)
    if not spec.smoke or url is None or host is None:
        raise UsageError(f"smoke: {spec.name} has no smoke checks (apps.{spec.name}.smoke)")
    sent, reason = await run_checks(spec.smoke, url=url, host=host)
    if reason is not None:
        raise SmokeFailed(f"{spec.name}: {reason}")
    print(f"{spec.name}: {sent} smoke request(s) passed")
    return EXIT_OK


async def _render(config: Config, args: argparse.Namespace) -> int:
    from trafficshift.runtime import open_engine
    from trafficshift.traefik.render import render_dynamic, render_mirror

    apps = [args.app] if args.app else sorted(config.apps)
    async with open_engine(config=config) as engine:
        for app in apps:
            spec = engine.spec(app)
            await engine.containers.ping()
            routing = await engine.current_routing(app)
            if not routing.routes:
                print(f"# {app}: nothing running, so no dynamic file", file=sys.stderr)
                continue
            print(f"# {app}.yml")
            print(render_dynamic(app=spec, routing=routing, entrypoints=config.traefik.entrypoints))
            if (mirror := await engine.current_mirror(app)) is not None:
                print(f"# {app}.mirror.yml")
                print(render_mirror(app=spec, mirror=mirror, entrypoints=config.traefik.entrypoints))
    return EXIT_OK


def _history(config: Config, args: argparse.Namespace) -> int:
    from trafficshift.store.rollouts import StateStore

    store = StateStore(config.state_dir)
    try:
        rollouts = store.history(args.app)
    finally:
        store.close()
    if args.json:
        print(json.dumps([report.rollout_dict(r) for r in rollouts], indent=2))
    else:
        print(report.format_history(rollouts))
    return EXIT_OK


def _dispatch(config: Config, args: argparse.Namespace) -> int:
    command = args.command
    app = getattr(args, "app", None)
    if app is not None:
        require_app(config, app)  # before anything is opened or created: bad input changes nothing
    if command == "check":
        return EXIT_OK
    # Imported only now: `check` and `--help` run no event loop, and asyncio (with ssl) is about 40% of
    # the CLI's import time.
    import asyncio

    if command == "promote":
        from trafficshift.promoting import promote_command

        return asyncio.run(promote_command(config, args))
    if command in ("abort", "rollback") and not args.local:
        from trafficshift.client import running_service

        if (service := running_service(config, cacert=args.cacert)) is not None:
            return asyncio.run(_run_in_service(config, args, service))
    if command == "abort":
        return asyncio.run(_run_rollout(config, args, lambda e: e.abort(app=args.app)))
    if command == "rollback":
        return asyncio.run(_run_rollout(config, args, lambda e: e.rollback(app=args.app, now=args.now)))
    if command in _HOLD_COMMANDS:
        from trafficshift.hold_commands import hold_command

        return asyncio.run(hold_command(config, args))
    if command == "status":
        return asyncio.run(_status(config, args))
    if command == "render":
        return asyncio.run(_render(config, args))
    if command == "reconcile":
        return asyncio.run(_reconcile(config, args))
    if command == "smoke":
        return asyncio.run(_smoke(config, args))
    if command == "history":
        return _history(config, args)
    if command == "doctor":
        from trafficshift.doctor import doctor_command

        return asyncio.run(doctor_command(config, out=sys.stdout))
    if command == "serve":
        from trafficshift.service.app import configure_logging, serve

        configure_logging()
        if (args.tls_cert is None) != (args.tls_key is None):
            raise UsageError("serve: --tls-cert and --tls-key go together")
        tls = None if args.tls_cert is None else (args.tls_cert, args.tls_key)
        return asyncio.run(serve(config, listen=args.listen, tls=tls))
    if command == "schedule":
        from trafficshift.client import schedule_command

        return schedule_command(
            config,
            args=args.args,
            image=args.image,
            at=args.at,
            as_json=args.json,
            out=sys.stdout,
            cacert=args.cacert,
        )
    raise UsageError(f"unknown command {command}")  # argparse rejects these before here


def _load(args: argparse.Namespace) -> Config:
    """The config, with compose-backed apps' services read through Compose when the command needs them."""
    path = resolve_config_path(getattr(args, "config", None))
    if args.command in _NO_COMPOSE:
        return load_config(path, read_compose=False)
    if args.command != "abort":
        return load_config(path)
    try:
        return load_config(path)
    except ConfigError as exc:
        # An abort must not wait for a compose file to be fixed: it starts nothing, and the only thing it
        # takes from the service is the stop grace (stop_grace_period), which falls back to the default.
        config = load_config(path, read_compose=False)  # raises again when trafficshift.yml is wrong
        for line in exc.messages:
            print(f"trafficshift: warning: {line}", file=sys.stderr)
        print("trafficshift: warning: aborting with the default stop grace of 10s", file=sys.stderr)
        return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":  # before any config is read: it writes the first one
            from trafficshift.scaffold import init_project

            return init_project(Path(args.folder), out=sys.stdout)
        config = _load(args)
        return _dispatch(config, args)
    except TrafficShiftError as exc:
        for line in str(exc).splitlines():
            print(f"trafficshift: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug, not a user error: one line by default, the traceback when asked for.
        if os.environ.get("TRAFFICSHIFT_DEBUG"):
            traceback.print_exc()
        print(f"trafficshift: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`trafficshift reconcile`: route an app's file to its containers where they are now, probed ready first.

In `publish` mode a container that Docker restarts (`docker restart`, the daemon restarted, a reboot without
`serve`) comes back on a new host port while the file keeps the old one. This rewrites the file from the
store's weights and the containers that answer now. Every container it routes is probed first, also one at
an address the file already lists (after a reboot Docker may hand an old port to another container):
invariant 1 (docs/ARCHITECTURE.md). It runs under the app's lock as the provider does, invariant 5
(docs/ARCHITECTURE.md), and never writes a routing that leaves a colour with weight > 0 without a server,
invariant 7 (docs/ARCHITECTURE.md): it refuses instead and leaves the file as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from trafficshift import plan, report
from trafficshift.config import require_app
from trafficshift.errors import NoReadyServer, UsageError
from trafficshift.models import AppSpec, AppState, Colour, ContainerInfo, LockRole, Routing
from trafficshift.ports import Adapters
from trafficshift.readiness import probe_ready
from trafficshift.traefik.publish import CONFIRM_TIMEOUT

# Like a rollout start: wait out the service's provider (one write and its confirmation) for the app's lock.
LOCK_WAIT = CONFIRM_TIMEOUT + 5.0

ProgressSink = Callable[[str], None]


@dataclass(frozen=True)
class Reconciled:
    """What `reconcile` found and did for one app."""

    app: str
    weights: Mapping[Colour, int]
    before: Routing | None  # the file as it was (None: unreadable)
    after: Routing  # what the file routes now
    changed: bool
    took: float  # seconds to write and confirm (0 when nothing was written)
    left_out: tuple[str, ...] = ()  # containers that did not become ready, by name


async def reconcile_app(
    *, adapters: Adapters, app: str, on_progress: ProgressSink | None = None
) -> Reconciled:
    """Reconcile one app's file under its lock: exit 3 before anything when Docker or Traefik is down, 4
    while a rollout holds the app, 2 when nothing tells the app's weights, 3 when a colour that takes
    traffic has no ready container."""
    spec = require_app(adapters.config, app)
    await adapters.containers.ping()
    await adapters.routing.ping()
    lock = adapters.locks.lock(app)
    # The provider's role: a promote that starts meanwhile waits for this brief hold instead of failing.
    await lock.acquire_waiting(wait=LOCK_WAIT, role=LockRole.PROVIDER)
    with lock:
        # A pre_deploy's one-off container left by a rollout killed while it ran: nobody drives the app now
        # (this holds its lock), and a resumed promote would run the hook afresh.
        await adapters.containers.remove_one_offs(app=app)
        # An active rollout that nobody drives (interrupted, or left by exit 5) has recorded weights: the
        # file is routed as its last committed step says, which is what `promote`/`abort` resume from.
        state = await adapters.store.app_state(app)
        rollout = await adapters.store.active_rollout(app)
        containers = await adapters.containers.list(app=app)
        weights = plan.known_weights(state, rollout, containers)
        if weights is None:
            listed = adapters.routing.read(app)
            if listed is not None and not listed.routes and not any(c.running for c in containers):
                # Never deployed (or all gone, file too): nothing to route, and nothing routed. In step.
                return Reconciled(app=app, weights={}, before=listed, after=listed, changed=False, took=0.0)
            raise UsageError(_unknown_weights(app, containers))
        return await repair(adapters=adapters, spec=spec, weights=weights, on_progress=on_progress)


async def repair_live(
    *, adapters: Adapters, spec: AppSpec, state: AppState, on_progress: ProgressSink | None = None
) -> Reconciled | None:
    """Before a new rollout: route the live colour where its containers are now, if the file does not.

    The caller holds the app's lock. None when nothing is live (a first deploy).
    """
    if state.colour is None:
        return None
    done = await repair(
        adapters=adapters, spec=spec, weights=plan.settled_weights(state), on_progress=on_progress
    )
    if done.changed and on_progress is not None:
        on_progress(describe(done))
    return done


async def repair(
    *,
    adapters: Adapters,
    spec: AppSpec,
    weights: Mapping[Colour, int],
    on_progress: ProgressSink | None = None,
) -> Reconciled:
    """Make the app's file route `weights` over its containers that answer now; the caller holds its lock.

    Nothing is probed or written when the file already routes exactly the containers that can be servers.
    """
    app = spec.name
    containers = await adapters.containers.list(app=app)
    before = adapters.routing.read(app)
    # Pins are a rollout's to add and remove (an interrupted one keeps its canary): kept as the file has them.
    pins = before.pins if before is not None else ()
    wanted = plan.routing_for(app=app, weights=weights, containers=containers, pins=pins)
    if before is not None and before.canonical() == wanted:
        return Reconciled(app=app, weights=weights, before=before, after=wanted, changed=False, took=0.0)
    candidates = [c for c in containers if c.colour in weights and plan.server_url(c) is not None]
    if on_progress is not None and candidates:
        on_progress(f"{app}: probing {', '.join(c.name for c in candidates)} before routing them")
    results = await asyncio.gather(
        *(
            probe_ready(app=spec, containers=adapters.containers, info=c, session=adapters.http)
            for c in candidates
        )
    )
    ready = [c for c, ok in zip(candidates, results, strict=True) if ok]
    left_out = tuple(c.name for c, ok in zip(candidates, results, strict=True) if not ok)
    routing = plan.routing_for(app=app, weights=weights, containers=ready, pins=pins)
    if unserved := plan.unserved(weights, routing):
        raise NoReadyServer(_unserved(app, unserved, weights, containers, before))
    if before is not None and before.canonical() == routing:
        return Reconciled(
            app=app, weights=weights, before=before, after=routing, changed=False, took=0.0, left_out=left_out
        )
    took = await adapters.routing.publish(spec=spec, routing=routing)
    return Reconciled(
        app=app, weights=weights, before=before, after=routing, changed=True, took=took, left_out=left_out
    )


# ---------------------------------------------------------------------- what to say


def describe(done: Reconciled) -> str:
    """One line for people: what the file routes now, and what it routed before when that changed."""
    now = _servers_text(done.after)
    if not done.changed:
        return f"{done.app}: its file already routes {now}: nothing to do"
    was = "an unreadable file" if done.before is None else _servers_text(done.before)
    return f"{done.app}: its file now routes {now} (confirmed in {done.took:.2f}s); it routed {was}"


def reconciled_dict(done: Reconciled) -> report.JSON:
    """One app as `reconcile --json` prints it."""
    return {
        "app": done.app,
        "changed": done.changed,
        "weights": report.weights_dict(done.weights),
        "before": None if done.before is None else sorted(done.before.servers()),
        "after": sorted(done.after.servers()),
        "left_out": list(done.left_out),
        "took": round(done.took, 3),
    }


def _servers_text(routing: Routing) -> str:
    if not routing.routes:
        return "nothing (no file)"
    return "; ".join(f"{r.colour}={r.weight}% at {', '.join(sorted(r.servers))}" for r in routing.routes)


def _unknown_weights(app: str, containers: list[ContainerInfo]) -> str:
    running = sorted({str(c.colour) for c in containers if c.running})
    if not running:
        return (
            f"{app}: the state has no record of it and none of its containers runs, so nothing tells what"
            " its file should route; `trafficshift promote` deploys it"
        )
    names = ", ".join(c.name for c in containers if c.running)
    return (
        f"{app}: the state has no record of it and {' and '.join(running)} run ({names}), so its weights are"
        " unknown; remove the containers of the colour that should not serve, then run"
        f" `trafficshift reconcile {app}` again"
    )


def _unserved(
    app: str,
    unserved: list[Colour],
    weights: Mapping[Colour, int],
    containers: list[ContainerInfo],
    before: Routing | None,
) -> str:
    why = []
    for colour in unserved:
        mine = [c for c in containers if c.colour is colour]
        if not mine:
            why.append(f"no {colour} container exists")
        for c in mine:
            if plan.server_url(c) is None:
                state = "not running" if not c.running else f"{c.health or 'without an address'}"
                why.append(f"{c.name} is {state}")
            else:
                why.append(f"{c.name} did not become ready at {c.url}")
    shares = report.weights_text(weights)
    return (
        f"{app}: no ready {' or '.join(unserved)} container to take its share ({shares}):"
        f" {'; '.join(why)}; its file was left as it was"
        + ("" if before is None else f" (it routes {_servers_text(before)})")
    )

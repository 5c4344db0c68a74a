"""Pure rollout logic: weights for a step, the routing the file must show, what to do next."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence

from trafficshift import smoke
from trafficshift.models import (
    AppSpec,
    AppState,
    Colour,
    ColourRoute,
    ContainerInfo,
    MirrorRoute,
    Phase,
    Pin,
    Rollout,
    Routing,
)
from trafficshift.traefik import names, rules


def check_steps(steps: Sequence[int]) -> str | None:
    """Return why `steps` is not a valid rollout plan, or None: strictly rising percentages ending at 100."""
    if not steps:
        return "must list at least one step"
    for value in steps:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            return f"each step must be a whole percentage 1..100, got {value!r}"
    if any(b <= a for a, b in itertools.pairwise(steps)):
        return f"steps must rise strictly, got {list(steps)}"
    if steps[-1] != 100:
        return f"steps must end at 100, got {list(steps)}"
    return None


def parse_steps(text: str) -> tuple[int, ...]:
    """Parse `10,50,100` as the CLI takes it; raise ValueError with the reason."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated percentages like 10,50,100, got {text!r}") from None
    problem = check_steps(steps)
    if problem:
        raise ValueError(problem)
    return steps


def shift_weights(*, old: Colour | None, new: Colour, percent: int) -> dict[Colour, int]:
    """Weights with `percent` on the new colour and the rest on the old one (if there is one)."""
    if old is None:
        return {new: 100}
    return {old: 100 - percent, new: percent}


def settled_weights(state: AppState) -> dict[Colour, int]:
    """Weights of an app with no rollout in progress."""
    return {state.colour: 100} if state.colour else {}


def current_weights(
    state: AppState, rollout: Rollout | None, containers: Iterable[ContainerInfo] = ()
) -> dict[Colour, int]:
    """What the dynamic file of the app should show now.

    With no record at all (a lost state folder), the containers' labels tell: one colour running gets 100%.
    """
    if rollout is not None:
        return dict(rollout.weights)
    if state.colour is not None:
        return settled_weights(state)
    running = {c.colour for c in containers if c.running}
    return {running.pop(): 100} if len(running) == 1 else {}


def server_url(c: ContainerInfo) -> str | None:
    """The URL to route a container at, or None when it cannot be a server: stopped, no address, unhealthy."""
    return c.url if c.running and c.url and c.health != "unhealthy" else None


def trusted_servers(containers: Iterable[ContainerInfo], *, trusted: Collection[str]) -> list[ContainerInfo]:
    """The containers that can be servers and whose URL is `trusted`: in the app's file, or seen ready.

    Invariant 1 (docs/ARCHITECTURE.md): any other one, such as a replica Docker restarted on a new published
    port, waits for a probe.
    """
    return [c for c in containers if (url := server_url(c)) is not None and url in trusted]


def known_weights(
    state: AppState, rollout: Rollout | None, containers: Iterable[ContainerInfo] = ()
) -> dict[Colour, int] | None:
    """`current_weights`, or None when nothing tells them: no record, no rollout, and not one colour running.

    Unknown weights are no reason to route nothing (that would delete the app's file): only a record that
    says the app is undeployed is.
    """
    if rollout is None and not state.recorded and len({c.colour for c in containers if c.running}) != 1:
        return None
    return current_weights(state, rollout, containers)


def routing_for(
    *,
    app: str,
    weights: Mapping[Colour, int],
    containers: Iterable[ContainerInfo],
    pins: Iterable[Pin] = (),
) -> Routing:
    """The routing for `weights` (canonical), with each colour's containers that can be servers.

    A colour without a server is left out: Traefik disables a weighted service whose child is missing, and a
    child with no servers would answer 503 for its share: invariant 7 (docs/ARCHITECTURE.md). So is a pin to
    such a colour.
    """
    servers: dict[Colour, list[str]] = {}
    for c in containers:
        if (url := server_url(c)) is not None:
            servers.setdefault(c.colour, []).append(url)
    routes = tuple(
        ColourRoute(colour=colour, weight=weight, servers=tuple(servers[colour]))
        for colour, weight in weights.items()
        if servers.get(colour)
    )
    served = {r.colour for r in routes}
    return Routing(app=app, routes=routes, pins=tuple(p for p in pins if p.colour in served)).canonical()


# Phases in which the header/cookie canary routes: from the new colour's readiness until the public weights
# are done moving. Draining sends everyone to the new colour (`never` cannot be kept any more), and going
# back removes the pins with the first write: invariant 17 (docs/ARCHITECTURE.md).
CANARY_PHASES = frozenset({Phase.READY, Phase.MIRRORING, Phase.SHIFTING})


def pins_for(spec: AppSpec, rollout: Rollout | None) -> tuple[Pin, ...]:
    """The pinned routers the app's file has during `rollout` (none outside one, or without `canary`)."""
    canary = spec.canary
    if canary is None or rollout is None or not rollout.active or rollout.phase not in CANARY_PHASES:
        return ()
    if rollout.from_colour is None:  # a first deploy has no public traffic to keep apart from
        return ()

    def pin(name: str, colour: Colour, value: str, rank: int) -> Pin:
        rule = rules.matching(app_rule=spec.rule, header=canary.header, cookie=canary.cookie, value=value)
        return Pin(name=name, colour=colour, rule=rule, rank=rank)

    # `always` outranks `never`: a request that carries both is the tester's.
    return (
        pin(names.CANARY_ALWAYS, rollout.to_colour, "always", 2),
        pin(names.CANARY_NEVER, rollout.from_colour, "never", 1),
    )


# The smoke router's pin name (`<app>-pin-smoke`): it outranks the canary's (ranks 2 and 1).
SMOKE_PIN = "smoke"


def smoke_pin(spec: AppSpec, rollout: Rollout) -> Pin:
    """The temporary router of a rollout's smoke checks: requests carrying `X-Trafficshift-Smoke: <id>` go
    to the new colour (at weight 0), with the app's rule, entrypoints and middlewares."""
    rule = rules.matching(app_rule=spec.rule, header=smoke.SMOKE_HEADER, cookie=None, value=rollout.id)
    return Pin(name=SMOKE_PIN, colour=rollout.to_colour, rule=rule, rank=3)


def opens_canary(spec: AppSpec, rollout: Rollout) -> bool:
    """Whether a rollout that is ready routes its new colour at weight 0 now, for its canary pins."""
    return rollout.phase is Phase.READY and bool(pins_for(spec, rollout))


def unserved(weights: Mapping[Colour, int], routing: Routing) -> list[Colour]:
    """Colours that should take traffic (weight > 0) but have no server in `routing`, sorted.

    Writing such a routing would send their share nowhere, or (with no colour left) delete the app's file.
    """
    routed = routing.weights()
    return sorted(colour for colour, weight in weights.items() if weight > 0 and colour not in routed)


def next_colour(state: AppState) -> Colour:
    """The colour a promote starts: blue for the first deploy, then the other one each time."""
    return state.colour.other if state.colour else Colour.BLUE


# Phases from which a rollout can still go back to the old colour; after these the old one is being removed:
# invariant 9 (docs/ARCHITECTURE.md).
ABORTABLE = frozenset(
    {Phase.STARTING, Phase.READY, Phase.MIRRORING, Phase.SHIFTING, Phase.DRAINING, Phase.ABORTING}
)


def mirror_for(spec: AppSpec, rollout: Rollout) -> MirrorRoute | None:
    """The mirror the rollout runs before its step 1 (its `rollout.mirror`), or None when it runs none.

    None also for a first deploy (no live traffic to copy) and for a rollout in one step without a pause
    (`rollback --now`, which asks for the old image at once).
    """
    mirror = spec.rollout.mirror
    if mirror is None or rollout.from_colour is None or (rollout.steps == (100,) and rollout.pause == 0):
        return None
    return MirrorRoute(
        app=spec.name, colour=rollout.to_colour, percent=mirror.percent, methods=mirror.methods
    )


def rollback_image(history: Sequence[Rollout]) -> str | None:
    """The image that served before the current one: `from_image` of the newest completed rollout."""
    for rollout in history:
        if rollout.outcome == "done":
            return rollout.from_image
    return None

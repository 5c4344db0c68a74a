"""Shapes state for people and for JSON (the CLI's `--json` and the HTTP API give the same documents)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from trafficshift.compose.fingerprint import changed_keys, describe, digest
from trafficshift.drift import Drift, find_drift
from trafficshift.models import (
    AppSpec,
    AppState,
    Colour,
    ContainerInfo,
    Event,
    Figures,
    Live,
    Outcome,
    Phase,
    Rollout,
    Routing,
)
from trafficshift.stepping import pause_text

JSON = dict[str, Any]
# Colours, or their names as a JSON document gives them.
ColourKey = TypeVar("ColourKey", bound=str)


def iso_time(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, to the millisecond (every time the CLI and the API show)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


def canary_text(spec: AppSpec) -> str:
    """What marks a request for the canary, as events say it (`X-Canary: always or cookie canary=always`)."""
    canary = spec.canary
    if canary is None:
        return "no canary"
    marks = [f"{canary.header}: always"] if canary.header else []
    marks += [f"cookie {canary.cookie}=always"] if canary.cookie else []
    return "requests with " + " or ".join(marks)


def weights_dict(weights: Mapping[Colour, int]) -> dict[str, int]:
    return {str(colour): weight for colour, weight in sorted(weights.items())}


def weights_text(weights: Mapping[ColourKey, int]) -> str:
    """Weights for people, as every message and progress line shows them: `blue=90% green=10%`."""
    return " ".join(f"{colour}={weight}%" for colour, weight in sorted(weights.items()))


def rollout_dict(r: Rollout) -> JSON:
    """A rollout as `GET /rollouts/{id}` and `history --json` give it."""
    return {
        "id": r.id,
        "app": r.app,
        "image": r.to_image,
        "from_image": r.from_image,
        "from_colour": r.from_colour,
        "to_colour": r.to_colour,
        "state": str(r.phase),
        "step": r.step,
        "steps": list(r.steps),
        "weights": weights_dict(r.weights),
        "outcome": str(r.outcome) if r.outcome else None,
        "reason": r.reason,
        "started_at": iso_time(r.started_at),
        "ended_at": iso_time(r.ended_at),
        # A compose-backed app's: the digest of the spec it deploys, and the keys that differ from the spec
        # that was live when it started (None when either was not recorded).
        "spec": None if r.to_spec is None else digest(r.to_spec),
        "changed": changes_of(r),
        # Why it is held at its weights until resumed (None: it is not), and each step's own pause.
        "held": r.held,
        "pauses": [pause_text(p) for p in r.pauses] if r.pauses else None,
    }


def rollout_of(doc: Mapping[str, Any]) -> Rollout:
    """A rollout from its `rollout_dict` document (`GET /rollouts/{id}`), for what a local run would say of
    it; the fields the document leaves out (the pause, the specs) are empty. KeyError or ValueError when it
    is not one."""

    def when(text: Any) -> float | None:
        return None if text is None else dt.datetime.fromisoformat(str(text)).timestamp()

    started = when(doc["started_at"]) or 0.0
    return Rollout(
        id=str(doc["id"]),
        app=str(doc["app"]),
        from_colour=None if doc["from_colour"] is None else Colour(doc["from_colour"]),
        from_image=doc["from_image"],
        to_colour=Colour(doc["to_colour"]),
        to_image=str(doc["image"]),
        steps=tuple(int(p) for p in doc["steps"]),
        pause=0.0,
        phase=Phase(doc["state"]),
        step=int(doc["step"]),
        weights={Colour(c): int(w) for c, w in dict(doc["weights"]).items()},
        started_at=started,
        updated_at=started,
        outcome=None if doc["outcome"] is None else Outcome(doc["outcome"]),
        reason=doc["reason"],
        ended_at=when(doc["ended_at"]),
    )


def event_of(doc: Mapping[str, Any]) -> Event:
    """An event from its `event_dict` document (a `rollout` frame of `GET /events`)."""
    return Event(
        seq=int(doc["seq"]),
        rollout_id=str(doc["rollout"]),
        app=str(doc["app"]),
        at=dt.datetime.fromisoformat(str(doc["at"])).timestamp(),
        phase=Phase(doc["state"]),
        step=int(doc["step"]),
        weights={Colour(c): int(w) for c, w in dict(doc["weights"]).items()},
        message=str(doc["message"]),
    )


def changes_of(r: Rollout) -> list[str] | None:
    """The spec keys the rollout changes; None unless both specs were recorded (a compose-backed app)."""
    if r.from_spec is None or r.to_spec is None:
        return None
    return changed_keys(r.from_spec, r.to_spec)


def event_dict(e: Event) -> JSON:
    return {
        "seq": e.seq,
        "rollout": e.rollout_id,
        "app": e.app,
        "at": iso_time(e.at),
        "state": str(e.phase),
        "step": e.step,
        "weights": weights_dict(e.weights),
        "message": e.message,
    }


def container_dict(c: ContainerInfo) -> JSON:
    return {
        "name": c.name,
        "colour": str(c.colour),
        "image": c.image,
        "running": c.running,
        "health": c.health,
        "url": c.url,
    }


def app_status(
    *,
    state: AppState,
    weights: Mapping[Colour, int],
    rollout: Rollout | None,
    interrupted: bool,
    containers: Sequence[ContainerInfo],
    listed: Routing | None,
) -> JSON:
    """An app as `status --json` and `GET /apps/{app}` give it; `listed` is what its file routes now."""
    return {
        "app": state.app,
        "colour": state.colour,
        "image": state.image,
        "spec": None if state.spec is None else digest(state.spec),
        "weights": weights_dict(weights),
        # What the app's file routes now, as Traefik confirmed it (None: no readable file): next to the
        # recorded weights, it shows where a stuck or held rollout really stands.
        "routed": None if listed is None else weights_dict(listed.weights()),
        "containers": [container_dict(c) for c in containers],
        "rollout": None if rollout is None else {**rollout_dict(rollout), "interrupted": interrupted},
        "file": drift_dict(find_drift(listed=listed, weights=weights, containers=containers)),
    }


def drift_dict(drift: Drift) -> JSON:
    """The `file` of an app's status: what its dynamic file routes, and where that misses the containers."""
    return {
        "in_sync": drift.in_sync,
        "readable": drift.readable,
        "servers": list(drift.servers),
        "stale": list(drift.stale),
        "unrouted": [{"name": c.name, "colour": str(c.colour), "url": c.url} for c in drift.unrouted],
    }


def format_drift(status: JSON) -> list[str]:
    """What `status` says of a file that routes where the containers are not (nothing when it is in step)."""
    file, app = status["file"], status["app"]
    if file["in_sync"]:
        return []
    lines = []
    if not file["readable"]:
        lines.append("  file:       cannot be read")
    if stale := file["stale"]:
        lines.append(f"  file:       routes {_and(stale)}, which no container serves")
    for c in file["unrouted"]:
        lines.append(f"  file:       does not route {c['name']} at {c['url']}, which runs")
    lines.append(
        f"              run `trafficshift reconcile {app}` to probe the containers and route them where"
        " they are (Docker restarted them on new ports?)"
    )
    return lines


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def format_status(status: JSON) -> str:
    spec = f", spec {status['spec']}" if status.get("spec") else ""
    lines = [
        f"{status['app']}: "
        + (f"{status['colour']} ({status['image']}{spec})" if status["colour"] else "not deployed")
    ]
    if status["weights"]:
        lines.append("  weights:    " + weights_text(status["weights"]))
    routed = status.get("routed")
    if routed is not None and routed != status["weights"]:
        lines.append("  routed:     " + (weights_text(routed) or "nothing") + " (what the file routes now)")
    for c in status["containers"]:
        state = "running" if c["running"] else "stopped"
        health = f", {c['health']}" if c["health"] else ""
        lines.append(f"  container:  {c['name']}  {c['image']}  {state}{health}  {c['url'] or '-'}")
    rollout = status["rollout"]
    # A rollout in progress rewrites the file at each step (and records each step just before): not drift.
    if rollout is None or rollout["interrupted"]:
        lines.extend(format_drift(status))
    if rollout is not None:
        how = "INTERRUPTED" if rollout["interrupted"] else "in progress"
        lines.append(
            f"  rollout:    {rollout['id']} -> {rollout['image']} ({rollout['to_colour']}) {how},"
            f" {rollout['state']}, step {rollout['step'] + 1}/{len(rollout['steps'])}"
        )
        if rollout.get("changed") is not None:
            lines.append(f"              changed: {describe(rollout['changed'])}")
        if rollout.get("held"):
            at = weights_text(rollout["weights"]) or "nothing routed"
            lines.append(
                f"  held:       at {at} ({rollout['held']}); `trafficshift resume {status['app']}` goes on"
            )
        if rollout["interrupted"]:
            app, back = status["app"], rollout["from_colour"] or "nothing"
            lines.append(
                f"              run `trafficshift promote {app}` to resume it"
                f" or `trafficshift abort {app}` to go back to {back}"
            )
    return "\n".join(lines)


def format_history(rollouts: Iterable[Rollout]) -> str:
    lines = []
    for r in rollouts:
        outcome = str(r.outcome) if r.outcome else f"in progress ({r.phase})"
        reason = f"  {r.reason}" if r.reason else ""
        changed = changes_of(r)
        what = "" if changed is None else f"  changed: {describe(changed)}"
        head = f"{iso_time(r.started_at)}  {r.id}  {r.from_image or '-'} -> {r.to_image}"
        lines.append(f"{head}  {outcome}{what}{reason}")
    return "\n".join(lines) if lines else "no rollouts yet"


def format_event(e: Event) -> str:
    at = dt.datetime.fromtimestamp(e.at).strftime("%H:%M:%S")
    weights = weights_text(e.weights)
    return f"{at} {e.app} [{e.phase}] {e.message}" + (f"  ({weights})" if weights else "")


def live_dict(live: Live) -> JSON:
    """Where a rollout stands between transitions, as the API's `progress` frames carry it."""
    return {
        "rollout": live.rollout_id,
        "app": live.app,
        "state": live.phase,
        "step": live.step,
        "steps": live.steps,
        "weights": dict(live.weights),
        "text": live.text,
        "hold": None if live.hold is None else {"elapsed": live.hold[0], "total": live.hold[1]},
        "replicas": dict(live.replicas),
        "figures": {
            colour: {"requests": f.requests, "error_rate": f.error_rate, "p95": f.p95}
            for colour, f in live.figures.items()
        },
    }


def live_of(doc: Mapping[str, Any]) -> Live:
    """A `progress` frame's document read back (ValueError, KeyError or TypeError when it is not one)."""
    hold = doc.get("hold")
    return Live(
        rollout_id=str(doc["rollout"]),
        app=str(doc["app"]),
        phase=str(doc["state"]),
        step=int(doc["step"]),
        steps=int(doc["steps"]),
        weights={str(k): int(v) for k, v in dict(doc["weights"]).items()},
        text=str(doc.get("text") or ""),
        hold=None if hold is None else (float(hold["elapsed"]), float(hold["total"])),
        replicas={str(k): str(v) for k, v in dict(doc.get("replicas") or {}).items()},
        figures={
            str(colour): Figures(
                requests=int(f["requests"]),
                error_rate=None if f["error_rate"] is None else float(f["error_rate"]),
                p95=None if f["p95"] is None else float(f["p95"]),
            )
            for colour, f in dict(doc.get("figures") or {}).items()
        },
    )


def step_text(live: Live) -> str:
    """`step 2/3`, or the state alone when the rollout is not at a step (starting, draining, ...).

    Any state between the first step and the drain is at a step (`shifting`, or one held by an operator).
    """
    at_step = live.phase not in _NOT_AT_A_STEP and 0 <= live.step < live.steps
    return f"step {live.step + 1}/{live.steps}" if at_step else live.phase


_NOT_AT_A_STEP = frozenset(
    {"starting", "ready", "draining", "cleaning", "done", "aborting", "aborted", "failed"}
)


def figures_text(figures: Figures) -> str:
    """One colour's figures so far, for people: `120 requests, 5xx 0.8%, p95 0.012s`."""
    rate = "-" if figures.error_rate is None else f"{figures.error_rate * 100:.1f}%"
    p95 = "-" if figures.p95 is None else f"{figures.p95:.3f}s"
    return f"{figures.requests} requests, 5xx {rate}, p95 {p95}"


def hold_text(hold: tuple[float, float]) -> str:
    """`12s of 30s, 18s left`."""
    elapsed, total = hold
    return f"{elapsed:.0f}s of {total:.0f}s, {max(0.0, total - elapsed):.0f}s left"


def format_heartbeat(live: Live, *, at: float) -> str:
    """The line a rollout prints every so often while it waits, for logs (no TTY): it is still alive."""
    clock = dt.datetime.fromtimestamp(at).strftime("%H:%M:%S")
    step = step_text(live)
    parts = [f"{clock} {live.app} [{live.phase}]" + ("" if step == live.phase else f" {step}")]
    if live.hold is not None:
        parts.append(f"holding {hold_text(live.hold)}")
    elif live.text:
        parts.append(live.text)
    parts += [f"{colour}: {figures_text(f)}" for colour, f in sorted(live.figures.items())]
    weights = weights_text(live.weights)
    return "; ".join(parts) + (f"  ({weights})" if weights else "")

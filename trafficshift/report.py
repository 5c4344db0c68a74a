"""Shapes state for people and for JSON (the CLI's `--json` and the HTTP API give the same documents)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from trafficshift.compose.fingerprint import changed_keys, describe, digest
from trafficshift.drift import Drift, find_drift
from trafficshift.models import AppState, Colour, ContainerInfo, Event, Rollout, Routing

JSON = dict[str, Any]
# Colours, or their names as a JSON document gives them.
ColourKey = TypeVar("ColourKey", bound=str)


def iso_time(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, to the millisecond (every time the CLI and the API show)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


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
    }


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
    views: Mapping[str, Mapping[str, int] | str] | None = None,
) -> JSON:
    """An app as `status --json` and `GET /apps/{app}` give it; `listed` is what its file routes now.

    `views`: what each Traefik instance's API shows (`traefik` in the answer), by API URL.
    """
    return {
        "app": state.app,
        "colour": state.colour,
        "image": state.image,
        "spec": None if state.spec is None else digest(state.spec),
        "weights": weights_dict(weights),
        "containers": [container_dict(c) for c in containers],
        "rollout": None if rollout is None else {**rollout_dict(rollout), "interrupted": interrupted},
        "file": drift_dict(find_drift(listed=listed, weights=weights, containers=containers)),
        "traefik": {
            url: view if isinstance(view, str) else dict(view) for url, view in (views or {}).items()
        },
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

"""Values the unit tests build again and again: one place, so they agree."""

from __future__ import annotations

import time
from typing import Any

from trafficshift.models import AppSpec, Colour, HealthSpec, Phase, Rollout

# A valid config, lines 1-9; tests append app-level keys from line 10 on (and know their line numbers).
BASE_CONFIG = """\
traefik:
  dynamic_dir: ./dynamic
  metrics_url: http://127.0.0.1:8082/metrics
apps:
  web:
    image: example/web:1.0
    port: 8080
    rule: "Host(`web.localhost`)"
    publish: 127.0.0.1
"""


def make_rollout(**changes: Any) -> Rollout:
    """A rollout of `web` from blue (web:1) to green (web:2), at step 1 of 10/50/100, with `changes`."""
    now = time.time()
    values: dict[str, Any] = {
        "id": "r1",
        "app": "web",
        "from_colour": Colour.BLUE,
        "from_image": "web:1",
        "to_colour": Colour.GREEN,
        "to_image": "web:2",
        "steps": (10, 50, 100),
        "pause": 1.0,
        "phase": Phase.SHIFTING,
        "step": 0,
        "weights": {Colour.BLUE: 90, Colour.GREEN: 10},
        "started_at": now,
        "updated_at": now,
    }
    return Rollout(**(values | changes))


def make_app(name: str = "web", *, health_path: str | None = None, **changes: Any) -> AppSpec:
    """An app spec as the config would give it (`Host(`<name>.localhost`)`, port 8080), with `changes`."""
    health = HealthSpec(path=health_path) if health_path else HealthSpec()
    return AppSpec(
        name=name,
        image=f"example/{name}:1.0",
        port=8080,
        rule=f"Host(`{name}.localhost`)",
        health=health,
        **changes,
    )

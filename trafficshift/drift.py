"""Whether an app's dynamic file still routes its containers where they are now. Pure.

In `publish` mode a container that Docker restarts (`docker restart`, the daemon restarted, a reboot) comes
back on a new host port, while the file keeps the old one: every request then fails until something
rewrites the file (`serve`'s provider, `trafficshift reconcile`, or the next `promote`). This compares the
file with the containers so that `status` can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trafficshift import plan
from trafficshift.models import Colour, ContainerInfo, Routing


@dataclass(frozen=True)
class Drift:
    """How an app's file differs from its containers."""

    # False when the file exists but cannot be read (then `servers` is empty and nothing else is told).
    readable: bool
    # Every server URL the file lists, sorted.
    servers: tuple[str, ...]
    # Servers in the file that no running container answers at now (restarted on a new port, or gone).
    stale: tuple[str, ...]
    # Running containers (that can be servers) of a colour the file should list, that it does not list.
    unrouted: tuple[ContainerInfo, ...]

    @property
    def in_sync(self) -> bool:
        return self.readable and not self.stale and not self.unrouted


def find_drift(
    *, listed: Routing | None, weights: Mapping[Colour, int], containers: Iterable[ContainerInfo]
) -> Drift:
    """Compare the file (`listed`, None when unreadable) with the containers, for the app's `weights`.

    A colour is expected in the file when `weights` names it (at 0% too: a colour being drained is still
    listed); a new colour that is starting is not in the weights yet, so it is not reported as missing.
    """
    containers = list(containers)
    if listed is None:
        return Drift(readable=False, servers=(), stale=(), unrouted=())
    servers = listed.servers()
    answering = {c.url for c in containers if c.running and c.url}
    unrouted = tuple(
        c
        for c in containers
        if c.colour in weights and (url := plan.server_url(c)) is not None and url not in servers
    )
    return Drift(
        readable=True,
        servers=tuple(sorted(servers)),
        stale=tuple(sorted(servers - answering)),
        unrouted=unrouted,
    )

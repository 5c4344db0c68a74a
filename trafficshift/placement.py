"""Which Docker host runs which replica of an app: the spread over the app's `hosts`.

Replica n (1-based, the `n` of `<app>-<colour>-<n>`) runs on the app's host number (n - 1) mod len(hosts),
in the order the app lists them: round robin, so the hosts' counts differ by one at most, and a replica
added to an app never moves the others. Both colours are spread alike, so each host keeps its share of the
app all through a rollout.
"""

from __future__ import annotations

from collections.abc import Sequence

from trafficshift.models import AppSpec


def host_of(replica: int, hosts: Sequence[str]) -> str:
    """The host that runs replica `replica` (1-based) of an app spread over `hosts`."""
    if replica < 1 or not hosts:
        raise ValueError(f"no host for replica {replica} over {list(hosts)}")
    return hosts[(replica - 1) % len(hosts)]


def replicas_on(app: AppSpec, host: str) -> tuple[int, ...]:
    """The replica numbers of `app` that `host` runs (none when the app is not on it)."""
    if host not in app.hosts:
        return ()
    return tuple(n for n in range(1, app.replicas + 1) if host_of(n, app.hosts) == host)


def spread(app: AppSpec) -> dict[str, tuple[int, ...]]:
    """Each of the app's hosts, in its order, with the replica numbers it runs."""
    return {host: replicas_on(app, host) for host in app.hosts}

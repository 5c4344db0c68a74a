"""What a compose-backed colour needs around it, over the Docker engine: its named volumes and networks
(created as Compose would create them, when missing) and its `depends_on` services (checked, never started).

Volumes and networks keep the names Compose gives them and carry Compose's project and volume/network
labels, so blue, green and `docker compose` itself share one volume, and a later `docker compose up`
adopts them without a warning. No config-hash label is set: Compose then takes them as they are.
"""

from __future__ import annotations

from typing import Any

import aiodocker

from trafficshift.compose.spec import ContainerSpec, Dependency, NetworkResource, VolumeResource
from trafficshift.errors import PrerequisiteMissing

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"


# ------------------------------------------------------------ pure


def network_body(net: NetworkResource, *, project: str) -> dict[str, Any]:
    """Docker's network create body for a Compose network, with the labels Compose gives its own."""
    body: dict[str, Any] = {
        "Name": net.name,
        # Docker before API 1.44 would otherwise create a second network of the same name in a race.
        "CheckDuplicate": True,
        "Labels": dict(net.labels) | {LABEL_PROJECT: project, LABEL_NETWORK: net.key},
    }
    if net.driver:
        body["Driver"] = net.driver
    if net.driver_opts:
        body["Options"] = dict(net.driver_opts)
    for key, value in (
        ("Internal", net.internal),
        ("Attachable", net.attachable),
        ("EnableIPv6", net.enable_ipv6),
    ):
        if value:
            body[key] = value
    if net.ipam_driver or net.ipam_pools:
        pools = [
            {k: v for k, v in (("Subnet", p.subnet), ("IPRange", p.ip_range), ("Gateway", p.gateway)) if v}
            for p in net.ipam_pools
        ]
        body["IPAM"] = {"Driver": net.ipam_driver or "default", "Config": pools}
    return body


def volume_body(vol: VolumeResource, *, project: str) -> dict[str, Any]:
    """Docker's volume create body for a Compose volume, with the labels Compose gives its own."""
    body: dict[str, Any] = {
        "Name": vol.name,
        "Labels": dict(vol.labels) | {LABEL_PROJECT: project, LABEL_VOLUME: vol.key},
    }
    if vol.driver:
        body["Driver"] = vol.driver
    if vol.driver_opts:
        body["DriverOpts"] = dict(vol.driver_opts)
    return body


def unmet(dep: Dependency, states: list[dict[str, Any]]) -> str | None:
    """Why `dep` is not met by its service's containers (Docker's `State` of each), or None when it is."""
    running = [s for s in states if s.get("Status") == "running"]
    if dep.condition == "service_completed_successfully":
        if any(s.get("Status") == "exited" and s.get("ExitCode") == 0 for s in states):
            return None
        return "has not completed successfully"
    if not running:
        return "is not running"
    if dep.condition == "service_healthy":
        if any((s.get("Health") or {}).get("Status") == "healthy" for s in running):
            return None
        return "is not healthy"
    return None


# ------------------------------------------------------------ I/O


async def check_prerequisites(docker: aiodocker.Docker, spec: ContainerSpec) -> None:
    """Raise PrerequisiteMissing naming every depends_on service that does not run (or is not healthy, or
    has not completed, as its condition asks) and every external network or volume that does not exist."""
    problems: list[str] = []
    for dep in spec.depends_on:
        if not dep.required:
            continue  # Compose goes on without an optional dependency too
        why = unmet(dep, await _service_states(docker, project=spec.project, service=dep.service))
        if why is not None:
            problems.append(f"service {dep.service} of Compose project {spec.project} {why}")
    for net in spec.network_resources:
        if net.external and not await _network_exists(docker, net.name):
            problems.append(f"external network {net.name} does not exist")
    for vol in spec.volumes:
        if vol.external and not await _volume_exists(docker, vol.name):
            problems.append(f"external volume {vol.name} does not exist")
    if problems:
        hint = f"start them first (e.g. `docker compose -p {spec.project} up -d <service>`)"
        raise PrerequisiteMissing(f"{spec.service} needs what is not there: {'; '.join(problems)}; {hint}")


async def ensure_resources(docker: aiodocker.Docker, spec: ContainerSpec) -> None:
    """Create the service's named volumes and networks that do not exist yet, as Compose would."""
    for net in spec.network_resources:
        if not net.external and not await _network_exists(docker, net.name):
            try:
                await docker.networks.create(network_body(net, project=spec.project))
            except aiodocker.DockerError as exc:
                # 409: created meanwhile (another promote, or Compose): it exists, which is all we need.
                if exc.status != 409 or not await _network_exists(docker, net.name):
                    raise
    for vol in spec.volumes:
        if not vol.external and not await _volume_exists(docker, vol.name):
            # Idempotent by name. (aiodocker's volumes module has no type hints.)
            await docker.volumes.create(volume_body(vol, project=spec.project))  # type: ignore[no-untyped-call]


async def _service_states(docker: aiodocker.Docker, *, project: str, service: str) -> list[dict[str, Any]]:
    labels = [f"{LABEL_PROJECT}={project}", f"{LABEL_SERVICE}={service}", f"{LABEL_ONEOFF}=False"]
    found = await docker.containers.list(all=True, filters={"label": labels})
    states = []
    for container in found:
        try:
            states.append(dict((await container.show())["State"]))
        except aiodocker.DockerError as exc:
            if exc.status != 404:  # removed in between: not running
                raise
    return states


async def _network_exists(docker: aiodocker.Docker, name: str) -> bool:
    try:
        found = await (await docker.networks.get(name)).show()
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise
    # Docker also finds a network by a prefix of its id: only the same name counts.
    return bool(found.get("Name") == name)


async def _volume_exists(docker: aiodocker.Docker, name: str) -> bool:
    try:
        await docker.volumes.get(name)  # type: ignore[no-untyped-call]
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise
    return True

"""What a Compose service attaches to its containers: networks, volumes, secrets and configs.

Part of parse.py's job (JSON -> ContainerSpec), for the keys that point at the project's top-level
`networks:`, `volumes:`, `secrets:` and `configs:`: those settings are read (and refused) only for what the
service uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trafficshift.compose.reader import Keys, Problems
from trafficshift.compose.spec import IpamPool, Mount, NetworkAttachment, NetworkResource, VolumeResource

_UNSUPPORTED_FALSE = "false is not supported by trafficshift; remove it"


def read_networks(
    s: Keys, doc: Mapping[str, Any], problems: Problems, *, service: str
) -> tuple[tuple[NetworkAttachment, ...], tuple[NetworkResource, ...]]:
    attached = s.get("networks") or {}
    if not isinstance(attached, Mapping):
        s.fail("networks", f"expected a mapping from Compose, got {attached!r}")
        return (), ()
    declared = doc.get("networks") or {}
    # Compose's order: highest priority first, then by name; the first is the primary network.
    ranked = []
    for key in attached:
        keys = problems.keys(attached[key], f"{s.at('networks')}.{key}")
        ranked.append((-keys.integer("priority"), key, keys))
    links, resources = [], []
    for _, key, keys in sorted(ranked):
        resource = _network_resource(problems.keys(declared.get(key), f"networks.{key}"), key=key)
        links.append(
            NetworkAttachment(
                name=resource.name,
                # As `docker compose up`: the service's name, then its own aliases, on each network.
                aliases=(service, *keys.strings("aliases")),
                ipv4_address=keys.text("ipv4_address"),
                ipv6_address=keys.text("ipv6_address"),
            )
        )
        resources.append(resource)
    return tuple(links), tuple(resources)


def _network_resource(n: Keys, *, key: str) -> NetworkResource:
    ipam = n.keys("ipam")
    pools = tuple(
        IpamPool(subnet=p.text("subnet"), ip_range=p.text("ip_range"), gateway=p.text("gateway"))
        for p in ipam.items("config")
    )
    if n.get("enable_ipv4") is False:
        n.fail("enable_ipv4", _UNSUPPORTED_FALSE)
    return NetworkResource(
        key=key,
        name=n.text("name") or key,
        external=n.flag("external"),
        driver=n.text("driver"),
        driver_opts=n.pairs("driver_opts"),
        internal=n.flag("internal"),
        attachable=n.flag("attachable"),
        enable_ipv6=n.flag("enable_ipv6"),
        labels=n.pairs("labels"),
        ipam_driver=ipam.text("driver"),
        ipam_pools=pools,
    )


def read_volumes(
    s: Keys, doc: Mapping[str, Any], problems: Problems
) -> tuple[tuple[Mount, ...], tuple[VolumeResource, ...]]:
    declared = doc.get("volumes") or {}
    mounts: list[Mount] = []
    resources: dict[str, VolumeResource] = {}
    for v in s.items("volumes"):
        kind, target, source, read_only = (
            v.text("type"),
            v.text("target"),
            v.text("source"),
            v.flag("read_only"),
        )
        if kind == "bind":
            bind = v.keys("bind")
            create = bind.get("create_host_path")
            mounts.append(
                Mount(
                    type="bind",
                    target=target,
                    source=source,
                    read_only=read_only,
                    # No `bind:` at all is the short syntax, which creates a missing folder.
                    create_host_path=create is not False,
                    propagation=bind.text("propagation"),
                    selinux=bind.text("selinux"),
                )
            )
        elif kind == "volume":
            options = v.keys("volume")
            if not source:
                v.fail(
                    "source",
                    "missing: an anonymous volume would be a new, empty one for each colour; name it under"
                    " volumes:",
                )
                continue
            resource = _volume_resource(problems.keys(declared.get(source), f"volumes.{source}"), key=source)
            resources[source] = resource
            mounts.append(
                Mount(
                    type="volume",
                    target=target,
                    source=resource.name,
                    read_only=read_only,
                    nocopy=options.flag("nocopy"),
                    subpath=options.text("subpath"),
                )
            )
        elif kind == "tmpfs":
            options = v.keys("tmpfs")
            mounts.append(
                Mount(
                    type="tmpfs",
                    target=target,
                    read_only=read_only,
                    tmpfs_size=options.integer("size"),
                    tmpfs_mode=options.integer("mode"),
                )
            )
        else:
            v.fail("type", f"{kind}: only bind, volume and tmpfs mounts are supported")
    return tuple(mounts), tuple(resources.values())


def _volume_resource(v: Keys, *, key: str) -> VolumeResource:
    return VolumeResource(
        key=key,
        name=v.text("name") or key,
        external=v.flag("external"),
        driver=v.text("driver"),
        driver_opts=v.pairs("driver_opts"),
        labels=v.pairs("labels"),
    )


def read_files(s: Keys, doc: Mapping[str, Any], problems: Problems, *, kind: str, base: str) -> list[Mount]:
    """Secrets and configs from files: bind-mounted read-only, where Compose mounts them."""
    declared = doc.get(kind) or {}
    mounts = []
    for ref in s.items(kind):
        name = ref.text("source")
        for key in ("uid", "gid", "mode"):
            # Compose cannot apply them to a file it bind-mounts either (it warns and goes on).
            ref.refuse(key, "cannot be applied to a bind-mounted file (Compose ignores it too); remove it")
        item = problems.keys(declared.get(name), f"{kind}.{name}")
        if item.flag("external"):
            item.fail("external", "external secrets and configs are Swarm's: only file-based ones work")
        for key in ("environment", "content"):
            item.refuse(key, "not supported by trafficshift yet: only file-based secrets and configs work")
        item.get("name")
        file, target = item.text("file"), ref.text("target") or name
        if not file:
            continue
        mounts.append(
            Mount(
                type="bind",
                target=target if target.startswith("/") else base + target,
                source=file,
                read_only=True,
                create_host_path=False,
            )
        )
    return mounts

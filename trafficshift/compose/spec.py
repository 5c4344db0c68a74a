"""A Compose service's container spec, as Compose normalised it: frozen, typed, no I/O.

Every field is a str, int, float, bool, None or a tuple of those (mappings are sorted tuples of pairs), so
a spec compares and hashes stably (`compose/fingerprint.py` makes the digest that tells a changed spec).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Pairs = tuple[tuple[str, str], ...]
# A JSON leaf: a scalar, or a list of scalars (a command, DNS servers...).
Leaf = str | int | float | bool | None | list[Any]
# What a compose-backed app's containers are made of, flat (`compose/fingerprint.py` makes and compares it).
SpecDoc = Mapping[str, Leaf]


@dataclass(frozen=True)
class ComposeRef:
    """Where an app's container spec comes from: `compose: {file, service, project}` in trafficshift.yml."""

    files: tuple[Path, ...]
    service: str
    # None: Compose's own rule (top-level `name:`, $COMPOSE_PROJECT_NAME, else the file's folder).
    project: str | None = None
    # Where the reference is written (`trafficshift.yml:12: apps.web.compose`), to prefix messages.
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Mount:
    """One volume, secret or config of the service, as mounted into each container."""

    type: str  # bind, volume or tmpfs
    target: str
    # bind: an absolute host path; volume: the Docker volume's name as Compose names it (`shop_data`).
    source: str = ""
    read_only: bool = False
    # bind: create a missing host folder (Compose's short syntax does; secrets and configs do not).
    create_host_path: bool = True
    propagation: str = ""
    selinux: str = ""
    nocopy: bool = False
    subpath: str = ""
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


@dataclass(frozen=True)
class NetworkAttachment:
    """One network the service is on, by its Docker name, with what the endpoint carries."""

    name: str
    aliases: tuple[str, ...] = ()
    ipv4_address: str = ""
    ipv6_address: str = ""


@dataclass(frozen=True)
class Healthcheck:
    """Docker's HEALTHCHECK of the container; durations in nanoseconds, 0 for Docker's default."""

    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class RestartPolicy:
    name: str  # no, always, on-failure, unless-stopped
    max_retries: int = 0


@dataclass(frozen=True)
class Logging:
    driver: str = ""
    options: Pairs = ()


@dataclass(frozen=True)
class Resources:
    """Memory in bytes, CPUs in billionths (Docker's NanoCpus); 0 for no limit."""

    memory: int = 0
    memory_reservation: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpuset: str = ""
    pids_limit: int = 0


@dataclass(frozen=True)
class VolumeResource:
    """A named volume the service mounts: trafficshift creates it as Compose would when it is missing."""

    key: str  # the key under `volumes:` (Compose's `com.docker.compose.volume` label)
    name: str
    external: bool = False
    driver: str = ""
    driver_opts: Pairs = ()
    labels: Pairs = ()


@dataclass(frozen=True)
class IpamPool:
    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""


@dataclass(frozen=True)
class NetworkResource:
    """A network the service is on: trafficshift creates it as Compose would when it is missing."""

    key: str  # the key under `networks:` (Compose's `com.docker.compose.network` label)
    name: str
    external: bool = False
    driver: str = ""
    driver_opts: Pairs = ()
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    labels: Pairs = ()
    ipam_driver: str = ""
    ipam_pools: tuple[IpamPool, ...] = ()


@dataclass(frozen=True)
class Dependency:
    """A `depends_on` service: not part of the colour; a promote checks that it runs."""

    service: str
    condition: str = "service_started"  # or service_healthy, service_completed_successfully
    required: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a colour's containers get from the Compose service (beyond trafficshift's own settings)."""

    project: str
    service: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    # None: the variable is named without a value (Compose passes `NAME`, Docker unsets it).
    environment: tuple[tuple[str, str | None], ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: Pairs = ()
    mounts: tuple[Mount, ...] = ()
    tmpfs: Pairs = ()  # short syntax: path -> options
    # By Compose's priority: the first is the primary network (the container is created on it).
    networks: tuple[NetworkAttachment, ...] = ()
    expose: tuple[str, ...] = ()  # "8080/tcp"
    healthcheck: Healthcheck | None = None
    resources: Resources = field(default_factory=Resources)
    ulimits: tuple[Ulimit, ...] = ()
    sysctls: Pairs = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    read_only: bool = False
    init: bool | None = None  # None: the daemon's default
    privileged: bool = False
    shm_size: int = 0
    extra_hosts: tuple[str, ...] = ()  # Docker's form, `name:address`
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    tty: bool = False
    stdin_open: bool = False
    oom_score_adj: int = 0
    logging: Logging | None = None
    stop_signal: str = ""
    stop_grace_period: float | None = None  # seconds
    # None: trafficshift's default (unless-stopped), not Compose's "no".
    restart: RestartPolicy | None = None
    # What the containers need around them, not in them.
    volumes: tuple[VolumeResource, ...] = ()
    network_resources: tuple[NetworkResource, ...] = ()
    depends_on: tuple[Dependency, ...] = ()
    # `build:` of the service: its context (an absolute path or URL, as Compose gives it); "" without one.
    # Not part of the containers: `promote --build` has Compose build the image, which is then `image`.
    build_context: str = ""

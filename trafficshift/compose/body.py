"""ContainerSpec -> the Docker Engine API create body of one container of a colour, as Compose builds it.

Pure: the same spec, image and routing give the same body. It follows Compose's own `getCreateConfigs`
(docker/compose pkg/compose/create.go) key by key; where trafficshift differs, a comment says why. Only values
that are set go into the body, so an engine that predates a field is not sent it for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trafficshift.compose.spec import ContainerSpec, Healthcheck, Mount, NetworkAttachment, Resources


@dataclass(frozen=True)
class CreatePlan:
    """One container: the body of Docker's create call, then the networks to connect before it starts.

    Engines before API 1.44 take one network at create time, so the others are connected one by one
    before the start, as Compose does there too.
    """

    config: dict[str, Any]
    connect: tuple[tuple[str, dict[str, Any]], ...] = ()


def create_plan(
    spec: ContainerSpec,
    *,
    image: str,
    port: int,
    network: str | None,
    publish: str | None,
    default_restart: str,
) -> CreatePlan:
    """The create body for `image` (the spec's or `promote --image`'s), reached on `network` or `publish`.

    `network` is the Docker network Traefik reaches the app on: when the service is on it already it is
    not attached twice, else it is added; it is the primary network either way (status reads the address
    there). `default_restart` applies when the service sets no restart policy.
    """
    host: dict[str, Any] = {}
    config: dict[str, Any] = {"Image": image}
    _set(config, "Cmd", None if spec.command is None else list(spec.command))
    _set(config, "Entrypoint", None if spec.entrypoint is None else list(spec.entrypoint))
    _set(config, "Env", [name if value is None else f"{name}={value}" for name, value in spec.environment])
    _set(config, "WorkingDir", spec.working_dir)
    _set(config, "User", spec.user)
    _set(config, "Hostname", spec.hostname)
    _set(config, "Domainname", spec.domainname)
    _set(config, "Labels", dict(spec.labels))
    config["ExposedPorts"] = {f"{port}/tcp": {}} | {p: {} for p in spec.expose}
    if publish is not None:
        host["PortBindings"] = {f"{port}/tcp": [{"HostIp": publish, "HostPort": ""}]}
    _set(config, "Healthcheck", _healthcheck(spec.healthcheck))
    _set(config, "StopSignal", spec.stop_signal)
    if spec.stop_grace_period is not None:
        config["StopTimeout"] = int(spec.stop_grace_period)  # whole seconds, truncated, as Compose
    _set(config, "Tty", spec.tty)
    _set(config, "OpenStdin", spec.stdin_open)

    binds, mounts = _mounts(spec.mounts)
    _set(host, "Binds", binds)
    _set(host, "Mounts", mounts)
    _set(host, "Tmpfs", dict(spec.tmpfs))
    restart = spec.restart
    host["RestartPolicy"] = (
        {"Name": default_restart}
        if restart is None
        else {"Name": restart.name, "MaximumRetryCount": restart.max_retries}
    )
    host |= _resources(spec.resources)
    _set(host, "Ulimits", [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits])
    _set(host, "Sysctls", dict(spec.sysctls))
    _set(host, "CapAdd", list(spec.cap_add))
    _set(host, "CapDrop", list(spec.cap_drop))
    _set(host, "ReadonlyRootfs", spec.read_only)
    if spec.init is not None:
        host["Init"] = spec.init
    _set(host, "Privileged", spec.privileged)
    _set(host, "ShmSize", spec.shm_size)
    _set(host, "ExtraHosts", list(spec.extra_hosts))
    _set(host, "Dns", list(spec.dns))
    _set(host, "DnsSearch", list(spec.dns_search))
    _set(host, "DnsOptions", list(spec.dns_opt))
    _set(host, "SecurityOpt", list(spec.security_opt))
    _set(host, "GroupAdd", list(spec.group_add))
    _set(host, "OomScoreAdj", spec.oom_score_adj)
    if spec.logging is not None:
        host["LogConfig"] = {"Type": spec.logging.driver, "Config": dict(spec.logging.options)}

    endpoints = {n.name: _endpoint(n) for n in spec.networks}
    if network is not None and network not in endpoints:
        # Traefik's network: no aliases there (the service's name could clash with another app's).
        endpoints = {network: {}} | endpoints
    primary = network if network is not None else next(iter(endpoints), None)
    connect: tuple[tuple[str, dict[str, Any]], ...] = ()
    if primary is not None:
        host["NetworkMode"] = primary
        config["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints.pop(primary)}}
        connect = tuple(endpoints.items())
    config["HostConfig"] = host
    return CreatePlan(config=config, connect=connect)


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` only to a value that says something (not None, "", 0, false or empty)."""
    if (
        value is not None
        and value != ""
        and value is not False
        and value != 0
        and value != []
        and value != {}
    ):
        target[key] = value


def _endpoint(network: NetworkAttachment) -> dict[str, Any]:
    endpoint: dict[str, Any] = {}
    _set(endpoint, "Aliases", list(network.aliases))
    ipam: dict[str, Any] = {}
    _set(ipam, "IPv4Address", network.ipv4_address)
    _set(ipam, "IPv6Address", network.ipv6_address)
    _set(endpoint, "IPAMConfig", ipam)
    return endpoint


def _healthcheck(check: Healthcheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    out: dict[str, Any] = {}
    _set(out, "Test", list(check.test))
    _set(out, "Interval", check.interval_ns)
    _set(out, "Timeout", check.timeout_ns)
    _set(out, "StartPeriod", check.start_period_ns)
    _set(out, "StartInterval", check.start_interval_ns)
    _set(out, "Retries", check.retries)
    return out


def _mounts(mounts: tuple[Mount, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    """Compose's split: plain binds and named volumes as `Binds` strings, the rest through the Mount API.

    A `Binds` entry creates a missing host folder (the Mount API cannot: moby/moby#43483), which is what
    the short syntax promises; secrets and configs, which must exist, go through the Mount API.
    """
    binds: list[str] = []
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            continue  # as Compose: a secret or config never hides a volume on the same path
        seen.add(m.target)
        access = "ro" if m.read_only else "rw"
        if m.type == "bind" and m.create_host_path and not m.propagation:
            binds.append(f"{m.source}:{m.target}:{','.join(filter(None, [access, m.selinux]))}")
        elif m.type == "volume" and not m.nocopy and not m.subpath:
            binds.append(f"{m.source}:{m.target}:{access}")
        else:
            out.append(_mount(m))
    return binds, out


def _mount(m: Mount) -> dict[str, Any]:
    mount: dict[str, Any] = {"Type": m.type, "Target": m.target}
    _set(mount, "Source", m.source)
    _set(mount, "ReadOnly", m.read_only)
    if m.type == "bind":
        bind: dict[str, Any] = {}
        _set(bind, "Propagation", m.propagation)
        _set(bind, "CreateMountpoint", m.create_host_path)
        _set(mount, "BindOptions", bind)
    elif m.type == "volume":
        volume: dict[str, Any] = {}
        _set(volume, "NoCopy", m.nocopy)
        _set(volume, "Subpath", m.subpath)
        _set(mount, "VolumeOptions", volume)
    else:
        tmpfs: dict[str, Any] = {}
        _set(tmpfs, "SizeBytes", m.tmpfs_size)
        _set(tmpfs, "Mode", m.tmpfs_mode)
        _set(mount, "TmpfsOptions", tmpfs)
    return mount


def _resources(r: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _set(out, "Memory", r.memory)
    _set(out, "MemoryReservation", r.memory_reservation)
    _set(out, "MemorySwap", r.memory_swap)
    _set(out, "NanoCpus", r.nano_cpus)
    _set(out, "CpuShares", r.cpu_shares)
    _set(out, "CpusetCpus", r.cpuset)
    _set(out, "PidsLimit", r.pids_limit)
    return out

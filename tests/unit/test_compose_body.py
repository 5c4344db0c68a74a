"""ContainerSpec -> Docker Engine API create body (compose/body.py), key by key, as Compose builds it."""

from __future__ import annotations

from typing import Any

import pytest

from trafficshift.compose.body import CreatePlan, create_plan
from trafficshift.compose.resources import network_body, unmet, volume_body
from trafficshift.compose.spec import (
    ContainerSpec,
    Dependency,
    Healthcheck,
    IpamPool,
    Logging,
    Mount,
    NetworkAttachment,
    NetworkResource,
    Resources,
    RestartPolicy,
    Ulimit,
    VolumeResource,
)

DEFAULT_NET = NetworkAttachment(name="shop_default", aliases=("web",))


def spec(**changes: Any) -> ContainerSpec:
    values: dict[str, Any] = {
        "project": "shop",
        "service": "web",
        "image": "web:1",
        "networks": (DEFAULT_NET,),
    }
    return ContainerSpec(**(values | changes))


def plan(*, network: str | None = None, publish: str | None = "127.0.0.1", **changes: Any) -> CreatePlan:
    return create_plan(
        spec(**changes),
        image="web:2",
        port=8080,
        network=network,
        publish=publish,
        default_restart="unless-stopped",
    )


def at(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


def test_the_smallest_spec_gives_image_port_restart_and_network() -> None:
    assert plan() == CreatePlan(
        config={
            "Image": "web:2",  # the image asked for (promote --image), not necessarily the spec's
            "ExposedPorts": {"8080/tcp": {}},
            "NetworkingConfig": {"EndpointsConfig": {"shop_default": {"Aliases": ["web"]}}},
            "HostConfig": {
                "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "RestartPolicy": {"Name": "unless-stopped"},
                "NetworkMode": "shop_default",
            },
        }
    )


# (ContainerSpec fields, path in the create body, the value there)
KEYS: list[tuple[dict[str, Any], tuple[str, ...], Any]] = [
    ({"command": ("./serve", "-p", "8080")}, ("Cmd",), ["./serve", "-p", "8080"]),
    ({"entrypoint": ("/bin/sh", "-c")}, ("Entrypoint",), ["/bin/sh", "-c"]),
    ({"environment": (("A", "1"), ("B", None))}, ("Env",), ["A=1", "B"]),
    ({"working_dir": "/app"}, ("WorkingDir",), "/app"),
    ({"user": "1000:1000"}, ("User",), "1000:1000"),
    ({"hostname": "web"}, ("Hostname",), "web"),
    ({"domainname": "example.com"}, ("Domainname",), "example.com"),
    ({"labels": (("team", "web"),)}, ("Labels",), {"team": "web"}),
    ({"expose": ("9090/tcp",)}, ("ExposedPorts",), {"8080/tcp": {}, "9090/tcp": {}}),
    (
        {
            "healthcheck": Healthcheck(
                test=("CMD", "true"), interval_ns=10**9, timeout_ns=2, start_period_ns=3, retries=4
            )
        },
        ("Healthcheck",),
        {"Test": ["CMD", "true"], "Interval": 10**9, "Timeout": 2, "StartPeriod": 3, "Retries": 4},
    ),
    ({"healthcheck": Healthcheck(test=("NONE",))}, ("Healthcheck",), {"Test": ["NONE"]}),
    ({"healthcheck": Healthcheck(test=(), start_interval_ns=5)}, ("Healthcheck",), {"StartInterval": 5}),
    ({"stop_signal": "SIGINT"}, ("StopSignal",), "SIGINT"),
    ({"stop_grace_period": 15.7}, ("StopTimeout",), 15),
    ({"stop_grace_period": 0.0}, ("StopTimeout",), 0),
    ({"tty": True}, ("Tty",), True),
    ({"stdin_open": True}, ("OpenStdin",), True),
    (
        {"mounts": (Mount(type="bind", source="/srv/data", target="/data", read_only=True, selinux="z"),)},
        ("HostConfig", "Binds"),
        ["/srv/data:/data:ro,z"],
    ),
    (
        {"mounts": (Mount(type="volume", source="shop_data", target="/var/lib/data"),)},
        ("HostConfig", "Binds"),
        ["shop_data:/var/lib/data:rw"],
    ),
    (
        {
            "mounts": (
                Mount(
                    type="bind",
                    source="/srv/s",
                    target="/run/secrets/s",
                    read_only=True,
                    create_host_path=False,
                ),
            )
        },
        ("HostConfig", "Mounts"),
        [{"Type": "bind", "Source": "/srv/s", "Target": "/run/secrets/s", "ReadOnly": True}],
    ),
    (
        {"mounts": (Mount(type="bind", source="/srv/a", target="/a", propagation="rshared"),)},
        ("HostConfig", "Mounts"),
        [
            {
                "Type": "bind",
                "Source": "/srv/a",
                "Target": "/a",
                "BindOptions": {"Propagation": "rshared", "CreateMountpoint": True},
            }
        ],
    ),
    (
        {"mounts": (Mount(type="volume", source="shop_data", target="/d", nocopy=True, subpath="x"),)},
        ("HostConfig", "Mounts"),
        [
            {
                "Type": "volume",
                "Source": "shop_data",
                "Target": "/d",
                "VolumeOptions": {"NoCopy": True, "Subpath": "x"},
            }
        ],
    ),
    (
        {"mounts": (Mount(type="tmpfs", target="/tmp", tmpfs_size=1000, tmpfs_mode=0o1777),)},
        ("HostConfig", "Mounts"),
        [{"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 1000, "Mode": 0o1777}}],
    ),
    (
        # As Compose: a secret never hides a volume mounted on the same path.
        {
            "mounts": (
                Mount(type="volume", source="shop_data", target="/run/secrets/s"),
                Mount(
                    type="bind",
                    source="/srv/s",
                    target="/run/secrets/s",
                    read_only=True,
                    create_host_path=False,
                ),
            )
        },
        ("HostConfig", "Binds"),
        ["shop_data:/run/secrets/s:rw"],
    ),
    (
        {"tmpfs": (("/run", ""), ("/cache", "size=1m"))},
        ("HostConfig", "Tmpfs"),
        {"/run": "", "/cache": "size=1m"},
    ),
    (
        {"restart": RestartPolicy(name="on-failure", max_retries=3)},
        ("HostConfig", "RestartPolicy"),
        {"Name": "on-failure", "MaximumRetryCount": 3},
    ),
    (
        {"restart": RestartPolicy(name="no")},
        ("HostConfig", "RestartPolicy"),
        {"Name": "no", "MaximumRetryCount": 0},
    ),
    ({"resources": Resources(memory=64 << 20)}, ("HostConfig", "Memory"), 64 << 20),
    ({"resources": Resources(memory_reservation=16 << 20)}, ("HostConfig", "MemoryReservation"), 16 << 20),
    ({"resources": Resources(memory_swap=-1)}, ("HostConfig", "MemorySwap"), -1),
    ({"resources": Resources(nano_cpus=500_000_000)}, ("HostConfig", "NanoCpus"), 500_000_000),
    ({"resources": Resources(cpu_shares=512)}, ("HostConfig", "CpuShares"), 512),
    ({"resources": Resources(cpuset="0-1")}, ("HostConfig", "CpusetCpus"), "0-1"),
    ({"resources": Resources(pids_limit=100)}, ("HostConfig", "PidsLimit"), 100),
    (
        {"ulimits": (Ulimit(name="nofile", soft=1024, hard=2048),)},
        ("HostConfig", "Ulimits"),
        [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
    ),
    (
        {"sysctls": (("net.core.somaxconn", "1024"),)},
        ("HostConfig", "Sysctls"),
        {"net.core.somaxconn": "1024"},
    ),
    ({"cap_add": ("NET_ADMIN",)}, ("HostConfig", "CapAdd"), ["NET_ADMIN"]),
    ({"cap_drop": ("ALL",)}, ("HostConfig", "CapDrop"), ["ALL"]),
    ({"read_only": True}, ("HostConfig", "ReadonlyRootfs"), True),
    ({"init": True}, ("HostConfig", "Init"), True),
    ({"init": False}, ("HostConfig", "Init"), False),
    ({"privileged": True}, ("HostConfig", "Privileged"), True),
    ({"shm_size": 64 << 20}, ("HostConfig", "ShmSize"), 64 << 20),
    ({"extra_hosts": ("db:10.0.0.1",)}, ("HostConfig", "ExtraHosts"), ["db:10.0.0.1"]),
    ({"dns": ("1.1.1.1",)}, ("HostConfig", "Dns"), ["1.1.1.1"]),
    ({"dns_search": ("example.com",)}, ("HostConfig", "DnsSearch"), ["example.com"]),
    ({"dns_opt": ("ndots:2",)}, ("HostConfig", "DnsOptions"), ["ndots:2"]),
    (
        {"security_opt": ("no-new-privileges:true",)},
        ("HostConfig", "SecurityOpt"),
        ["no-new-privileges:true"],
    ),
    ({"group_add": ("audio",)}, ("HostConfig", "GroupAdd"), ["audio"]),
    ({"oom_score_adj": -500}, ("HostConfig", "OomScoreAdj"), -500),
    (
        {"logging": Logging(driver="json-file", options=(("max-size", "1m"),))},
        ("HostConfig", "LogConfig"),
        {"Type": "json-file", "Config": {"max-size": "1m"}},
    ),
]


@pytest.mark.parametrize(("fields", "path", "expected"), KEYS)
def test_each_key_lands_where_compose_puts_it(
    fields: dict[str, Any], path: tuple[str, ...], expected: Any
) -> None:
    assert at(plan(**fields).config, path) == expected


@pytest.mark.parametrize(
    ("fields", "absent"),
    [
        ({}, ("Cmd", "Entrypoint", "Env", "Labels", "Healthcheck", "StopTimeout", "User", "WorkingDir")),
        (
            {"init": None, "read_only": False},
            ("HostConfig.Init", "HostConfig.ReadonlyRootfs", "HostConfig.Binds"),
        ),
        # Docker treats an empty Cmd as none (the image's CMD unless an entrypoint is set), as Compose's [].
        ({"command": ()}, ("Cmd",)),
    ],
)
def test_what_is_not_set_is_not_sent(fields: dict[str, Any], absent: tuple[str, ...]) -> None:
    config = plan(**fields).config
    for path in absent:
        parent, _, key = path.rpartition(".")
        assert key not in (config[parent] if parent else config), path


def test_several_networks_the_first_at_create_the_others_connected_before_the_start() -> None:
    networks = (
        NetworkAttachment(name="shop_front", aliases=("web", "www"), ipv4_address="172.30.0.5"),
        NetworkAttachment(name="shop_back", aliases=("web",)),
    )
    got = plan(networks=networks)
    assert got.config["HostConfig"]["NetworkMode"] == "shop_front"
    assert got.config["NetworkingConfig"] == {
        "EndpointsConfig": {
            "shop_front": {"Aliases": ["web", "www"], "IPAMConfig": {"IPv4Address": "172.30.0.5"}}
        }
    }
    assert got.connect == (("shop_back", {"Aliases": ["web"]}),)


def test_traefiks_network_is_added_as_the_primary_one_without_aliases() -> None:
    got = plan(network="traefik", publish=None)
    assert "PortBindings" not in got.config["HostConfig"]
    assert got.config["HostConfig"]["NetworkMode"] == "traefik"
    assert got.config["NetworkingConfig"] == {"EndpointsConfig": {"traefik": {}}}
    assert got.connect == (("shop_default", {"Aliases": ["web"]}),)


def test_a_compose_network_that_is_traefiks_network_is_not_attached_twice() -> None:
    networks = (DEFAULT_NET, NetworkAttachment(name="traefik", aliases=("web",)))
    got = plan(network="traefik", publish=None, networks=networks)
    assert got.config["NetworkingConfig"] == {"EndpointsConfig": {"traefik": {"Aliases": ["web"]}}}
    assert got.connect == (("shop_default", {"Aliases": ["web"]}),)


def test_the_same_spec_gives_the_same_body() -> None:
    assert plan(environment=(("A", "1"),)) == plan(environment=(("A", "1"),))


def test_compose_networks_and_volumes_carry_the_labels_compose_looks_for() -> None:
    net = NetworkResource(
        key="front",
        name="shop_front",
        driver="bridge",
        driver_opts=(("com.docker.network.bridge.name", "br-shop"),),
        internal=True,
        labels=(("team", "web"),),
        ipam_pools=(IpamPool(subnet="172.30.0.0/24"),),
    )
    assert network_body(net, project="shop") == {
        "Name": "shop_front",
        "CheckDuplicate": True,
        "Labels": {
            "team": "web",
            "com.docker.compose.project": "shop",
            "com.docker.compose.network": "front",
        },
        "Driver": "bridge",
        "Options": {"com.docker.network.bridge.name": "br-shop"},
        "Internal": True,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.30.0.0/24"}]},
    }
    vol = VolumeResource(key="data", name="shop_data", driver="local", driver_opts=(("type", "tmpfs"),))
    assert volume_body(vol, project="shop") == {
        "Name": "shop_data",
        "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.volume": "data"},
        "Driver": "local",
        "DriverOpts": {"type": "tmpfs"},
    }


RUNNING = {"Status": "running"}
HEALTHY = {"Status": "running", "Health": {"Status": "healthy"}}
STARTING = {"Status": "running", "Health": {"Status": "starting"}}
DONE_OK = {"Status": "exited", "ExitCode": 0}
DONE_BAD = {"Status": "exited", "ExitCode": 1}


@pytest.mark.parametrize(
    ("condition", "states", "why"),
    [
        ("service_started", [RUNNING], None),
        ("service_started", [DONE_BAD, RUNNING], None),
        ("service_started", [], "is not running"),
        ("service_started", [DONE_OK], "is not running"),
        ("service_healthy", [HEALTHY], None),
        ("service_healthy", [STARTING], "is not healthy"),
        ("service_healthy", [RUNNING], "is not healthy"),
        ("service_healthy", [], "is not running"),
        ("service_completed_successfully", [DONE_OK], None),
        ("service_completed_successfully", [DONE_BAD], "has not completed successfully"),
        ("service_completed_successfully", [RUNNING], "has not completed successfully"),
    ],
)
def test_a_dependency_is_met_as_its_condition_says(
    condition: str, states: list[dict[str, Any]], why: str | None
) -> None:
    assert unmet(Dependency(service="db", condition=condition), states) == why

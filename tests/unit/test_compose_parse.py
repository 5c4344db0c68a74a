"""Compose's normalised JSON -> ContainerSpec: every key applied or refused by name (compose/parse.py).

The JSON fragments are written as `docker compose config --format json` (Compose v2.40) prints them.
"""

from __future__ import annotations

from typing import Any

import pytest

from trafficshift.compose.parse import Refused, parse_service
from trafficshift.compose.reader import is_empty, parse_go_duration
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


def doc(service: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A project `shop` with one service `web` (image web:1 on the default network), changed by `service`."""
    base: dict[str, Any] = {
        "image": "web:1",
        "command": None,
        "entrypoint": None,
        "networks": {"default": None},
    }
    return {
        "name": "shop",
        "networks": {"default": {"name": "shop_default", "ipam": {}}},
        "services": {"web": base | (service or {}), "db": {"image": "db:1"}},
    } | top


def parse(service: dict[str, Any] | None = None, *, replicas: int = 1, **top: Any) -> ContainerSpec:
    return parse_service(doc(service, **top), service="web", replicas=replicas)


def refusals(service: dict[str, Any] | None = None, *, replicas: int = 1, **top: Any) -> list[str]:
    with pytest.raises(Refused) as info:
        parse(service, replicas=replicas, **top)
    return list(info.value.problems)


def test_the_smallest_service_gives_image_project_and_default_network() -> None:
    assert parse() == ContainerSpec(
        project="shop",
        service="web",
        image="web:1",
        networks=(NetworkAttachment(name="shop_default", aliases=("web",)),),
        network_resources=(NetworkResource(key="default", name="shop_default"),),
    )


SECRET = {"s1": {"name": "shop_s1", "file": "/srv/shop/s1.txt"}}

# (service keys as Compose prints them, the ContainerSpec field, its value)
APPLIED: list[tuple[dict[str, Any], str, Any]] = [
    ({"command": ["./serve", "--port", "8080"]}, "command", ("./serve", "--port", "8080")),
    ({"command": []}, "command", ()),
    ({"entrypoint": ["/bin/sh", "-c"]}, "entrypoint", ("/bin/sh", "-c")),
    ({"environment": {"B": "2", "A": "1", "C": None}}, "environment", (("A", "1"), ("B", "2"), ("C", None))),
    ({"working_dir": "/app"}, "working_dir", "/app"),
    ({"user": "1000:1000"}, "user", "1000:1000"),
    ({"hostname": "web"}, "hostname", "web"),
    ({"domainname": "example.com"}, "domainname", "example.com"),
    ({"labels": {"team": "web", "a": "1"}}, "labels", (("a", "1"), ("team", "web"))),
    (
        {"volumes": [{"type": "bind", "source": "/srv/data", "target": "/data", "read_only": True}]},
        "mounts",
        (Mount(type="bind", target="/data", source="/srv/data", read_only=True),),
    ),
    (
        {
            "volumes": [
                {
                    "type": "bind",
                    "source": "/srv/data",
                    "target": "/data",
                    "bind": {"create_host_path": False, "propagation": "rshared", "selinux": "z"},
                }
            ]
        },
        "mounts",
        (
            Mount(
                type="bind",
                target="/data",
                source="/srv/data",
                create_host_path=False,
                propagation="rshared",
                selinux="z",
            ),
        ),
    ),
    (
        {"volumes": [{"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "1000000", "mode": 1777}}]},
        "mounts",
        (Mount(type="tmpfs", target="/tmp", tmpfs_size=1000000, tmpfs_mode=1777),),
    ),
    ({"tmpfs": ["/run", "/cache:size=1m"]}, "tmpfs", (("/run", ""), ("/cache", "size=1m"))),
    ({"expose": ["80", "90/udp"]}, "expose", ("80/tcp", "90/udp")),
    (
        {
            "healthcheck": {
                "test": ["CMD", "wget", "-q", "http://127.0.0.1:8080/healthz"],
                "interval": "1s",
                "timeout": "2s",
                "retries": 3,
                "start_period": "1m30s",
                "start_interval": "500ms",
            }
        },
        "healthcheck",
        Healthcheck(
            test=("CMD", "wget", "-q", "http://127.0.0.1:8080/healthz"),
            interval_ns=10**9,
            timeout_ns=2 * 10**9,
            start_period_ns=90 * 10**9,
            start_interval_ns=500 * 10**6,
            retries=3,
        ),
    ),
    ({"healthcheck": {"disable": True}}, "healthcheck", Healthcheck(test=("NONE",))),
    ({"healthcheck": {"interval": "5s"}}, "healthcheck", Healthcheck(test=(), interval_ns=5 * 10**9)),
    (
        {"deploy": {"resources": {"limits": {"cpus": 0.5, "memory": "67108864", "pids": 100}}}},
        "resources",
        Resources(memory=67108864, nano_cpus=500_000_000, pids_limit=100),
    ),
    (
        {"deploy": {"resources": {"reservations": {"memory": "16777216", "cpus": 0.25}}}},
        "resources",
        Resources(memory_reservation=16777216),
    ),
    (
        {"mem_limit": "104857600", "mem_reservation": "1048576", "memswap_limit": "209715200", "cpus": 1.5},
        "resources",
        Resources(
            memory=104857600, memory_reservation=1048576, memory_swap=209715200, nano_cpus=1_500_000_000
        ),
    ),
    (
        # As Compose: deploy.resources wins over mem_limit and cpus.
        {"mem_limit": "1000", "cpus": 2, "deploy": {"resources": {"limits": {"memory": "2000", "cpus": 1}}}},
        "resources",
        Resources(memory=2000, nano_cpus=1_000_000_000),
    ),
    (
        {"cpu_shares": 512, "cpuset": "0-1", "pids_limit": 50},
        "resources",
        Resources(cpu_shares=512, cpuset="0-1", pids_limit=50),
    ),
    (
        {"ulimits": {"nproc": 100, "nofile": {"soft": 1024, "hard": 2048}}},
        "ulimits",
        (Ulimit(name="nofile", soft=1024, hard=2048), Ulimit(name="nproc", soft=100, hard=100)),
    ),
    ({"sysctls": {"net.core.somaxconn": "1024"}}, "sysctls", (("net.core.somaxconn", "1024"),)),
    ({"cap_add": ["NET_ADMIN"]}, "cap_add", ("NET_ADMIN",)),
    ({"cap_drop": ["ALL"]}, "cap_drop", ("ALL",)),
    ({"read_only": True}, "read_only", True),
    ({"init": True}, "init", True),
    ({"init": False}, "init", False),
    ({}, "init", None),
    ({"privileged": True}, "privileged", True),
    ({"shm_size": "67108864"}, "shm_size", 67108864),
    (
        {"extra_hosts": ["db=10.0.0.1", "db=10.0.0.2", "v6=::1"]},
        "extra_hosts",
        ("db:10.0.0.1", "db:10.0.0.2", "v6:::1"),
    ),
    ({"dns": ["1.1.1.1"]}, "dns", ("1.1.1.1",)),
    ({"dns_search": ["example.com"]}, "dns_search", ("example.com",)),
    ({"dns_opt": ["ndots:2"]}, "dns_opt", ("ndots:2",)),
    ({"security_opt": ["no-new-privileges:true"]}, "security_opt", ("no-new-privileges:true",)),
    ({"security_opt": ["seccomp:unconfined"]}, "security_opt", ("seccomp:unconfined",)),
    ({"group_add": ["audio"]}, "group_add", ("audio",)),
    ({"tty": True}, "tty", True),
    ({"stdin_open": True}, "stdin_open", True),
    ({"oom_score_adj": -500}, "oom_score_adj", -500),
    (
        {"logging": {"driver": "json-file", "options": {"max-size": "1m"}}},
        "logging",
        Logging(driver="json-file", options=(("max-size", "1m"),)),
    ),
    ({"stop_signal": "SIGINT"}, "stop_signal", "SIGINT"),
    ({"stop_grace_period": "1m30s"}, "stop_grace_period", 90.0),
    ({}, "stop_grace_period", None),
    ({"restart": "always"}, "restart", RestartPolicy(name="always")),
    ({"restart": "on-failure:3"}, "restart", RestartPolicy(name="on-failure", max_retries=3)),
    ({"restart": "no"}, "restart", RestartPolicy(name="no")),
    ({}, "restart", None),
    (
        # As Compose: deploy.restart_policy wins over restart; `any` is always.
        {"restart": "no", "deploy": {"restart_policy": {"condition": "any", "max_attempts": 5}}},
        "restart",
        RestartPolicy(name="always", max_retries=5),
    ),
    (
        {
            "depends_on": {
                "db": {"condition": "service_healthy", "required": True},
                "cache": {"required": False},
            }
        },
        "depends_on",
        (
            Dependency(service="cache", condition="service_started", required=False),
            Dependency(service="db", condition="service_healthy"),
        ),
    ),
    (
        {"secrets": [{"source": "s1", "target": "/run/secrets/s1"}]},
        "mounts",
        (
            Mount(
                type="bind",
                target="/run/secrets/s1",
                source="/srv/shop/s1.txt",
                read_only=True,
                create_host_path=False,
            ),
        ),
    ),
]


@pytest.mark.parametrize(("service", "field", "expected"), APPLIED)
def test_each_supported_key_is_applied(service: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(parse(service, secrets=SECRET), field) == expected


def test_a_named_volume_keeps_the_name_compose_gives_it() -> None:
    spec = parse(
        {"volumes": [{"type": "volume", "source": "data", "target": "/var/lib/data", "volume": {}}]},
        volumes={"data": {"name": "shop_data", "labels": {"backup": "daily"}}},
    )
    assert spec.mounts == (Mount(type="volume", target="/var/lib/data", source="shop_data"),)
    assert spec.volumes == (VolumeResource(key="data", name="shop_data", labels=(("backup", "daily"),)),)


def test_a_volume_with_nocopy_or_subpath_keeps_them() -> None:
    spec = parse(
        {
            "volumes": [
                {
                    "type": "volume",
                    "source": "data",
                    "target": "/d",
                    "volume": {"nocopy": True, "subpath": "x"},
                }
            ]
        },
        volumes={"data": {"name": "shop_data"}},
    )
    assert spec.mounts == (Mount(type="volume", target="/d", source="shop_data", nocopy=True, subpath="x"),)


def test_secrets_and_configs_are_mounted_where_compose_mounts_them() -> None:
    spec = parse(
        {
            "secrets": [{"source": "s1"}, {"source": "s1", "target": "token"}],
            "configs": [{"source": "c1"}, {"source": "c1", "target": "/etc/app.conf"}],
        },
        secrets=SECRET,
        configs={"c1": {"name": "shop_c1", "file": "/srv/shop/app.conf"}},
    )
    targets = [(m.target, m.source, m.read_only, m.create_host_path) for m in spec.mounts]
    assert targets == [
        ("/run/secrets/s1", "/srv/shop/s1.txt", True, False),
        ("/run/secrets/token", "/srv/shop/s1.txt", True, False),
        ("/c1", "/srv/shop/app.conf", True, False),
        ("/etc/app.conf", "/srv/shop/app.conf", True, False),
    ]


def test_networks_by_priority_with_the_service_name_and_aliases() -> None:
    spec = parse(
        {
            "networks": {
                "back": None,
                "front": {"aliases": ["www"], "priority": 10, "ipv4_address": "172.30.0.5"},
            }
        },
        networks={
            "back": {"name": "shop_back", "internal": True, "ipam": {}},
            "front": {
                "name": "edge",
                "external": True,
                "ipam": {
                    "driver": "default",
                    "config": [{"subnet": "172.30.0.0/24", "gateway": "172.30.0.1"}],
                },
            },
        },
    )
    assert spec.networks == (
        NetworkAttachment(name="edge", aliases=("web", "www"), ipv4_address="172.30.0.5"),
        NetworkAttachment(name="shop_back", aliases=("web",)),
    )
    assert spec.network_resources == (
        NetworkResource(
            key="front",
            name="edge",
            external=True,
            ipam_driver="default",
            ipam_pools=(IpamPool(subnet="172.30.0.0/24", gateway="172.30.0.1"),),
        ),
        NetworkResource(key="back", name="shop_back", internal=True),
    )


@pytest.mark.parametrize(
    "service",
    [
        # Compose's defaults and empty values change nothing: they pass.
        {"deploy": {"resources": {}, "placement": {}}},
        {"deploy": {"replicas": 1, "mode": "replicated"}},
        {"scale": 1},
        {"profiles": ["prod"], "develop": {"watch": [{"path": "./src", "action": "sync"}]}, "attach": False},
        {"build": {"context": "/srv/shop"}},
        {"pull_policy": "missing"},
        {"volumes": []},
        {"privileged": False, "tty": False, "cpus": 0},
        {"x-custom": {"anything": 1}},
        # What Compose makes of `links: [db]`'s dependency: restart on update has no moment here.
        {"depends_on": {"db": {"condition": "service_started", "required": True, "restart": True}}},
    ],
)
def test_defaults_and_what_does_not_change_a_container_pass(service: dict[str, Any]) -> None:
    parse(service)


# (service keys, the refused path, a word of the reason)
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"container_name": "web"}, "services.web.container_name", "share one name"),
    (
        {"ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}]},
        "services.web.ports",
        "publishes",
    ),
    ({"network_mode": "host", "networks": None}, "services.web.network_mode", "host"),
    ({"network_mode": "none", "networks": None}, "services.web.network_mode", "reach"),
    ({"network_mode": "service:db", "networks": None}, "services.web.network_mode", "reach"),
    ({"network_mode": "bridge", "networks": None}, "services.web.network_mode", "use networks"),
    ({"deploy": {"replicas": 2}}, "services.web.deploy.replicas", "replicas: 1"),
    ({"scale": 3}, "services.web.scale", "replicas: 1"),
    ({"deploy": {"mode": "global"}}, "services.web.deploy.mode", "Swarm"),
    ({"deploy": {"update_config": {"parallelism": 2}}}, "services.web.deploy.update_config", "not supported"),
    ({"deploy": {"restart_policy": {"condition": "any", "delay": "5s"}}}, "restart_policy.delay", "Swarm"),
    ({"image": None}, "services.web.image", "missing"),
    ({"pull_policy": "always"}, "services.web.pull_policy", "missing"),
    ({"links": ["db"]}, "services.web.links", "not supported"),
    ({"volumes_from": ["db"]}, "services.web.volumes_from", "not supported"),
    ({"platform": "linux/arm64"}, "services.web.platform", "not supported"),
    ({"devices": [{"source": "/dev/fuse", "target": "/dev/fuse"}]}, "services.web.devices", "not supported"),
    ({"post_start": [{"command": ["true"]}]}, "services.web.post_start", "not supported"),
    ({"labels": {"trafficshift.app": "other"}}, "services.web.labels.trafficshift.app", "reserved"),
    (
        {"labels": {"com.docker.compose.project": "x"}},
        "services.web.labels.com.docker.compose.project",
        "Compose",
    ),
    ({"volumes": [{"type": "volume", "target": "/data"}]}, "services.web.volumes[0].source", "anonymous"),
    (
        {"volumes": [{"type": "npipe", "source": "x", "target": "/x"}]},
        "services.web.volumes[0].type",
        "npipe",
    ),
    (
        {"volumes": [{"type": "bind", "source": "/a", "target": "/a", "bind": {"recursive": "disabled"}}]},
        "services.web.volumes[0].bind.recursive",
        "not supported",
    ),
    (
        {"networks": {"default": {"mac_address": "02:42:ac:11:65:43"}}},
        "services.web.networks.default.mac_address",
        "not supported",
    ),
    ({"secrets": [{"source": "s1", "mode": "0400"}]}, "services.web.secrets[0].mode", "bind-mounted"),
    ({"security_opt": ["seccomp=/srv/profile.json"]}, "services.web.security_opt", "seccomp"),
    ({"restart": "sometimes"}, "services.web.restart", "sometimes"),
    ({"healthcheck": {"test": ["CMD", "true"], "interval": "soon"}}, "healthcheck.interval", "duration"),
]


@pytest.mark.parametrize(("service", "path", "why"), REFUSED)
def test_each_unsupported_key_is_refused_by_name(service: dict[str, Any], path: str, why: str) -> None:
    problems = refusals(service, secrets=SECRET)
    assert any(p.startswith(path) or f".{path}: " in p for p in problems), problems
    assert any(why in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = refusals({"container_name": "web", "ports": [{"target": 80}], "links": ["db"]})
    assert [p.split(":")[0] for p in problems] == [
        "services.web.container_name",
        "services.web.ports",
        "services.web.links",
    ]


@pytest.mark.parametrize(
    ("top", "path"),
    [
        ({"secrets": {"s1": {"name": "shop_s1", "environment": "TOKEN"}}}, "secrets.s1.environment"),
        ({"secrets": {"s1": {"name": "s1", "external": True}}}, "secrets.s1.external"),
        (
            {"networks": {"default": {"name": "shop_default", "enable_ipv4": False}}},
            "networks.default.enable_ipv4",
        ),
    ],
)
def test_unsupported_top_level_settings_of_what_the_service_uses_are_refused(
    top: dict[str, Any], path: str
) -> None:
    problems = refusals({"secrets": [{"source": "s1"}]}, **top)
    assert any(p.startswith(path + ": ") for p in problems), problems


def test_settings_of_what_the_service_does_not_use_are_not_its_business() -> None:
    parse(volumes={"other": {"name": "x", "driver_opts": {"type": "nfs"}, "x-weird": 1, "cluster": {"a": 1}}})


def test_an_unknown_service_names_those_there_are() -> None:
    with pytest.raises(Refused) as info:
        parse_service(doc(), service="api", replicas=1)
    assert info.value.problems == ("services: no service 'api' (services: db, web)",)


def test_a_type_compose_would_not_print_is_reported_not_trusted() -> None:
    problems = refusals({"user": 1000, "cap_add": "ALL"})
    assert "services.web.user: expected a string from Compose, got 1000" in problems
    assert any(p.startswith("services.web.cap_add: expected a list") for p in problems)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0s", 0),
        ("0", 0),
        ("500ms", 500 * 10**6),
        ("1m30s", 90 * 10**9),
        ("1.5s", 1_500_000_000),
        ("1h0m0s", 3600 * 10**9),
        ("2us", 2000),
    ],
)
def test_go_durations_as_compose_prints_them(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "1x", "-1s", "1s2"])
def test_bad_go_durations_are_errors(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("value", "empty"),
    [
        (None, True),
        ("", True),
        (False, True),
        (0, True),
        ([], True),
        ({}, True),
        ({"a": {"b": []}}, True),
        (True, False),
        (1, False),
        ("x", False),
        (["x"], False),
        ({"a": 1}, False),
    ],
)
def test_what_counts_as_empty(value: Any, empty: bool) -> None:
    assert is_empty(value) is empty


def test_build_gives_the_context_and_without_image_the_name_compose_builds() -> None:
    built = parse({"image": None, "build": {"context": "/srv/shop/app", "dockerfile": "Dockerfile"}})
    assert (built.image, built.build_context) == ("shop-web", "/srv/shop/app")
    named = parse({"image": "reg.example/web:2", "build": {"context": "/srv/shop/app"}})
    assert (named.image, named.build_context) == ("reg.example/web:2", "/srv/shop/app")
    assert parse().build_context == ""

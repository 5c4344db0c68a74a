"""`hosts:` (several Docker engines) and an app's `hosts`: models, and errors naming file:line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError
from trafficshift.models import DockerHost, DockerTls

# Lines 1-16; the app's own lines from 17 on.
CONFIG = """\
traefik:
  dynamic_dir: ./dynamic
hosts:
  - name: a
    docker: unix:///var/run/docker.sock
    address: 10.0.0.1
  - name: b
    docker: tcp://10.0.0.2:2376
    address: node-b.internal
    tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
apps:
  web:
    image: example/web:1.0
    port: 8080
    rule: "Host(`web.localhost`)"
    publish: 0.0.0.0
"""


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def errors_of(text: str, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="trafficshift.yml", base_dir=base_dir)
    return list(info.value.messages)


def test_hosts_and_an_app_spread_over_all_of_them_by_default(base_dir: Path) -> None:
    config = parse_config_text(CONFIG, source="trafficshift.yml", base_dir=base_dir)
    assert config.hosts == (
        DockerHost(name="a", docker="unix:///var/run/docker.sock", address="10.0.0.1"),
        DockerHost(
            name="b",
            docker="tcp://10.0.0.2:2376",
            address="node-b.internal",
            tls=DockerTls(ca=base_dir / "ca.pem", cert=base_dir / "cert.pem", key=base_dir / "key.pem"),
        ),
    )
    assert config.apps["web"].hosts == ("a", "b")


def test_an_app_lists_its_own_hosts_in_the_order_replicas_are_spread(base_dir: Path) -> None:
    config = parse_config_text(CONFIG + "    hosts: [b, a]\n", source="trafficshift.yml", base_dir=base_dir)
    assert config.apps["web"].hosts == ("b", "a")


def test_ssh_and_ipv6_addresses_are_accepted(base_dir: Path) -> None:
    text = CONFIG.replace("unix:///var/run/docker.sock", "ssh://deploy@node-a:2222").replace(
        "10.0.0.1", "'[fd00::1]'"
    )
    host = parse_config_text(text, source="trafficshift.yml", base_dir=base_dir).hosts[0]
    assert (host.docker, host.address) == ("ssh://deploy@node-a:2222", "fd00::1")


def test_without_hosts_apps_have_none_everything_on_the_local_engine(base_dir: Path) -> None:
    text = CONFIG.replace(CONFIG[CONFIG.index("hosts:") : CONFIG.index("apps:")], "")
    config = parse_config_text(text, source="trafficshift.yml", base_dir=base_dir)
    assert config.hosts == ()
    assert config.apps["web"].hosts == ()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("name: a", "name: A", "trafficshift.yml:4: hosts[0].name: host names must match"),
        ("name: b", "name: a", "trafficshift.yml:7: hosts[1]: host a is listed twice"),
        (
            "unix:///var/run/docker.sock",
            "tcp://10.0.0.2:2376",
            "trafficshift.yml:7: hosts[1]: docker 'tcp://10.0.0.2:2376' is host a's already",
        ),
        (
            "tcp://10.0.0.2:2376",
            "tcp://10.0.0.2",
            "trafficshift.yml:8: hosts[1].docker: expected unix:///path",
        ),
        (
            "unix:///var/run/docker.sock",
            "http://x:2375",
            "trafficshift.yml:5: hosts[0].docker: expected unix",
        ),
        (
            "unix:///var/run/docker.sock",
            "unix://docker.sock",
            "trafficshift.yml:5: hosts[0].docker: expected",
        ),
        (
            "address: 10.0.0.1",
            "address: 'not an address'",
            "trafficshift.yml:6: hosts[0].address: expected a",
        ),
        ("    address: 10.0.0.1\n", "", "trafficshift.yml:4: hosts[0]: missing required key 'address'"),
        ("ca: ca.pem", "ca: missing.pem", "trafficshift.yml:10: hosts[1].tls.ca: cannot read missing.pem"),
        ("cert: cert.pem, ", "", "trafficshift.yml:10: hosts[1].tls: missing required key 'cert'"),
        (
            "tcp://10.0.0.2:2376",
            "ssh://node-b",
            "trafficshift.yml:10: hosts[1].tls: applies to a tcp:// endpoint only",
        ),
        (
            "hosts:\n  - name: a",
            "hosts: []\nx-old:\n  - name: a",
            "trafficshift.yml:3: hosts: must list at least",
        ),
        (
            "    publish: 0.0.0.0\n",
            "    network: traefik\n",
            "trafficshift.yml:16: apps.web.network: not with hosts: replicas on several Docker hosts",
        ),
    ],
)
def test_a_bad_host_names_file_line_and_field(base_dir: Path, old: str, new: str, expected: str) -> None:
    assert old in CONFIG
    errors = errors_of(CONFIG.replace(old, new, 1), base_dir)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    hosts: [a, c]\n", "trafficshift.yml:17: apps.web.hosts[1]: unknown host 'c'; hosts: a, b"),
        ("    hosts: [a, a]\n", "trafficshift.yml:17: apps.web.hosts[1]: host a is listed twice"),
        ("    hosts: []\n", "trafficshift.yml:17: apps.web.hosts: must list at least one host"),
        ("    hosts: a\n", "trafficshift.yml:17: apps.web.hosts: expected a list"),
    ],
)
def test_a_bad_app_host_list_names_file_line_and_field(base_dir: Path, extra: str, expected: str) -> None:
    errors = errors_of(CONFIG + extra, base_dir)
    assert any(e.startswith(expected) for e in errors), errors


def test_an_app_host_list_without_top_level_hosts_is_an_error(base_dir: Path) -> None:
    text = CONFIG.replace(CONFIG[CONFIG.index("hosts:") : CONFIG.index("apps:")], "") + "    hosts: [a]\n"
    assert errors_of(text, base_dir) == [
        "trafficshift.yml:9: apps.web.hosts: there are no top-level hosts to choose from;"
        " leave hosts out to use the local Docker engine"
    ]

"""A Docker host's endpoint as a client (hosts.client_for), and its containers at its address (at_address)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import aiodocker.ssh
import pytest

from trafficshift.errors import UnreachableError
from trafficshift.hosts import at_address, client_for
from trafficshift.models import Colour, ContainerInfo, DockerHost, DockerTls

INFO = ContainerInfo(
    id="c1",
    name="web-blue-2",
    app="web",
    colour=Colour.BLUE,
    image="web:1",
    running=True,
    health=None,
    url="http://127.0.0.1:32781",
    probe_url="http://127.0.0.1:32781",
)


def test_the_published_port_is_reached_at_the_hosts_address() -> None:
    moved = at_address(INFO, "10.0.0.12")
    assert (moved.url, moved.probe_url) == ("http://10.0.0.12:32781", "http://10.0.0.12:32781")


def test_a_dns_name_and_an_ipv6_address() -> None:
    assert at_address(INFO, "node-b.internal").url == "http://node-b.internal:32781"
    assert at_address(INFO, "fd00::12").url == "http://[fd00::12]:32781"


def test_a_container_without_an_address_yet_keeps_none() -> None:
    waiting = at_address(replace(INFO, url=None, probe_url=None), "10.0.0.12")
    assert (waiting.url, waiting.probe_url) == (None, None)


async def test_tcp_is_spoken_as_http_and_with_tls_as_https(tmp_path: Path) -> None:
    plain = client_for(DockerHost(name="b", docker="tcp://127.0.0.1:2375", address="127.0.0.1"))
    try:
        assert plain.docker_host == "http://127.0.0.1:2375"
    finally:
        await plain.close()
    tls = DockerTls(ca=tmp_path / "ca.pem", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem")
    for path in (tls.ca, tls.cert, tls.key):
        path.write_text("not a certificate\n")
    with pytest.raises(UnreachableError, match="host b: cannot use its TLS files"):
        client_for(DockerHost(name="b", docker="tcp://127.0.0.1:2376", address="127.0.0.1", tls=tls))


async def test_ssh_without_asyncssh_is_unreachable_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiodocker.ssh, "asyncssh", None)  # as without `trafficshift[ssh]`
    with pytest.raises(UnreachableError, match=r"host b \(ssh://deploy@node-b\): asyncssh is required"):
        client_for(DockerHost(name="b", docker="ssh://deploy@node-b", address="127.0.0.1"))

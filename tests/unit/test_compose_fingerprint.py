"""The spec document of a compose-backed app: what goes in, its digest, and the keys that changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from trafficshift.compose.fingerprint import app_doc, changed_keys, describe, digest, spec_doc
from trafficshift.compose.spec import (
    ComposeRef,
    ContainerSpec,
    Dependency,
    Healthcheck,
    Mount,
    NetworkAttachment,
    NetworkResource,
    Resources,
    Ulimit,
    VolumeResource,
)
from trafficshift.models import AppSpec

SPEC = ContainerSpec(
    project="shop",
    service="web",
    image="shop/web:1",
    environment=(("GREETING", "hello"), ("UNSET", None)),
    mounts=(
        Mount(type="bind", target="/srv/static", source="/home/me/shop/static", read_only=True),
        Mount(type="volume", target="/data", source="shop_data"),
    ),
    networks=(
        NetworkAttachment(name="shop_front", aliases=("web", "www")),
        NetworkAttachment(name="shop_back", aliases=("web",)),
    ),
    healthcheck=Healthcheck(test=("CMD", "true"), interval_ns=500_000_000),
    resources=Resources(memory=64 * 2**20),
    ulimits=(Ulimit(name="nofile", soft=1024, hard=2048),),
    volumes=(VolumeResource(key="data", name="shop_data", driver="local"),),
    network_resources=(NetworkResource(key="front", name="shop_front"),),
    depends_on=(Dependency(service="db"),),
    build_context="/home/me/shop/app",
)


def doc(spec: ContainerSpec = SPEC, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"image": spec.image, "image_id": "sha256:1", "port": 8080, "network": None}
    return spec_doc(spec, **(args | {"publish": "127.0.0.1"} | kw))


def test_the_document_has_what_reaches_a_container_by_compose_key() -> None:
    assert doc() == {
        "environment.GREETING": "hello",
        "environment.UNSET": None,
        "healthcheck.interval_ns": 500_000_000,
        "healthcheck.test": ["CMD", "true"],
        "image": "shop/web:1",
        "image_id": "sha256:1",
        "mounts./data.source": "shop_data",
        "mounts./data.type": "volume",
        "mounts./data.create_host_path": True,
        "mounts./srv/static.create_host_path": True,
        "mounts./srv/static.read_only": True,
        "mounts./srv/static.source": "/home/me/shop/static",
        "mounts./srv/static.type": "bind",
        "networks": ["shop_front", "shop_back"],
        "networks.shop_back.aliases": ["web"],
        "networks.shop_front.aliases": ["web", "www"],
        "port": 8080,
        "publish": "127.0.0.1",
        "resources.memory": 64 * 2**20,
        "ulimits.nofile.hard": 2048,
        "ulimits.nofile.soft": 1024,
    }


@pytest.mark.parametrize(
    "change",
    [
        # None of these changes a container: the project and service names show where they matter.
        {"project": "other"},
        {"service": "api"},
        {"depends_on": ()},
        {"volumes": (VolumeResource(key="data", name="shop_data", driver="nfs"),)},
        {"network_resources": ()},
        {"build_context": "/elsewhere"},
        # Defaults said out loud are the defaults.
        {"command": ()},
        {"read_only": False},
        {"shm_size": 0},
    ],
)
def test_what_changes_no_container_changes_no_digest(change: dict[str, Any]) -> None:
    assert digest(doc(dataclasses.replace(SPEC, **change))) == digest(doc())


@pytest.mark.parametrize(
    ("change", "keys"),
    [
        ({"environment": (("GREETING", "bonjour"), ("UNSET", None))}, ["environment.GREETING"]),
        ({"environment": (("GREETING", "hello"),)}, ["environment.UNSET"]),
        ({"init": False}, ["init"]),
        ({"stop_grace_period": 3.0}, ["stop_grace_period"]),
        (
            {"networks": tuple(reversed(SPEC.networks))},  # another primary network
            ["networks"],
        ),
        (
            {"mounts": (Mount(type="bind", target="/srv/static", source="/moved/static", read_only=True),)},
            [
                "mounts./data.create_host_path",
                "mounts./data.source",
                "mounts./data.type",
                "mounts./srv/static.source",
            ],
        ),
        (
            {"ulimits": (Ulimit(name="nofile", soft=0, hard=0),)},  # still there, with nothing but zeros
            ["ulimits.nofile", "ulimits.nofile.hard", "ulimits.nofile.soft"],
        ),
    ],
)
def test_the_changed_keys_name_what_differs(change: dict[str, Any], keys: list[str]) -> None:
    assert changed_keys(doc(), doc(dataclasses.replace(SPEC, **change))) == sorted(keys)


def test_a_new_tag_is_one_change_and_a_rebuilt_tag_is_its_image_id() -> None:
    assert changed_keys(doc(), doc(image="shop/web:2", image_id="sha256:2")) == ["image"]
    assert changed_keys(doc(), doc(image_id="sha256:2")) == ["image_id"]
    assert changed_keys(doc(), doc(port=9090, publish=None, network="traefik")) == [
        "network",
        "port",
        "publish",
    ]
    assert changed_keys(doc(), doc()) == []


def test_the_digest_is_short_stable_and_tells_any_change() -> None:
    one = digest(doc())
    assert one == digest(dict(reversed(list(doc().items()))))
    assert len(one) == 16
    assert int(one, 16) >= 0
    assert one != digest(doc(image_id="sha256:2"))
    # A golden value: the digest is recorded on containers and in state.db, it must not drift by accident.
    assert digest({"image": "a", "port": 1}) == "0305988b66416636"


def test_describe_lists_the_first_keys_and_counts_the_rest() -> None:
    assert describe([]) == "nothing"
    assert describe(["image", "environment.A"]) == "image, environment.A"
    assert describe([f"k{i}" for i in range(9)], limit=3) == "k0, k1, k2 (+6 more)"


def test_only_compose_backed_apps_have_a_document() -> None:
    plain = AppSpec(name="web", image="web:1", port=8080, rule="Host(`w`)", publish="127.0.0.1")
    assert app_doc(plain, image="web:1", image_id="sha256:1") is None
    backed = dataclasses.replace(
        plain,
        compose=ComposeRef(files=(Path("/srv/shop/docker-compose.yml"),), service="web"),
        container=SPEC,
    )
    assert app_doc(backed, image="shop/web:2", image_id="sha256:2") == doc(
        image="shop/web:2", image_id="sha256:2"
    )

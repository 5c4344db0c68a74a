"""A pre_deploy hook's one-off container: the colours' create body, less what would let it take traffic; and
the whole lines of a command's output out of the chunks Docker streams. Pure parts of containers.py (the
Docker calls themselves: tests/integration/test_release_hooks.py)."""

from __future__ import annotations

from trafficshift.compose.spec import ContainerSpec, Mount, NetworkAttachment
from trafficshift.containers import (
    LABEL_APP,
    LABEL_COLOUR,
    LABEL_ONE_OFF,
    LABEL_PURPOSE,
    _Lines,
    _one_off_plan,
    _plan,
)
from trafficshift.models import AppSpec, Colour

COMPOSE_APP = AppSpec(
    name="shop",
    image="web:2",
    port=8080,
    rule="Host(`shop.localhost`)",
    publish="127.0.0.1",
    container=ContainerSpec(
        project="shop",
        service="web",
        image="web:2",
        environment=(("DATABASE_URL", "postgres://db/shop"),),
        mounts=(Mount(type="volume", source="shop_data", target="/data"),),
        networks=(
            NetworkAttachment(name="shop_front", aliases=("web", "www")),
            NetworkAttachment(name="shop_back", aliases=("web",)),
        ),
    ),
)


def test_a_one_off_has_the_colours_env_volumes_and_networks_but_no_port_alias_or_restart() -> None:
    colour = _plan(app=COMPOSE_APP, colour=Colour.GREEN, image="web:2", image_id="sha256:2").config
    plan = _one_off_plan(
        app=COMPOSE_APP, image="web:2", image_id="sha256:2", command=["./migrate", "up"], purpose="pre_deploy"
    )
    body = plan.config

    assert body["Image"] == colour["Image"] == "web:2"
    assert body["Env"] == colour["Env"] == ["DATABASE_URL=postgres://db/shop"]
    assert body["HostConfig"]["Binds"] == colour["HostConfig"]["Binds"] == ["shop_data:/data:rw"]
    assert body["Cmd"] == ["./migrate", "up"]
    # Never listed as a colour (so never routed), found again by its app after a kill.
    assert LABEL_APP not in body["Labels"]
    assert LABEL_COLOUR not in body["Labels"]
    assert (body["Labels"][LABEL_ONE_OFF], body["Labels"][LABEL_PURPOSE]) == ("shop", "pre_deploy")
    assert "PortBindings" in colour["HostConfig"]
    assert "PortBindings" not in body["HostConfig"]
    assert "ExposedPorts" not in body
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    assert body["Healthcheck"] == {"Test": ["NONE"]}
    # On the same networks, but the service's name does not resolve to it.
    assert body["HostConfig"]["NetworkMode"] == colour["HostConfig"]["NetworkMode"] == "shop_front"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"shop_front": {}}}
    assert plan.connect == (("shop_back", {}),)


def test_a_plain_apps_one_off_keeps_its_network_and_user_labels() -> None:
    app = AppSpec(
        name="api",
        image="api:2",
        port=8080,
        rule="Host(`api.localhost`)",
        network="edge",
        environment={"MODE": "prod"},
        labels={"team": "payments"},
    )
    plan = _one_off_plan(app=app, image="api:2", image_id="x", command=["migrate"], purpose="pre_deploy")
    body = plan.config
    assert body["HostConfig"]["NetworkMode"] == "edge"
    assert body["Env"] == ["MODE=prod"]
    assert body["Labels"] == {"team": "payments", LABEL_ONE_OFF: "api", LABEL_PURPOSE: "pre_deploy"}


def test_lines_are_whole_across_chunks_and_characters() -> None:
    lines = _Lines()
    assert lines.feed(b"applying 00") == []
    assert lines.feed(b"42\r\nusers: \xc3") == ["applying 0042"]
    assert lines.feed(b"\xa9\ndone") == ["users: é"]
    assert lines.feed("\nstr chunks too\n") == ["done", "str chunks too"]
    assert lines.end() == []
    lines.feed(b"no newline at the end")
    assert lines.end() == ["no newline at the end"]

"""`compose: {file, service, project}` in trafficshift.yml, and which Compose runs (no Compose run here)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from trafficshift.compose.runner import choose
from trafficshift.compose.spec import ComposeRef
from trafficshift.config import parse_config_text
from trafficshift.errors import ComposeMissing, ConfigError
from trafficshift.models import Config

BASE_DIR = Path("/srv/shift")

# Lines 1-8; the app's keys start on line 5.
COMPOSE_APP = """\
traefik:
  dynamic_dir: ./dynamic
apps:
  web:
    compose: {file: ./docker-compose.yml, service: web}
    port: 8080
    rule: "Host(`web.localhost`)"
    publish: 127.0.0.1
"""


def parse(text: str) -> Config:
    return parse_config_text(text, source="trafficshift.yml", base_dir=BASE_DIR)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return list(info.value.messages)


def with_app(extra: str, base: str = COMPOSE_APP) -> str:
    return base + textwrap.indent(textwrap.dedent(extra), "    ")


def test_a_compose_app_needs_no_image_and_names_its_files_beside_the_config() -> None:
    app = parse(COMPOSE_APP).apps["web"]
    assert app.compose == ComposeRef(files=(BASE_DIR / "docker-compose.yml",), service="web")
    assert app.compose.where == "trafficshift.yml:5: apps.web.compose"
    assert app.image == ""  # until Compose has read the service
    assert app.container is None


def test_several_files_merge_in_order_and_a_project_can_be_named() -> None:
    text = COMPOSE_APP.replace(
        "compose: {file: ./docker-compose.yml, service: web}",
        "compose: {file: [docker-compose.yml, prod.yml], service: web, project: shop_1}",
    )
    app = parse(text).apps["web"]
    assert app.compose == ComposeRef(
        files=(BASE_DIR / "docker-compose.yml", BASE_DIR / "prod.yml"), service="web", project="shop_1"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (with_app("image: web:1\n"), "trafficshift.yml:9: apps.web.image: not with compose"),
        (with_app("environment: {A: '1'}\n"), "trafficshift.yml:9: apps.web.environment: not with compose"),
        (with_app("command: [a]\n"), "trafficshift.yml:9: apps.web.command: not with compose"),
        (with_app("labels: {a: b}\n"), "trafficshift.yml:9: apps.web.labels: not with compose"),
        (
            with_app("rollout: {steps: [50, 100], stop_timeout: 5s}\n"),
            "trafficshift.yml:9: apps.web.rollout.stop_timeout: not with compose: the compose service's"
            " stop_grace_period applies",
        ),
        (
            COMPOSE_APP.replace("service: web}", "service: web, projet: x}"),
            "trafficshift.yml:5: apps.web.compose.projet: unknown key; did you mean 'project'?",
        ),
        (
            COMPOSE_APP.replace(", service: web", ""),
            "trafficshift.yml:5: apps.web.compose: missing required key 'service'",
        ),
        (
            COMPOSE_APP.replace("service: web}", "service: web, project: Shop}"),
            "trafficshift.yml:5: apps.web.compose.project: a Compose project name is lowercase",
        ),
        (
            COMPOSE_APP.replace("file: ./docker-compose.yml", "file: []"),
            "apps.web.compose.file: must list at least",
        ),
        (
            COMPOSE_APP.replace("file: ./docker-compose.yml", "file: 7"),
            "apps.web.compose.file: expected a string",
        ),
        (
            COMPOSE_APP.replace("    compose: {file: ./docker-compose.yml, service: web}\n", ""),
            "trafficshift.yml:4: apps.web: missing required key 'image'",
        ),
    ],
)
def test_compose_and_what_it_replaces_are_checked_with_file_and_line(text: str, expected: str) -> None:
    messages = errors_of(text)
    assert any(m.startswith(expected) or expected in m for m in messages), messages


def test_rollout_without_stop_timeout_is_fine_with_compose() -> None:
    app = parse(with_app("rollout: {steps: [50, 100], pause: 1s}\n")).apps["web"]
    assert app.rollout.steps == (50, 100)


V2 = "Docker Compose version v2.40.3\n"
V1 = "docker-compose version 1.29.2, build unknown\n"


def test_the_first_compose_that_says_v2_is_chosen() -> None:
    answers = {("/pkg/docker-compose",): None, ("docker", "compose"): V2, ("/usr/bin/docker-compose",): V1}
    assert choose(list(answers), answers.get) == ("docker", "compose")


def test_compose_v1_is_refused_by_name() -> None:
    with pytest.raises(ComposeMissing) as info:
        choose([("/usr/bin/docker-compose",)], {("/usr/bin/docker-compose",): V1}.get)
    assert "Compose v2 is needed; /usr/bin/docker-compose is Compose 1.29.2 (v1)" in str(info.value)
    assert "pip install 'trafficshift[compose]'" in str(info.value)
    assert info.value.exit_code == 2


def test_no_compose_at_all_says_how_to_install_it() -> None:
    with pytest.raises(ComposeMissing, match="Compose v2 is not installed"):
        choose([], {}.get)

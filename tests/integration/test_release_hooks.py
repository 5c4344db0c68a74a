"""Release hooks against the real CLI, Docker engine, Compose v2 and Traefik (README, "Release hooks").

A pre_deploy hook writes a marker into a named volume that the colours share: it is there before the first
weight on the new colour is recorded; a pre_stop hook runs in each old container once it is out of Traefik's
file; a pre_deploy that fails, or outlives its timeout, leaves the old colour serving with no failed request
and nothing of the new colour started or left behind.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.support import cli
from tests.support.compose import remove_project, write_project
from tests.support.docker_fixtures import IMAGE_REPO, colours_of
from tests.support.load import load_app
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

# The test images run their command instead of the server when given one (tests/support/images.py), and
# busybox's sh knows $EPOCHREALTIME: each marker holds the time the hook wrote it.
PRE_DEPLOY = ["sh", "-c", "echo migrating; echo $EPOCHREALTIME > /shared/pre_deploy; echo migrated"]
PRE_STOP = ["sh", "-c", "echo $EPOCHREALTIME > /shared/pre_stop-$HOSTNAME; echo jobs finished"]
MARKERS = "for f in /shared/pre_deploy /shared/pre_stop-*; do echo $f $(cat $f); done"

SHOP = """\
name: @PREFIX@
services:
  web:
    image: @IMAGE@:${TAG}
    volumes: [shared:/shared]
volumes:
  shared: {}
"""


@pytest.fixture
async def project(docker: aiodocker.Docker, prefix: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await remove_project(docker, prefix=prefix)


def at(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["at"]).timestamp()


def first(events: list[dict[str, Any]], text: str) -> dict[str, Any]:
    return next(e for e in events if text in e["message"])


def docker_exec(name: str, script: str) -> str:
    result = subprocess.run(["docker", "exec", name, "sh", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_pre_deploy_writes_before_any_new_weight_and_pre_stop_runs_in_each_old_container(
    tmp_path: Path,
    traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
    project: None,
) -> None:
    compose_file = write_project(
        tmp_path / "shop",
        {
            "docker-compose.yml": SHOP.replace("@PREFIX@", prefix).replace("@IMAGE@", IMAGE_REPO),
            ".env": "TAG=v1\n",
        },
    )

    def configure(hooks: dict[str, Any]) -> Path:
        spec = {
            "compose": {"file": str(compose_file), "service": "web"},
            "replicas": 2,
            "rollout": {"steps": [10, 50, 100], "pause": "500ms", "drain": "500ms"},  # no stop_timeout
            "hooks": hooks,
        }
        return cli.write_config(tmp_path / "trafficshift.yml", traefik=traefik, apps={prefix: spec})

    first_deploy = await cli.run("promote", prefix, config=configure({}))
    assert first_deploy.code == 0, first_deploy.stderr
    (tmp_path / "shop" / ".env").write_text("TAG=v2\n")
    hooks = {
        "pre_deploy": {"command": PRE_DEPLOY, "timeout": "20s"},
        "pre_stop": {"command": PRE_STOP},
        "post_deploy": {"command": ["sh", "-c", "echo cache unreachable; exit 1"]},
    }
    result = await cli.run("promote", prefix, "--json", config=configure(hooks))

    assert result.code == 0, result.stderr  # a failing post_deploy is a warning
    events = result.events()
    said = [e["message"] for e in events]
    # Streamed as events, in order, before the new colour's first weight.
    assert said.index("pre_deploy: migrating") < said.index("pre_deploy: migrated")
    first_weight = first(events, "step 1/3: 10% on green")
    assert said.index("pre_deploy: migrated") < said.index(first_weight["message"])
    markers = dict(line.split() for line in docker_exec(f"{prefix}-green-1", MARKERS).splitlines())
    # The marker was in the volume before the first weight on green was recorded (let alone confirmed).
    assert float(markers.pop("/shared/pre_deploy")) < at(first_weight)
    # One per old container, written after blue's weight 0 was confirmed, drained and its routing gone
    # (`cleaning` is recorded after that), and before the rollout was done (after blue stopped).
    assert len(markers) == 2, markers
    done_event = next(e for e in events if e["message"] == "done")
    out_of_the_file, done = at(first(events, "removing blue")), at(done_event)
    for written in markers.values():
        assert out_of_the_file < float(written) < done
    assert said.count(f"pre_stop in {prefix}-blue-1: jobs finished") == 1
    assert said.count(f"pre_stop in {prefix}-blue-2: jobs finished") == 1
    # post_deploy: after done, in one new container; its failure reported, the rollout left done.
    (warning,) = [e for e in events if e["message"].startswith("warning: post_deploy")]
    assert warning["message"].startswith(f"warning: post_deploy in {prefix}-green-1 exited 1 after")
    assert warning["message"].endswith("last output: cache unreachable; the rollout stays done")
    assert warning["state"] == "done"
    assert events.index(warning) > events.index(done_event)
    assert await colours_of(docker, prefix) == {"green": {f"{IMAGE_REPO}:v2"}}
    assert await docker.containers.list(all=True, filters={"label": [f"trafficshift.one-off={prefix}"]}) == []


async def test_a_failing_pre_deploy_leaves_the_old_colour_serving_with_no_failed_request(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    failing = ["sh", "-c", "echo applying 0042_users; echo 'relation users already exists' >&2; exit 3"]
    cli.app_config(
        tmp_path, traefik, prefix, image=app_images["v1"], hooks={"pre_deploy": {"command": failing}}
    )
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        result = await cli.run("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await load.wait_for(requests=load.total + 20)

    assert result.code == 1, result.stderr
    assert "failed: pre_deploy exited 3 after" in result.stderr
    # Both streams, each line whole (their order across stdout and stderr is Docker's).
    assert "; last output: " in result.stderr
    assert "applying 0042_users" in result.stderr
    assert "relation users already exists" in result.stderr
    assert load.summary().failed == 0
    assert load.share("v1") == 1.0
    # Nothing of green was ever routed, started, or left behind.
    assert all(set(e["weights"]) <= {"blue"} for e in result.events()), result.events()
    assert "green" not in (traefik.dynamic_dir / f"{prefix}.yml").read_text()
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}

    # Past its timeout: stopped and removed, the same way back.
    cli.app_config(
        tmp_path,
        traefik,
        prefix,
        image=app_images["v1"],
        hooks={"pre_deploy": {"command": ["sh", "-c", "echo waiting for a lock; sleep 30"], "timeout": "1s"}},
    )
    timed_out = await cli.run("promote", prefix, "--image", app_images["v2"], config=config)
    assert timed_out.code == 1, timed_out.stderr
    assert "failed: pre_deploy timed out after 1s; last output: waiting for a lock" in timed_out.stderr
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}
    assert await docker.containers.list(all=True, filters={"name": [f"{prefix}-pre_deploy"]}) == []


async def test_a_cli_killed_during_pre_deploy_leaves_a_one_off_that_abort_removes(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    slow = ["sh", "-c", "echo migrating; sleep 30"]
    cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"], hooks={"pre_deploy": {"command": slow}})
    proc = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
    await cli.wait_for_line(proc, b"pre_deploy: migrating")
    proc.kill()  # kill -9: nothing of trafficshift runs after this
    await proc.wait()
    left = await docker.containers.list(filters={"label": [f"trafficshift.one-off={prefix}"]})
    assert [c["Names"] for c in left] == [[f"/{prefix}-pre_deploy"]]  # still running its hook

    aborted = await cli.run("abort", prefix, config=config)
    assert aborted.code == 0, aborted.stderr
    assert await docker.containers.list(all=True, filters={"label": [f"trafficshift.one-off={prefix}"]}) == []
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}
    assert "green" not in (traefik.dynamic_dir / f"{prefix}.yml").read_text()

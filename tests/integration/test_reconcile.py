"""`docker restart` of an app in `publish` mode without `serve`: new host ports, the file on the old ones.

`status` says so, `reconcile` repairs it (probed, then confirmed through Traefik's API), and `promote`
repairs it before it starts; real Docker, real Traefik, load on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.load import Load, load_app, summarize
from tests.support.traefik import TraefikProc
from trafficshift.models import LockRole
from trafficshift.store.locks import AppLock
from trafficshift.traefik.render import parse_dynamic

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


def _servers(traefik: TraefikProc, app: str) -> set[str]:
    return parse_dynamic((traefik.dynamic_dir / f"{app}.yml").read_text()).servers()


async def _restart(docker: aiodocker.Docker, app: str, replicas: int) -> set[str]:
    """`docker restart` each replica of blue; returns the URLs they answer at now."""
    urls = set()
    for n in range(1, replicas + 1):
        container = await docker.containers.get(f"{app}-blue-{n}")
        await container.restart(timeout=1)
        port = (await container.show())["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        urls.add(f"http://127.0.0.1:{port}")
    return urls


async def test_status_reports_a_restart_and_reconcile_repairs_it_under_load(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"], replicas=2)
    old = _servers(traefik, prefix)
    new = await _restart(docker, prefix, replicas=2)
    assert not old & new  # Docker gave them new host ports
    assert _servers(traefik, prefix) == old  # and nothing rewrote the file

    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        broken = summarize(load.recent())
        assert broken.failed == broken.requests  # the defect: every request fails

        status = await cli.run("status", prefix, config=config)
        assert status.code == 0, status.stderr
        for url in sorted(old):
            assert url in status.stdout
        assert "which no container serves" in status.stdout
        assert f"run `trafficshift reconcile {prefix}`" in status.stdout
        doc = await cli.run_json("status", prefix, config=config)
        assert doc["file"]["in_sync"] is False
        assert set(doc["file"]["stale"]) == old
        assert {c["url"] for c in doc["file"]["unrouted"]} == new

        result = await cli.run("reconcile", prefix, config=config)
        repaired = Load.mark()
        assert result.code == 0, result.stderr
        assert "now routes blue=100%" in result.stdout
        await load.wait_for(requests=load.total + 200)

    after = summarize(load.recent(since=repaired))
    print(
        f"before reconcile: {broken.failed}/{broken.requests} failed; after: {after.failed}/{after.requests}"
    )
    assert after.requests >= 200
    assert after.failed == 0, [s for s in load.recent(since=repaired) if s.failed][:5]
    assert after.by_body == {"v1": after.requests}
    assert _servers(traefik, prefix) == new
    assert (await cli.run_json("status", prefix, config=config))["file"]["in_sync"] is True

    again = await cli.run_json("reconcile", prefix, config=config)
    assert again["changed"] is False
    assert set(again["after"]) == new


async def test_reconcile_exit_codes(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"])
    await _restart(docker, prefix, replicas=1)
    before = (traefik.dynamic_dir / f"{prefix}.yml").read_text()

    usage = await cli.run("reconcile", config=config)
    assert usage.code == 2, usage.stderr
    assert "name one app, or give --all" in usage.stderr

    lock = AppLock(tmp_path / "state", prefix)
    assert lock.try_acquire(LockRole.ROLLOUT)  # as a promote in another shell holds it
    try:
        busy = await cli.run("reconcile", prefix, config=config)
    finally:
        lock.release()
    assert busy.code == 4, busy.stderr
    assert "in progress" in busy.stderr
    assert (traefik.dynamic_dir / f"{prefix}.yml").read_text() == before

    unreachable = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    unreachable.write_text(unreachable.read_text().replace(traefik.api_url, "http://127.0.0.1:9"))
    down = await cli.run("reconcile", "--all", config=unreachable)
    assert down.code == 3, down.stderr
    assert (traefik.dynamic_dir / f"{prefix}.yml").read_text() == before

    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    done = await cli.run("reconcile", "--all", "--json", config=config)
    assert done.code == 0, done.stderr
    assert [d["changed"] for d in json.loads(done.stdout)] == [True]
    assert "Traceback" not in usage.stderr + busy.stderr + down.stderr + done.stderr


async def test_promote_routes_the_restarted_live_colour_before_it_starts(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"], replicas=2)
    await _restart(docker, prefix, replicas=2)
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        proc = await cli.start("promote", prefix, "--image", app_images["v2"], "--json", config=config)
        await cli.wait_for_line(proc, b'"starting"')  # the rollout is recorded once blue is routed again
        started = Load.mark()
        result = await cli.finish(proc)
        await load.wait_for(requests=load.total + 50)

    assert result.code == 0, result.stderr
    assert result.events()[-1]["state"] == "done"
    since = load.recent(since=started)
    assert summarize(since).failed == 0, [s for s in since if s.failed][:5]
    assert load.share("v2", last=0.2) == 1.0

"""The CLI while `trafficshift serve` runs for its config: promote, abort and rollback run in the service."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import Load, load_app
from tests.support.service import ServiceProc, run_service
from tests.support.traefik import TraefikProc, free_port

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

IN_SERVICE = re.compile(r"rollout (\S+) runs in the service at (\S+); following it")


def _in_service(result: cli.Result, service: ServiceProc) -> str:
    """The id of the rollout the CLI said runs in `service`; fails when it ran here."""
    found = IN_SERVICE.search(result.stderr)
    assert found, result.stderr
    assert found.group(2) == service.url
    return found.group(1)


async def test_promote_runs_in_the_service_and_prints_its_events_under_load(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        first = await cli.run("promote", prefix, config=config, env=service.cli_env)
        assert first.code == 0, first.stderr
        _in_service(first, service)
        assert "done: " in first.stdout

        async with load_app(web_url=traefik.web_url, app=prefix) as load:
            await load.wait_for(requests=30)
            result = await cli.run(
                "promote", prefix, "--image", app_images["v2"], "--json", config=config, env=service.cli_env
            )
            after = Load.mark()
            await load.wait_for(requests=load.total + 50)

        assert result.code == 0, result.stderr
        rollout_id = _in_service(result, service)
        # The service drove it (its log), the CLI printed its events as a local run does.
        assert f"promote {prefix}: rollout {rollout_id} done" in service.log()
        events = result.events()
        assert {e["rollout"] for e in events} == {rollout_id}
        shifted = [e["weights"].get("green") for e in events if e["state"] == "shifting"]
        assert [w for i, w in enumerate(shifted) if i == 0 or w != shifted[i - 1]] == [10, 50, 100]
        assert events[-1]["state"] == "done"
        assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
        assert load.share("v2", since=after) == 1.0
        assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}

        back = await cli.run("rollback", prefix, "--now", config=config, env=service.cli_env)
        assert back.code == 0, back.stderr
        assert f"rollback {prefix}: rollout {_in_service(back, service)} done" in service.log()
        assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}
    assert not (tmp_path / "state" / "service.json").exists()  # removed at a clean exit


async def test_abort_and_ctrl_c_of_a_rollout_in_the_service_send_traffic_back(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        env = service.cli_env
        assert (await cli.run("promote", prefix, config=config, env=env)).code == 0
        nothing = await cli.run("abort", prefix, config=config, env=env)
        assert nothing.code == 2, nothing.stderr
        assert f"no rollout of {prefix} is in progress" in nothing.stderr

        async with load_app(web_url=traefik.web_url, app=prefix) as load:
            await load.wait_for(requests=30)
            args = ("promote", prefix, "--image", app_images["v2"], "--pause", "30s", "--json")
            # `abort` from another shell: abort exits 0, the promote 1.
            proc = await cli.start(*args, config=config, env=env)
            await cli.wait_for_line(proc, b"confirmed")
            blocked = await cli.run("promote", prefix, "--image", app_images["v2"], config=config, env=env)
            assert blocked.code == 4, blocked.stderr
            aborted = await cli.run("abort", prefix, config=config, env=env)
            assert aborted.code == 0, aborted.stderr
            assert f"aborted: all traffic of {prefix} is on blue" in aborted.stdout
            promoted = await cli.finish(proc, within=30)
            assert promoted.code == 1, promoted.stderr
            assert "aborted through the API; all traffic is on blue" in promoted.stderr
            after_abort = Load.mark()
            await load.wait_for(requests=load.total + 30)
            assert load.share("v1", since=after_abort) == 1.0

            # Ctrl-C of the CLI: the service takes the rollout back (the CLI follows it to the end).
            proc = await cli.start(*args, config=config, env=env)
            await cli.wait_for_line(proc, b"confirmed")
            proc.send_signal(signal.SIGINT)
            interrupted = await cli.finish(proc, within=30)
            assert interrupted.code == 1, interrupted.stderr
            assert interrupted.events()[-1]["state"] == "aborted"
            after_signal = Load.mark()
            await load.wait_for(requests=load.total + 30)
        assert service.process.returncode is None  # the CLI's signal never reaches the service
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v1", since=after_signal) == 1.0
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}
    history = await cli.run_json("history", prefix, config=config)
    assert [h["outcome"] for h in history[:2]] == ["aborted", "aborted"], history


async def test_a_stale_service_record_means_a_local_run(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    record = tmp_path / "state" / "service.json"
    record.parent.mkdir()
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    nobody = f"http://127.0.0.1:{free_port()}"
    # A service killed -9 (its pid is gone), and a pid that lives but does not answer (reused): both stale.
    for pid in (dead.pid, os.getpid()):
        record.write_text(json.dumps({"pid": pid, "url": nobody, "started_at": "2026-01-01T00:00:00+00:00"}))
        result = await cli.run("promote", prefix, "--steps", "100", "--pause", "0s", config=config)
        assert result.code == 0, result.stderr
        assert "runs in the service" not in result.stderr
    # An explicit $TRAFFICSHIFT_URL must answer: exit 3 (nothing changed), unless --local.
    unreachable = await cli.run("promote", prefix, config=config, env={"TRAFFICSHIFT_URL": nobody})
    assert unreachable.code == 3, unreachable.stderr
    assert "--local" in unreachable.stderr
    assert await colours_of(docker, prefix) == {"green": {app_images["v1"]}}


async def test_a_service_killed_while_the_cli_follows_its_rollout_exits_5(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    """The CLI has a state folder of its own (it follows through the API only): the stream is lost, retried
    for 10 s, then exit 5 with the last state it saw."""
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    (tmp_path / "cli").mkdir()
    elsewhere = cli.app_config(tmp_path / "cli", traefik, prefix, image=app_images["v1"])
    assert (await cli.run("promote", prefix, config=config)).code == 0
    async with run_service(config) as service:
        env = {"TRAFFICSHIFT_URL": service.url, "TRAFFICSHIFT_TOKEN": service.token}
        args = ("promote", prefix, "--image", app_images["v2"], "--pause", "30s", "--json")
        proc = await cli.start(*args, config=elsewhere, env=env)
        await cli.wait_for_line(proc, b"confirmed")
        service.process.kill()
        stuck = await cli.finish(proc, within=20)
    assert stuck.code == 5, stuck.stderr
    assert "no longer drives it" in stuck.stderr
    assert "last seen: shifting, step 1/3 confirmed" in stuck.stderr, stuck.stderr
    assert not (tmp_path / "cli" / "state").exists()
    # Its record is stale now: the CLI runs the abort itself.
    aborted = await cli.run("abort", prefix, config=config)
    assert aborted.code == 0, aborted.stderr
    assert "runs in the service" not in aborted.stderr
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}


async def test_promote_resumes_a_rollout_interrupted_while_the_service_runs(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    """A `--local` promote killed -9 mid-shift: `promote` (no image) carries on in the service, as advised."""
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        env = service.cli_env
        assert (await cli.run("promote", prefix, config=config, env=env)).code == 0
        async with load_app(web_url=traefik.web_url, app=prefix) as load:
            await load.wait_for(requests=30)
            args = ("promote", prefix, "--image", app_images["v2"], "--pause", "2s", "--json", "--local")
            proc = await cli.start(*args, config=config, env=env)
            await cli.wait_for_line(proc, b"confirmed")
            proc.kill()
            await proc.wait()
            status = json.loads((await cli.run("status", prefix, "--json", config=config)).stdout)
            assert status["rollout"]["interrupted"] is True, status

            resumed = await cli.run("promote", prefix, "--json", config=config, env=env)
            assert resumed.code == 0, resumed.stderr
            assert _in_service(resumed, service) == status["rollout"]["id"]
            assert resumed.events()[-1]["state"] == "done"
            after = Load.mark()
            await load.wait_for(requests=load.total + 30)
        assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
        assert load.share("v2", since=after) == 1.0
        assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}

        # Through the API: a body without an image resumes; with nothing to resume, the image is required.
        args = ("promote", prefix, "--image", app_images["v1"], "--pause", "2s", "--json", "--local")
        proc = await cli.start(*args, config=config, env=env)
        await cli.wait_for_line(proc, b"confirmed")
        proc.kill()
        await proc.wait()
        code, doc = await service.call("POST", f"/apps/{prefix}/promote", {})
        assert code == 202, doc
        assert (await service.wait_rollout(doc["id"]))["outcome"] == "done"
        code, doc = await service.call("POST", f"/apps/{prefix}/promote", {})
        assert (code, doc["field"]) == (400, "image"), doc
    assert await colours_of(docker, prefix) == {"blue": {app_images["v1"]}}

"""`trafficshift serve` end to end: the real service, Docker engine and Traefik; load on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import aiodocker
import aiohttp
import pytest

from tests.support import cli
from tests.support.load import Load, load_app
from tests.support.service import ServiceProc, read_sse, run_service
from tests.support.traefik import TraefikProc
from trafficshift.service.openapi import document
from trafficshift.store.locks import AppLock, LockRole

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


async def _until_confirmed(service: ServiceProc, rollout_id: str) -> None:
    """Wait until the rollout holds its first confirmed step."""
    async with asyncio.timeout(30):
        while True:
            _status, doc = await service.call("GET", f"/rollouts/{rollout_id}")
            if doc["state"] == "shifting" and doc["step"] >= 0 and doc["weights"].get(doc["to_colour"]):
                return
            await asyncio.sleep(0.05)


async def test_promote_through_the_api_under_load_streams_every_transition(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        await service.deploy(prefix, app_images["v1"])
        stream = asyncio.create_task(
            read_sse(
                service.session,
                service.url + "/events",
                service.token,
                until=lambda e: e["state"] in ("done", "aborted", "failed"),
            )
        )
        await asyncio.sleep(0.3)  # the stream is open before the promote starts
        async with load_app(web_url=traefik.web_url, app=prefix) as load:
            await load.wait_for(requests=30)
            rollout_id = await service.promote(
                prefix, image=app_images["v2"], steps=[10, 50, 100], pause="1s"
            )
            events = await asyncio.wait_for(stream, 60)
            after = Load.mark()
            await load.wait_for(requests=load.total + 100)

        assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
        assert load.share("v2", since=after) == 1.0
        # Every transition, in order, each once: ids are the store's sequence numbers, without gaps.
        ids = [i for i, _, _ in events]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert {kind for _, kind, _ in events} == {"rollout"}
        assert {data["rollout"] for _, _, data in events} == {rollout_id}
        states = [data["state"] for _, _, data in events]
        assert states[0] == "starting"
        assert states[-1] == "done"
        assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == [
            "starting", "ready", "shifting", "draining", "cleaning", "done",
        ]  # fmt: skip
        shifted = [d["weights"]["green"] for _, _, d in events if d["state"] == "shifting"]
        assert sorted(set(shifted)) == [10, 50, 100]

        # Last-Event-ID resumes the stream after that event.
        replay = await read_sse(
            service.session,
            service.url + "/events",
            service.token,
            until=lambda e: e["state"] == "done",
            headers={"Last-Event-ID": str(ids[-3])},
        )
        assert [i for i, _, _ in replay] == ids[-2:]

        # The API gives the same documents as the CLI's --json.
        _, rollout = await service.call("GET", f"/rollouts/{rollout_id}")
        assert rollout["outcome"] == "done"
        assert rollout["image"] == app_images["v2"]
        _, api_status = await service.call("GET", f"/apps/{prefix}")
        cli_status = await cli.run_json("status", prefix, config=config)
        assert api_status == cli_status
        assert api_status["colour"] == "green"
        assert api_status["weights"] == {"green": 100}
        _, api_history = await service.call("GET", f"/apps/{prefix}/history")
        assert api_history == await cli.run_json("history", prefix, config=config)
        _, apps = await service.call("GET", "/apps")
        # The same document, but for each Traefik instance's live view (a read of every instance per app):
        # GET /apps leaves `traefik` empty.
        assert api_status["traefik"]
        assert apps == [{**api_status, "traefik": {}}]

        _, metrics = await service.call("GET", "/metrics")
        assert f'trafficshift_rollouts_total{{app="{prefix}",outcome="done"}} 2.0' in metrics
        assert f'trafficshift_weight{{app="{prefix}",colour="green"}} 100.0' in metrics
        steps = re.search(rf'trafficshift_step_duration_seconds_count{{app="{prefix}"}} (\S+)', metrics)
        assert steps is not None
        assert float(steps[1]) >= 4
        assert f'trafficshift_promote_duration_seconds_count{{app="{prefix}",outcome="done"}} 2.0' in metrics


def _concrete(path: str) -> str:
    return path.replace("{app}", "web").replace("{id}", "abc")


async def test_token_body_validation_and_conflicts(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        # 401 for every documented route but /healthz (and for unknown ones), without or with a wrong token.
        for path, operations in [*document()["paths"].items(), ("/nope", {"get": {}})]:
            for method in operations:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": service.token}):
                    async with service.session.request(
                        method.upper(), service.url + _concrete(path), headers=headers
                    ) as response:
                        expected = 200 if path == "/healthz" else 401
                        assert response.status == expected, (method, path, headers)
        assert service.token not in service.log()

        # 400 names the field and says why; 413 for a body over the limit.
        url = f"/apps/{prefix}/promote"
        for body, field in [
            (b"{not json", None),
            ([1, 2], None),
            ({}, "image"),
            ({"image": ""}, "image"),
            ({"image": "x:1", "steps": [50, 10]}, "steps"),
            ({"image": "x:1", "steps": [10, 50]}, "steps"),
            ({"image": "x:1", "pause": "soon"}, "pause"),
            ({"image": "x:1", "colour": "blue"}, "colour"),
        ]:
            status, doc = await service.call("POST", url, body)
            assert (status, doc["field"]) == (400, field), (body, doc)
            assert doc["error"]
        status, doc = await service.call("POST", url, {"image": f"{prefix}/absent:1"})
        assert (status, doc["field"]) == (400, "image"), doc
        status, doc = await service.call("POST", url, {"image": "x" * 20_000})
        assert status == 413, doc
        status, doc = await service.call("POST", "/apps/nosuchapp/promote", {"image": "x:1"})
        assert status == 404, doc
        past = {"app": prefix, "image": "x:1", "at": "2020-01-01T00:00:00+00:00"}
        for body, field in [
            (past, "at"),
            ({**past, "at": "2099-01-01T00:00:00"}, "at"),
            ({**past, "app": "other"}, "app"),
        ]:
            status, doc = await service.call("POST", "/schedules", body)
            assert (status, doc["field"]) == (400, field), doc

        # 409 while a rollout of the app runs, from the API or from the CLI (exit 4); abort 409 with none.
        await service.deploy(prefix, app_images["v1"])
        rollout_id = await service.promote(prefix, image=app_images["v2"], pause="30s")
        status, doc = await service.call("POST", url, {"image": app_images["v2"]})
        assert status == 409, doc
        blocked = await cli.run(
            "promote", prefix, "--image", app_images["v2"], config=config, within=15, env=service.cli_env
        )
        assert blocked.code == 4, blocked.stderr
        await _until_confirmed(service, rollout_id)
        status, doc = await service.call("POST", f"/apps/{prefix}/abort")
        assert (status, doc) == (202, {"id": rollout_id})
        assert (await service.wait_rollout(rollout_id))["outcome"] == "aborted"
        status, doc = await service.call("POST", f"/apps/{prefix}/abort")
        assert status == 409, doc

        # The other way round: a CLI promote run here (--local) holds the app, the API answers 409 and can
        # abort it.
        proc = await cli.start(
            "promote",
            prefix,
            "--image",
            app_images["v2"],
            "--pause",
            "30s",
            "--json",
            "--local",
            config=config,
        )
        assert proc.stdout is not None
        await proc.stdout.readline()
        status, doc = await service.call("POST", url, {"image": app_images["v2"]})
        assert status == 409, doc
        status, doc = await service.call("POST", f"/apps/{prefix}/abort")
        assert status == 202, doc
        assert (await cli.finish(proc, within=60)).code == 1


async def test_sigterm_ends_a_step_safely_and_a_restart_recovers_a_forced_exit(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    assert (await cli.run("promote", prefix, config=config)).code == 0
    async with load_app(web_url=traefik.web_url, app=prefix) as load:
        await load.wait_for(requests=20)
        async with run_service(config, log_name="first.log") as service:
            rollout_id = await service.promote(prefix, image=app_images["v2"], pause="30s")
            await _until_confirmed(service, rollout_id)
            code, took = await service.stop(signal.SIGTERM)
        assert code == 0, service.log()
        print(f"SIGTERM mid-rollout: exited in {took:.2f}s after going back")
        assert took < 15, took  # revert: confirm, drain 1s, stop 2s
        history = await cli.run_json("history", prefix, config=config)
        assert history[0]["outcome"] == "aborted", history[0]

        async with run_service(config, log_name="second.log") as service:
            rollout_id = await service.promote(prefix, image=app_images["v2"], pause="30s")
            await _until_confirmed(service, rollout_id)
            service.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            started = time.monotonic()
            code, _ = await service.stop(signal.SIGTERM)
            assert code == 128 + signal.SIGTERM
            assert time.monotonic() - started < 2
        status = await cli.run("status", prefix, config=config)
        assert "INTERRUPTED" in status.stdout or "aborted" in status.stdout, status.stdout

        async with run_service(config, log_name="third.log") as service:
            final = await service.wait_rollout(rollout_id)
            assert final["outcome"] in ("aborted", "done"), final
            await load.wait_for(requests=load.total + 50)
        after = Load.mark()
        await load.wait_for(requests=load.total + 50)
    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.share("v1", since=after) == 1.0


async def test_after_sigterm_a_promote_on_an_open_connection_is_refused_and_nothing_is_left_running(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    other = f"{prefix}b"
    config = cli.write_config(
        tmp_path / "trafficshift.yml",
        traefik=traefik,
        apps={name: {"image": app_images["v1"]} for name in (prefix, other)},
    )
    async with run_service(config) as service:
        for name in (prefix, other):
            await service.deploy(name, app_images["v1"])
        # A rollout that takes a while to go back keeps the service (and its open connections) up.
        running = await service.promote(prefix, image=app_images["v2"], pause="30s")
        await _until_confirmed(service, running)
        service.process.send_signal(signal.SIGTERM)
        for _ in range(1000):
            if "shutting down: no new" in service.log():
                break
            await asyncio.sleep(0.005)
        try:  # on the keep-alive connection the calls above opened
            status, doc = await service.call("POST", f"/apps/{other}/promote", {"image": app_images["v2"]})
        except aiohttp.ClientError:
            status, doc = 0, None  # or the connection is closed already: as good
        assert status in (0, 503), doc
        if status == 503:
            assert "shutting down" in doc["error"]
        code = await asyncio.wait_for(service.process.wait(), 40)  # no second signal: it exits by itself
        assert code == 0, service.log()
        print(f"SIGTERM, then a promote on an open connection: answered {status or 'by closing it'}")
    for name, colour in ((prefix, "blue"), (other, "blue")):
        doc = await cli.run_json("status", name, config=config)
        assert doc["rollout"] is None, doc
        assert (doc["colour"], doc["weights"]) == (colour, {colour: 100}), doc


async def _take(lock: AppLock, role: LockRole) -> None:
    """Take the app's lock in `role`, once the service's own provider lets go of it (it re-renders the
    app's file after the containers a rollout removed)."""
    async with asyncio.timeout(15):
        while True:
            if lock.try_acquire(role):
                return
            await asyncio.sleep(0.05)


async def test_a_promote_waits_while_the_provider_holds_the_app_but_not_for_a_rollout(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(
        tmp_path, traefik, prefix, image=app_images["v1"], rollout={"steps": [100], "drain": "0s"}
    )
    state_dir = tmp_path / "state"
    async with run_service(config) as service:
        await service.deploy(prefix, app_images["v1"])
        loop = asyncio.get_running_loop()
        # As the provider holds it for one write + its confirmation (up to 30s with an API, 3s without).
        held = AppLock(state_dir, prefix)
        await _take(held, LockRole.PROVIDER)
        loop.call_later(2.5, held.release)
        started = time.monotonic()
        rollout_id = await service.promote(prefix, image=app_images["v2"])
        waited = time.monotonic() - started
        assert waited >= 2.0, waited
        assert (await service.wait_rollout(rollout_id))["outcome"] == "done"

        await _take(held, LockRole.PROVIDER)
        loop.call_later(2.5, held.release)
        started = time.monotonic()
        status, doc = await service.call("POST", f"/apps/{prefix}/rollback", {"now": True})
        assert status == 202, doc
        assert time.monotonic() - started >= 2.0
        assert (await service.wait_rollout(doc["id"]))["outcome"] == "done"

        # The CLI waits too (no exit 4), run here or through the service ...
        for where in (["--local"], []):
            await _take(held, LockRole.PROVIDER)
            loop.call_later(2.5, held.release)
            image = app_images["v2" if where else "v1"]
            promoted = await cli.run(
                "promote", prefix, "--image", image, *where, config=config, within=60, env=service.cli_env
            )
            assert promoted.code == 0, promoted.stderr
            assert ("runs in the service" in promoted.stderr) == (not where), promoted.stderr

        # ... but a rollout holding the app is a conflict at once.
        await _take(held, LockRole.ROLLOUT)
        try:
            started = time.monotonic()
            status, doc = await service.call("POST", f"/apps/{prefix}/promote", {"image": app_images["v1"]})
            assert status == 409, doc
            for where in (["--local"], []):
                blocked = await cli.run(
                    "promote",
                    prefix,
                    "--image",
                    app_images["v1"],
                    *where,
                    config=config,
                    within=15,
                    env=service.cli_env,
                )
                assert blocked.code == 4, blocked.stderr
            assert time.monotonic() - started < 5
        finally:
            held.release()
    print(f"promote waited {waited:.2f}s for the provider's hold of 2.5s")

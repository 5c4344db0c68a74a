"""Scheduled cutovers through the CLI and the service: on time, and across a restart of the service."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from tests.support import cli
from tests.support.service import ServiceProc, run_service
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]


def _at(seconds: float) -> str:
    # To the millisecond, as the service shows its times: a fire time truncated to the millisecond is
    # then never shown before a due time that had microseconds.
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return when.astimezone().isoformat(timespec="milliseconds")


async def _schedule_cli(service: ServiceProc, config: Path, *args: str) -> cli.Result:
    proc = await asyncio.create_subprocess_exec(
        str(cli.BIN),
        "schedule",
        *args,
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TRAFFICSHIFT_URL": service.url, "TRAFFICSHIFT_TOKEN": service.token},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return cli.Result(proc.returncode, out.decode(), err.decode())


async def _schedules(service: ServiceProc) -> dict[str, dict[str, Any]]:
    status, doc = await service.call("GET", "/schedules")
    assert status == 200, doc
    return {s["id"]: s for s in doc}


async def _until_settled(service: ServiceProc, schedule_id: str, *, within: float) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            schedule = (await _schedules(service))[schedule_id]
            if schedule["state"] not in ("pending", "firing"):
                return schedule
            await asyncio.sleep(0.05)


async def test_a_schedule_fires_on_time(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(tmp_path, traefik, prefix, image=app_images["v1"])
    async with run_service(config) as service:
        made = await _schedule_cli(service, config, prefix, "--image", app_images["v2"], "--at", _at(3))
        assert made.code == 0, made.stderr
        schedule_id = made.stdout.split()[1].rstrip(":")
        listed = await _schedule_cli(service, config, "list")
        assert schedule_id in listed.stdout
        assert "pending" in listed.stdout

        fired = await _until_settled(service, schedule_id, within=10)
        assert fired["state"] == "started", fired
        late = dt.datetime.fromisoformat(fired["fired_at"]) - dt.datetime.fromisoformat(fired["at"])
        print(f"fired {late.total_seconds() * 1000:.0f} ms after its time")
        assert dt.timedelta(0) <= late < dt.timedelta(seconds=1)
        rollout = await service.wait_rollout(fired["rollout"])
        assert (rollout["outcome"], rollout["image"]) == ("done", app_images["v2"])

        # Bad input is exit 2 (400), a service that is not there exit 3.
        past = await _schedule_cli(
            service, config, prefix, "--image", "x:1", "--at", "2020-01-01T00:00:00+00:00"
        )
        assert past.code == 2, past.stderr
        assert "past" in past.stderr
        no_offset = await _schedule_cli(
            service, config, prefix, "--image", "x:1", "--at", "2099-01-01T00:00:00"
        )
        assert no_offset.code == 2, no_offset.stderr
    gone = await _schedule_cli(service, config, "list")
    assert gone.code == 3, gone.stderr


async def test_schedules_survive_a_restart_of_the_service(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.app_config(
        tmp_path, traefik, prefix, image=app_images["v1"], extra={"service": {"schedule_grace": "4s"}}
    )
    started = time.monotonic()
    async with run_service(config, log_name="first.log") as service:
        # Through the API (fast): the first one must not come due before this service is stopped.
        ids = []
        for image, seconds in ((app_images["v1"], 3), (app_images["v2"], 8), (app_images["v1"], 4)):
            status, doc = await service.call(
                "POST", "/schedules", {"app": prefix, "image": image, "at": _at(seconds)}
            )
            assert status == 201, doc
            ids.append(doc["id"])
        assert (await _schedule_cli(service, config, "cancel", ids[2])).code == 0
        code, _ = await service.stop()
        assert code == 0
    # Down while all three come due: the first is 7s late at the restart (> 4s grace), the second 2s.
    await asyncio.sleep(max(0.0, 10 - (time.monotonic() - started)))
    async with run_service(config, log_name="second.log") as service:
        ran = await _until_settled(service, ids[1], within=10)
        assert ran["state"] == "started", ran
        rollout = await service.wait_rollout(ran["rollout"])
        assert (rollout["outcome"], rollout["image"]) == ("done", app_images["v2"])
        everything = await _schedules(service)
        assert everything[ids[0]]["state"] == "missed"
        assert "grace" in everything[ids[0]]["reason"]
        assert everything[ids[2]]["state"] == "cancelled"
        status, doc = await service.call("DELETE", f"/schedules/{ids[1]}")
        assert status == 409, doc

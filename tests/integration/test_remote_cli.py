"""The CLI against a service whose state folder it cannot see (`$TRAFFICSHIFT_URL`, another temp dir).

Everything it prints comes through the service's API: its `/events` stream (transitions, and `progress`
frames for the live display and heartbeats) and `GET /rollouts/{id}`. The output and exit codes are those of
a local run; the live display is read off a real terminal (tmux) while a step holds with analysis.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import signal
import subprocess
from pathlib import Path

import aiodocker
import pytest

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.load import load_app
from tests.support.service import ServiceProc, run_service
from tests.support.tls import self_signed
from tests.support.traefik import TraefikProc

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

ANALYSIS = {"max_error_rate": 0.05, "max_p95_latency": "500ms", "min_requests": 5, "interval": "1s"}
HEALTH = {"path": "/healthz", "interval": "200ms", "healthy_threshold": 2, "start_timeout": "3s"}
# The pane's height; the README's captured screen is written to $TRAFFICSHIFT_SCREEN when it is set.
SCREEN_LINES = 16


def _configs(tmp_path: Path, traefik: TraefikProc, app: str, image: str) -> tuple[Path, Path]:
    """The same app for the service (its state in svc/) and for the CLI (its state in cli/, never used)."""
    made = []
    for where in ("svc", "cli"):
        (tmp_path / where).mkdir()
        made.append(
            cli.app_config(
                tmp_path / where, traefik, app, image=image, metrics=True, analysis=ANALYSIS, health=HEALTH
            )
        )
    return made[0], made[1]


def _remote(service: ServiceProc) -> dict[str, str]:
    return {"TRAFFICSHIFT_URL": service.url, "TRAFFICSHIFT_TOKEN": service.token}


def _shape(result: cli.Result, app: str) -> list[tuple[str, str]]:
    """The events a run printed, with what differs between two runs (colours, images, times) named alike."""
    shapes = []
    for e in result.events():
        message = re.sub(r"\brollout \w+", "rollout ID", e["message"])
        message = re.sub(r"\b(blue|green)\b", "C", re.sub(r"\S+:v\d\b", "IMAGE", message))
        message = re.sub(r"\d+(\.\d+)?", "N", message.split(" judged: ")[0])  # figures differ
        shapes.append((e["state"], message))
    assert shapes, result.stdout
    return shapes


def _tmux(socket: str, *args: str) -> str:
    run = subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, check=False, timeout=10
    )
    return run.stdout


async def test_remote_runs_print_what_local_runs_print_and_the_display_shows_the_held_step(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    v1, v2 = app_images["v1"], app_images["v2"]
    served, here = _configs(tmp_path, traefik, prefix, v1)
    async with run_service(served) as service:
        await service.deploy(prefix, v1)
        env = _remote(service)
        async with load_app(web_url=traefik.web_url, app=prefix, concurrency=4) as load:
            await load.wait_for(requests=30)

            # On a terminal: the live display, through the service's progress frames.
            socket, screen_file = f"ts-{secrets.token_hex(4)}", tmp_path / "exit"
            argv = [str(cli.BIN), "promote", prefix, "--image", v2, "--steps", "50,100", "--pause", "6s"]
            command = shlex.join([*argv, "-c", str(here)])
            script = tmp_path / "run.sh"
            exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
            script.write_text(f"{exports}{command}\necho $? > {screen_file}\n")
            _tmux(
                socket, "new-session", "-d", "-x", "120", "-y", str(SCREEN_LINES), "-s", "t", f"sh {script}"
            )
            try:
                screen = ""
                async with asyncio.timeout(40):
                    while not re.search(r"green: [1-9]\d* requests", screen):
                        await asyncio.sleep(0.5)
                        screen = _tmux(socket, "capture-pane", "-p", "-t", "t")
                    await asyncio.sleep(1.5)  # a few more seconds of figures: a screen worth showing
                    screen = _tmux(socket, "capture-pane", "-p", "-t", "t")
                    while not screen_file.exists():  # noqa: ASYNC110 (another process writes it)
                        await asyncio.sleep(0.2)
            finally:
                _tmux(socket, "kill-server")
            if where := os.environ.get("TRAFFICSHIFT_SCREEN"):
                await asyncio.to_thread(Path(where).write_text, screen)  # the README's captured screen
            assert screen_file.read_text().strip() == "0", screen
            assert "runs in the service at" in screen, screen
            assert re.search(rf"{prefix}\s+step 1/2 \(shifting\)\s+held \d+s of 6s, \d+s left", screen), (
                screen
            )
            assert re.search(r"^\s+blue\s.*\s50%$", screen, re.M), screen  # a bar between them
            assert re.search(r"^\s+green\s.*\s50%$", screen, re.M), screen
            assert f"{prefix}-green-1: ready" in screen, screen
            assert re.search(r"blue: [1-9]\d* requests, 5xx 0\.0%, p95 \d\.\d{3}s", screen), screen

            # Done: the same events and exit code as a run of this host (the service's config, --local).
            remote = await cli.run("promote", prefix, "--image", v1, "--json", config=here, env=env)
            local = await cli.run("promote", prefix, "--image", v2, "--json", "--local", config=served)
        assert (remote.code, local.code) == (0, 0), (remote.stderr, local.stderr)
        assert _shape(remote, prefix) == _shape(local, prefix)
        assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]

        # Failed (the new version never becomes ready): the same message and exit code.
        never = app_images["never_ready"]
        failed_remote = await cli.run("promote", prefix, "--image", never, config=here, env=env)
        failed_local = await cli.run("promote", prefix, "--image", never, "--local", config=served)
        assert (failed_remote.code, failed_local.code) == (1, 1), failed_remote.stderr
        # What the last probe saw may differ (refused, or 503): the rest of the line may not.
        last = [
            re.sub(r"\(.*\);", "(...);", r.stderr.strip().splitlines()[-1])
            for r in (failed_remote, failed_local)
        ]
        assert last[0] == last[1], last
        assert f"trafficshift: {prefix}: failed: " in last[0]
        assert last[0].endswith(f"all traffic is on green ({v2})"), last
    assert not (here.parent / "state").exists()  # the CLI never wrote, nor needed, a state folder
    assert await colours_of(docker, prefix) == {"green": {v2}}


async def test_ctrl_c_of_a_remote_run_goes_back_and_heartbeats_keep_a_log_alive(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    """No terminal: a line per transition, and a heartbeat every 10 s of a 25 s pause; then SIGINT: exit 1."""
    v1, v2 = app_images["v1"], app_images["v2"]
    served, here = _configs(tmp_path, traefik, prefix, v1)
    async with run_service(served) as service:
        await service.deploy(prefix, v1)
        args = ("promote", prefix, "--image", v2, "--steps", "50,100", "--pause", "25s")
        proc = await cli.start(*args, config=here, env=_remote(service))
        assert proc.stderr is not None
        heartbeats: list[str] = []
        async with asyncio.timeout(40):
            while len(heartbeats) < 2:
                line = (await proc.stderr.readline()).decode()
                assert line, "the CLI ended before two heartbeats"
                if "holding" in line:
                    heartbeats.append(line)
        proc.send_signal(signal.SIGINT)
        interrupted = await cli.finish(proc, within=30)
    assert interrupted.code == 1, interrupted.stderr
    for beat in heartbeats:
        assert re.search(rf"{prefix} \[shifting\] step 1/2; holding \d+s of 25s, \d+s left", beat), beat
        assert beat.rstrip().endswith("(blue=50% green=50%)"), beat
    assert f"trafficshift: {prefix}: aborted: " in interrupted.stderr
    assert interrupted.stderr.rstrip().endswith(f"all traffic is on blue ({v1})"), interrupted.stderr
    assert await colours_of(docker, prefix) == {"blue": {v1}}


async def test_a_service_on_https_is_verified_against_the_given_ca(
    tmp_path: Path, traefik: TraefikProc, prefix: str, app_images: dict[str, str]
) -> None:
    """`serve --tls-cert --tls-key`; the CLI refuses its self-signed certificate until given it as the CA."""
    cert, key = self_signed(tmp_path)
    served, here = _configs(tmp_path, traefik, prefix, app_images["v1"])
    async with run_service(served, tls=(cert, key)) as service:
        env = _remote(service)
        assert service.url.startswith("https://")
        refused = await cli.run("abort", prefix, config=here, env=env)
        assert refused.code == 2, refused.stderr
        assert "failed the TLS check" in refused.stderr
        assert "--cacert" in refused.stderr
        # Trusted: the CLI reaches it, and the service answers as it would over http.
        nothing = await cli.run("abort", prefix, "--cacert", str(cert), config=here, env=env)
        assert nothing.code == 2, nothing.stderr
        assert f"no rollout of {prefix} is in progress" in nothing.stderr
        listed = await cli.run("schedule", "list", config=here, env={**env, "TRAFFICSHIFT_CACERT": str(cert)})
        assert (listed.code, listed.stdout.strip()) == (0, "no schedules"), listed.stderr
    assert "listening on https://127.0.0.1:" in service.log()

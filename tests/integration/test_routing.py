"""Issue 13's routing controls through the real CLI, Docker and Traefik, with traffic on 127.0.0.1:
sticky ramps, the header/cookie canary, and per-app TLS and middlewares (an unknown one refused cleanly)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
import yaml

from tests.support import cli
from tests.support.docker_fixtures import colours_of
from tests.support.hooks import Gate, run_gate
from tests.support.load import run_load
from tests.support.traefik import TraefikMissing, TraefikProc, run_traefik
from trafficshift.traefik import names

pytestmark = [pytest.mark.docker, pytest.mark.traefik]

QUICK = cli.rollout_policy(pause="200ms", drain="500ms", stop_timeout="2s")


def gated(gate: Gate, tmp_path: Path) -> dict[str, Any]:
    secret = tmp_path / "gate-secret"
    secret.write_text("gate\n")
    return {"confirm": {"url": gate.url, "secret_file": str(secret), "timeout": "60s", "retries": 0}}


async def get(
    session: aiohttp.ClientSession, url: str, app: str, *, headers: dict[str, str] | None = None
) -> tuple[str, aiohttp.ClientResponse]:
    async with session.get(url + "/", headers={"Host": f"{app}.localhost", **(headers or {})}) as response:
        body = (await response.text()).strip()
        assert response.status == 200, (response.status, body)
        return body, response


async def approve(gate: Gate, *, green: int) -> None:
    """Wait for the gate to be asked about `green`% on green and let it through."""
    body, answer = await gate.next()
    assert body["weights"].get("green") == green, body
    answer.set_result(200)


# ---------------------------------------------------------------- sticky


class Client:
    """A browser-like client: its own cookie jar, the versions it was answered with."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.seen: list[str] = []

    async def visit(self, session: aiohttp.ClientSession, url: str, app: str) -> str:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body, response = await get(session, url, app, headers={"Cookie": cookie} if cookie else None)
        self.cookies.update({k: m.value for k, m in response.cookies.items()})
        self.seen.append(body)
        return body


async def new_clients_share(session: aiohttp.ClientSession, url: str, app: str, *, count: int = 100) -> float:
    """The share of v2 among `count` clients that come without a cookie (one request each)."""
    bodies = [await Client().visit(session, url, app) for _ in range(count)]
    return bodies.count("v2") / count


async def test_sticky_clients_keep_their_version_until_it_leaves_and_new_ones_follow_the_weights(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    sticky = {**QUICK, "sticky": {"cookie": "ts_colour", "httpOnly": True, "sameSite": "lax"}}
    config = await cli.first_deploy(tmp_path, traefik, prefix, image=app_images["v1"], rollout=sticky)
    url, app = traefik.web_url, prefix
    clients = [Client() for _ in range(20)]
    async with run_gate() as gate, aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        cli.write_config(
            config,
            traefik=traefik,
            apps={app: {"image": app_images["v1"], "rollout": sticky}},
            extra=gated(gate, tmp_path),
        )
        promote = await cli.start("promote", app, "--image", app_images["v2"], config=config)
        await approve(gate, green=10)
        body, answer = await gate.next()  # asked for 50%: 10% is live
        assert abs(await new_clients_share(session, url, app) - 0.10) <= 0.05
        for client in clients[:10]:  # the first cohort lands at 10%
            for _ in range(3):
                await client.visit(session, url, app)
        answer.set_result(200)
        body, answer = await gate.next()  # asked for 100%: 50% is live
        assert body["weights"].get("green") == 100
        assert abs(await new_clients_share(session, url, app) - 0.50) <= 0.05
        for client in clients:  # the second cohort lands at 50%; the first one comes back
            for _ in range(3):
                await client.visit(session, url, app)
        for client in clients:
            assert len(set(client.seen)) == 1, client.seen  # one version each, while both colours serve
        answer.set_result(200)
        result = await cli.finish(promote)
        assert result.code == 0, result.stderr
        for client in clients:  # blue has left: everyone is on green now, their cookie or not
            await client.visit(session, url, app)

    landed = [client.seen[0] for client in clients]
    assert {"v1", "v2"} == set(landed), landed  # both versions had clients of their own to keep
    for client in clients:
        # Only one change, from v1 to v2, and only when blue left.
        assert client.seen[-1] == "v2"
        assert client.seen[:-1] == [client.seen[0]] * (len(client.seen) - 1), client.seen
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}


# ---------------------------------------------------------------- canary


async def pin_router(traefik: TraefikProc, app: str, pin: str) -> dict[str, Any] | None:
    name = names.qualified(names.pin_router(app, pin))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{traefik.api_url}/api/http/routers/{name}") as r,
    ):
        return None if r.status == 404 else dict(await r.json())


async def test_canary_header_and_cookie_reach_the_new_colour_at_zero_percent_and_the_router_goes_after(
    tmp_path: Path, traefik: TraefikProc, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    app, url = prefix, traefik.web_url
    canary = {"canary": {"header": "X-Canary", "cookie": "canary"}, "rollout": {**QUICK, "steps": [50, 100]}}
    config = await cli.first_deploy(tmp_path, traefik, app, image=app_images["v1"], **canary)
    async with run_gate() as gate, aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        cli.write_config(
            config,
            traefik=traefik,
            apps={app: {"image": app_images["v1"], **canary}},
            extra=gated(gate, tmp_path),
        )
        promote = await cli.start("promote", app, "--image", app_images["v2"], config=config)
        body, answer = await gate.next()  # asked for 50%: no public weight on green yet
        assert body["weights"] == {"blue": 50, "green": 50}, body
        for _ in range(10):
            assert (await get(session, url, app))[0] == "v1"
            assert (await get(session, url, app, headers={"X-Canary": "always"}))[0] == "v2"
            assert (await get(session, url, app, headers={"Cookie": "a=b; canary=always"}))[0] == "v2"
            assert (await get(session, url, app, headers={"X-Canary": "never"}))[0] == "v1"
            assert (await get(session, url, app, headers={"Cookie": "canary=alwaysnot"}))[0] == "v1"
        shown = await pin_router(traefik, app, names.CANARY_ALWAYS)
        assert (shown or {}).get("status") == "enabled", shown
        answer.set_result(200)
        body, answer = await gate.next()  # asked for 100%: 50% public, `never` still on blue
        for _ in range(5):
            assert (await get(session, url, app, headers={"X-Canary": "never"}))[0] == "v1"
            assert (await get(session, url, app, headers={"X-Canary": "always"}))[0] == "v2"
        answer.set_result(200)
        result = await cli.finish(promote)

    assert result.code == 0, result.stderr
    for pin in (names.CANARY_ALWAYS, names.CANARY_NEVER):
        assert await pin_router(traefik, app, pin) is None  # gone from Traefik, not just from the file
    assert "pin" not in (traefik.dynamic_dir / f"{app}.yml").read_text()


# ---------------------------------------------------------------- TLS and middlewares


@pytest.fixture
async def secure_traefik(tmp_path: Path) -> AsyncIterator[TraefikProc]:
    """A Traefik with a `websecure` entrypoint serving a self-signed certificate made now (openssl), and a
    `stamp` headers middleware, both from a file of the test's own in the watched folder."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await openssl.communicate()
    assert openssl.returncode == 0, err
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    shared = {
        "tls": {"certificates": [{"certFile": str(cert), "keyFile": str(key)}]},
        "http": {"middlewares": {"stamp": {"headers": {"customResponseHeaders": {"X-Stamp": "yes"}}}}},
    }
    (dynamic / "shared.yml").write_text(yaml.safe_dump(shared))
    try:
        async with run_traefik(dynamic_dir=dynamic, work_dir=tmp_path / "traefik", secure=True) as proc:
            yield proc
    except TraefikMissing as exc:
        pytest.fail(str(exc))


async def test_https_promote_under_load_loses_nothing_and_an_unknown_middleware_fails_before_any_weight(
    tmp_path: Path,
    secure_traefik: TraefikProc,
    docker: aiodocker.Docker,
    prefix: str,
    app_images: dict[str, str],
) -> None:
    traefik, app = secure_traefik, prefix
    assert traefik.secure_url is not None
    routing: dict[str, Any] = {
        "entrypoints": ["websecure"],
        "tls": {},
        "middlewares": ["stamp@file"],
        "retry": {"attempts": 2, "initialInterval": "50ms"},
        "rollout": QUICK,
    }
    config = await cli.first_deploy(tmp_path, traefik, app, image=app_images["v1"], **routing)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        body, response = await get(session, traefik.secure_url, app)
        assert (body, response.headers.get("X-Stamp")) == ("v1", "yes")
        async with session.get(traefik.web_url + "/", headers={"Host": f"{app}.localhost"}) as plain:
            assert plain.status == 404  # only on the https entrypoint: the app's list beat the global one

    load = run_load(url=traefik.secure_url + "/", host=f"{app}.localhost", concurrency=4, verify_tls=False)
    async with load:
        await load.wait_for(requests=30)
        result = await cli.run("promote", app, "--image", app_images["v2"], config=config)
        assert result.code == 0, result.stderr
        await load.wait_for(requests=load.total + 30)
        served = (traefik.dynamic_dir / f"{app}.yml").read_text()

        cli.write_config(
            config,
            traefik=traefik,
            apps={app: {"image": app_images["v2"], **routing, "middlewares": ["nope@file"]}},
        )
        refused = await cli.run("promote", app, "--image", app_images["v1"], config=config)
        await load.wait_for(requests=load.total + 30)

    assert load.summary().failed == 0, [s for s in load.samples if s.failed][:5]
    assert load.samples[-1].body == "v2"
    assert refused.code == 2, refused.stderr
    assert "nope@file" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (traefik.dynamic_dir / f"{app}.yml").read_text() == served  # nothing written
    assert not (traefik.dynamic_dir / f"{names.trial_file(app)}.yml").exists()
    assert await colours_of(docker, prefix) == {"green": {app_images["v2"]}}  # nothing started
    history = await cli.run_json("history", app, config=config)
    assert len(history) == 2  # no rollout recorded for the refused one

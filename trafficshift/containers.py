"""Thin adapter over aiodocker: start a colour, list managed containers, stop and remove them.

Everything returned is a `models.ContainerInfo`; every failure is a project error (`errors.*`). Every call to
Docker goes through `_docker`, which bounds it: aiodocker waits forever by default, so a hung daemon froze a
rollout. A call that Docker does not answer in time is UnreachableError (exit 3 before anything changed;
mid-rollout the rollout goes back, or is stuck, exit 5).
"""

from __future__ import annotations

import asyncio
import builtins
import codecs
import contextlib
import hashlib
import json
import math
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar, cast

import aiodocker
import aiohttp

from trafficshift.compose.body import CreatePlan, create_plan
from trafficshift.compose.fingerprint import app_doc, digest
from trafficshift.compose.resources import check_prerequisites, ensure_resources
from trafficshift.errors import ContainerError, ImageError, UnreachableError
from trafficshift.gate import Gate
from trafficshift.models import AppSpec, Colour, ContainerEvent, ContainerInfo, ContainerState, DockerSpec
from trafficshift.pull import pull

__all__ = ["ContainerError", "ContainerState", "Containers", "container_name"]

LABEL_APP = "trafficshift.app"
LABEL_COLOUR = "trafficshift.colour"
LABEL_IMAGE = "trafficshift.image"
# The app port, so that URLs can be rebuilt from Docker alone (status, serve) without the config.
LABEL_PORT = "trafficshift.port"
# Hash of everything start_colour sets; a container made from an older config is replaced, not reused. For a
# compose-backed app it is the digest of its spec (compose/fingerprint.py), with the image's id: `promote`
# compares it with the new spec's to tell whether anything changed.
LABEL_SPEC = "trafficshift.spec"

# A one-off container (a pre_deploy hook's) carries these instead of LABEL_APP/LABEL_COLOUR, so that nothing
# that lists an app's colours (status, routing, readiness, `serve`) ever sees it: it is never routed. Its
# app, for `remove_one_offs` after a process was killed while it ran, and what it was for.
LABEL_ONE_OFF = "trafficshift.one-off"
LABEL_PURPOSE = "trafficshift.purpose"

# `unless-stopped`: Docker restarts a crashed replica, and brings every replica back after a daemon restart or
# a reboot (with "no", a reboot would leave the app down until the next promote). A restarted replica is a
# new start: readiness treats a restart as a failure, and `serve` drops a replica on `die` and re-adds it only
# after it is ready again (its published host port may change, so URLs are always re-read from Docker).
# `docker stop` (stop_and_remove) is never undone by this policy.
RESTART_POLICY = "unless-stopped"

T = TypeVar("T")

# Bounds of one Docker call (seconds). Reads answer in milliseconds (inspect waits for a restart in progress,
# about a second): 10 s of silence is a daemon in trouble.
QUICK = 10.0
# Creating, starting or removing a container: the daemon may be busy with storage and networks.
CHANGE = 60.0
# An image pull (a big image over a slow link): pre-pull anything that takes longer.
PULL = 900.0
# A stop takes the container's own stop_timeout (SIGTERM, then SIGKILL) and this on top.
STOP_GRACE = 30.0

# Heavy calls (create and start one container; remove one) at once, by default (`docker.concurrency`).
# Measured on the 2-CPU test machine: Docker alone created and started 50 containers as fast 4, 8, 16 or
# 50 at a time (6.2-7.3 s; 2 at a time 8.0 s), and 19 promotes under load went no faster 4 at a time (batch
# 16.8-21.2 s, step confirmation median 0.8-2.6 s) than unbounded (14.8-20.0 s, 0.8-1.2 s): rollouts spread
# out that much overlap their starts with others' steps. So the default bounds only a real stampede.
DEFAULT_CONCURRENCY = DockerSpec.concurrency
# Gate priorities: a start holds up a rollout's next step, a removal only the end of a finished shift.
_STARTING, _REMOVING = 0, 1


def container_name(*, app: str, colour: Colour, n: int) -> str:
    return f"{app}-{colour}-{n}"


def one_off_name(*, app: str, purpose: str) -> str:
    # `pre_deploy`: an underscore is in no app's colour container names (app names are [a-z0-9-]).
    return f"{app}-{purpose}"


class Containers:
    """The Docker side of trafficshift, over one aiodocker client (which the caller owns and closes)."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        *,
        on_progress: Callable[[str], None] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._docker = docker
        # Where a pull's progress goes (the CLI's live line on a terminal); None: pull quietly.
        self._on_progress = on_progress
        # Shared by every rollout of this process; reads (list, inspect, logs, wait) never wait for it.
        self.gate = Gate(concurrency)

    async def ping(self) -> None:
        """Raise UnreachableError unless the Docker engine answers within QUICK seconds."""
        try:
            async with _docker("checking the Docker engine", within=QUICK):
                await self._docker.version()
        except ContainerError as exc:  # an answer, but an error: not a Docker engine that works
            raise UnreachableError(f"the Docker engine is unreachable: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:  # e.g. something else than Docker on the socket
            raise UnreachableError(f"the Docker engine is unreachable: {_message(exc)}") from exc

    async def ensure_image(self, image: str) -> str:
        """Pull `image` unless it is already on this host; return its image id."""
        what = f"image {image}"
        async with _docker(what, within=QUICK):
            try:
                return str((await self._docker.images.inspect(image))["Id"])
            except aiodocker.DockerError as exc:
                if 400 <= exc.status < 500 and exc.status != 404:
                    # A reference Docker will not look up (e.g. one it cannot parse): the image's fault.
                    raise ImageError(f"{what}: Docker refuses it: {exc.message}") from exc
                if exc.status != 404:
                    raise
        async with _docker(what, within=PULL):
            # With Docker's own credentials; a refusal names the registry and its answer (ImageError).
            await pull(self._docker, image, on_progress=self._on_progress)
        async with _docker(what, within=QUICK):
            return str((await self._docker.images.inspect(image))["Id"])

    async def start_colour(self, *, app: AppSpec, colour: Colour, image: str) -> builtins.list[ContainerInfo]:
        """Make `<app>-<colour>-1..replicas` run `image`; reuse the ones already right, replace the others.

        Call it for a colour that carries no traffic: replicas beyond `replicas` are removed, and a
        container with another image or config is replaced.
        """
        image_id = await self.ensure_image(image)
        if app.container is not None:
            async with _docker(f"volumes and networks of {app.name}", within=CHANGE):
                await ensure_resources(self._docker, app.container)
        wanted = {container_name(app=app.name, colour=colour, n=n) for n in range(1, app.replicas + 1)}
        extra = [c for c in await self._raw_list(app=app.name, colour=colour) if c["Name"] not in wanted]
        await _all(self._stop_remove(c["Id"], app.rollout.stop_timeout) for c in extra)
        return await _all(
            self._start_one(app=app, colour=colour, image=image, image_id=image_id, n=n)
            for n in range(1, app.replicas + 1)
        )

    async def check_needs(self, *, app: AppSpec) -> None:
        """Raise PrerequisiteMissing (exit 3) when a compose-backed app's depends_on services do not run,
        or its external networks or volumes do not exist; nothing is started or created."""
        if app.container is not None:
            async with _docker(f"what {app.name} depends on", within=QUICK):
                await check_prerequisites(self._docker, app.container)

    async def list(self, *, app: str, colour: Colour | None = None) -> builtins.list[ContainerInfo]:
        """The managed containers of `app` (of one colour, or both), running or not, sorted by name."""
        return [_info(c) for c in await self._raw_list(app=app, colour=colour)]

    async def list_all(self) -> builtins.list[ContainerInfo]:
        """Every container trafficshift manages, of every app."""
        return [_info(c) for c in await self._raw_list(app=None, colour=None)]

    async def inspect(self, *, name: str) -> ContainerInfo | None:
        """One managed container by name or id, or None when there is none."""
        raw = await self._inspect_raw(name)
        return None if raw is None or not _managed(raw) else _info(raw)

    async def state(self, *, name: str) -> ContainerState | None:
        """One managed container's state, or None when there is none."""
        raw = await self._inspect_raw(name)
        if raw is None or not _managed(raw):
            return None
        state = raw["State"]
        return ContainerState(
            info=_info(raw),
            status=str(state.get("Status", "")),
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(raw.get("RestartCount") or 0),
            error=str(state.get("Error") or ""),
        )

    async def wait_exit(self, *, name: str) -> int:
        """Return the exit code as soon as the container is not running (at once when it already is not).

        Unbounded on purpose: it waits for an event, for as long as the container runs. Its callers race it
        against bounded calls (readiness polls `state`), which notice a hung daemon and cancel it.
        """
        async with _docker(f"container {name}", within=None):
            try:
                result = await self._docker.containers.container(name).wait(condition="not-running")
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return -1  # removed while we waited: it is not running either
                raise
            return int(result.get("StatusCode", -1))

    async def logs(self, *, name: str, tail: int = 10) -> builtins.list[str]:
        """The last `tail` lines of the container's output (stdout and stderr), [] when it is gone."""
        async with _docker(f"container {name}", within=QUICK):
            try:
                chunks = await self._docker.containers.container(name).log(
                    stdout=True, stderr=True, tail=tail
                )
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return []
                raise
        return "".join(chunks).splitlines()[-tail:]

    async def stop_and_remove(self, *, app: str, colour: Colour, stop_timeout: float) -> None:
        """Stop gracefully (SIGTERM, SIGKILL after `stop_timeout`) and remove every container of a colour."""
        found = await self._raw_list(app=app, colour=colour)
        await _all(self._stop_remove(c["Id"], stop_timeout) for c in found)

    async def events(self, *, actions: Sequence[str]) -> AsyncGenerator[ContainerEvent, None]:
        """Docker's `actions` events about managed containers, until the stream ends (Docker restarting).

        Unbounded on purpose, as `wait_exit`: a stream of events has no answer to wait for.
        """
        subscriber = self._docker.events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        filters = json.dumps({"type": ["container"], "label": [LABEL_APP], "event": list(actions)})
        stream = asyncio.create_task(self._docker.events.run(filters=filters))
        try:
            while (event := await subscriber.get()) is not None:
                actor = event.get("Actor") or {}
                attributes = actor.get("Attributes") or {}
                yield ContainerEvent(
                    app=str(attributes.get(LABEL_APP) or ""),
                    action=str(event.get("Action", "")),
                    id=str(actor.get("ID", "")),
                    name=str(attributes.get("name") or ""),
                )
        finally:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)

    # ------------------------------------------------------------ release hooks (hooks.py)

    async def run_once(
        self,
        *,
        app: AppSpec,
        image: str,
        command: Sequence[str],
        purpose: str,
        on_output: Callable[[str], Awaitable[None]],
    ) -> int:
        """Run `command` to its end in a one-off container of `app`'s spec on `image`; return its exit code.

        Made as the colours' containers are (environment, volumes, networks, user...), but with no port
        published, no network alias (the service's name must not resolve to it), no restart and no routing.
        Unbounded on purpose, as `wait_exit`: the hook's own timeout bounds it, and cancelling it removes the
        container. One a killed process left behind (same name) is removed first.
        """
        image_id = await self.ensure_image(image)
        if app.container is not None:
            async with _docker(f"volumes and networks of {app.name}", within=CHANGE):
                await ensure_resources(self._docker, app.container)
        name = one_off_name(app=app.name, purpose=purpose)
        await self._remove_one_off(name)
        plan = _one_off_plan(app=app, image=image, image_id=image_id, command=command, purpose=purpose)
        async with _docker(f"container {name}", within=CHANGE):
            container = await self._docker.containers.create(plan.config, name=name)
        try:
            for network, endpoint in plan.connect:
                async with _docker(f"container {name}: network {network}", within=CHANGE):
                    await (await self._docker.networks.get(network)).connect(
                        {"Container": container.id, "EndpointConfig": endpoint}
                    )
            async with _docker(f"container {name}", within=CHANGE):
                await container.start()
            async with _docker(f"container {name}", within=None):
                lines = _Lines()
                # Everything since its start, then follows it until it exits: no line is missed. Closed
                # at once when cancelled (its timeout), not whenever the generator is collected.
                # An async generator, typed by aiodocker as the AsyncIterator it also is.
                stream = cast(AsyncGenerator[str, None], container.log(stdout=True, stderr=True, follow=True))
                async with contextlib.aclosing(stream) as chunks:
                    async for chunk in chunks:
                        for line in lines.feed(chunk):
                            await on_output(line)
                for line in lines.end():
                    await on_output(line)
                result = await container.wait()
            return int(result.get("StatusCode", -1))
        finally:
            await self._remove_one_off(name)

    async def remove_one_offs(self, *, app: str) -> None:
        """Remove the app's one-off containers (left by a process killed during `run_once`)."""
        async with _docker("listing containers", within=QUICK):
            found = await self._docker.containers.list(
                all=True, filters={"label": [f"{LABEL_ONE_OFF}={app}"]}
            )
        await _all(self._remove_one_off(c.id) for c in found)

    async def exec_command(
        self, *, name: str, command: Sequence[str], on_output: Callable[[str], Awaitable[None]]
    ) -> int:
        """Run `command` in the running container `name` (as `docker exec`); return its exit code.

        Unbounded on purpose, as `run_once`: the hook's timeout bounds it. Docker cannot stop an exec'd
        process, so one that outlives its timeout runs on until its container stops.
        """
        what = f"container {name}"
        async with _docker(what, within=QUICK):
            execution = await self._docker.containers.container(name).exec(list(command))
        async with _docker(what, within=None):
            lines = _Lines()
            async with execution.start(detach=False) as stream:
                while (message := await stream.read_out()) is not None:
                    for line in lines.feed(message.data):
                        await on_output(line)
            for line in lines.end():
                await on_output(line)
        async with _docker(what, within=QUICK):
            code = (await execution.inspect()).get("ExitCode")
        return -1 if code is None else int(code)

    async def _remove_one_off(self, name: str) -> None:
        """Force-remove a one-off container (it may still run: a killed process's hook); not another one."""
        raw = await self._inspect_raw(name)
        if raw is None:
            return
        if LABEL_ONE_OFF not in (raw["Config"].get("Labels") or {}):
            raise ContainerError(f"container {name} exists but is not a trafficshift one-off container")
        async with _docker(f"container {name}", within=CHANGE):
            await _unless_gone(self._docker.containers.container(raw["Id"]).delete(force=True, v=True))

    # ------------------------------------------------------------ internals

    async def _start_one(
        self, *, app: AppSpec, colour: Colour, image: str, image_id: str, n: int
    ) -> ContainerInfo:
        name = container_name(app=app.name, colour=colour, n=n)
        plan = _plan(app=app, colour=colour, image=image, image_id=image_id)
        config = plan.config
        existing = await self._inspect_raw(name)
        if existing is not None:
            labels = existing["Config"].get("Labels") or {}
            if labels.get(LABEL_APP) != app.name or not _managed(existing):
                raise ContainerError(
                    f"container {name} exists but is not a trafficshift container of {app.name}"
                )
            same = labels.get(LABEL_SPEC) == config["Labels"][LABEL_SPEC] and existing["Image"] == image_id
            # A replica Docker had to restart would never pass readiness: replace it rather than reuse it.
            if same and existing["State"].get("Status") == "running" and not existing.get("RestartCount"):
                return _info(existing)
            await self._stop_remove(existing["Id"], app.rollout.stop_timeout)
        # Bounded from outside `_docker`: time spent waiting for a slot is no sign of a daemon in trouble.
        async with self.gate.slot(_STARTING):
            async with _docker(f"container {name}", within=CHANGE):
                container = await self._docker.containers.create(config, name=name)
            for network, endpoint in plan.connect:
                # Before the start, so that the app never runs without one of its networks.
                async with _docker(f"container {name}: network {network}", within=CHANGE):
                    await (await self._docker.networks.get(network)).connect(
                        {"Container": container.id, "EndpointConfig": endpoint}
                    )
            async with _docker(f"container {name}", within=CHANGE):
                await container.start()
        raw = await self._inspect_raw(name)
        if raw is None:
            raise ContainerError(f"container {name} vanished right after it was started")
        return _info(raw)

    async def _raw_list(self, *, app: str | None, colour: Colour | None) -> builtins.list[dict[str, Any]]:
        label = [
            LABEL_APP if app is None else f"{LABEL_APP}={app}",
            LABEL_COLOUR if colour is None else f"{LABEL_COLOUR}={colour}",
        ]
        async with _docker("listing containers", within=QUICK):
            found = await self._docker.containers.list(all=True, filters={"label": label})
        # The list API lacks health and exact port bindings; inspect each (gone in between: skipped).
        raws = await _all(self._inspect_raw(c.id) for c in found)
        return sorted((r for r in raws if r is not None and _managed(r)), key=_sort_key)

    async def _inspect_raw(self, name: str) -> dict[str, Any] | None:
        async with _docker(f"container {name}", within=QUICK):
            try:
                raw = dict(await self._docker.containers.container(name).show())
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return None
                raise
        raw["Name"] = str(raw["Name"]).lstrip("/")
        return raw

    async def _stop_remove(self, container_id: str, stop_timeout: float) -> None:
        container = self._docker.containers.container(container_id)
        what = f"container {container_id[:12]}"
        # Docker takes whole seconds; round up so the app gets at least the grace it was promised.
        grace = math.ceil(stop_timeout)
        # The stop is outside the gate: it mostly waits for the app to exit, which costs the daemon nothing.
        async with _docker(what, within=grace + STOP_GRACE):
            if not await _unless_gone(container.stop(t=grace)):
                return
        async with self.gate.slot(_REMOVING), _docker(what, within=CHANGE):
            await _unless_gone(container.delete(force=True, v=True))


async def _unless_gone(call: Awaitable[object]) -> bool:
    """Await a stop or a removal; False when the container is gone (404) or being removed by another (409)."""
    try:
        await call
    except aiodocker.DockerError as exc:
        if exc.status not in (404, 409):
            raise
        return False
    return True


def _plan(*, app: AppSpec, colour: Colour, image: str, image_id: str) -> CreatePlan:
    """The create body (and networks to connect) of one container of `app`'s colour, with our labels."""
    doc = app_doc(app, image=image, image_id=image_id)
    if doc is None:
        return CreatePlan(config=_config(app=app, colour=colour, image=image))
    assert app.container is not None
    plan = create_plan(
        app.container,
        image=image,
        port=app.port,
        network=app.network,
        publish=app.publish,
        default_restart=RESTART_POLICY,
    )
    config = plan.config
    # The create body is made of the spec document's settings alone: equal digests, equal containers.
    labels = _labels(app=app, colour=colour, image=image, spec=digest(doc))
    config["Labels"] = {**config.get("Labels", {}), **labels}
    return plan


def _one_off_plan(
    *, app: AppSpec, image: str, image_id: str, command: Sequence[str], purpose: str
) -> CreatePlan:
    """A colour's create body made into a one-off's: `command`, no port, alias, healthcheck or restart."""
    plan = _plan(app=app, colour=Colour.BLUE, image=image, image_id=image_id)
    config = dict(plan.config)
    user = {k: v for k, v in (config.get("Labels") or {}).items() if not k.startswith("trafficshift.")}
    config["Labels"] = {**user, LABEL_ONE_OFF: app.name, LABEL_PURPOSE: purpose}
    # The command replaces the image's (or the service's), as `docker compose run SERVICE CMD` does; the
    # entrypoint stays.
    config["Cmd"] = list(command)
    config.pop("ExposedPorts", None)
    config["Healthcheck"] = {"Test": ["NONE"]}
    host = {k: v for k, v in config["HostConfig"].items() if k != "PortBindings"}
    config["HostConfig"] = {**host, "RestartPolicy": {"Name": "no"}}
    if "NetworkingConfig" in config:
        endpoints = config["NetworkingConfig"]["EndpointsConfig"]
        config["NetworkingConfig"] = {"EndpointsConfig": {n: _no_alias(e) for n, e in endpoints.items()}}
    return CreatePlan(config=config, connect=tuple((n, _no_alias(e)) for n, e in plan.connect))


def _no_alias(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    # Compose gives every container the service's name as an alias: other services would reach the one-off.
    return {k: v for k, v in endpoint.items() if k != "Aliases"}


class _Lines:
    """Whole lines out of output chunks, which may end mid-line or (bytes) mid-character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._rest = ""

    def feed(self, chunk: bytes | str) -> builtins.list[str]:
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        *lines, self._rest = (self._rest + text).split("\n")
        return [line.rstrip("\r") for line in lines]

    def end(self) -> builtins.list[str]:
        rest, self._rest = self._rest + self._decoder.decode(b"", final=True), ""
        return [rest.rstrip("\r")] if rest else []


def _labels(*, app: AppSpec, colour: Colour, image: str, spec: str) -> dict[str, str]:
    return {
        LABEL_APP: app.name,
        LABEL_COLOUR: str(colour),
        LABEL_IMAGE: image,
        LABEL_PORT: str(app.port),
        LABEL_SPEC: spec,
    }


def _config(*, app: AppSpec, colour: Colour, image: str) -> dict[str, Any]:
    port = f"{app.port}/tcp"
    host: dict[str, Any] = {"RestartPolicy": {"Name": RESTART_POLICY}}
    if app.network is not None:
        host["NetworkMode"] = app.network
    else:
        host["PortBindings"] = {port: [{"HostIp": app.publish or "127.0.0.1", "HostPort": ""}]}
    config: dict[str, Any] = {
        "Image": image,
        "Env": [f"{k}={v}" for k, v in sorted(app.environment.items())],
        "ExposedPorts": {port: {}},
        "HostConfig": host,
    }
    if app.command is not None:
        config["Cmd"] = list(app.command)
    spec = hashlib.sha256(json.dumps([config, dict(app.labels)], sort_keys=True).encode()).hexdigest()[:16]
    # Ours last: a user label can never disguise a container as another app's or colour's.
    config["Labels"] = {**app.labels, **_labels(app=app, colour=colour, image=image, spec=spec)}
    return config


def _info(raw: Mapping[str, Any]) -> ContainerInfo:
    labels = raw["Config"].get("Labels") or {}
    state = raw["State"]
    running = state.get("Status") == "running"
    port = labels.get(LABEL_PORT, "")
    url = probe_url = None
    if running and port:
        bindings = (raw["HostConfig"].get("PortBindings") or {}).get(f"{port}/tcp")
        if bindings:
            published = (raw["NetworkSettings"].get("Ports") or {}).get(f"{port}/tcp") or []
            host_port = next((p["HostPort"] for p in published if p.get("HostPort")), None)
            if host_port:
                url = probe_url = f"http://{_host_address(bindings[0].get('HostIp', ''))}:{host_port}"
        else:
            network = raw["HostConfig"].get("NetworkMode", "")
            address = ((raw["NetworkSettings"].get("Networks") or {}).get(network) or {}).get("IPAddress")
            url = f"http://{raw['Name']}:{port}"
            probe_url = f"http://{address}:{port}" if address else None
    return ContainerInfo(
        id=str(raw["Id"]),
        name=str(raw["Name"]),
        app=labels.get(LABEL_APP, ""),
        colour=Colour(labels[LABEL_COLOUR]),
        image=labels.get(LABEL_IMAGE, str(raw["Config"].get("Image", ""))),
        running=running,
        health=(state.get("Health") or {}).get("Status"),
        url=url,
        probe_url=probe_url,
        spec=labels.get(LABEL_SPEC),
    )


def _managed(raw: Mapping[str, Any]) -> bool:
    labels = raw["Config"].get("Labels") or {}
    return LABEL_APP in labels and labels.get(LABEL_COLOUR) in {str(c) for c in Colour}


def _host_address(host_ip: str) -> str:
    # A wildcard binding is reachable on loopback; IPv6 literals need brackets in a URL.
    if host_ip in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host_ip}]" if ":" in host_ip else host_ip


def _sort_key(raw: Mapping[str, Any]) -> tuple[str, int, str]:
    # `web-blue-10` sorts after `web-blue-9`.
    match = re.fullmatch(r"(.*)-(\d+)", raw["Name"])
    return (match[1], int(match[2]), "") if match else (raw["Name"], 0, raw["Id"])


async def _all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> builtins.list[T]:
    """Run concurrently; on failure raise the first error itself (a project error), not an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None
    return [t.result() for t in tasks]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _unreachable(exc: aiodocker.DockerError) -> bool:
    return exc.status == 900  # aiodocker's code for "could not connect"


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, aiodocker.DockerError) else str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def _docker(what: str, *, within: float | None) -> AsyncIterator[None]:
    """Around every Docker call: its errors as project errors; no answer `within` seconds UnreachableError."""
    bound = asyncio.timeout(within)
    try:
        async with bound:
            with _translate(what):
                yield
    except TimeoutError as exc:
        if not bound.expired():
            raise  # another timeout's (the caller's own bound): theirs to handle
        raise UnreachableError(f"{what}: the Docker engine did not answer within {within:g}s") from exc


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Turn aiodocker/aiohttp errors into project errors that say what was being done."""
    try:
        yield
    except aiodocker.DockerError as exc:
        if _unreachable(exc):
            raise UnreachableError(f"{what}: the Docker engine is unreachable: {exc.message}") from exc
        raise ContainerError(f"{what}: {exc.message}") from exc
    except (aiohttp.ClientConnectionError, ConnectionError) as exc:
        raise UnreachableError(f"{what}: the Docker engine is unreachable: {_message(exc)}") from exc

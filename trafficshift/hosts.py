"""Containers on several Docker hosts: one `Containers` per host of the config's `hosts`, seen as one runtime.

`HostsRuntime` implements `ports.ContainerRuntime` over them. Replicas are spread by `placement`; each host's
`Containers` labels its containers with the host's name and sees only those (two endpoints of one engine
would otherwise both claim every container). Servers are `http://<the host's address>:<published port>`.

What a host that does not answer means depends on the call (README, "Several Docker hosts"):
- `ping`, `ensure_image`, `check_needs`, `start_colour` need every host (of the app): before a rollout
  that is exit 3, nothing changed; while the new colour starts, the rollout goes back.
- `list` and `stop_and_remove` go on without it: what cannot be reached is left out, or left where it is
  (said on the progress line and in the log). So a rollout that lost a host still goes back to the old
  colour's replicas on the hosts that answer, and `serve` keeps routing those.
- `state`, `wait_exit` and `logs` of a container on it fail (UnreachableError): the liveness check of a
  colour that takes traffic asks for each of its replicas by name, so a lost host sends the rollout back.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar
from urllib.parse import urlsplit

import aiodocker

from trafficshift import placement
from trafficshift.containers import Containers
from trafficshift.errors import ContainerError, TrafficShiftError, UnreachableError
from trafficshift.models import (
    AppSpec,
    Colour,
    Config,
    ContainerEvent,
    ContainerInfo,
    ContainerState,
    DockerHost,
)

log = logging.getLogger("trafficshift.hosts")

T = TypeVar("T")

_NAME = re.compile(r"(.*)-(\d+)")


@dataclass(frozen=True)
class Host:
    """One Docker host: its config entry and the adapter over its engine."""

    spec: DockerHost
    containers: Containers

    @property
    def name(self) -> str:
        return self.spec.name


def client_for(host: DockerHost) -> aiodocker.Docker:
    """An aiodocker client of the host's endpoint; UnreachableError when one cannot even be made."""
    url, context = host.docker, None
    if url.startswith("tcp://"):
        # aiohttp speaks http(s), not Docker's tcp:// (aiodocker passes it through as is).
        if host.tls is None:
            url = "http://" + url.removeprefix("tcp://")
        else:
            url = "https://" + url.removeprefix("tcp://")
            try:
                context = ssl.create_default_context(cafile=str(host.tls.ca))
                context.load_cert_chain(str(host.tls.cert), str(host.tls.key))
            except (OSError, ssl.SSLError) as exc:
                raise UnreachableError(f"host {host.name}: cannot use its TLS files: {exc}") from None
    try:
        # ssh:// goes through aiodocker's SSH transport (asyncssh, `docker system dial-stdio` remotely).
        return aiodocker.Docker(url=url, ssl_context=context)
    except (aiodocker.DockerError, ValueError, OSError) as exc:
        why = exc.message if isinstance(exc, aiodocker.DockerError) else str(exc)
        raise UnreachableError(f"host {host.name} ({host.docker}): {why}") from None


@contextlib.asynccontextmanager
async def open_hosts(
    config: Config, *, on_progress: Callable[[str], None] | None = None
) -> AsyncIterator[HostsRuntime]:
    """A runtime over a client of every host of the config; the clients are closed on exit."""
    clients: list[aiodocker.Docker] = []
    try:
        hosts = []
        for spec in config.hosts:
            client = client_for(spec)
            clients.append(client)
            containers = Containers(
                client, on_progress=on_progress, host=spec.name, concurrency=config.docker.concurrency
            )
            hosts.append(Host(spec, containers))
        yield HostsRuntime(hosts, on_progress=on_progress)
    finally:
        for client in clients:
            await client.close()


class HostsRuntime:
    """The managed containers of every host, as one `ports.ContainerRuntime` (module docstring)."""

    def __init__(self, hosts: Sequence[Host], *, on_progress: Callable[[str], None] | None = None) -> None:
        self._hosts = {h.name: h for h in hosts}
        self._on_progress = on_progress
        # Where each container was last seen (by name and by id): state/wait_exit/logs ask there first.
        self._where: dict[str, str] = {}

    async def ping(self) -> None:
        """UnreachableError, naming each host that does not answer, unless every host does."""
        results = await asyncio.gather(
            *(h.containers.ping() for h in self._hosts.values()), return_exceptions=True
        )
        _reraise_bugs(results)
        failed = [
            f"host {h.name} ({h.spec.docker}): {r}"
            for h, r in zip(self._hosts.values(), results, strict=True)
            if isinstance(r, BaseException)
        ]
        if failed:
            raise UnreachableError("; ".join(failed))

    async def ensure_image(self, image: str) -> str:
        """Make the image available on every host; its id on the first one (the same where it was pulled)."""
        ids = await self._each(self._hosts.values(), lambda h: h.containers.ensure_image(image))
        return ids[0][1]

    async def check_needs(self, *, app: AppSpec) -> None:
        await self._each(self._of(app), lambda h: h.containers.check_needs(app=app))

    async def start_colour(self, *, app: AppSpec, colour: Colour, image: str) -> builtins.list[ContainerInfo]:
        """Start the colour's replicas on the app's hosts, each its share (placement.py).

        The colour's containers on hosts the app left are removed first (as far as those hosts answer).
        """
        others = [h for h in self._hosts.values() if h.name not in app.hosts]
        await self._tolerant(
            others,
            lambda h: h.containers.stop_and_remove(
                app=app.name, colour=colour, stop_timeout=app.rollout.stop_timeout
            ),
            what=f"{app.name} {colour} containers are left there",
        )
        started = await self._each(
            self._of(app),
            lambda h: h.containers.start_colour(
                app=app, colour=colour, image=image, numbers=placement.replicas_on(app, h.name)
            ),
        )
        return self._sorted(started)

    async def list(self, *, app: str, colour: Colour | None = None) -> builtins.list[ContainerInfo]:
        """The app's containers on every host that answers (one that does not is logged and left out)."""
        found = await self._tolerant(
            self._hosts.values(),
            lambda h: h.containers.list(app=app, colour=colour),
            what=f"{app}'s containers there are left out",
        )
        return self._sorted(found)

    async def list_all(self) -> builtins.list[ContainerInfo]:
        """Every managed container on every host that answers (one that does not is logged and left out)."""
        found = await self._tolerant(
            self._hosts.values(), lambda h: h.containers.list_all(), what="its containers are left out"
        )
        return self._sorted(found)

    async def run_once(
        self,
        *,
        app: AppSpec,
        image: str,
        command: Sequence[str],
        purpose: str,
        on_output: Callable[[str], Awaitable[None]],
    ) -> int:
        """A release hook's one-off container runs once, on the first of the app's hosts."""
        host = self._of(app)[0]
        run = host.containers.run_once(
            app=app, image=image, command=command, purpose=purpose, on_output=on_output
        )
        return await _named(host, run)

    async def remove_one_offs(self, *, app: str) -> None:
        """Remove the app's one-offs on every host that answers (a lost host keeps its own)."""
        await self._tolerant(
            self._hosts.values(),
            lambda h: h.containers.remove_one_offs(app=app),
            what=f"{app}'s one-off containers there are left",
        )

    async def exec_command(
        self, *, name: str, command: Sequence[str], on_output: Callable[[str], Awaitable[None]]
    ) -> int:
        """Run `command` in the container `name` on the host that has it."""
        host, _ = await self._find(name)
        if host is None:
            raise ContainerError(f"{name}: no such container on any host")
        return await _named(
            host, host.containers.exec_command(name=name, command=command, on_output=on_output)
        )

    async def state(self, *, name: str) -> ContainerState | None:
        """The container's state on the host that has it; UnreachableError when that may be a lost host."""
        _, state = await self._find(name)
        return state

    async def wait_exit(self, *, name: str) -> int:
        host, _ = await self._find(name)
        return -1 if host is None else await _named(host, host.containers.wait_exit(name=name))

    async def logs(self, *, name: str, tail: int = 10) -> builtins.list[str]:
        host, _ = await self._find(name)
        return [] if host is None else await _named(host, host.containers.logs(name=name, tail=tail))

    async def stop_and_remove(self, *, app: str, colour: Colour, stop_timeout: float) -> None:
        """Stop and remove the colour's containers on every host that answers; say which are left."""
        await self._tolerant(
            self._hosts.values(),
            lambda h: h.containers.stop_and_remove(app=app, colour=colour, stop_timeout=stop_timeout),
            what=f"{app} {colour} containers are left there; the next promote of {app} replaces them",
        )

    async def events(self, *, actions: Sequence[str]) -> AsyncGenerator[ContainerEvent, None]:
        """Every host's events, merged; the stream ends when one host's ends (the caller reconnects all)."""
        queue: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()

        async def pump(host: Host) -> None:
            try:
                async with contextlib.aclosing(host.containers.events(actions=actions)) as stream:
                    async for event in stream:
                        await queue.put(event)
            except TrafficShiftError as exc:
                log.warning("host %s: its Docker events stopped: %s", host.name, exc)
            finally:
                await queue.put(None)

        pumps = [asyncio.create_task(pump(h)) for h in self._hosts.values()]
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    # ------------------------------------------------------------ internals

    def _of(self, app: AppSpec) -> builtins.list[Host]:
        return [self._hosts[name] for name in app.hosts]

    def _sorted(
        self, per_host: Iterable[tuple[Host, Sequence[ContainerInfo]]]
    ) -> builtins.list[ContainerInfo]:
        every = []
        for host, infos in per_host:
            for info in infos:
                self._where[info.name] = self._where[info.id] = host.name
                every.append(at_address(info, host.spec.address))
        return sorted(every, key=_name_key)

    async def _find(self, name: str) -> tuple[Host | None, ContainerState | None]:
        """The host that has the container `name` (a name or an id), and its state there.

        The host it was last seen on is asked first, then the others. Not found anywhere: (None, None),
        unless a host did not answer (it may be there): then that host's UnreachableError.
        """
        first = self._where.get(name)
        order = sorted(self._hosts.values(), key=lambda h: h.name != first)
        lost: list[BaseException] = []
        for host in order:
            try:
                state = await _named(host, host.containers.state(name=name))
            except UnreachableError as exc:
                lost.append(exc)
                continue
            if state is not None:
                self._where[name] = self._where[state.info.id] = host.name
                return host, replace(state, info=at_address(state.info, host.spec.address))
        if lost:
            raise lost[0]
        return None, None

    async def _each(
        self, hosts: Iterable[Host], call: Callable[[Host], Awaitable[T]]
    ) -> builtins.list[tuple[Host, T]]:
        """`call` on every host at once; the first failure, naming its host, is raised."""
        chosen = builtins.list(hosts)
        results = await asyncio.gather(*(_named(h, call(h)) for h in chosen), return_exceptions=True)
        done: builtins.list[tuple[Host, T]] = []
        for host, result in zip(chosen, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            done.append((host, result))
        return done

    async def _tolerant(
        self, hosts: Iterable[Host], call: Callable[[Host], Awaitable[T]], *, what: str
    ) -> builtins.list[tuple[Host, T]]:
        """`call` on every host at once; a host that does not answer is reported and left out."""
        chosen = builtins.list(hosts)
        results = await asyncio.gather(*(_named(h, call(h)) for h in chosen), return_exceptions=True)
        done: builtins.list[tuple[Host, T]] = []
        for host, result in zip(chosen, results, strict=True):
            if isinstance(result, UnreachableError):
                message = f"host {host.name} does not answer ({result}): {what}"
                log.warning("%s", message)
                if self._on_progress is not None:
                    self._on_progress(message)
            elif isinstance(result, BaseException):
                raise result
            else:
                done.append((host, result))
        return done


def at_address(info: ContainerInfo, address: str) -> ContainerInfo:
    """The container with its published port at its host's address (Docker knows only the bound IP)."""

    def moved(url: str | None) -> str | None:
        if url is None:
            return None
        port = urlsplit(url).port
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{port}" if port else url

    return replace(info, url=moved(info.url), probe_url=moved(info.probe_url))


async def _named(host: Host, call: Awaitable[T]) -> T:
    """Await a call to one host; its project error says which host it came from."""
    try:
        return await call
    except TrafficShiftError as exc:
        if type(exc).__init__ is not Exception.__init__ or str(exc).startswith("host "):
            raise
        raise type(exc)(f"host {host.name}: {exc}") from exc


def _reraise_bugs(results: Sequence[object]) -> None:
    """A failure that is no project error is a bug: never reported as a host that does not answer."""
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, TrafficShiftError):
            raise result


def _name_key(info: ContainerInfo) -> tuple[str, int, str]:
    # `web-blue-10` sorts after `web-blue-9`, whatever host each runs on.
    match = _NAME.fullmatch(info.name)
    return (match[1], int(match[2]), "") if match else (info.name, 0, info.id)

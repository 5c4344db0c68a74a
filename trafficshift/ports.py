"""What the engine, the service's runner and its provider need from the world, as small protocols.

The live adapters (Docker, Traefik's file provider and API, lock files, webhooks, Prometheus) are built in
one place, `runtime.open_adapters`, and handed over as one frozen `Adapters` bundle; the engine's unit tests
hand over in-memory fakes instead (`tests/support/fakes.py`).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

import aiohttp

from trafficshift.models import (
    AppSpec,
    Colour,
    Config,
    ConfirmSpec,
    ContainerEvent,
    ContainerInfo,
    ContainerState,
    Event,
    LockRole,
    MetricsSnapshot,
    MirrorRoute,
    Rollout,
    Routing,
)
from trafficshift.store.aio import AsyncStateStore

# Told each line a command prints (stdout and stderr, in order, without its newline) as it prints it.
OutputSink = Callable[[str], Awaitable[None]]


class ContainerRuntime(Protocol):
    """The managed containers (live: `containers.Containers`). Every failure is a `TrafficShiftError`."""

    async def ping(self) -> None:
        """UnreachableError unless the runtime answers."""

    async def ensure_image(self, image: str) -> str:
        """Make `image` available here; return its id."""

    async def check_needs(self, *, app: AppSpec) -> None:
        """PrerequisiteMissing (exit 3) when what the app needs outside its colour is not there."""

    async def start_colour(self, *, app: AppSpec, colour: Colour, image: str) -> builtins.list[ContainerInfo]:
        """Make `<app>-<colour>-1..replicas` run `image` (idempotent: the right ones are kept)."""

    async def list(self, *, app: str, colour: Colour | None = None) -> builtins.list[ContainerInfo]:
        """The app's containers (of one colour, or both), running or not, sorted by name."""

    async def state(self, *, name: str) -> ContainerState | None:
        """One container's state by name or id; None when there is none."""

    async def wait_exit(self, *, name: str) -> int:
        """Return the exit code as soon as the container is not running."""

    async def logs(self, *, name: str, tail: int = 10) -> builtins.list[str]:
        """The last `tail` lines of the container's output."""

    async def stop_and_remove(self, *, app: str, colour: Colour, stop_timeout: float) -> None:
        """Stop (SIGTERM, SIGKILL after `stop_timeout`) and remove every container of a colour."""

    def events(self, *, actions: Sequence[str]) -> AsyncGenerator[ContainerEvent, None]:
        """Events about managed containers, until the stream ends."""

    async def run_once(
        self, *, app: AppSpec, image: str, command: Sequence[str], purpose: str, on_output: OutputSink
    ) -> int:
        """Run `command` to its end in a one-off container `<app>-<purpose>` of the app's spec on `image`
        (its environment, volumes and networks; no published port, no alias, never routed); return its exit
        code. It is removed afterwards, also when cancelled; one a killed process left is replaced."""

    async def remove_one_offs(self, *, app: str) -> None:
        """Remove the app's one-off containers (left by a process killed during `run_once`)."""

    async def exec_command(self, *, name: str, command: Sequence[str], on_output: OutputSink) -> int:
        """Run `command` in the running container `name` to its end; return its exit code."""


class RoutingPublisher(Protocol):
    """An app's dynamic file: render, atomic write, and Traefik's confirmation that it runs it."""

    async def ping(self) -> None:
        """UnreachableError unless Traefik's API answers (nothing to do without an `api_url`)."""

    def read(self, app: str) -> Routing | None:
        """What the app's file routes now (no routes without a file); None when it is unreadable."""

    async def check(self, *, spec: AppSpec) -> None:
        """Have Traefik try the app's router options unless its file runs them already: invariant 16
        (docs/ARCHITECTURE.md). RoutingRejected (exit 2) when Traefik puts them in error."""

    async def publish(self, *, spec: AppSpec, routing: Routing) -> float:
        """Replace the app's file with `routing` (no routes: remove it), wait until Traefik runs it.

        Returns the seconds it took. The caller holds the app's lock.
        """

    async def publish_mirror(self, *, spec: AppSpec, mirror: MirrorRoute | None) -> float:
        """Write the app's mirror file (None: remove it), wait until Traefik runs it (or shows it gone).

        The mirror's colour must be in the app's file. Returns the seconds it took; the caller holds the lock.
        """


class Lock(Protocol):
    """One app's lock: one rollout at a time, across processes (live: `store.locks.AppLock`)."""

    async def acquire_waiting(self, *, wait: float, role: LockRole = LockRole.ROLLOUT) -> None:
        """Take it for a rollout (or as `role`), waiting out the provider's brief hold; else LockedError."""

    def try_acquire(self, role: LockRole = LockRole.ROLLOUT) -> bool:
        """Take it if free."""

    def release(self) -> None:
        """Let go of it (nothing when not held)."""

    def holder(self) -> LockRole | None:
        """Who holds it elsewhere, if anyone."""

    def is_held_elsewhere(self) -> bool:
        """Whether another holder has it now."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class Locks(Protocol):
    """The per-app locks (live: `store.locks.FileLocks`)."""

    def lock(self, app: str) -> Lock:
        """A handle on the app's lock (not taken yet)."""


class Notifier(Protocol):
    """Webhooks and the confirm gate (live: `webhooks.Notifier`)."""

    def notify(self, event: Event, rollout: Rollout | None) -> None:
        """Send one transition to the hooks that want it, in the background."""

    async def confirm(
        self, *, gate: ConfirmSpec, rollout: Rollout, step: int, weights: Mapping[Colour, int]
    ) -> None:
        """Ask `gate` whether the rollout may move to `weights` at `step`; ConfirmDenied if not."""

    async def aclose(self) -> None:
        """Wait for deliveries in flight (bounded by their timeouts)."""


class MetricsSource(Protocol):
    """Traefik's per-service request metrics (live: `traefik.scrape.TraefikMetrics`)."""

    async def scrape(self, services: Collection[str] | None = None) -> MetricsSnapshot:
        """One snapshot (of `services` only, when given); UnreachableError when it cannot be read."""


@dataclass(frozen=True)
class Adapters:
    """One config's adapters, shared by every engine of a process (the CLI's one, or the service's)."""

    config: Config
    # Off the event loop (its commits wait for an fsync): one writer thread, one reader thread, shared.
    store: AsyncStateStore
    containers: ContainerRuntime
    routing: RoutingPublisher
    locks: Locks
    notifier: Notifier
    metrics: MetricsSource | None  # None without `traefik.metrics_url`: no analysis
    http: aiohttp.ClientSession  # for readiness probes of `health.path`

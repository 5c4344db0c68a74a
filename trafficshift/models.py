"""The project's own values: config models, colours, containers, rollout state. No I/O here."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from trafficshift.compose.spec import ComposeRef, ContainerSpec, SpecDoc


class Colour(enum.StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class HealthSpec:
    """Readiness of each new container, as trafficshift checks it (and Traefik's own check)."""

    path: str | None = None
    interval: float = 1.0
    timeout: float = 2.0
    healthy_threshold: int = 2
    start_timeout: float = 60.0


# Requests that may be copied to the new colour by default: a copy of a write would repeat its side effects.
MIRROR_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class MirrorSpec:
    """`rollout.mirror`: before step 1, copies of `percent`% of the live requests of `methods` go to the new
    colour for `duration` seconds (Traefik's mirroring service; the copies' answers are discarded)."""

    percent: int
    duration: float
    methods: tuple[str, ...] = MIRROR_METHODS


# A step's pause that lasts until the rollout is resumed (`pause: until-resumed`, `promote --hold-at`).
UNTIL_RESUMED = math.inf


@dataclass(frozen=True)
class StickySpec:
    """A cookie on the weighted service that keeps a client on the colour it first landed on."""

    cookie: str
    secure: bool = False
    http_only: bool = False
    same_site: str | None = None  # "none", "lax" or "strict"; None: Traefik's default (not set)


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[int, ...] = (10, 25, 50, 100)
    pause: float = 30.0
    drain: float = 10.0
    stop_timeout: float = 10.0
    mirror: MirrorSpec | None = None
    # Each step's own pause (`{weight: 10, pause: 5m}`), None where it takes `pause`; () when none has one.
    pauses: tuple[float | None, ...] = ()
    sticky: StickySpec | None = None


@dataclass(frozen=True)
class SmokeCheck:
    """One HTTP check of `smoke:`: `count` requests `method path` through Traefik, each answered with a status
    in `status` (inclusive range) and, when `body` is set, a body containing it (smoke.py judges them)."""

    path: str
    method: str = "GET"
    status: tuple[int, int] = (200, 299)
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0
    count: int = 1


@dataclass(frozen=True)
class CanarySpec:
    """Requests that carry `<header>: always` (or the cookie `<cookie>=always`) go to the new colour once it
    is ready, before any public weight; `never` keeps them on the old colour. At least one of the two."""

    header: str | None = None
    cookie: str | None = None


@dataclass(frozen=True)
class TlsDomain:
    main: str
    sans: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsSpec:
    """The app's routers terminate TLS (Traefik's router `tls`); every field optional."""

    cert_resolver: str | None = None
    domains: tuple[TlsDomain, ...] = ()
    options: str | None = None


@dataclass(frozen=True)
class RetrySpec:
    """The retry middleware trafficshift puts on the app's routers (connection errors only)."""

    attempts: int = 3
    initial_interval: float = 0.1


@dataclass(frozen=True)
class AnalysisSpec:
    max_error_rate: float | None = None
    max_p95_latency: float | None = None
    min_requests: int = 20
    # Seconds between scrapes while a step holds: a bad version is caught within about this long.
    interval: float = 1.0
    # Forgive an error rate the old colour shares over the same window (not the new version's fault).
    compare_to_old: bool = True


@dataclass(frozen=True)
class WebhookSpec:
    """A receiver of one signed JSON POST per rollout transition (delivered in the background)."""

    url: str
    # HMAC-SHA256 key of the `X-Trafficshift-Signature` header; read from secret_file or secret_env.
    secret: bytes = field(repr=False)
    # Phases (`shifting`, `done`, ...) whose transitions are sent; None: all of them.
    events: frozenset[str] | None = None
    # Bounds the whole delivery: every attempt and the backoff between them.
    timeout: float = 5.0
    retries: int = 3


@dataclass(frozen=True)
class ConfirmSpec:
    """A gate that must answer 2xx before each weight increase of the new colour."""

    url: str
    secret: bytes = field(repr=False)
    timeout: float = 30.0
    retries: int = 3


@dataclass(frozen=True)
class HookSpec:
    """One release hook: a command, run to its end within `timeout` seconds (README, "Release hooks")."""

    command: tuple[str, ...]
    timeout: float


# Each hook's timeout when the config sets none: a migration may take minutes; a pre_stop holds the old
# colour's removal, so it gets less.
PRE_DEPLOY_TIMEOUT = 300.0
PRE_STOP_TIMEOUT = 30.0
POST_DEPLOY_TIMEOUT = 300.0


@dataclass(frozen=True)
class ReleaseHooks:
    """An app's release hooks, each optional."""

    # In a one-off container of the new spec, before any new container starts.
    pre_deploy: HookSpec | None = None
    # In each old container, past the point of return: out of the file (confirmed), just before its stop.
    pre_stop: HookSpec | None = None
    # In one new container once the rollout is done; a failure is reported, never reverted.
    post_deploy: HookSpec | None = None


@dataclass(frozen=True)
class AppSpec:
    name: str
    image: str
    port: int
    rule: str
    replicas: int = 1
    network: str | None = None
    publish: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    health: HealthSpec = field(default_factory=HealthSpec)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    analysis: AnalysisSpec | None = None
    # In addition to the config's global webhooks; `confirm` replaces the global gate for this app.
    webhooks: tuple[WebhookSpec, ...] = ()
    confirm: ConfirmSpec | None = None
    hooks: ReleaseHooks = field(default_factory=ReleaseHooks)
    # `compose:` in trafficshift.yml; then `image` and `container` come from the Compose service once it
    # has been read (compose/resolve.py), and environment/command/labels are empty.
    compose: ComposeRef | None = None
    container: ContainerSpec | None = None
    # The Docker hosts (names from the config's `hosts`) the replicas are spread over (placement.py);
    # empty when the config has no `hosts`: the local engine runs them all.
    hosts: tuple[str, ...] = ()
    # Routing options of the app's routers: entrypoints (None: the config's `traefik.entrypoints`), TLS,
    # middlewares defined elsewhere (`auth@file`; the retry middleware comes after them), an explicit
    # priority (None: Traefik's default, the rule's length), and the header/cookie canary.
    entrypoints: tuple[str, ...] | None = None
    tls: TlsSpec | None = None
    middlewares: tuple[str, ...] = ()
    priority: int | None = None
    retry: RetrySpec = field(default_factory=RetrySpec)
    canary: CanarySpec | None = None
    # HTTP checks sent to the new colour through Traefik before any public weight (smoke.py).
    smoke: tuple[SmokeCheck, ...] = ()


@dataclass(frozen=True)
class RedisSpec:
    """`traefik.redis`: where the Redis backend writes (`redis://host:port/<db>`) and Traefik's `rootKey`."""

    url: str
    root_key: str = "traefik"


@dataclass(frozen=True)
class TraefikSpec:
    # None only with `provider: redis` (the config requires it for `file`).
    dynamic_dir: Path | None = None
    api_url: str | None = None  # one instance; `api_urls` for a fleet (the config takes one or the other)
    metrics_url: str | None = None
    entrypoints: tuple[str, ...] = ("web",)
    provider: str = "file"  # `file` or `redis`: where the routing is written, and the `@<provider>` suffix
    redis: RedisSpec | None = None  # set exactly when provider is redis
    api_urls: tuple[str, ...] = ()
    metrics_urls: tuple[str, ...] = ()
    # How long every instance may take to show a step (`traefik.confirm_timeout`); at most the default,
    # which the provider's lock waits are sized on (engine.PROVIDER_WAIT).
    confirm_timeout: float = 30.0
    # Where trafficshift itself reaches the apps' entrypoint (smoke checks), e.g. http://127.0.0.1:80.
    entrypoint_url: str | None = None

    @property
    def apis(self) -> tuple[str, ...]:
        """Every Traefik instance's API: each must show a step before it counts."""
        return self.api_urls or ((self.api_url,) if self.api_url else ())

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every instance's metrics endpoint: analysis sums each service's counts over all of them."""
        return self.metrics_urls or ((self.metrics_url,) if self.metrics_url else ())


@dataclass(frozen=True)
class DockerSpec:
    # Container creates+starts and removals at once in one process (`docker.concurrency`), shared by its
    # rollouts: see containers.DEFAULT_CONCURRENCY for the measurement behind the default.
    concurrency: int = 32


@dataclass(frozen=True)
class ServiceSpec:
    listen: str = "127.0.0.1:8700"
    token_file: Path | None = None
    schedule_grace: float = 600.0
    # Events of finished rollouts and finished schedules older than this are pruned by the service.
    retention: float = 30 * 86400.0
    # The API's connections: at most this many open (kept to half the open-file limit), a request head
    # complete within header_timeout of connecting, an idle keep-alive connection closed after
    # keepalive_timeout.
    max_connections: int = 512
    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0


@dataclass(frozen=True)
class DockerTls:
    """A `tcp://` Docker endpoint's client certificate, and the CA its server certificate chains to."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class DockerHost:
    """One Docker engine of the config's `hosts`: how trafficshift reaches its API, where Traefik reaches
    the ports it publishes."""

    name: str
    docker: str  # unix:///path, tcp://host:port or ssh://[user@]host[:port]
    address: str  # a host name or IP address: servers are http://<address>:<published port>
    tls: DockerTls | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    traefik: TraefikSpec
    state_dir: Path
    apps: Mapping[str, AppSpec]
    service: ServiceSpec = field(default_factory=ServiceSpec)
    docker: DockerSpec = field(default_factory=DockerSpec)
    webhooks: tuple[WebhookSpec, ...] = ()
    confirm: ConfirmSpec | None = None
    # Several Docker engines (`hosts:`); empty: the local engine (DOCKER_HOST or its socket) runs every app.
    hosts: tuple[DockerHost, ...] = ()

    def webhooks_of(self, app: AppSpec) -> tuple[WebhookSpec, ...]:
        return self.webhooks + app.webhooks

    def confirm_of(self, app: AppSpec) -> ConfirmSpec | None:
        return app.confirm or self.confirm


# ---------------------------------------------------------------- containers


@dataclass(frozen=True)
class ContainerInfo:
    """One managed container, as read back from Docker (names and labels per the contract)."""

    id: str
    name: str
    app: str
    colour: Colour
    image: str
    running: bool
    # Docker's HEALTHCHECK status ("starting", "healthy", "unhealthy") or None when the image has none.
    health: str | None
    # The URL Traefik uses to reach it (http://<name>:<port> or http://127.0.0.1:<hostport>); None when
    # it has no address (not running, or the port is not published yet).
    url: str | None
    # The URL trafficshift itself probes from the host (container IP on the network, or the published port).
    probe_url: str | None
    # Its `trafficshift.spec` label: a compose-backed app's spec digest (compose/fingerprint.py).
    spec: str | None = None


@dataclass(frozen=True)
class ContainerState:
    """How a container is doing beyond ContainerInfo: what readiness needs to tell "dying" from "slow"."""

    info: ContainerInfo
    status: str  # created, running, restarting, exited, dead, ...
    exit_code: int
    restart_count: int
    error: str


@dataclass(frozen=True)
class ContainerEvent:
    """One Docker event about a managed container (`start`, `die`, `health_status`)."""

    app: str
    action: str
    id: str
    name: str


class LockRole(enum.StrEnum):
    """Who holds an app's lock, as its holder writes it into the lock file (`<pid> <role>`)."""

    ROLLOUT = "rollout"  # a promote, rollback or abort: holds the app for as long as it runs
    PROVIDER = "provider"  # the service re-rendering the app's file: one write and its confirmation


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class ColourRoute:
    """One colour as the dynamic file lists it: its weight in the weighted service and its servers."""

    colour: Colour
    weight: int
    servers: tuple[str, ...]


@dataclass(frozen=True)
class Pin:
    """A router that sends the requests matching `rule` to one colour, whatever the weights say.

    The header/cookie canary is two of them (`always` to the new colour, `never` to the old one); smoke
    checks sent through Traefik to the new colour are another. `rule` is complete Traefik rule text (the
    app's rule and the match, built by `traefik/rules.py`); its router outranks the app's own.
    """

    name: str  # `canary-always`; the router is `names.pin_router(app, name)`
    colour: Colour
    rule: str
    # Its router's priority above the app's router (which is the app's `priority`, or its rule's length):
    # of two pins that both match a request, the higher rank wins.
    rank: int = 1


@dataclass(frozen=True)
class Routing:
    """Everything the dynamic file of one app says: which colours, at which weight, with which servers,
    and which pinned routers send some requests to one colour.

    Only colours that have servers are listed: Traefik disables a weighted service whose child is missing.
    A pin's colour is always one of the routes.
    """

    app: str
    routes: tuple[ColourRoute, ...]
    pins: tuple[Pin, ...] = ()

    def weights(self) -> dict[Colour, int]:
        return {r.colour: r.weight for r in self.routes}

    def servers(self) -> set[str]:
        """Every server URL the routing lists, of any colour."""
        return {url for route in self.routes for url in route.servers}

    def canonical(self) -> Routing:
        """The same routing in one order (colours sorted, each colour's servers sorted).

        Order means nothing to Traefik: two routings route alike exactly when their canonical forms are
        equal (a file against what the API shows, or against what is about to be written).
        """
        routes = (replace(r, servers=tuple(sorted(r.servers))) for r in self.routes)
        return Routing(
            app=self.app,
            routes=tuple(sorted(routes, key=lambda r: r.colour)),
            pins=tuple(sorted(self.pins, key=lambda p: p.name)),
        )


@dataclass(frozen=True)
class MirrorRoute:
    """What an app's mirror file says: copies of `percent`% of its `methods` requests go to `colour`.

    The mirror file sits beside the app's dynamic file and only while a rollout is in its mirror phase;
    `colour` is then in the app's file at weight 0 (a mirror needs its target service there).
    """

    app: str
    colour: Colour
    percent: int
    methods: tuple[str, ...]


# ---------------------------------------------------------------- rollouts


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    MIRRORING = "mirroring"
    SHIFTING = "shifting"
    DRAINING = "draining"
    CLEANING = "cleaning"
    DONE = "done"
    ABORTING = "aborting"
    ABORTED = "aborted"
    FAILED = "failed"


class Outcome(enum.StrEnum):
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass(frozen=True)
class AppState:
    """What serves an app when no rollout is in progress."""

    app: str
    colour: Colour | None = None
    image: str | None = None
    # Whether the store has a record of the app at all. Without one (never deployed, or a lost state folder)
    # a colour of None says nothing; with one, it says the app is undeployed (its first deploy went back).
    recorded: bool = False
    # A compose-backed app's live spec (compose/fingerprint.py), as recorded when it went live; None for
    # other apps and for what was deployed before trafficshift recorded specs.
    spec: SpecDoc | None = None


@dataclass(frozen=True)
class Rollout:
    """One promote (or rollback, or first deploy), as recorded before each side effect.

    `weights` is the routing the dynamic file was last told to show (colour -> percent); a colour absent
    from it is absent from the file. Recovery after a crash re-applies it, which is idempotent.
    """

    id: str
    app: str
    from_colour: Colour | None
    from_image: str | None
    to_colour: Colour
    to_image: str
    steps: tuple[int, ...]
    pause: float
    phase: Phase
    step: int
    weights: Mapping[Colour, int]
    started_at: float
    updated_at: float
    outcome: Outcome | None = None
    reason: str | None = None
    ended_at: float | None = None
    # A compose-backed app's spec before (the live one, when recorded) and the one it deploys: the keys
    # that differ are what the rollout changes.
    from_spec: SpecDoc | None = None
    to_spec: SpecDoc | None = None
    # Each step's own pause (UNTIL_RESUMED: held there until resumed), None where it takes `pause`.
    pauses: tuple[float | None, ...] = ()
    # Why the rollout is held at its weights (a pause request, an until-resumed step, a set weight), or None.
    held: str | None = None

    @property
    def active(self) -> bool:
        return self.outcome is None

    def pause_of(self, index: int) -> float:
        """How long step `index` holds before the next one (UNTIL_RESUMED: until resumed)."""
        own = self.pauses[index] if 0 <= index < len(self.pauses) else None
        return self.pause if own is None else own


@dataclass(frozen=True)
class Requests:
    """What other processes asked of a rollout, as its driver reads them while a step holds."""

    abort: str | None = None  # the reason of an abort request
    held: str | None = None  # why it is held (None: it is not)
    weight: int | None = None  # a `set-weight` not applied yet: the new colour's percent


@dataclass(frozen=True)
class Event:
    """One rollout transition, as the CLI prints it and the service streams it."""

    seq: int
    rollout_id: str
    app: str
    at: float
    phase: Phase
    step: int
    weights: Mapping[Colour, int]
    message: str


# Traefik's per-service counters, as the analysis reads them (scraped by traefik/scrape.py).


@dataclass(frozen=True)
class Bucket:
    """One cumulative histogram bucket: `count` requests took at most `le` seconds."""

    le: float
    count: float


@dataclass(frozen=True)
class ServiceMetrics:
    """What Traefik counted for one service (e.g. `web-green@file`) since it started."""

    # Status code class ("2xx", "5xx", ...; "other" for a code that is not three digits) -> requests.
    requests: Mapping[str, float] = field(default_factory=dict)
    # Cumulative, sorted by `le`, summed over code/method/protocol; the last one is +Inf when present.
    buckets: tuple[Bucket, ...] = ()

    @property
    def total(self) -> float:
        return sum(self.requests.values())


@dataclass(frozen=True)
class MetricsSnapshot:
    """All Traefik service counters at one moment (`taken_at` is `time.monotonic()`)."""

    taken_at: float
    services: Mapping[str, ServiceMetrics] = field(default_factory=dict)

    def service(self, name: str) -> ServiceMetrics:
        """The metrics of one service; empty when Traefik has not counted a request for it yet."""
        return self.services.get(name, ServiceMetrics())


@dataclass(frozen=True)
class Verdict:
    """The judgement of one step; `reason` names the figures whenever the step failed or was not judged."""

    ok: bool
    requests: int
    error_rate: float | None
    p95: float | None
    reason: str | None = None


@dataclass(frozen=True)
class Figures:
    """One colour's requests over the step so far (Traefik's counters since the step started)."""

    requests: int
    error_rate: float | None
    p95: float | None


@dataclass(frozen=True)
class Live:
    """What a rollout is doing between two transitions: the CLI's display, heartbeats and the API's
    `progress` frames (`GET /events`) are all drawn from it.

    `phase` is the rollout's state as text (whatever states there are, `held` included); `hold` is
    (elapsed, total) seconds of the wait at the current weights, None when it is not waiting; `replicas`
    maps each new container to its readiness; `figures` (colour -> requests so far) is filled while a step
    holds with analysis.
    """

    rollout_id: str
    app: str
    phase: str
    step: int
    steps: int
    weights: Mapping[str, int]
    text: str = ""
    hold: tuple[float, float] | None = None
    replicas: Mapping[str, str] = field(default_factory=dict)
    figures: Mapping[str, Figures] = field(default_factory=dict)

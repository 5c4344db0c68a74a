"""`GET /metrics`: Prometheus text for rollouts, from the state store (so CLI rollouts count too).

Counts and weights are read at each scrape; durations are folded in from the event log, which every process
appends to, once per event (the whole log at the first scrape, so the histograms survive a restart). Every
read runs on the store's reader thread, before the registry is rendered from what it returned; the log is
folded in batches, so that a long one (100k events: about a second of reading) never holds the loop long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from trafficshift import plan
from trafficshift.models import AppState, Colour, Config, Event, Phase, Rollout
from trafficshift.store.aio import AsyncStateStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ENDED = {Phase.DONE, Phase.ABORTED, Phase.FAILED}
_STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_PROMOTE_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Events folded per read of the log: ~40 ms of reading (off the loop) and a few ms of folding (on it).
FOLD_BATCH = 5000


@dataclass
class _Snapshot:
    """What the store said at this scrape: read (off the loop) before the registry renders it."""

    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    apps: dict[str, tuple[AppState, Rollout | None]] = field(default_factory=dict)


class _StoreCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = _Snapshot()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        rollouts = CounterMetricFamily(
            "trafficshift_rollouts", "Finished rollouts by app and outcome.", labels=["app", "outcome"]
        )
        for (app, outcome), count in sorted(self.snapshot.outcomes.items()):
            rollouts.add_metric([app, outcome], count)
        yield rollouts
        weight = GaugeMetricFamily(
            "trafficshift_weight", "Percent of the app's traffic on each colour.", labels=["app", "colour"]
        )
        active = GaugeMetricFamily(
            "trafficshift_rollout_in_progress",
            "1 while a rollout of the app is recorded as active.",
            labels=["app"],
        )
        for app, (state, rollout) in sorted(self.snapshot.apps.items()):
            weights = plan.current_weights(state, rollout)
            for colour in Colour:
                weight.add_metric([app, str(colour)], weights.get(colour, 0))
            active.add_metric([app], 0 if rollout is None else 1)
        yield weight
        yield active


class ServiceMetrics:
    """A dedicated registry (not the process-global one) with the service's metrics."""

    def __init__(self, *, config: Config, store: AsyncStateStore) -> None:
        self.config = config
        self.store = store
        self.registry = CollectorRegistry()
        self._collector = _StoreCollector()
        self.registry.register(self._collector)
        self.step_seconds = Histogram(
            "trafficshift_step_duration_seconds",
            "From writing a step's weights to Traefik confirming them.",
            ["app"],
            buckets=_STEP_BUCKETS,
            registry=self.registry,
        )
        self.promote_seconds = Histogram(
            "trafficshift_promote_duration_seconds",
            "From the start of a rollout to its end, by outcome.",
            ["app", "outcome"],
            buckets=_PROMOTE_BUCKETS,
            registry=self.registry,
        )
        self._seen = 0
        # One scrape at a time: two that both read the log after `_seen` would fold its events twice.
        self._scraping = asyncio.Lock()
        self._step_started: dict[tuple[str, int], float] = {}
        self._rollout_started: dict[str, float] = {}

    async def render(self) -> bytes:
        async with self._scraping:
            while events := await self.store.events(after=self._seen, limit=FOLD_BATCH):
                for event in events:
                    self._fold(event)
                    self._seen = event.seq
            self._collector.snapshot = _Snapshot(
                outcomes=await self.store.outcome_counts(), apps=await self.store.overview(self.config.apps)
            )
            data: bytes = generate_latest(self.registry)
            return data

    def _fold(self, e: Event) -> None:
        self._rollout_started.setdefault(e.rollout_id, e.at)
        if e.phase is Phase.SHIFTING:
            key = (e.rollout_id, e.step)
            # A step's first event records its weights; its next one is their confirmation.
            if key not in self._step_started:
                self._step_started[key] = e.at
            elif self._step_started[key] >= 0:
                self.step_seconds.labels(e.app).observe(max(0.0, e.at - self._step_started[key]))
                self._step_started[key] = -1.0
        elif e.phase in _ENDED:
            started = self._rollout_started.pop(e.rollout_id, e.at)
            self.promote_seconds.labels(e.app, str(e.phase)).observe(max(0.0, e.at - started))
            for key in [k for k in self._step_started if k[0] == e.rollout_id]:
                del self._step_started[key]

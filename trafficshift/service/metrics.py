"""`GET /metrics`: Prometheus text for rollouts, from the state store (so CLI rollouts count too).

Counts and weights are read at each scrape; durations are folded in from the event log, which every process
appends to, once per event (the whole log at start-up, so the histograms survive a restart).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from trafficshift import plan
from trafficshift.models import Colour, Config, Event, Phase
from trafficshift.store.rollouts import StateStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ENDED = {Phase.DONE, Phase.ABORTED, Phase.FAILED}
_STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_PROMOTE_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class _StoreCollector(Collector):
    def __init__(self, *, config: Config, store: StateStore) -> None:
        self.config = config
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        rollouts = CounterMetricFamily(
            "trafficshift_rollouts", "Finished rollouts by app and outcome.", labels=["app", "outcome"]
        )
        for (app, outcome), count in sorted(self.store.outcome_counts().items()):
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
        for app in sorted(self.config.apps):
            rollout = self.store.active_rollout(app)
            weights = plan.current_weights(self.store.app_state(app), rollout)
            for colour in Colour:
                weight.add_metric([app, str(colour)], weights.get(colour, 0))
            active.add_metric([app], 0 if rollout is None else 1)
        yield weight
        yield active


class ServiceMetrics:
    """A dedicated registry (not the process-global one) with the service's metrics."""

    def __init__(self, *, config: Config, store: StateStore) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(config=config, store=store))
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
        self._step_started: dict[tuple[str, int], float] = {}
        self._rollout_started: dict[str, float] = {}

    def render(self) -> bytes:
        for event in self.store.events(after=self._seen):
            self._fold(event)
            self._seen = event.seq
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

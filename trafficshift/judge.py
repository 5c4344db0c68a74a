"""Watch one rollout step through Traefik's metrics and fail it as soon as the new colour misbehaves.

The I/O glue between `metrics.scrape` and the pure `analysis.judge_step`: a snapshot when the step starts,
then one every `interval`, each judged on the whole window since the start (cumulative, so the figures only
get firmer as the step goes on).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from trafficshift import plan
from trafficshift.analysis import figures_between, judge_step
from trafficshift.errors import AnalysisFailed, UnreachableError
from trafficshift.models import (
    AnalysisSpec,
    AppSpec,
    Colour,
    Figures,
    MetricsSnapshot,
    Phase,
    Rollout,
    Verdict,
)
from trafficshift.ports import MetricsSource
from trafficshift.traefik import names

# One scrape may not stall a step for long: a late answer is worth less than the next one.
SCRAPE_TIMEOUT = 3.0


def describe(verdict: Verdict) -> str:
    """The figures of a verdict, for the step-judged event: `120 requests, 5xx 0.000, p95 0.012s`."""
    rate = "-" if verdict.error_rate is None else f"{verdict.error_rate:.3f}"
    p95 = "-" if verdict.p95 is None else f"{verdict.p95:.3f}s"
    text = f"{verdict.requests} requests, 5xx rate {rate}, p95 {p95}"
    return f"{text} ({verdict.reason})" if verdict.reason else text


@dataclass
class StepWatch:
    """Judges the new colour over one step; `observe` raises AnalysisFailed on the first failed verdict."""

    metrics: MetricsSource
    app: str
    new: Colour
    old: Colour | None
    spec: AnalysisSpec
    step: str
    provider: str = names.PROVIDER  # the `@<provider>` of the service labels: `file`, or `redis`
    start: MetricsSnapshot | None = None
    latest: MetricsSnapshot | None = None
    last: Verdict | None = None
    last_error: str | None = None

    @property
    def service(self) -> str:
        return _metrics_label(self.app, self.new, self.provider)

    async def observe(self) -> Verdict | None:
        """Scrape and judge the window so far; None when there is no window yet (or Traefik did not answer).

        A scrape that fails is skipped (the next one covers the same window); `finish` decides whether the
        step could be judged at all.
        """
        if not await self.sample() or self.start is self.latest:
            return None
        assert self.start is not None
        assert self.latest is not None
        baseline = self._old_service if self.spec.compare_to_old else None
        verdict = judge_step(
            before=self.start,
            after=self.latest,
            service=self.service,
            spec=self.spec,
            baseline_service=baseline,
        )
        self.last = verdict
        if not verdict.ok:
            raise AnalysisFailed(
                service=self.service, step=self.step, verdict=verdict, reason=verdict.reason or "failed"
            )
        return verdict

    async def sample(self) -> bool:
        """Scrape both colours' counters (the first scrape starts the window); whether Traefik answered.

        Between judgements too: the figures so far (`figures`) are what the CLI's display shows each second.
        """
        # Only the services shown: the rest of a big Traefik's text is not worth parsing every second.
        wanted = [self.service] if self._old_service is None else [self.service, self._old_service]
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                snapshot = await self.metrics.scrape(services=wanted)
        except (UnreachableError, TimeoutError) as exc:
            self.last_error = str(exc) or f"no answer within {SCRAPE_TIMEOUT:g}s"
            return False
        self.latest = snapshot
        if self.start is None:
            self.start = snapshot
        return True

    def figures(self) -> dict[Colour, Figures]:
        """Each colour's requests, 5xx share and p95 since the step started (empty before two scrapes)."""
        if self.start is None or self.latest is None or self.start is self.latest:
            return {}
        labels = {self.new: self.service}
        if self.old is not None:
            labels[self.old] = _metrics_label(self.app, self.old, self.provider)
        return {
            colour: figures_between(before=self.start, after=self.latest, service=label)
            for colour, label in labels.items()
        }

    @property
    def _old_service(self) -> str | None:
        return _metrics_label(self.app, self.old, self.provider) if self.old else None

    async def finish(self) -> Verdict:
        """The verdict at the end of the step: a last scrape, else the latest verdict of the step."""
        verdict = await self.observe() or self.last
        if verdict is None:
            # Analysis was asked for and could not run: passing the step blindly would defeat it.
            raise AnalysisFailed(
                service=self.service,
                step=self.step,
                verdict=None,
                reason=f"could not be judged: {self.last_error or 'no metrics window'}",
            )
        return verdict


def _metrics_label(app: str, colour: Colour, provider: str) -> str:
    """The Prometheus `service` label of one colour's loadBalancer service (`web-green@file`)."""
    return names.qualified(names.colour_service(app, colour), provider)


def watch_step(
    *, spec: AppSpec, rollout: Rollout, metrics: MetricsSource | None, provider: str = names.PROVIDER
) -> StepWatch | None:
    """A watch over the step (or mirror phase) the rollout holds now, or None when there is nothing to judge.

    Nothing to judge: no analysis or metrics source, a first deploy (no old colour to go back to), or the new
    colour takes no traffic (nor copies of it).
    """
    new = rollout.to_colour
    percent = rollout.weights.get(new, 0)
    # Traefik counts the mirror's copies under the new colour's own service, with the colour's answers.
    mirror = plan.mirror_for(spec, rollout) if rollout.phase is Phase.MIRRORING else None
    if spec.analysis is None or metrics is None or rollout.from_colour is None:
        return None
    if mirror is not None:
        step = f"mirror ({mirror.percent}% of {'/'.join(mirror.methods)} copied to {new})"
    elif percent <= 0:
        return None
    elif rollout.phase is Phase.DRAINING:
        step = f"drain ({percent}% on {new})"
    else:
        step = f"step {rollout.step + 1}/{len(rollout.steps)} ({percent}% on {new})"
    return StepWatch(
        metrics=metrics,
        app=spec.name,
        new=new,
        old=rollout.from_colour,
        spec=spec.analysis,
        step=step,
        provider=provider,
    )

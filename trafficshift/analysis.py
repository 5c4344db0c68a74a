"""Judge one rollout step from two Traefik metric snapshots: error rate and p95 of the new colour. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence

from trafficshift.models import AnalysisSpec, Bucket, Figures, MetricsSnapshot, ServiceMetrics, Verdict


def service_delta(*, before: ServiceMetrics, after: ServiceMetrics) -> ServiceMetrics:
    """What a service counted between two snapshots.

    Any counter going down means Traefik restarted (all its counters start at zero again), so then the
    `after` values are the delta; one decision for the whole service keeps the buckets cumulative.
    """
    before_buckets = {b.le: b.count for b in before.buckets}
    after_buckets = {b.le: b.count for b in after.buckets}
    # Iterate over `before`: a series missing from `after` went back to zero too.
    reset = any(after.requests.get(k, 0.0) < n for k, n in before.requests.items()) or any(
        after_buckets.get(le, 0.0) < n for le, n in before_buckets.items()
    )
    if reset:
        return after
    return ServiceMetrics(
        requests={k: n - before.requests.get(k, 0.0) for k, n in after.requests.items()},
        buckets=tuple(Bucket(le=b.le, count=b.count - before_buckets.get(b.le, 0.0)) for b in after.buckets),
    )


def histogram_quantile(*, q: float, buckets: Sequence[Bucket]) -> float | None:
    """The q-quantile of cumulative buckets, interpolated linearly the way Prometheus does it.

    None when there is nothing to estimate from (no requests, or no finite bucket). A rank that falls in
    the +Inf bucket answers the highest finite bound, as Prometheus does.
    """
    ordered = sorted(buckets, key=lambda b: b.le)
    if len(ordered) < 2 or ordered[-1].le != math.inf:
        return None
    # Scrapes of separate series are not atomic; Prometheus forces monotonic counts too.
    counts: list[float] = []
    for b in ordered:
        counts.append(max(b.count, counts[-1]) if counts else max(b.count, 0.0))
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    i = next((i for i, n in enumerate(counts[:-1]) if n >= rank), len(counts) - 1)
    if i == len(counts) - 1:
        return ordered[-2].le
    upper = ordered[i].le
    if i == 0:
        if upper <= 0:
            return upper
        lower, below = 0.0, 0.0
    else:
        lower, below = ordered[i - 1].le, counts[i - 1]
    in_bucket = counts[i] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def _error_rate(metrics: ServiceMetrics) -> tuple[int, float | None]:
    requests = round(metrics.total)
    if requests <= 0:
        return 0, None
    return requests, min(1.0, max(0.0, metrics.requests.get("5xx", 0.0) / metrics.total))


def figures_between(*, before: MetricsSnapshot, after: MetricsSnapshot, service: str) -> Figures:
    """What `service` counted between two snapshots: requests, 5xx share and p95."""
    delta = service_delta(before=before.service(service), after=after.service(service))
    requests, error_rate = _error_rate(delta)
    return Figures(
        requests=requests, error_rate=error_rate, p95=histogram_quantile(q=0.95, buckets=delta.buckets)
    )


def judge_step(
    *,
    before: MetricsSnapshot,
    after: MetricsSnapshot,
    service: str,
    spec: AnalysisSpec,
    baseline_service: str | None = None,
) -> Verdict:
    """Judge `service` (e.g. `web-green@file`) on what Traefik counted between `before` and `after`.

    With `baseline_service` (the old colour), an error rate over the limit fails the step only when it
    also exceeds the baseline's by more than `max_error_rate`: errors that both colours share (a database
    outage, say) are not the new version's fault, and rolling back would not cure them. The baseline is
    used only when it saw at least `min_requests` requests itself. Latency is judged on its own.
    """
    figures = figures_between(before=before, after=after, service=service)
    requests, error_rate, p95 = figures.requests, figures.error_rate, figures.p95
    if requests < spec.min_requests:
        return Verdict(
            ok=True,
            requests=requests,
            error_rate=error_rate,
            p95=p95,
            reason=f"judged on health alone ({requests} requests < min_requests {spec.min_requests})",
        )

    failures: list[str] = []
    notes: list[str] = []
    limit = spec.max_error_rate
    if limit is not None and error_rate is not None and error_rate > limit:
        figure = f"error rate {error_rate:.3g} > {limit:.3g} over {requests} requests"
        baseline_rate = _baseline_error_rate(
            before=before, after=after, baseline_service=baseline_service, spec=spec
        )
        if baseline_rate is not None and error_rate - baseline_rate <= limit:
            notes.append(f"{figure}, but within {limit:.3g} of {baseline_service} ({baseline_rate:.3g})")
        else:
            failures.append(figure)
    max_p95 = spec.max_p95_latency
    if max_p95 is not None and p95 is not None and p95 > max_p95:
        failures.append(f"p95 {p95:.3g}s > {max_p95:.3g}s over {requests} requests")
    reasons = failures or notes
    return Verdict(
        ok=not failures,
        requests=requests,
        error_rate=error_rate,
        p95=p95,
        reason="; ".join(reasons) if reasons else None,
    )


def _baseline_error_rate(
    *, before: MetricsSnapshot, after: MetricsSnapshot, baseline_service: str | None, spec: AnalysisSpec
) -> float | None:
    if baseline_service is None:
        return None
    delta = service_delta(before=before.service(baseline_service), after=after.service(baseline_service))
    requests, rate = _error_rate(delta)
    return rate if requests >= spec.min_requests else None

"""Step judgement from two metric snapshots: tables for the rules, properties for the arithmetic."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trafficshift.analysis import histogram_quantile, judge_step, service_delta
from trafficshift.models import AnalysisSpec, Bucket, MetricsSnapshot, ServiceMetrics, Verdict

# Traefik's default histogram bounds.
BOUNDS = (0.1, 0.3, 1.2, 5.0)
GREEN = "web-green@file"
BLUE = "web-blue@file"
SPEC = AnalysisSpec(max_error_rate=0.01, max_p95_latency=0.5, min_requests=20)
INF = math.inf


def buckets_of(latencies: Sequence[float], bounds: Sequence[float] = BOUNDS) -> tuple[Bucket, ...]:
    return tuple(Bucket(le, sum(1 for x in latencies if x <= le)) for le in (*bounds, INF))


def service(*, ok: int = 0, errors: int = 0, client_errors: int = 0, latency: float = 0.05) -> ServiceMetrics:
    """`ok` 2xx, `errors` 5xx and `client_errors` 4xx requests, all taking `latency` seconds."""
    n = ok + errors + client_errors
    requests = {k: float(v) for k, v in (("2xx", ok), ("5xx", errors), ("4xx", client_errors)) if v}
    return ServiceMetrics(requests=requests, buckets=buckets_of([latency] * n) if n else ())


def snap(**services: ServiceMetrics) -> MetricsSnapshot:
    names = {"green": GREEN, "blue": BLUE}
    return MetricsSnapshot(taken_at=0.0, services={names[k]: v for k, v in services.items()})


def add(a: ServiceMetrics, b: ServiceMetrics) -> ServiceMetrics:
    """The counters of `a` after `b` happened on top of it."""
    keys = a.requests.keys() | b.requests.keys()
    mine, theirs = {x.le: x.count for x in a.buckets}, {x.le: x.count for x in b.buckets}
    return ServiceMetrics(
        requests={k: a.requests.get(k, 0.0) + b.requests.get(k, 0.0) for k in keys},
        buckets=tuple(
            Bucket(le, mine.get(le, 0.0) + theirs.get(le, 0.0)) for le in sorted(mine.keys() | theirs.keys())
        ),
    )


# ---------------------------------------------------------------- histogram_quantile


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # Interpolation inside (1.2, 5]: rank 7.6 of 8, 7 below, 1 inside -> 1.2 + 3.8 * 0.6.
        (0.95, [(0.1, 4), (0.3, 5), (1.2, 7), (5, 8), (INF, 8)], 3.48),
        (0.5, [(0.1, 4), (0.3, 5), (1.2, 7), (5, 8), (INF, 8)], 0.1),
        # Rank exactly on a bucket's count stays in that bucket (Prometheus: first count >= rank).
        (0.95, [(0.1, 95), (1.0, 100), (INF, 100)], 0.1),
        # First bucket interpolates from 0.
        (0.5, [(1.0, 10), (INF, 10)], 0.5),
        # Rank in the +Inf bucket answers the highest finite bound.
        (0.95, [(0.1, 10), (0.3, 10), (INF, 20)], 0.3),
        # A first bucket with a bound <= 0 answers that bound.
        (0.5, [(-1.0, 10), (1.0, 10), (INF, 10)], -1.0),
        # Unsorted input and non-monotonic counts (scrape skew) are handled like Prometheus does.
        (0.5, [(INF, 10), (1.0, 10), (0.5, 12)], 0.25),
        # Nothing to estimate from.
        (0.95, [], None),
        (0.95, [(INF, 10)], None),
        (0.95, [(0.1, 0), (INF, 0)], None),
        (0.95, [(0.1, 5), (0.3, 10)], None),
    ],
)
def test_histogram_quantile(q: float, buckets: list[tuple[float, float]], expected: float | None) -> None:
    result = histogram_quantile(q=q, buckets=[Bucket(le, n) for le, n in buckets])
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


# ---------------------------------------------------------------- service_delta


def test_delta_subtracts() -> None:
    before = service(ok=10, errors=1)
    after = add(before, service(ok=5, errors=2, latency=2.0))
    delta = service_delta(before=before, after=after)
    assert delta.requests == {"2xx": 5, "5xx": 2}
    assert delta.buckets == buckets_of([2.0] * 7)


@pytest.mark.parametrize(
    "after",
    [
        service(ok=3),  # fewer requests than before: Traefik restarted
        service(ok=100, latency=10.0),  # a bucket went down
        ServiceMetrics(requests={"2xx": 100.0}),  # 5xx series gone
    ],
)
def test_delta_after_a_reset_is_after(after: ServiceMetrics) -> None:
    before = service(ok=50, errors=5)
    assert service_delta(before=before, after=after) == after


# ---------------------------------------------------------------- judge_step


def health_alone(n: int, rate: float | None, p95: float | None = None) -> Verdict:
    return Verdict(True, n, rate, p95, f"judged on health alone ({n} requests < min_requests 20)")


@pytest.mark.parametrize(
    ("before", "after", "spec", "expected"),
    [
        pytest.param(snap(), snap(), SPEC, health_alone(0, None), id="no-requests"),
        pytest.param(
            snap(),
            snap(green=service(errors=10)),
            SPEC,
            health_alone(10, 1.0, pytest.approx(0.095)),
            id="below-min-requests-even-all-failing",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=100)),
            SPEC,
            Verdict(True, 100, 0.0, pytest.approx(0.095), None),
            id="healthy",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=70, errors=50)),
            SPEC,
            Verdict(
                False,
                120,
                pytest.approx(50 / 120),
                pytest.approx(0.095),
                "error rate 0.417 > 0.01 over 120 requests",
            ),
            id="errors",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=99, errors=1)),
            SPEC,
            Verdict(True, 100, 0.01, pytest.approx(0.095), None),
            id="error-rate-at-the-limit-passes",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=50, client_errors=50)),
            SPEC,
            Verdict(True, 100, 0.0, pytest.approx(0.095), None),
            id="4xx-are-not-errors",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=40, latency=1.0)),
            SPEC,
            Verdict(False, 40, 0.0, pytest.approx(1.155), "p95 1.15s > 0.5s over 40 requests"),
            id="slow",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=20, errors=20, latency=1.0)),
            SPEC,
            Verdict(
                False,
                40,
                0.5,
                pytest.approx(1.155),
                "error rate 0.5 > 0.01 over 40 requests; p95 1.15s > 0.5s over 40 requests",
            ),
            id="errors-and-slow",
        ),
        pytest.param(
            snap(),
            snap(green=service(ok=20, errors=20, latency=9.0)),
            AnalysisSpec(),
            Verdict(True, 40, 0.5, 5.0, None),
            id="no-thresholds",
        ),
        pytest.param(
            snap(green=service(ok=1000, errors=500, latency=9.0)),
            snap(green=add(service(ok=1000, errors=500, latency=9.0), service(ok=30))),
            SPEC,
            Verdict(True, 30, 0.0, pytest.approx(0.095), None),
            id="only-the-step-counts",
        ),
        pytest.param(
            snap(green=service(ok=1000)),
            snap(green=service(ok=20, errors=5)),
            SPEC,
            Verdict(False, 25, 0.2, pytest.approx(0.095), "error rate 0.2 > 0.01 over 25 requests"),
            id="counter-reset",
        ),
        pytest.param(
            snap(blue=service(ok=500)),
            snap(blue=service(ok=900), green=service(ok=19)),
            SPEC,
            health_alone(19, 0.0, pytest.approx(0.095)),
            id="other-services-ignored",
        ),
    ],
)
def test_judge_step(
    before: MetricsSnapshot, after: MetricsSnapshot, spec: AnalysisSpec, expected: Verdict
) -> None:
    assert judge_step(before=before, after=after, service=GREEN, spec=spec) == expected


@pytest.mark.parametrize(
    ("blue", "ok", "reason"),
    [
        # Both colours fail alike (a shared dependency is down): not the new version's fault.
        (
            service(ok=95, errors=5),
            True,
            "error rate 0.05 > 0.01 over 100 requests, but within 0.01 of web-blue@file (0.05)",
        ),
        # The old colour is clean: the new one is to blame.
        (service(ok=100), False, "error rate 0.05 > 0.01 over 100 requests"),
        # The old colour saw too few requests to compare with: judged on the absolute limit.
        (service(ok=5, errors=5), False, "error rate 0.05 > 0.01 over 100 requests"),
        # No series for the old colour at all.
        (None, False, "error rate 0.05 > 0.01 over 100 requests"),
    ],
)
def test_judge_step_against_baseline(blue: ServiceMetrics | None, ok: bool, reason: str) -> None:
    after = snap(green=service(ok=95, errors=5), **({"blue": blue} if blue else {}))
    verdict = judge_step(before=snap(), after=after, service=GREEN, spec=SPEC, baseline_service=BLUE)
    assert (verdict.ok, verdict.reason) == (ok, reason)


def test_baseline_does_not_excuse_slowness() -> None:
    after = snap(green=service(ok=100, latency=1.0), blue=service(ok=100, latency=1.0))
    verdict = judge_step(before=snap(), after=after, service=GREEN, spec=SPEC, baseline_service=BLUE)
    assert not verdict.ok


# ---------------------------------------------------------------- properties

latency = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)
bounds = st.lists(st.floats(min_value=0.001, max_value=10.0), min_size=1, max_size=8, unique=True).map(sorted)


@given(latencies=st.lists(latency, min_size=1, max_size=200), bounds=bounds)
def test_p95_lies_in_the_bucket_of_the_true_p95(latencies: list[float], bounds: list[float]) -> None:
    p95 = histogram_quantile(q=0.95, buckets=buckets_of(latencies, bounds))
    assert p95 is not None
    true = sorted(latencies)[math.ceil(0.95 * len(latencies)) - 1]
    i = bisect.bisect_left(bounds, true)
    if i == len(bounds):
        assert p95 == bounds[-1]
    else:
        lower = bounds[i - 1] if i else 0.0
        assert lower <= p95 <= bounds[i] + 1e-9


@given(
    latencies=st.lists(latency, min_size=1, max_size=100),
    slow=st.lists(st.floats(min_value=20.0, max_value=100.0), min_size=1, max_size=50),
    bounds=bounds,
)
def test_p95_never_falls_when_slow_requests_are_added(
    latencies: list[float], slow: list[float], bounds: list[float]
) -> None:
    before = histogram_quantile(q=0.95, buckets=buckets_of(latencies, bounds))
    after = histogram_quantile(q=0.95, buckets=buckets_of(latencies + slow, bounds))
    assert before is not None
    assert after is not None
    assert after >= before - 1e-9


counts = st.integers(min_value=0, max_value=10_000)
services = st.builds(
    lambda ok, errors, client_errors, lat: service(
        ok=ok, errors=errors, client_errors=client_errors, latency=lat
    ),
    counts,
    counts,
    counts,
    latency,
)


@given(before=services, after=services, max_error_rate=st.floats(0, 1), min_requests=st.integers(0, 100))
def test_verdict_figures_are_sane(
    before: ServiceMetrics, after: ServiceMetrics, max_error_rate: float, min_requests: int
) -> None:
    """Whatever the two snapshots (resets included), the figures stay within their ranges."""
    spec = AnalysisSpec(max_error_rate=max_error_rate, max_p95_latency=1.0, min_requests=min_requests)
    verdict = judge_step(before=snap(green=before), after=snap(green=after), service=GREEN, spec=spec)
    assert verdict.requests >= 0
    assert (verdict.error_rate is None) == (verdict.requests == 0)
    if verdict.error_rate is not None:
        assert 0.0 <= verdict.error_rate <= 1.0
    if verdict.p95 is not None:
        assert 0.0 <= verdict.p95 <= BOUNDS[-1]
    assert verdict.ok or verdict.reason
    if verdict.requests < min_requests:
        assert verdict.ok


@given(base=services, step=services)
def test_step_on_top_of_history_is_judged_like_the_step_alone(
    base: ServiceMetrics, step: ServiceMetrics
) -> None:
    alone = judge_step(before=snap(), after=snap(green=step), service=GREEN, spec=SPEC)
    on_top = judge_step(before=snap(green=base), after=snap(green=add(base, step)), service=GREEN, spec=SPEC)
    assert on_top.ok == alone.ok
    assert on_top.requests == alone.requests
    assert on_top.error_rate == pytest.approx(alone.error_rate)
    assert on_top.p95 == pytest.approx(alone.p95)

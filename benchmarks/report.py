"""Turn benchmark runs into medians, a markdown report and a JSON document."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.scenarios import RECREATE, ROLLOUT, SCENARIOS, SEED, TRAFFICSHIFT, Params, RunResult

LABELS = {
    TRAFFICSHIFT: "trafficshift promote",
    SEED: "seed (labels + health check + retry, sleep 5s)",
    ROLLOUT: "docker-rollout (labels + healthcheck + retry)",
    RECREATE: "recreate (`docker-compose up -d`)",
}


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": _output(["docker", "version", "--format", "{{.Server.Version}}"]),
        "traefik": _traefik_version(),
    }


def _traefik_version() -> str:
    text = _output([str(Path(sys.executable).parent / "traefik"), "version"])
    for line in text.splitlines():
        if line.startswith("Version:"):
            return "Traefik " + line.split(":", 1)[1].strip()
    return "Traefik"


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    except OSError:
        return ""


def summarize_runs(runs: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Medians across runs, per scenario; for trafficshift also per step."""
    out: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        mine = [r for r in runs if r.scenario == scenario]
        if not mine:
            continue
        failures: Counter[str] = Counter()
        for r in mine:
            failures.update(r.failures)
        entry: dict[str, Any] = {
            "runs": len(mine),
            "requests": median(r.requests for r in mine),
            "failed": median(r.failed for r in mine),
            "failed_total": sum(r.failed for r in mine),
            "failed_span": median(r.failed_span for r in mine),
            "steady_p50": median(r.steady_p50 for r in mine),
            "steady_p99": median(r.steady_p99 for r in mine),
            "cutover_p50": median(r.cutover_p50 for r in mine),
            "cutover_p99": median(r.cutover_p99 for r in mine),
            "wall": median(r.wall for r in mine),
            "failures": dict(failures.most_common()),
        }
        for key in sorted({k for r in mine for k in r.extra}):
            entry[key] = median(r.extra.get(key) for r in mine)
        if scenario == TRAFFICSHIFT:
            steps: dict[int, list[Any]] = {}
            for r in mine:
                for s in r.steps:
                    steps.setdefault(s.step, []).append(s)
            entry["steps"] = [
                {
                    "step": n,
                    "weight": items[0].weight,
                    "observed": median(s.observed for s in items),
                    "max_gap": max(abs(s.observed - s.weight) for s in items),
                    "requests": median(s.requests for s in items),
                    "confirm": median(s.confirm for s in items),
                    "confirm_max": max(s.confirm for s in items),
                    "write_to_api": median(s.write_to_api for s in items),
                }
                for n, items in sorted(steps.items())
            ]
        out[scenario] = entry
    return out


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def markdown(
    summary: dict[str, dict[str, Any]],
    *,
    params: Params,
    info: dict[str, Any],
    command: str,
    throttle: str,
    tuning: list[dict[str, Any]] | None = None,
) -> str:
    lines = [
        f"Cutover under load: {params.concurrency} concurrent keep-alive clients through Traefik "
        f"(providersThrottleDuration {throttle}), app start-up delay {params.start_delay:g}s; "
        "medians across runs; latency of the answered requests.",
        "",
        "| way | runs | requests | failed | failure span | p50 steady → cutover | p99 steady → cutover "
        "| wall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, e in summary.items():
        lines.append(
            f"| {LABELS[scenario]} | {e['runs']} | {_n(e['requests'])} | {_n(e['failed'])} "
            f"| {e['failed_span']:.2f} s | {_ms(e['steady_p50'])} → {_ms(e['cutover_p50'])} "
            f"| {_ms(e['steady_p99'])} → {_ms(e['cutover_p99'])} | {e['wall']:.1f} s |"
        )
    ts = summary.get(TRAFFICSHIFT)
    if ts is not None:
        lines += [
            "",
            f"trafficshift steps ({'/'.join(map(str, params.steps))}, pause {params.pause:g}s, "
            f"drain {params.drain:g}s): share of v2 answers while each step was held; the promote's own "
            '"step confirmed in" (render, atomic write, polling the API until it shows the weights), and '
            "the file's mtime until a 10 ms poller saw the weights in the API (Traefik's part).",
            "",
            "| step | weight | observed v2 share | worst gap | requests | step confirmed in (median, max) "
            "| file mtime → API |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in ts["steps"]:
            lines.append(
                f"| {s['step']} | {s['weight']}% | {s['observed']:.1f}% | {s['max_gap']:.1f} pt "
                f"| {_n(s['requests'])} | {_ms(s['confirm'])}, {_ms(s['confirm_max'])} "
                f"| {_ms(s['write_to_api'])} |"
            )
        lines += [
            "",
            f"promote wall time {ts['wall']:.1f} s against a floor of {ts['floor']:.1f} s (start-up "
            f"{params.start_delay:g}s + pauses + drain): {ts['overhead']:.1f} s of overhead (readiness "
            "probes, confirmations, stopping the old colour).",
        ]
        phases = {
            "phase_started": "start + ready",
            "phase_ready": "shifting",
            "phase_draining": "draining",
            "phase_cleaning": "stopping the old colour",
            "phase_done": "CLI exit",
        }
        parts = [f"{label} {ts[key]:.2f} s" for key, label in phases.items() if ts.get(key) is not None]
        if parts:
            lines += ["", "Where the promote's time goes (medians): " + ", ".join(parts) + "."]
        ratios = []
        for other in (SEED, ROLLOUT, RECREATE):
            o = summary.get(other)
            if o is None:
                continue
            ratios.append(
                f"- vs {LABELS[other]}: failed {_n(ts['failed'])} vs {_n(o['failed'])}; cutover p99 "
                f"{_ratio(ts['cutover_p99'], o['cutover_p99'])}; wall {_ratio(ts['wall'], o['wall'])}"
            )
        if ratios:
            lines += ["", "trafficshift against the baselines (medians):", "", *ratios]
    failures = [f"{LABELS[s]}: {_kinds(e['failures'])}" for s, e in summary.items() if e["failures"]]
    if failures:
        lines += ["", "Failures by kind (all runs): " + "; ".join(failures) + "."]
    if tuning:
        lines += ["", *tuning_markdown(tuning)]
    lines += [
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, Docker {info['docker']}, "
        f"{info['traefik']}, Python {info['python']}.",
        f"Reproduce: `{command}`",
    ]
    return "\n".join(lines) + "\n"


def _kinds(failures: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {count:,}" for kind, count in failures.items())


def tuning_markdown(tuning: list[dict[str, Any]]) -> list[str]:
    lines = [
        "providersThrottleDuration against the write → API latency (a weight change confirmed through the "
        "API), for changes spaced like rollout steps and for changes back to back:",
        "",
        "| throttle | spaced: median | spaced: max | back to back: median | back to back: max |",
        "|---:|---:|---:|---:|---:|",
    ]
    for t in tuning:
        lines.append(
            f"| {t['throttle']} | {_ms(t['spaced_median'])} | {_ms(t['spaced_max'])} "
            f"| {_ms(t['burst_median'])} | {_ms(t['burst_max'])} |"
        )
    return lines


def to_json(
    runs: Sequence[RunResult],
    summary: dict[str, dict[str, Any]],
    *,
    params: Params,
    info: dict[str, Any],
    command: str,
    throttle: str,
    tuning: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    return {
        "command": command,
        "machine": info,
        "throttle": throttle,
        "params": asdict(params),
        "summary": summary,
        "runs": [asdict(r) for r in runs],
        "tuning": tuning,
    }

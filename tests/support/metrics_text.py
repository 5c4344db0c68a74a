"""Traefik's Prometheus text for many services, shaped as Traefik 3.7 writes it with `addServicesLabels`.

The histogram has the buckets of `traefik/traefik.yml`; each service has the series of three
code/method pairs and two servers, as a busy app's colours do.
"""

from __future__ import annotations

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2.5, 5, 10)
SERIES = (("200", "GET"), ("404", "GET"), ("502", "POST"))
_DURATION = "traefik_service_request_duration_seconds"


def service_names(count: int) -> list[str]:
    """`app0-blue@file`, `app0-green@file`, `app1-blue@file`, ...: `count` of them."""
    return [f"app{n // 2}-{('blue', 'green')[n % 2]}@file" for n in range(count)]


def traefik_metrics(services: int) -> str:
    """The text of one scrape of a Traefik that routes `services` services (every series nonzero)."""
    names = service_names(services)
    out = [
        "# HELP go_goroutines Number of goroutines that currently exist.",
        "# TYPE go_goroutines gauge",
        "go_goroutines 420",
        f"# HELP {_DURATION} How long it took to process the request on a service, partitioned by status"
        " code, protocol, and method.",
        f"# TYPE {_DURATION} histogram",
    ]
    for i, name in enumerate(names):
        for code, method in SERIES:
            labels = f'code="{code}",method="{method}",protocol="http",service="{name}"'
            total = 1000 + i
            for k, le in enumerate(BUCKETS):
                out.append(f'{_DURATION}_bucket{{{labels},le="{le:g}"}} {total * (k + 1) // len(BUCKETS)}')
            out.append(f'{_DURATION}_bucket{{{labels},le="+Inf"}} {total}')
            out.append(f"{_DURATION}_sum{{{labels}}} {total * 0.012:.6f}")
            out.append(f"{_DURATION}_count{{{labels}}} {total}")
    for family, help_text in (
        ("traefik_service_requests_total", "How many HTTP requests processed on a service."),
        ("traefik_service_requests_bytes_total", "The total size of requests in bytes handled by a service."),
        (
            "traefik_service_responses_bytes_total",
            "The total size of responses in bytes handled by a service.",
        ),
    ):
        out += [f"# HELP {family} {help_text}", f"# TYPE {family} counter"]
        for i, name in enumerate(names):
            for code, method in SERIES:
                labels = f'code="{code}",method="{method}",protocol="http",service="{name}"'
                out.append(f"{family}{{{labels}}} {1000 + i}")
    out += [
        "# HELP traefik_service_server_up service server is up.",
        "# TYPE traefik_service_server_up gauge",
    ]
    for i, name in enumerate(names):
        for server in (1, 2):
            out.append(
                f'traefik_service_server_up{{service="{name}",url="http://10.0.{i % 250}.{server}:8080"}} 1'
            )
    return "\n".join(out) + "\n"

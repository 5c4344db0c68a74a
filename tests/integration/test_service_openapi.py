"""Property-based checks of the live service against its own `/openapi.json` (schemathesis)."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import aiodocker
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.core.failures import FailureGroup

from tests.support import cli
from tests.support.service import run_service

pytestmark = [pytest.mark.docker]

# Bounded so the whole run stays well under a minute.
EXAMPLES = 25
# An endless stream: checked by the SSE tests instead.
SKIP = {("GET", "/events")}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _with_app(case: schemathesis.Case, app: str) -> schemathesis.Case:
    if isinstance(case.body, dict) and "app" in case.body:
        case.body = {**case.body, "app": app}
    return case


def _fuzz(url: str, token: str, app: str) -> list[str]:
    """Run every operation's examples; return the failures (as text) instead of stopping at the first.

    Operations on `{app}` run once with generated names (404s) and once with the real app, and schedule
    bodies name the real app half of the time, so the answers past validation are checked too.
    """
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        strategies = [operation.as_strategy()]
        if "{app}" in operation.path:
            strategies.append(operation.as_strategy(path_parameters={"app": app}))
        if label == "POST /schedules":
            strategies.append(operation.as_strategy().map(lambda case: _with_app(case, app)))
        for strategy in strategies:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=30)

            try:
                run()
            except (AssertionError, FailureGroup) as exc:
                failures.append(f"{label}: {exc}")
    return failures


async def test_the_service_does_what_its_openapi_document_says(
    tmp_path: Path, docker: aiodocker.Docker, prefix: str, app_images: dict[str, str]
) -> None:
    config = cli.write_config(
        tmp_path / "trafficshift.yml", traefik=None, apps={prefix: {"image": app_images["v1"]}}
    )
    async with run_service(config) as service:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # schemathesis' own deprecations are not ours to fail on
            failures = await asyncio.to_thread(_fuzz, service.url, service.token, prefix)
        log = service.log()
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in log, log[-3000:]

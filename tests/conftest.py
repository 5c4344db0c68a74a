"""Shared fixtures. Docker and Traefik fixtures fail (never skip) when the engine or binary is missing."""

from __future__ import annotations

import pytest

# Helpers that assert, outside test modules: rewritten too, so that a failed check shows its values.
pytest.register_assert_rewrite("tests.support.checks")

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.docker_fixtures",
    "tests.support.traefik_fixtures",
]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a test that did not run: the run fails, so CI never passes by skipping."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if skipped := len(terminalreporter.stats.get("skipped", [])):
        terminalreporter.write_line(f"FAILED: {skipped} test(s) skipped; every test must run", red=True)

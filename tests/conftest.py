"""Shared fixtures. Docker and Traefik fixtures fail (never skip) when the engine or binary is missing."""

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.docker_fixtures",
    "tests.support.traefik_fixtures",
]

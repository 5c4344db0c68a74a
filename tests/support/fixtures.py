"""Pytest fixtures over the real Docker engine and the real Traefik binary."""

from __future__ import annotations

import secrets

import pytest


@pytest.fixture
def prefix() -> str:
    """A random prefix for names of test containers, networks and apps, so parallel runs never collide."""
    return "ts" + secrets.token_hex(3)

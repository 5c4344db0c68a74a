"""A fuzz of the config loader: any YAML tree is a Config or a ConfigError naming the file, never a traceback.

Three sources of input: arbitrary trees (dumped as YAML), a valid config with one subtree replaced by an
arbitrary one (deep in the schema, where the validators live), and arbitrary text from YAML's own alphabet
(anchors, tags, flow collections, merge keys, odd scalars).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError
from trafficshift.models import Config

pytestmark = [pytest.mark.chaos]

SOURCE = "fuzz.yml"
BASE_DIR = Path("/srv/fuzz")
# `fuzz.yml:LINE: ...` or `fuzz.yml: ...` (an error of the whole file, e.g. not a mapping).
MESSAGE = re.compile(rf"^{re.escape(SOURCE)}(:\d+)?: ")

# Every section and most keys the loader knows, valid as they stand (secrets from the environment: the
# loader never reads a file for them here).
VALID: dict[str, Any] = {
    "traefik": {
        "dynamic_dir": "./dynamic",
        "api_url": "http://127.0.0.1:8080",
        "metrics_url": "http://127.0.0.1:8082/metrics",
        "entrypoints": ["web"],
    },
    "state_dir": "./state",
    "service": {
        "listen": "127.0.0.1:8700",
        "schedule_grace": "10m",
        "retention": "30d",
        "max_connections": 512,
        "header_timeout": "10s",
        "keepalive_timeout": "30s",
    },
    "apps": {
        "web": {
            "image": "example/web:1.0",
            "port": 8080,
            "replicas": 2,
            "rule": "Host(`web.localhost`)",
            "publish": "127.0.0.1",
            "environment": {"LOG_LEVEL": "info"},
            "command": ["./serve", "--port", "8080"],
            "labels": {"team": "web"},
            "health": {
                "path": "/healthz",
                "interval": "1s",
                "timeout": "2s",
                "healthy_threshold": 2,
                "start_timeout": "60s",
            },
            "rollout": {"steps": [10, 25, 50, 100], "pause": "30s", "drain": "10s", "stop_timeout": "10s"},
            "analysis": {
                "max_error_rate": 0.01,
                "max_p95_latency": "500ms",
                "min_requests": 20,
                "interval": "1s",
                "compare_to_old": True,
            },
            "webhooks": [{"url": "https://ci.example/hook", "secret_env": "HOOK_SECRET"}],
            "confirm": {"url": "https://ci.example/confirm", "secret_env": "HOOK_SECRET"},
        },
        "api": {
            "compose": {"file": "./docker-compose.yml", "service": "api"},
            "port": 80,
            "rule": "Path(`/`)",
            "network": "traefik",
        },
    },
    "webhooks": [
        {
            "url": "https://ci.example/hooks/trafficshift",
            "secret_env": "HOOK_SECRET",
            "events": ["shifting", "done"],
            "timeout": "5s",
            "retries": 3,
        }
    ],
    "confirm": {
        "url": "https://ci.example/confirm",
        "secret_env": "HOOK_SECRET",
        "timeout": "30s",
        "retries": 3,
    },
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["0s", "1s", "-1s", "1e9h", "30d", "100", "{{ .x }}", "", " ", "127.0.0.1", "~", "null"]
    )
)
keys = st.text(max_size=12) | st.sampled_from(
    sorted({k for section in VALID.values() if isinstance(section, dict) for k in section} | set(VALID))
)
trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)


@pytest.fixture(scope="module", autouse=True)
def _secret() -> Iterator[None]:
    """The webhooks' secret (module-scoped: hypothesis runs every example in one call of the test)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOOK_SECRET", "s3cret")
        yield


def _load(text: str) -> Config | None:
    """Parse `text`: a Config, or None after checking that the ConfigError names the file on every line."""
    try:
        config = parse_config_text(text, source=SOURCE, base_dir=BASE_DIR)
    except ConfigError as exc:
        error = exc
    else:
        event("valid")
        return config
    event("ConfigError")
    assert error.messages
    for message in error.messages:
        assert MESSAGE.match(message), message
        assert "Traceback" not in message
    assert error.exit_code == 2
    return None


def _dump(tree: Any) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


def test_the_valid_config_is_valid() -> None:
    """The mutation fuzz starts from a config that loads (else it would only test the first error)."""
    config = parse_config_text(_dump(VALID), source=SOURCE, base_dir=BASE_DIR)
    assert set(config.apps) == {"web", "api"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_arbitrary_trees(tree: Any) -> None:
    _load(_dump(tree))


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `tree` (dict keys and list indexes), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found.extend(_paths(value, (*prefix, key)))
    return found


PATHS = _paths(VALID)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    how=st.sampled_from(["replace", "delete", "add"]),
    value=trees,
    key=keys,
)
def test_a_valid_config_with_one_subtree_changed(
    path: tuple[Any, ...], how: str, value: Any, key: str
) -> None:
    doc = copy.deepcopy(VALID)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][key] = value
    else:
        parent[last] = [parent[last], value]
    _load(_dump(doc))


# YAML's own alphabet, and whole tokens that make anchors, aliases, merge keys, tags and nesting likely.
TOKENS = [
    *"abz019 :-?,[]{}&*!|>'\"%@`#<=~.\n\t\\",
    "\ufeff",
    "é",
    "\x85",
    "<<: *a",
    "&a ",
    "*a",
    "!!str ",
    "!!python/object:os.system ",
    "!!binary ",
    "!!set ",
    "apps:",
    "\n  ",
    "\n    ",
    "traefik:",
    "dynamic_dir: d",
    "- ",
    "---\n",
    "...\n",
    "? ",
]
yaml_text = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yaml_text)
def test_arbitrary_text(text: str) -> None:
    _load(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=yaml_text, tree=trees)
def test_a_valid_config_after_arbitrary_text(prefix: str, tree: Any) -> None:
    """Text spliced before a valid config: anchors, tags or a broken line ahead of what the loader knows."""
    _load(prefix + "\n" + _dump(VALID) + _dump({"x-extra": tree}))

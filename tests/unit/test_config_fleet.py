"""`traefik.provider: redis`, `traefik.redis` and a fleet's `api_urls`/`metrics_urls`: parsed, refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError
from trafficshift.models import Config, RedisSpec

APPS = "apps:\n  web: {image: i, port: 80, rule: r, network: n}\n"


def parse(traefik: str) -> Config:
    return parse_config_text(f"traefik:\n{traefik}{APPS}", source="trafficshift.yml", base_dir=Path("/base"))


def errors_of(traefik: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(traefik)
    return list(info.value.messages)


def test_a_redis_fleet_needs_no_dynamic_dir() -> None:
    config = parse(
        "  provider: redis\n"
        "  redis: {url: 'redis://10.0.0.5:6379/2', root_key: edge}\n"
        "  api_urls: [http://t1:8080/, http://t2:8080]\n"
        "  metrics_urls: [http://t1:8082/metrics, http://t2:8082/metrics]\n"
    )
    spec = config.traefik
    assert spec.provider == "redis"
    assert spec.dynamic_dir is None
    assert spec.redis == RedisSpec(url="redis://10.0.0.5:6379/2", root_key="edge")
    assert spec.apis == ("http://t1:8080", "http://t2:8080")
    assert spec.metrics == ("http://t1:8082/metrics", "http://t2:8082/metrics")


def test_one_api_url_is_a_fleet_of_one_and_the_root_key_defaults_to_traefiks() -> None:
    spec = parse(
        "  provider: redis\n  redis: {url: 'redis://127.0.0.1:6379'}\n  api_url: http://t1:8080\n"
    ).traefik
    assert spec.apis == ("http://t1:8080",)
    assert spec.redis == RedisSpec(url="redis://127.0.0.1:6379", root_key="traefik")
    assert parse("  dynamic_dir: d\n").traefik.apis == ()


@pytest.mark.parametrize(
    ("traefik", "where", "why"),
    [
        ("  provider: consul\n  dynamic_dir: d\n", "2: traefik.provider", "expected file or redis"),
        ("  provider: redis\n", "1: traefik", "missing required key 'redis'"),
        ("  api_url: http://a\n", "1: traefik", "missing required key 'dynamic_dir'"),
        ("  dynamic_dir: d\n  redis: {url: 'redis://h'}\n", "3: traefik.redis", "set provider: redis"),
        ("  provider: redis\n  redis: {url: 'http://h:6379'}\n", "3: traefik.redis.url", "redis://host:port"),
        ("  provider: redis\n  redis: {url: 'redis://h/x'}\n", "3: traefik.redis.url", "<db>"),
        ("  provider: redis\n  redis: {}\n", "3: traefik.redis", "missing required key 'url'"),
        (
            "  provider: redis\n  redis: {url: 'redis://h', root_key: a/b}\n",
            "3: traefik.redis.root_key",
            "one key",
        ),
        (
            "  dynamic_dir: d\n  api_url: http://a\n  api_urls: [http://b]\n",
            "4: traefik.api_urls",
            "not both",
        ),
        ("  dynamic_dir: d\n  api_urls: []\n", "3: traefik.api_urls", "at least one"),
        ("  dynamic_dir: d\n  api_urls: [http://a, 'http://a/']\n", "3: traefik.api_urls[1]", "twice"),
        ("  dynamic_dir: d\n  confirm_timeout: 1m\n", "3: traefik.confirm_timeout", "at most 30s"),
        ("  dynamic_dir: d\n  metrics_urls: [ftp://a]\n", "3: traefik.metrics_urls[0]", "http://"),
    ],
)
def test_bad_fleet_settings_name_file_line_and_key(traefik: str, where: str, why: str) -> None:
    messages = errors_of(traefik)
    assert any(m.startswith(f"trafficshift.yml:{where}: ") and why in m for m in messages), messages


def test_a_mirror_is_refused_with_redis_where_it_is_not_written() -> None:
    text = (
        "traefik: {provider: redis, redis: {url: 'redis://h'}}\n"
        "apps:\n  web: {image: i, port: 80, rule: r, network: n,\n"
        "        rollout: {mirror: {percent: 10, duration: 5s}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="trafficshift.yml", base_dir=Path("/base"))
    assert any(m.startswith("trafficshift.yml:3: apps.web: ") and "mirror" in m for m in info.value.messages)

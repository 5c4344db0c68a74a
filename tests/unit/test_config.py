from __future__ import annotations

import re
import string
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.support.factories import BASE_CONFIG
from trafficshift.config import (
    NODE_BUDGET,
    load_config,
    parse_config_text,
    resolve_config_path,
    validate_app_name,
    validate_listen,
)
from trafficshift.errors import ConfigError
from trafficshift.models import (
    AnalysisSpec,
    AppSpec,
    Config,
    DockerSpec,
    HealthSpec,
    RolloutPolicy,
    ServiceSpec,
    TraefikSpec,
)

BASE_DIR = Path("/srv/shift")

# Lines 1-9; app-level additions from app() start on line 10.
BASE = BASE_CONFIG

CONTRACT_EXAMPLE = """\
traefik:
  dynamic_dir: ./traefik/dynamic     # required
  api_url: http://127.0.0.1:8080
  metrics_url: http://127.0.0.1:8082/metrics
  entrypoints: [web]
state_dir: ./.trafficshift
apps:
  web:
    image: example/web:1.0
    port: 8080
    replicas: 1
    rule: "Host(`web.localhost`)"
    network: traefik
    environment: {LOG_LEVEL: info}
    command: ["./serve", "--port", "8080"]
    labels: {team: web}
    health:
      path: /healthz
      interval: 1s
      timeout: 2s
      healthy_threshold: 2
      start_timeout: 60s
    rollout:
      steps: [10, 25, 50, 100]
      pause: 30s
      drain: 10s
      stop_timeout: 10s
    analysis:
      max_error_rate: 0.01
      max_p95_latency: 500ms
      min_requests: 20
service:
  listen: 127.0.0.1:8700
  token_file: ./secrets/token
  schedule_grace: 10m
  retention: 7d
  max_connections: 100
  header_timeout: 5s
  keepalive_timeout: 1m
"""


def app(extra: str) -> str:
    """BASE with `extra` (YAML at app level) appended from line 10."""
    return BASE + textwrap.indent(textwrap.dedent(extra), "    ")


def parse(text: str) -> Config:
    return parse_config_text(text, source="trafficshift.yml", base_dir=BASE_DIR)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return list(info.value.messages)


# ---------------------------------------------------------------- valid configs


def test_contract_example_gives_the_expected_models() -> None:
    config = parse(CONTRACT_EXAMPLE)
    assert config == Config(
        path=BASE_DIR / "trafficshift.yml",
        traefik=TraefikSpec(
            dynamic_dir=BASE_DIR / "traefik/dynamic",
            api_url="http://127.0.0.1:8080",
            metrics_url="http://127.0.0.1:8082/metrics",
            entrypoints=("web",),
        ),
        state_dir=BASE_DIR / ".trafficshift",
        apps={
            "web": AppSpec(
                name="web",
                image="example/web:1.0",
                port=8080,
                rule="Host(`web.localhost`)",
                replicas=1,
                network="traefik",
                environment={"LOG_LEVEL": "info"},
                command=("./serve", "--port", "8080"),
                labels={"team": "web"},
                health=HealthSpec(
                    path="/healthz", interval=1.0, timeout=2.0, healthy_threshold=2, start_timeout=60.0
                ),
                rollout=RolloutPolicy(steps=(10, 25, 50, 100), pause=30.0, drain=10.0, stop_timeout=10.0),
                analysis=AnalysisSpec(max_error_rate=0.01, max_p95_latency=0.5, min_requests=20),
            )
        },
        service=ServiceSpec(
            listen="127.0.0.1:8700",
            token_file=BASE_DIR / "secrets/token",
            schedule_grace=600.0,
            retention=7 * 86400.0,
            max_connections=100,
            header_timeout=5.0,
            keepalive_timeout=60.0,
        ),
    )


def test_defaults_fill_what_is_left_out() -> None:
    config = parse(
        "traefik: {dynamic_dir: /var/dyn}\napps:\n  web: {image: i, port: 80, rule: r, network: n}\n"
    )
    assert config.traefik == TraefikSpec(dynamic_dir=Path("/var/dyn"))
    assert config.state_dir == BASE_DIR / ".trafficshift"
    assert config.service == ServiceSpec()
    assert config.docker == DockerSpec(concurrency=32)
    assert config.apps["web"] == AppSpec(name="web", image="i", port=80, rule="r", network="n")
    assert config.apps["web"].analysis is None


def test_docker_concurrency_is_read() -> None:
    assert parse(BASE + "docker: {concurrency: 12}\n").docker == DockerSpec(concurrency=12)


def test_no_apps_is_valid() -> None:
    assert parse("traefik: {dynamic_dir: d}\napps: {}\n").apps == {}


def test_relative_paths_start_at_the_config_folder_and_absolute_ones_stay() -> None:
    config = parse(
        "traefik: {dynamic_dir: dyn/files}\nstate_dir: /var/lib/ts\n"
        "service: {token_file: ../secret}\napps: {}\n"
    )
    assert config.traefik.dynamic_dir == BASE_DIR / "dyn/files"
    assert config.state_dir == Path("/var/lib/ts")
    assert config.service.token_file == BASE_DIR / "../secret"


def test_publish_and_numbers_where_floats_go() -> None:
    config = parse(app("analysis: {max_error_rate: 0, max_p95_latency: 1m30s}\n"))
    assert config.apps["web"].publish == "127.0.0.1"
    assert config.apps["web"].analysis == AnalysisSpec(max_error_rate=0.0, max_p95_latency=90.0)


def test_ipv6_publish_is_normalised() -> None:
    config = parse(BASE.replace("127.0.0.1\n", '"0:0::1"\n'))
    assert config.apps["web"].publish == "::1"


def test_environment_and_labels_keep_scalars_as_written() -> None:
    config = parse(
        app("environment: {A: 1.0, B: yes, C: 0x10, D: '', E: 007, F: 2024-01-01}\nlabels: {on: off}\n")
    )
    assert config.apps["web"].environment == {
        "A": "1.0",
        "B": "yes",
        "C": "0x10",
        "D": "",
        "E": "007",
        "F": "2024-01-01",
    }
    assert config.apps["web"].labels == {"on": "off"}


def test_anchors_merge_keys_and_x_extension_keys_work() -> None:
    config = parse(
        textwrap.dedent("""\
        x-defaults: &app {image: i, port: 80, rule: r, network: n, labels: {team: a}}
        traefik: {dynamic_dir: d}
        apps:
          one: *app
          two:
            <<: [{port: 82, replicas: 2}, *app]
            port: 81
        """)
    )
    assert config.apps["one"] == AppSpec(
        name="one", image="i", port=80, rule="r", network="n", labels={"team": "a"}
    )
    assert config.apps["two"].port == 81
    assert config.apps["two"].replicas == 2
    assert config.apps["two"].labels == {"team": "a"}


def test_api_url_loses_its_trailing_slash() -> None:
    config = parse(BASE.replace("  metrics_url:", "  api_url: http://localhost:8080/\n  metrics_url:"))
    assert config.traefik.api_url == "http://localhost:8080"


# ---------------------------------------------------------------- invalid configs, one problem each

CASES = [
    # YAML itself
    ("traefik: [\napps: {}\n", 3, "", "invalid YAML"),
    ("traefik:\n  dynamic_dir: d\n bad indent: 1\n", 3, "", "invalid YAML"),
    ("a: 1\n---\nb: 2\n", 2, "", "invalid YAML: expected a single document"),
    ("traefik: {dynamic_dir: d}\napps: {}\nx: \x07\n", 3, "", "U+0007"),
    ("", 1, "", "empty"),
    ("# only a comment\n", 1, "", "empty"),
    ("- traefik\n", 1, "", "expected a mapping at the top level, got a list"),
    ("just text\n", 1, "", "expected a mapping at the top level, got a string"),
    ("[" * 600, 1, "", "nested too deeply"),
    # unknown and missing keys, duplicates
    (BASE + "extra: 1\n", 10, "extra", "unknown key"),
    (BASE.replace("  metrics_url", "  metric_url"), 3, "traefik.metric_url", "did you mean 'metrics_url'?"),
    (app("replica: 2\n"), 10, "apps.web.replica", "did you mean 'replicas'?"),
    (app("health: {paht: /}\n"), 10, "apps.web.health.paht", "unknown key"),
    (app("rollout: {steps: [100], wait: 1s}\n"), 10, "apps.web.rollout.wait", "unknown key"),
    (app("analysis: {max_error_rate: 0.1, max_rate: 1}\n"), 10, "apps.web.analysis.max_rate", "unknown key"),
    (BASE + "service: {port: 1}\n", 10, "service.port", "unknown key"),
    (app("port: 9090\n"), 10, "apps.web.port", "duplicate key (first on line 7)"),
    (app("environment:\n  A: 1\n  A: 2\n"), 12, "apps.web.environment.A", "duplicate key (first on line 11)"),
    (BASE + "apps: {}\n", 10, "apps", "duplicate key (first on line 4)"),
    ("apps: {}\n", 1, "", "missing required key 'traefik'"),
    ("traefik: {api_url: http://x}\napps: {}\n", 1, "traefik", "missing required key 'dynamic_dir'"),
    (BASE.replace("    image: example/web:1.0\n", ""), 5, "apps.web", "missing required key 'image'"),
    (BASE.replace("    port: 8080\n", ""), 5, "apps.web", "missing required key 'port'"),
    (BASE.replace('    rule: "Host(`web.localhost`)"\n', ""), 5, "apps.web", "missing required key 'rule'"),
    (app("? [a]\n: 1\n"), 10, "apps.web", "keys must be strings, got a list"),
    (app("<<: 5\n"), 10, "apps.web", "<< must merge a mapping"),
    # wrong types
    (BASE.replace("port: 8080", "port: true"), 7, "apps.web.port", "expected an integer, got a boolean"),
    (BASE.replace("port: 8080", 'port: "8080"'), 7, "apps.web.port", "expected an integer, got a string"),
    (BASE.replace("port: 8080", "port: 80.5"), 7, "apps.web.port", "expected an integer, got a number"),
    (BASE.replace("port: 8080", "port: !!int x"), 7, "apps.web.port", "not valid as an integer"),
    (BASE.replace("image: example/web:1.0", "image: 1.0"), 6, "apps.web.image", "expected a string"),
    (BASE.replace("  web:\n", "  web: [1]\n", 1).split("    image")[0], 5, "apps.web", "expected a mapping"),
    ("traefik:\napps: {}\n", 1, "traefik", "expected a mapping, got null"),
    (app("replicas: 2.0\n"), 10, "apps.web.replicas", "expected an integer"),
    (app("environment: [A=1]\n"), 10, "apps.web.environment", "expected a mapping, got a list"),
    (
        app("environment: {A: [1]}\n"),
        10,
        "apps.web.environment.A",
        "expected a string, number or boolean, got a list",
    ),
    (app("environment: {A: null}\n"), 10, "apps.web.environment.A", "must not be null"),
    (app("labels: {a: {b: c}}\n"), 10, "apps.web.labels.a", "got a mapping"),
    (app("command: ./serve --port 8080\n"), 10, "apps.web.command", "expected a list of strings"),
    (app("command: [./serve, 8080]\n"), 10, "apps.web.command[1]", "expected a string, got an integer"),
    (app("command: []\n"), 10, "apps.web.command", "must not be empty"),
    (app("analysis: {max_error_rate: true}\n"), 10, "apps.web.analysis.max_error_rate", "got a boolean"),
    (app("rollout: {steps: '10,100'}\n"), 10, "apps.web.rollout.steps", "expected a list, got a string"),
    (app("health: /healthz\n"), 10, "apps.web.health", "expected a mapping, got a string"),
    (app("replicas: !custom 2\n"), 10, "apps.web.replicas", "got a value tagged !custom"),
    # durations
    (app("rollout: {pause: 5w}\n"), 10, "apps.web.rollout.pause", "expected a duration like"),
    (app("rollout: {pause: 30}\n"), 10, "apps.web.rollout.pause", "got '30'"),
    (app("rollout: {drain: [1s]}\n"), 10, "apps.web.rollout.drain", "expected a string, got a list"),
    (app("health: {interval: 0s}\n"), 10, "apps.web.health.interval", "must be more than 0"),
    (app("health: {timeout: -1s}\n"), 10, "apps.web.health.timeout", "expected a duration"),
    (app("analysis: {max_p95_latency: fast}\n"), 10, "apps.web.analysis.max_p95_latency", "duration"),
    (BASE + "service: {schedule_grace: 10}\n", 10, "service.schedule_grace", "expected a duration"),
    (BASE + "service: {retention: 30}\n", 10, "service.retention", "expected a duration"),
    (BASE + "service: {retention: 0s}\n", 10, "service.retention", "more than 0"),
    (BASE + "service: {max_connections: 0}\n", 10, "service.max_connections", "must be 1..1000000"),
    (BASE + "service: {header_timeout: 0s}\n", 10, "service.header_timeout", "more than 0"),
    (BASE + "docker: {concurrency: 0}\n", 10, "docker.concurrency", "must be 1..64"),
    (BASE + "docker: {concurrency: 4.5}\n", 10, "docker.concurrency", "integer"),
    (BASE + "docker: {parallel: 4}\n", 10, "docker.parallel", "unknown"),
    (BASE + "service: {keepalive_timeout: 30}\n", 10, "service.keepalive_timeout", "expected a duration"),
    # names
    (BASE.replace("  web:", "  Web:"), 5, "apps.Web", "app names must match"),
    (BASE.replace("  web:", "  1web:"), 5, "apps.1web", "app names must match"),
    (BASE.replace("  web:", "  web_app:"), 5, "apps.web_app", "app names must match"),
    (BASE.replace("  web:", "  " + "a" * 41 + ":"), 5, "apps." + "a" * 41, "app names must match"),
    (BASE + "  web-blue: {image: i, port: 1, rule: r, network: n}\n", 10, "apps.web-blue", "collides"),
    # network / publish
    (app("network: traefik\n"), 9, "apps.web.publish", "exactly one of network and publish, not both"),
    (BASE.replace("    publish: 127.0.0.1\n", ""), 5, "apps.web", "set exactly one of network and publish"),
    (
        BASE.replace("publish: 127.0.0.1", "publish: localhost"),
        9,
        "apps.web.publish",
        "expected an IP address",
    ),
    (BASE.replace("publish: 127.0.0.1", "network: my net"), 9, "apps.web.network", "Docker network name"),
    (BASE.replace("publish: 127.0.0.1", "network: bridge"), 9, "apps.web.network", "user-defined network"),
    (BASE.replace("publish: 127.0.0.1", "network: ''"), 9, "apps.web.network", "must not be empty"),
    # steps
    (
        app("rollout: {steps: [10, 10, 100]}\n"),
        10,
        "apps.web.rollout.steps[1]",
        "rise strictly, got 10 after 10",
    ),
    (app("rollout: {steps: [50, 20, 100]}\n"), 10, "apps.web.rollout.steps[1]", "rise strictly"),
    (app("rollout: {steps: [0, 100]}\n"), 10, "apps.web.rollout.steps[0]", "must be 1..100, got 0"),
    (app("rollout: {steps: [10, 101]}\n"), 10, "apps.web.rollout.steps[1]", "must be 1..100, got 101"),
    (app("rollout: {steps: [10, 50]}\n"), 10, "apps.web.rollout.steps", "must end at 100, got [10, 50]"),
    (app("rollout: {steps: []}\n"), 10, "apps.web.rollout.steps", "must end at 100, got []"),
    (app("rollout: {steps: [true, 100]}\n"), 10, "apps.web.rollout.steps[0]", "got a boolean"),
    (app("rollout:\n  steps:\n    - 10\n    - 50\n"), 11, "apps.web.rollout.steps", "must end at 100"),
    # Go templates
    (BASE.replace("Host(`web.localhost`)", "Host(`{{ .Name }}`)"), 8, "apps.web.rule", "'{{'"),
    (app("environment: {'{{X}}': a}\n"), 10, "apps.web.environment.{{X}}", "Go template"),
    (app("environment: {X: 'a{{b'}\n"), 10, "apps.web.environment.X", "Go template"),
    (app("labels: {team: '{{'}\n"), 10, "apps.web.labels.team", "Go template"),
    (app("command: [sh, -c, 'echo {{x}}']\n"), 10, "apps.web.command[2]", "Go template"),
    # ranges and values
    (BASE.replace("port: 8080", "port: 70000"), 7, "apps.web.port", "must be 1..65535, got 70000"),
    (BASE.replace("port: 8080", "port: 0"), 7, "apps.web.port", "must be 1..65535, got 0"),
    (app("replicas: 0\n"), 10, "apps.web.replicas", "must be 1..100, got 0"),
    (app("replicas: 101\n"), 10, "apps.web.replicas", "must be 1..100, got 101"),
    (app("health: {healthy_threshold: 0}\n"), 10, "apps.web.health.healthy_threshold", "must be 1..100"),
    (app("health: {path: healthz}\n"), 10, "apps.web.health.path", "like /healthz"),
    (app("analysis: {max_error_rate: 1.5}\n"), 10, "apps.web.analysis.max_error_rate", "must be 0..1"),
    (app("analysis: {max_error_rate: -0.1}\n"), 10, "apps.web.analysis.max_error_rate", "must be 0..1"),
    (app("analysis: {max_error_rate: .nan}\n"), 10, "apps.web.analysis.max_error_rate", "must be 0..1"),
    (app("analysis: {max_error_rate: 0.1, min_requests: -1}\n"), 10, "apps.web.analysis.min_requests", "0.."),
    (app("analysis: {min_requests: 5}\n"), 10, "apps.web.analysis", "set max_error_rate and/or"),
    (BASE.replace("image: example/web:1.0", "image: ''"), 6, "apps.web.image", "must not be empty"),
    (BASE.replace("image: example/web:1.0", "image: 'web 1.0'"), 6, "apps.web.image", "no whitespace"),
    (BASE.replace('rule: "Host(`web.localhost`)"', "rule: ' '"), 8, "apps.web.rule", "must not be empty"),
    (app("labels: {trafficshift.app: x}\n"), 10, "apps.web.labels.trafficshift.app", "reserved"),
    (app("environment: {'A=B': x}\n"), 10, "apps.web.environment.A=B", "not a valid variable name"),
    # traefik and service
    (
        BASE.replace("metrics_url: http://127.0.0.1:8082/metrics", "metrics_url: 127.0.0.1:8082"),
        3,
        "traefik.metrics_url",
        "http:// or https:// URL",
    ),
    (BASE.replace("  metrics_url:", "  api_url: ftp://x\n  metrics_url:"), 3, "traefik.api_url", "URL"),
    (
        BASE.replace("  metrics_url:", "  api_url: http://x:99999\n  metrics_url:"),
        3,
        "traefik.api_url",
        "URL",
    ),
    (
        BASE.replace("  metrics_url:", "  entrypoints: []\n  metrics_url:"),
        3,
        "traefik.entrypoints",
        "at least",
    ),
    (
        BASE.replace("  metrics_url:", "  entrypoints: web\n  metrics_url:"),
        3,
        "traefik.entrypoints",
        "a list",
    ),
    (
        BASE.replace("  metrics_url:", "  entrypoints: [we b]\n  metrics_url:"),
        3,
        "traefik.entrypoints[0]",
        "entrypoint name",
    ),
    (
        BASE.replace("  dynamic_dir: ./dynamic", "  dynamic_dir: 7"),
        2,
        "traefik.dynamic_dir",
        "expected a string",
    ),
    (
        BASE.replace("  metrics_url: http://127.0.0.1:8082/metrics\n", "")
        + "    analysis: {max_error_rate: 0.1}\n",
        9,
        "apps.web.analysis",
        "needs traefik.metrics_url",
    ),
    (BASE + "state_dir: 5\n", 10, "state_dir", "expected a string"),
    (BASE + "service: {listen: 8700}\n", 10, "service.listen", "expected a string"),
    (BASE + "service: {listen: 'localhost:99999'}\n", 10, "service.listen", "host:port"),
    (BASE + "service: {listen: '::1:8700'}\n", 10, "service.listen", "brackets"),
    (BASE + "service: {token_file: [a]}\n", 10, "service.token_file", "expected a string"),
]


@pytest.mark.parametrize(("text", "line", "path", "why"), CASES)
def test_invalid_config_names_file_line_path_and_why(text: str, line: int, path: str, why: str) -> None:
    messages = errors_of(text)
    where = f"trafficshift.yml:{line}: " + (f"{path}: " if path else "")
    assert any(m.startswith(where) and why in m for m in messages), messages


def test_every_error_is_collected_and_sorted_by_line() -> None:
    text = textwrap.dedent("""\
        traefik: {dynamic_dir: d, bogus: 1}
        apps:
          web:
            image: i
            port: 0
            rule: r
            network: n
            rollout: {pause: soon}
          Bad: {}
        """)
    messages = errors_of(text)
    assert [m.split(":")[1] for m in messages] == ["1", "5", "8", "9"]
    assert all(re.match(r"trafficshift\.yml:\d+: \S+: .+", m) for m in messages)


def test_a_node_reached_through_two_aliases_is_reported_under_each_path() -> None:
    text = "traefik: {dynamic_dir: d}\napps:\n  a: &x {image: i, port: 0, rule: r, network: n}\n  b: *x\n"
    messages = errors_of(text)
    assert [m for m in messages if "must be 1..65535" in m] == [
        "trafficshift.yml:3: apps.a.port: must be 1..65535, got 0",
        "trafficshift.yml:3: apps.b.port: must be 1..65535, got 0",
    ]


def test_alias_bomb_fails_fast() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(9)]
    text = "\n".join(lines) + "\n" + "traefik: {dynamic_dir: d}\napps: {web: {command: *j}}\n"
    started = time.perf_counter()
    messages = errors_of(text)
    assert time.perf_counter() - started < 0.5
    assert any(f"over {NODE_BUDGET} values" in m for m in messages), messages


def test_recursive_alias_fails_fast() -> None:
    started = time.perf_counter()
    messages = errors_of("traefik: {dynamic_dir: d}\napps: &a {web: *a}\n")
    assert time.perf_counter() - started < 0.5
    assert any("recursive alias" in m for m in messages), messages


# ---------------------------------------------------------------- files and paths


def test_load_config_reads_the_file_and_resolves_paths_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "ts.yml").write_text("traefik: {dynamic_dir: dyn}\nstate_dir: st\napps: {}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/ts.yml"))
    assert config.path == folder / "ts.yml"
    assert config.traefik.dynamic_dir == folder / "dyn"
    assert config.state_dir == folder / "st"


def test_load_config_names_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ts.yml").write_text("traefik: {dynamic_dir: dyn}\napps: {}\nbogus: 1\n")
    monkeypatch.chdir(tmp_path)
    for given_path in (Path("ts.yml"), tmp_path / "ts.yml"):
        with pytest.raises(ConfigError) as info:
            load_config(given_path)
        assert info.value.messages == (
            "ts.yml:3: bogus: unknown key;"
            " expected one of apps, confirm, docker, service, state_dir, traefik, webhooks",
        )


def test_load_config_reports_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "ts.yml"
    path.write_bytes(b"traefik: {dynamic_dir: d}\napps:\n  web:\n    image: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.messages[0].startswith(f"{path}:4: ")
    assert "UTF-8" in info.value.messages[0]


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "nope.yml")


def test_resolve_config_path_prefers_the_option_then_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAFFICSHIFT_CONFIG", "/etc/ts.yml")
    assert resolve_config_path("mine.yml") == Path("mine.yml")
    assert resolve_config_path(None) == Path("/etc/ts.yml")
    monkeypatch.setenv("TRAFFICSHIFT_CONFIG", "")
    assert resolve_config_path(None) == Path("trafficshift.yml")
    monkeypatch.delenv("TRAFFICSHIFT_CONFIG")
    assert resolve_config_path(None) == Path("trafficshift.yml")


# ---------------------------------------------------------------- names and values, as properties


def _is_app_name(name: str) -> bool:
    allowed = string.ascii_lowercase + string.digits + "-"
    return 1 <= len(name) <= 40 and name[0] in string.ascii_lowercase and all(c in allowed for c in name)


@given(st.from_regex(r"\A[a-z][a-z0-9-]{0,39}\Z"))
def test_app_names_that_match_are_accepted(name: str) -> None:
    assert validate_app_name(name) is None


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.\n é", max_size=45))
def test_app_name_validation_matches_the_rule(name: str) -> None:
    why = validate_app_name(name)
    assert (why is None) == _is_app_name(name)
    if why is not None:
        assert repr(name) in why


@pytest.mark.parametrize("value", ["127.0.0.1:8700", "0.0.0.0:1", "localhost:8700", "[::1]:8700"])
def test_listen_addresses_accepted(value: str) -> None:
    assert validate_listen(value) is None


@pytest.mark.parametrize("value", ["8700", ":8700", "host:", "host:0", "host:65536", "[nope]:1", "a b:1"])
def test_listen_addresses_rejected(value: str) -> None:
    assert validate_listen(value) is not None


_plain_text = st.text().filter(lambda s: "{{" not in s)
_label_key = st.text(min_size=1).filter(lambda s: "{{" not in s and not s.startswith("trafficshift."))


@given(
    env=st.dictionaries(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,10}\Z"), _plain_text),
    labels=st.dictionaries(_label_key, _plain_text),
)
def test_accepted_strings_round_trip_verbatim(env: dict[str, str], labels: dict[str, str]) -> None:
    document = {
        "traefik": {"dynamic_dir": "d"},
        "apps": {
            "web": {
                "image": "i",
                "port": 80,
                "rule": "r",
                "network": "n",
                "environment": env,
                "labels": labels,
            }
        },
    }
    spec = parse(yaml.safe_dump(document)).apps["web"]
    assert spec.environment == env
    assert spec.labels == labels


@given(st.one_of(st.integers(), st.floats(), st.booleans()).map(lambda v: yaml.safe_dump(v).split("\n")[0]))
def test_numbers_and_booleans_are_kept_as_written(written: str) -> None:
    spec = parse(app(f"environment:\n  V: {written}\n")).apps["web"]
    assert spec.environment == {"V": written}

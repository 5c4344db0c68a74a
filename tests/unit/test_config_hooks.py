"""Config additions of issue 6: analysis timing keys, webhooks and the confirm gate."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.factories import BASE_CONFIG
from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError
from trafficshift.models import AnalysisSpec, Config, ConfirmSpec, WebhookSpec

BASE = BASE_CONFIG


def parse(text: str, base_dir: Path) -> Config:
    return parse_config_text(text, source="trafficshift.yml", base_dir=base_dir)


def errors_of(text: str, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, base_dir)
    return list(info.value.messages)


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook").write_text("s3cret\n")
    (tmp_path / "secrets" / "empty").write_text("\n")
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    monkeypatch.delenv("UNSET_SECRET", raising=False)
    return tmp_path


def app(extra: str) -> str:
    return BASE + textwrap.indent(textwrap.dedent(extra), "    ")


def test_analysis_interval_and_compare_to_old(base_dir: Path) -> None:
    text = app("analysis: {max_error_rate: 0.01, interval: 500ms, compare_to_old: false}\n")
    assert parse(text, base_dir).apps["web"].analysis == AnalysisSpec(
        max_error_rate=0.01, interval=0.5, compare_to_old=False
    )
    defaults = parse(app("analysis: {max_p95_latency: 1s}\n"), base_dir).apps["web"].analysis
    assert defaults is not None
    assert (defaults.interval, defaults.compare_to_old) == (1.0, True)


def test_global_and_app_webhooks_and_confirm(base_dir: Path) -> None:
    text = app("""\
            webhooks:
              - url: http://127.0.0.1:9000/app
                secret_env: HOOK_SECRET
                events: [done, failed]
            confirm: {url: "http://127.0.0.1:9000/web-ok", secret_file: secrets/hook}
            """) + textwrap.dedent("""\
            webhooks:
              - {url: "https://hooks.example/all", secret_file: ./secrets/hook, timeout: 2s, retries: 0}
            confirm: {url: "http://127.0.0.1:9000/ok", secret_env: HOOK_SECRET, timeout: 10m, retries: 1}
            """)
    config = parse(text, base_dir)
    global_hook = WebhookSpec(url="https://hooks.example/all", secret=b"s3cret", timeout=2.0, retries=0)
    app_hook = WebhookSpec(
        url="http://127.0.0.1:9000/app", secret=b"from-env", events=frozenset({"done", "failed"})
    )
    assert config.webhooks == (global_hook,)
    assert config.confirm == ConfirmSpec(
        url="http://127.0.0.1:9000/ok", secret=b"from-env", timeout=600.0, retries=1
    )
    web = config.apps["web"]
    assert config.webhooks_of(web) == (global_hook, app_hook)
    # The app's own gate replaces the global one.
    assert config.confirm_of(web) == ConfirmSpec(url="http://127.0.0.1:9000/web-ok", secret=b"s3cret")
    assert "s3cret" not in repr(config)


def test_without_hooks_there_are_none(base_dir: Path) -> None:
    config = parse(BASE, base_dir)
    assert config.webhooks_of(config.apps["web"]) == ()
    assert config.confirm_of(config.apps["web"]) is None


def hook(extra: str = "", *, secret: str = ", secret_env: HOOK_SECRET") -> str:
    """BASE with one global webhook on line 10: `{url: 'http://x'<secret><extra>}`."""
    return BASE + f"webhooks: [{{url: 'http://x'{secret}{extra}}}]\n"


def gate(extra: str) -> str:
    return BASE + f"confirm: {{url: 'http://x', secret_env: HOOK_SECRET{extra}}}\n"


ANALYSIS = "apps.web.analysis."
ONE_SECRET = "exactly one of secret_file and secret_env"
CASES = [
    (app("analysis: {max_error_rate: 0.1, interval: 0s}\n"), 10, "apps.web.analysis.interval", "more than 0"),
    (app("analysis: {max_p95_latency: 1s,compare_to_old: 1}\n"), 10, ANALYSIS + "compare_to_old", "a bool"),
    (BASE + "webhooks: {url: 'http://x'}\n", 10, "webhooks", "expected a list"),
    (BASE + "webhooks: [{secret_env: HOOK_SECRET}]\n", 10, "webhooks[0]", "missing required key 'url'"),
    (BASE + "webhooks: [{url: ftp://x, secret_env: HOOK_SECRET}]\n", 10, "webhooks[0].url", "http://"),
    (hook(secret=""), 10, "webhooks[0]", ONE_SECRET),
    (hook(", secret_file: secrets/hook"), 10, "webhooks[0]", ONE_SECRET),
    (hook(secret=", secret_file: nope"), 10, "webhooks[0].secret_file", "cannot read nope"),
    (hook(secret=", secret_file: secrets/empty"), 10, "webhooks[0].secret_file", "empty"),
    (hook(secret=", secret_env: UNSET_SECRET"), 10, "webhooks[0].secret_env", "unset"),
    (hook(", events: [shipped]"), 10, "webhooks[0].events[0]", "unknown event 'shipped'"),
    (hook(", events: []"), 10, "webhooks[0].events", "at least one"),
    (hook(", retries: 11"), 10, "webhooks[0].retries", "0..10"),
    (hook(", timeout: 5"), 10, "webhooks[0].timeout", "duration"),
    (hook(", tries: 1"), 10, "webhooks[0].tries", "unknown key"),
    (gate(", events: [done]"), 10, "confirm.events", "unknown key"),
    (gate(", timeout: 0s"), 10, "confirm.timeout", "more than 0"),
    (app("confirm: {url: 'http://x'}\n"), 10, "apps.web.confirm", ONE_SECRET),
    (app("webhooks:\n  - url: 'http://{{x}}'\n    secret_env: S\n"), 11, "apps.web.webhooks[0].url", "{{"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "path", "why"), CASES)
def test_invalid_hooks_name_file_line_path_and_why(
    text: str, line: int, path: str, why: str, base_dir: Path
) -> None:
    messages = errors_of(text, base_dir)
    expected = f"trafficshift.yml:{line}: {path}: "
    assert any(m.startswith(expected) and why in m for m in messages), messages

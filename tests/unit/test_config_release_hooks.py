"""An app's `hooks:` (release hooks): parsed into ReleaseHooks; each mistake is `file:line: path: why`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.factories import BASE_CONFIG
from trafficshift.config import parse_config_text
from trafficshift.errors import ConfigError
from trafficshift.models import HookSpec, ReleaseHooks


def parse(extra: str) -> ReleaseHooks:
    text = BASE_CONFIG + textwrap.indent(textwrap.dedent(extra), "    ")
    return parse_config_text(text, source="trafficshift.yml", base_dir=Path("/srv")).apps["web"].hooks


def errors_of(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(extra)
    assert info.value.exit_code == 2
    return list(info.value.messages)


def test_each_hook_with_its_own_timeout_or_its_default() -> None:
    hooks = parse(
        """\
        hooks:
          pre_deploy: {command: ["./manage.py", "migrate"], timeout: 2m}
          pre_stop:
            command: [sh, -c, "kill -USR1 1 && sleep 5"]
          post_deploy: {command: [./warm-cache], timeout: 90s}
        """
    )
    assert hooks == ReleaseHooks(
        pre_deploy=HookSpec(command=("./manage.py", "migrate"), timeout=120.0),
        pre_stop=HookSpec(command=("sh", "-c", "kill -USR1 1 && sleep 5"), timeout=30.0),
        post_deploy=HookSpec(command=("./warm-cache",), timeout=90.0),
    )


def test_no_hooks_by_default() -> None:
    assert parse("") == ReleaseHooks()
    assert parse("hooks: {}\n") == ReleaseHooks()
    assert parse("hooks: {pre_deploy: {command: [migrate]}}\n").pre_deploy == HookSpec(("migrate",), 300.0)


def test_mistakes_are_reported_by_line_and_path() -> None:
    assert errors_of(
        """\
        hooks:
          pre_deploy: {command: ./manage.py migrate, timeout: -2}
          pre_stp: {command: [drain]}
          post_deploy: {command: [], timeout: 0s}
          pre_stop: {timeout: 5s}
        """
    ) == [
        "trafficshift.yml:11: apps.web.hooks.pre_deploy.command: expected a list of strings like"
        ' ["./manage.py", "migrate"], got a string',
        "trafficshift.yml:11: apps.web.hooks.pre_deploy.timeout: expected a duration like 500ms, 2s, 5m, 1h"
        " or 30d, got '-2'",
        "trafficshift.yml:12: apps.web.hooks.pre_stp: unknown key; did you mean 'pre_stop'?",
        "trafficshift.yml:13: apps.web.hooks.post_deploy.command: must not be empty; name the command to run",
        "trafficshift.yml:13: apps.web.hooks.post_deploy.timeout: must be more than 0, got '0s'",
        "trafficshift.yml:14: apps.web.hooks.pre_stop: missing required key 'command'",
    ]


def test_command_words_must_be_strings() -> None:
    assert errors_of("hooks: {pre_deploy: {command: [migrate, 3]}}\n") == [
        "trafficshift.yml:10: apps.web.hooks.pre_deploy.command[1]: expected a string, got an integer (3)"
    ]
